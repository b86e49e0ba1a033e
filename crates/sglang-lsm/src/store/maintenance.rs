//! The background worker: index flushes and compactions, periodic log syncs, and the
//! controller's ticks.
//!
//! One thread, woken by writers when the memtable fills or by a timer. Every loop iteration
//! does a bounded amount of work (one rotation, one flush, one compaction pass, one sync, one
//! controller tick). Thresholds come from the live knobs, so a controller decision takes
//! effect on the next iteration.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::reclaim::RateLimiter;
use super::stats::Counters;
use super::Inner;
use crate::config::Durability;
use crate::controller::Observation;
use crate::error::{Error, Result};

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
    let mut last_sync = Instant::now();
    let controller_every = Duration::from_millis(inner.config.controller_interval_ms);
    let mut last_tick = Instant::now();
    let mut limiter = RateLimiter::new(inner.knobs.reclaim_bytes_per_s());
    inner.controller_tick();
    loop {
        let sync_every = Duration::from_millis(inner.knobs.sync_interval_ms());
        if !inner
            .maintenance
            .wait(TICK.min(sync_every).min(controller_every))
        {
            break;
        }
        if last_tick.elapsed() >= controller_every {
            inner.controller_tick();
            last_tick = Instant::now();
        }
        limiter.set_rate(inner.knobs.reclaim_bytes_per_s());
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
        if inner
            .reclaim_one(Some(limiter), super::reclaim::Pass::Normal)?
            .is_none()
            && !inner.seal_active()?
        {
            break;
        }
    }
    Ok(())
}

fn step(inner: &Inner, last_sync: &mut Instant, sync_every: Duration) -> Result<()> {
    if inner.index.memtable_bytes() >= inner.knobs.memtable_bytes()
        || inner.index.sealed_count() > 0
    {
        inner.flush_index()?;
    }
    let l0_threshold = inner.knobs.l0_threshold();
    if inner.index.l0_runs() >= usize::from(l0_threshold) {
        let started = Instant::now();
        inner
            .index
            .compact(inner.knobs.level_ratio() as f32, l0_threshold)?;
        Counters::add(&inner.counters.index_busy_us, super::elapsed_us(started));
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
        let memtable_limit = self.knobs.memtable_bytes();
        let bytes = self.index.memtable_bytes();
        if bytes >= 4 * memtable_limit {
            return self.flush_index();
        }
        let over_target = self
            .reclaim_target_bytes()
            .is_some_and(|t| self.vlog.total_bytes() > t);
        if bytes >= memtable_limit || over_target {
            self.maintenance.wake();
        }
        Ok(())
    }
}

impl Inner {
    /// One controller tick: observe, let the controller decide, install what it returns.
    fn controller_tick(&self) {
        let obs = self.observe();
        let current = self.knobs.get();
        let next = self
            .controller
            .lock()
            .tick(obs, current, self.config.capacity_bytes);
        if let Some(k) = next {
            self.knobs.set(k);
            // A lower L0 trigger or memtable size should act now, not at the next write.
            self.maintenance.wake();
        }
    }

    fn observe(&self) -> Observation {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.counters;
        let (pages, live_bytes) = {
            let r = self.residency.read();
            (r.len() as u64, r.live_bytes())
        };
        Observation {
            at: Instant::now(),
            put_pages: c.put_pages.load(Relaxed),
            put_bytes: c.put_bytes.load(Relaxed),
            get_pages: c.get_pages.load(Relaxed),
            get_hits: c.get_hits.load(Relaxed),
            get_bytes: c.get_bytes.load(Relaxed),
            probe_keys: c.probe_keys.load(Relaxed),
            read_ios: c.read_ios.load(Relaxed),
            relocated_bytes: c.relocated_bytes.load(Relaxed),
            index_busy_us: c.index_busy_us.load(Relaxed),
            index_lookups: c.index_lookups.load(Relaxed),
            index_lookup_us: c.index_lookup_us.load(Relaxed),
            index_lookup_runs: c.index_lookup_runs.load(Relaxed),
            inserts_by_fill: c.inserts_by_fill(),
            fill_log2_min: super::stats::FILL_LOG2_MIN,
            l0_runs: self.index.l0_runs() as u64,
            index_table_bytes: self.index.disk_bytes() / (self.index.table_count().max(1) as u64),
            put_latency: c.put_latency.snapshot(),
            get_latency: c.get_latency.snapshot(),
            put_call_us: c.put_latency.sum_us(),
            get_call_us: c.get_latency.sum_us(),
            pages,
            live_bytes,
            log_bytes: self.vlog.total_bytes(),
            index_disk_bytes: self.index.disk_bytes(),
            // One statvfs per tick (1 s by default): cheap, and keeps the window honest.
            free_bytes: crate::io::free_bytes(&self.dir).ok(),
        }
    }
}
