//! The store: ties the value log, the LSM index and the residency set together.
//!
//! Invariants (docs/DESIGN.md):
//! 1. Every index record points at a complete frame whose checksum covers key and payload.
//! 2. Frames are appended and published under one lock in sequence-number order, and the
//!    memtable is only rotated under that lock, so "persisted seqno = S" means every frame
//!    `<= S` is in index tables and replay of frames `> S` rebuilds the rest.
//! 3. A page is resident (in the residency set) iff the index holds its record.

mod admission;
mod cascade;
pub(crate) mod dirlock;
mod fptable;
mod inflight;
mod maintenance;
mod metrics;
mod pins;
mod quota;
mod read;
mod reclaim;
mod recover;
mod residency;
mod s3fifo;
mod space;
mod stats;
mod tombstones;
mod verify;
mod victim;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::config::StoreConfig;
use crate::controller::{Controller, Decision, Knobs, LiveKnobs, WindowRecord};
use crate::error::Result;
use crate::index::Index;
use crate::io::FaultInjector;
use crate::vlog::{LogOptions, ValueLog};
use residency::Residency;
use stats::Counters;
pub use stats::{NamespaceStats, StoreStats};
pub use verify::{SegmentUsage, VerifyReport};

pub(crate) struct Inner {
    dir: PathBuf,
    config: StoreConfig,
    /// Segment size in force: the configured one, shrunk so a bounded store has >= 32 segments
    /// (reclamation works a segment at a time; smaller steps waste less capacity).
    segment_bytes: u64,
    /// Present when `min_free_bytes` is set.
    free_space: Option<space::FreeSpace>,
    quotas: quota::Quotas,
    reclaim_lock: parking_lot::Mutex<()>,
    /// Log bytes promised to batches that passed the capacity check and have not appended
    /// yet: concurrent batches share the bound instead of each seeing all of it.
    log_reserved_bytes: parking_lot::Mutex<u64>,
    /// Parents of pages a put is about to publish; eviction spares them (`store::pins`).
    pins: pins::Pins,
    /// Pages puts are writing now; a concurrent put of the same pages waits, not rewrites.
    in_flight: inflight::InFlight,
    /// Present when `admission = second_sighting`.
    ghost: Option<parking_lot::Mutex<admission::Ghost>>,
    /// Present when `protect_frequent_fraction` > 0: marks re-put evicted pages frequent.
    history: Option<parking_lot::Mutex<admission::History>>,
    /// Pages evicted from probation (only under `Eviction::S3Fifo`).
    evicted_ghost: Option<parking_lot::Mutex<s3fifo::EvictedGhost>>,
    vlog: ValueLog,
    index: Index,
    residency: RwLock<Residency>,
    counters: Counters,
    maintenance: maintenance::Signal,
    /// Runtime knobs: set from the config, retuned by the controller when `adaptive`.
    knobs: LiveKnobs,
    controller: parking_lot::Mutex<Controller>,
    /// Pages per cascading-delete step (`cascade::CASCADE_STEP_PAGES`; tests lower it).
    cascade_step_pages: std::sync::atomic::AtomicUsize,
}

/// A KV-cache page store. `Send + Sync`: share it with `Arc` across threads.
pub struct Store {
    inner: Arc<Inner>,
    worker: Option<std::thread::JoinHandle<()>>,
    _lock: dirlock::DirLock,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`: takes the directory lock, checks the
    /// format version, opens the index, replays the value log past the index's persisted
    /// sequence number (truncating a torn tail), and rebuilds the residency set.
    ///
    /// Damage costs pages, not the open: a segment file that fails validation is moved into
    /// `vlog/quarantine/` and its pages (with their descendants) become misses; a damaged
    /// index is moved to `index.damaged-<unix seconds>` and rebuilt from the log. Both are
    /// logged at error level and counted in [`StoreStats`].
    ///
    /// # Errors
    /// [`Error::Locked`] if another handle holds `dir`; [`Error::FormatVersion`] for a store
    /// written by an incompatible build; [`Error::Io`] naming the path for an unusable
    /// directory (missing parent, read-only); [`Error::InvalidArgument`] for a bad config.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Self> {
        Self::open_with_faults(dir, config, Arc::new(FaultInjector::default()))
    }

    /// [`Store::open`] with a fault injector that tests can arm (short writes, ENOSPC).
    #[doc(hidden)]
    pub fn open_with_faults(
        dir: impl AsRef<Path>,
        config: StoreConfig,
        faults: Arc<FaultInjector>,
    ) -> Result<Self> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let lock = dirlock::DirLock::acquire(&dir)?;
        dirlock::check_format(&dir)?;
        // The floor's bound at open (ignoring the log already there, which only raises it).
        let floor_bound = match config.min_free_bytes {
            Some(min_free) => Some(
                crate::io::free_bytes(&dir)
                    .map_err(|e| crate::error::Error::io(&dir, e))?
                    .saturating_sub(min_free),
            ),
            None => None,
        };
        let segment_bytes = match config.capacity_bytes.into_iter().chain(floor_bound).min() {
            Some(bound) => config.segment_bytes.min(bound / 32).max(1 << 20),
            None => config.segment_bytes,
        };
        let quotas = quota::Quotas::new(&config);
        let opts = LogOptions {
            segment_bytes,
            direct_write: config.direct_write,
            direct_read: config.direct_read,
            durability: config.durability,
        };
        let opened = recover::open_index_and_log(&dir, &config, &opts, &faults, &quotas)?;
        let (index, vlog, residency) = (opened.index, opened.vlog, opened.residency);
        let persisted = index.persisted_seqno();
        let free_space = match config.min_free_bytes {
            Some(min_free) => Some(space::FreeSpace::new(&dir, min_free, vlog.total_bytes())?),
            None => None,
        };
        tracing::info!(
            dir = %dir.display(),
            pages = residency.len(),
            persisted_seqno = ?persisted,
            "store opened"
        );
        let ghost = (config.admission == crate::config::Admission::SecondSighting).then(|| {
            parking_lot::Mutex::new(admission::Ghost::new(
                usize::try_from(config.admission_ghost_pages).unwrap_or(usize::MAX),
            ))
        });
        let history = (config.protect_frequent_fraction > 0.0).then(|| {
            parking_lot::Mutex::new(admission::History::new(
                usize::try_from(config.admission_ghost_pages).unwrap_or(usize::MAX),
            ))
        });
        let evicted_ghost = (config.eviction == crate::config::Eviction::S3Fifo).then(|| {
            parking_lot::Mutex::new(s3fifo::EvictedGhost::new(
                usize::try_from(config.admission_ghost_pages).unwrap_or(usize::MAX),
            ))
        });
        let knobs = LiveKnobs::new(Knobs::from_config(&config));
        let controller = parking_lot::Mutex::new(
            Controller::new(config.adaptive).with_reclaim_floor(config.reclaim_bytes_per_s),
        );
        let inner = Arc::new(Inner {
            dir,
            knobs,
            controller,
            config,
            segment_bytes,
            free_space,
            quotas,
            reclaim_lock: parking_lot::Mutex::new(()),
            log_reserved_bytes: parking_lot::Mutex::new(0),
            pins: pins::Pins::default(),
            in_flight: inflight::InFlight::default(),
            ghost,
            history,
            evicted_ghost,
            vlog,
            index,
            residency: RwLock::new(residency),
            counters: Counters::default(),
            maintenance: maintenance::Signal::default(),
            cascade_step_pages: std::sync::atomic::AtomicUsize::new(cascade::CASCADE_STEP_PAGES),
        });
        let mut store = Self {
            inner,
            worker: None,
            _lock: lock,
        };
        // Before quotas and reclamation look at the residency set: lost pages free room.
        store.drop_lost_pages(opened.stale)?;
        if opened.index_set_aside.is_some() {
            Counters::add(&store.inner.counters.index_rebuilds, 1);
            // Persist the rebuild now, so a crash soon after does not redo it.
            store.inner.flush_index()?;
        }
        store.inner.shrink_to_quotas();
        store.worker = Some(maintenance::spawn(Arc::clone(&store.inner))?);
        Ok(store)
    }

    /// The directory this store lives in.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Persists the index (rotate + flush) and syncs the value log. After `flush` returns, a
    /// reopen replays nothing and a power loss loses nothing written before the call.
    ///
    /// # Errors
    /// I/O errors from the index or the log.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush_index()?;
        self.inner.vlog.sync()
    }

    /// A stats snapshot.
    #[must_use]
    pub fn stats(&self) -> StoreStats {
        self.inner.stats()
    }

    /// The runtime knobs in force (the configured ones unless the controller changed them).
    #[must_use]
    pub fn knobs(&self) -> Knobs {
        self.inner.knobs.get()
    }

    /// The controller's recent busy windows: what was measured, under which knobs, and what
    /// the cost model predicted (newest last, at most `controller::monitor::WINDOWS_KEPT`).
    #[must_use]
    pub fn controller_history(&self) -> Vec<WindowRecord> {
        self.inner.controller.lock().history()
    }

    /// The controller's recent knob changes with their justification (newest last).
    #[must_use]
    pub fn controller_decisions(&self) -> Vec<Decision> {
        self.inner.controller.lock().decisions()
    }

    /// The fault injector shared by every write path (tests only).
    #[doc(hidden)]
    #[must_use]
    pub fn faults(&self) -> &Arc<FaultInjector> {
        self.inner.vlog.faults()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.inner.maintenance.stop();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "flush on close failed; the next open replays the log");
        }
    }
}

pub(crate) fn elapsed_us(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl Inner {
    /// The bound on log bytes in force: the smaller of `capacity_bytes` and what the free-space
    /// floor allows; `None` when neither is set.
    pub(crate) fn log_bound(&self) -> Option<u64> {
        let floor = self
            .free_space
            .as_ref()
            .map(|f| f.bound(self.vlog.total_bytes()));
        self.config.capacity_bytes.into_iter().chain(floor).min()
    }

    /// Brings namespaces over their quota (reopened with a smaller one) back under it, so the
    /// quota holds from the first operation. A failure is only logged: the next put to the
    /// namespace evicts again, and until then the namespace declines.
    fn shrink_to_quotas(&self) {
        for ns in self.quotas.ids() {
            if self.residency.read().namespace(ns).live_bytes <= self.quotas.quota(ns) {
                continue;
            }
            match self.evict_for_quota(ns, 0, &std::collections::HashSet::new()) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(ns, "namespace stays over its quota: no evictable leaf")
                }
                Err(e) => tracing::warn!(error = %e, ns, "could not shrink namespace to its quota"),
            }
        }
    }

    pub(crate) fn flush_index(&self) -> Result<()> {
        {
            let _w = self.vlog.lock_writer();
            self.index.rotate();
        }
        let started = std::time::Instant::now();
        self.index.flush_sealed()?;
        Counters::add(&self.counters.index_busy_us, elapsed_us(started));
        Counters::add(&self.counters.index_flushes, 1);
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.counters;
        // Evictions are counted under the residency lock that removes them (log_deletes_counted),
        // so read the counter under it too.
        let (pages, live_bytes, evicted_pages) = {
            let r = self.residency.read();
            (
                r.len() as u64,
                r.live_bytes(),
                c.evicted_pages.load(Relaxed),
            )
        };
        let sizes = self.vlog.segment_sizes();
        StoreStats {
            pages,
            live_bytes,
            log_bytes: sizes.iter().map(|(_, l)| l).sum(),
            segments: sizes.len() as u64,
            capacity_bytes: self.config.capacity_bytes,
            min_free_bytes: self.config.min_free_bytes,
            free_bytes: crate::io::free_bytes(&self.dir).ok(),
            log_bound_bytes: self.log_bound(),
            namespaces: self.quotas.stats(&self.residency.read()),
            index_disk_bytes: self.index.disk_bytes(),
            index_tables: self.index.table_count() as u64,
            memtable_bytes: self.index.memtable_bytes(),
            persisted_seqno: self.index.persisted_seqno(),
            put_pages: c.put_pages.load(Relaxed),
            put_bytes: c.put_bytes.load(Relaxed),
            put_existing_pages: c.put_existing_pages.load(Relaxed),
            put_waits: c.put_waits.load(Relaxed),
            put_declined_pages: c.put_declined_pages.load(Relaxed),
            put_unadmitted_pages: c.put_unadmitted_pages.load(Relaxed),
            get_pages: c.get_pages.load(Relaxed),
            get_hits: c.get_hits.load(Relaxed),
            get_misses: c.get_misses.load(Relaxed),
            get_corrupt: c.get_corrupt.load(Relaxed),
            get_read_errors: c.get_read_errors.load(Relaxed),
            get_bytes: c.get_bytes.load(Relaxed),
            read_ios: c.read_ios.load(Relaxed),
            probes: c.probes.load(Relaxed),
            probe_keys: c.probe_keys.load(Relaxed),
            deletes: c.deletes.load(Relaxed),
            index_flushes: c.index_flushes.load(Relaxed),
            index_compactions: c.index_compactions.load(Relaxed),
            background_errors: c.background_errors.load(Relaxed),
            quarantined_segments: self.vlog.quarantined().len() as u64,
            index_rebuilds: c.index_rebuilds.load(Relaxed),
            segments_reclaimed: c.segments_reclaimed.load(Relaxed),
            relocated_pages: c.relocated_pages.load(Relaxed),
            relocated_bytes: c.relocated_bytes.load(Relaxed),
            evicted_pages,
            probation_bytes: self
                .vlog
                .segment_queues()
                .iter()
                .filter(|s| s.queue == crate::vlog::Queue::Probation)
                .map(|s| s.bytes)
                .sum(),
            promoted_pages: c.promoted_pages.load(Relaxed),
            ghost_returned_pages: c.ghost_returned_pages.load(Relaxed),
            index_busy_us: c.index_busy_us.load(Relaxed),
            controller: self.controller.lock().stats(self.knobs.get()),
            write_amplification: {
                let put = c.put_bytes.load(Relaxed);
                if put == 0 {
                    1.0
                } else {
                    (put + c.relocated_bytes.load(Relaxed)) as f64 / put as f64
                }
            },
        }
    }
}

// Compile-time proof of the thread-safety promise.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
};

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish()
    }
}
