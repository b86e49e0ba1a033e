//! The background worker: index flushes and compactions, and periodic log syncs.
//!
//! One thread, woken by writers when the memtable fills or by a timer. Every loop iteration
//! does a bounded amount of work (one rotation, one flush, one compaction pass, one sync).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::reclaim::RateLimiter;
use super::stats::Counters;
use super::Inner;
use crate::config::Durability;
use crate::error::{Error, Result};

/// Leveled compaction parameters. Fixed for now; the adaptive controller will steer them.
const LEVEL_RATIO: f32 = 10.0;
const L0_THRESHOLD: u8 = 4;
/// Longest the worker sleeps between checks.
const TICK: Duration = Duration::from_millis(200);

#[derive(Default)]
pub(crate) struct Signal {
    state: Mutex<SignalState>,
    cv: Condvar,
}

#[derive(Default)]
struct SignalState {
    wake: bool,
    stop: bool,
}

impl Signal {
    pub fn wake(&self) {
        self.state.lock().wake = true;
        self.cv.notify_one();
    }

    pub fn stop(&self) {
        self.state.lock().stop = true;
        self.cv.notify_one();
    }

    /// Waits up to `timeout`; returns false once stop was requested.
    fn wait(&self, timeout: Duration) -> bool {
        let mut s = self.state.lock();
        if !s.wake && !s.stop {
            self.cv.wait_for(&mut s, timeout);
        }
        s.wake = false;
        !s.stop
    }
}

pub(crate) fn spawn(inner: Arc<Inner>) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sglang-lsm-maint".into())
        .spawn(move || run(&inner))
        .map_err(|e| Error::io("maintenance thread", e))
}

fn run(inner: &Inner) {
    let sync_every = Duration::from_millis(inner.config.sync_interval_ms);
    let mut last_sync = Instant::now();
    let mut limiter = RateLimiter::new(inner.config.reclaim_bytes_per_s);
    while inner.maintenance.wait(TICK.min(sync_every)) {
        if let Err(e) = reclaim_step(inner, &mut limiter) {
            Counters::add(&inner.counters.background_errors, 1);
            tracing::error!(error = %e, "background reclamation failed; will retry");
        }
        if let Err(e) = step(inner, &mut last_sync, sync_every) {
            Counters::add(&inner.counters.background_errors, 1);
            tracing::error!(error = %e, "background maintenance failed; will retry");
        }
    }
}

/// Reclaims segments (a bounded number per tick) while the log is above the target.
fn reclaim_step(inner: &Inner, limiter: &mut RateLimiter) -> Result<()> {
    const SEGMENTS_PER_TICK: usize = 8;
    let Some(target) = inner.reclaim_target_bytes() else {
        return Ok(());
    };
    for _ in 0..SEGMENTS_PER_TICK {
        if inner.vlog.total_bytes() <= target {
            break;
        }
        if inner.reclaim_one(Some(limiter), false)?.is_none() && !inner.seal_active()? {
            break;
        }
    }
    Ok(())
}

fn step(inner: &Inner, last_sync: &mut Instant, sync_every: Duration) -> Result<()> {
    if inner.index.memtable_bytes() >= inner.config.memtable_bytes || inner.index.sealed_count() > 0
    {
        inner.flush_index()?;
    }
    if inner.index.l0_runs() >= usize::from(L0_THRESHOLD) {
        inner.index.compact(LEVEL_RATIO, L0_THRESHOLD)?;
        Counters::add(&inner.counters.index_compactions, 1);
    }
    if inner.config.durability == Durability::Periodic && last_sync.elapsed() >= sync_every {
        inner.vlog.sync()?;
        *last_sync = Instant::now();
    }
    Ok(())
}

impl Inner {
    /// Called by writers after publishing: wake the worker when the memtable is full.
    /// Past four memtables' worth the writer flushes inline: a bounded memtable is a bounded
    /// replay on the next open.
    pub(crate) fn after_publish(&self) -> Result<()> {
        let bytes = self.index.memtable_bytes();
        if bytes >= 4 * self.config.memtable_bytes {
            return self.flush_index();
        }
        let over_target = self
            .reclaim_target_bytes()
            .is_some_and(|t| self.vlog.total_bytes() > t);
        if bytes >= self.config.memtable_bytes || over_target {
            self.maintenance.wake();
        }
        Ok(())
    }
}
