//! Operation counters and the stats snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use crate::controller::latency::LatencyHistogram;
use crate::controller::ControllerStats;

/// Memtable-fill buckets: bucket b holds fills in [2^(b+FILL_LOG2_MIN), 2^(b+1+FILL_LOG2_MIN)),
/// the first and last also everything below and above.
pub const FILL_BUCKETS: usize = 16;
pub const FILL_LOG2_MIN: u32 = 14;

fn fill_bucket(fill_bytes: u64) -> usize {
    let log2 = 63 - fill_bytes.max(1).leading_zeros();
    (log2.saturating_sub(FILL_LOG2_MIN) as usize).min(FILL_BUCKETS - 1)
}

/// Monotonic counters, updated with relaxed atomics on the hot paths.
#[derive(Default)]
pub struct Counters {
    /// `put_batch` and `get_batch` call latencies (the controller's monitor reads them).
    pub put_latency: LatencyHistogram,
    pub get_latency: LatencyHistogram,
    /// Time the index spent flushing and compacting, us.
    pub index_busy_us: AtomicU64,
    /// Index point lookups by `get_batch`, their time, and runs probed (summed per lookup).
    pub index_lookups: AtomicU64,
    pub index_lookup_us: AtomicU64,
    pub index_lookup_runs: AtomicU64,
    /// Pages published (index + residency insert under the writer lock) and their time, per
    /// log2 bucket of the memtable's bytes when published: the controller fits publication
    /// cost against memtable size from one window's spread of fills.
    pub inserts_by_fill: [AtomicU64; FILL_BUCKETS],
    pub insert_us_by_fill: [AtomicU64; FILL_BUCKETS],
    pub put_pages: AtomicU64,
    pub put_bytes: AtomicU64,
    pub put_existing_pages: AtomicU64,
    pub put_waits: AtomicU64,
    pub put_declined_pages: AtomicU64,
    pub put_unadmitted_pages: AtomicU64,
    pub get_pages: AtomicU64,
    pub get_hits: AtomicU64,
    pub get_misses: AtomicU64,
    pub get_corrupt: AtomicU64,
    pub get_read_errors: AtomicU64,
    pub get_bytes: AtomicU64,
    pub read_ios: AtomicU64,
    pub probes: AtomicU64,
    pub probe_keys: AtomicU64,
    pub deletes: AtomicU64,
    pub index_flushes: AtomicU64,
    pub index_compactions: AtomicU64,
    pub background_errors: AtomicU64,
    pub index_rebuilds: AtomicU64,
    pub segments_reclaimed: AtomicU64,
    pub relocated_pages: AtomicU64,
    pub relocated_bytes: AtomicU64,
    pub evicted_pages: AtomicU64,
    pub promoted_pages: AtomicU64,
    pub ghost_returned_pages: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// Records `n` pages published since `started` into a memtable of `fill_bytes`.
    pub fn record_inserts(&self, n: u64, started: std::time::Instant, fill_bytes: u64) {
        if n == 0 {
            return;
        }
        let b = fill_bucket(fill_bytes);
        Self::add(&self.inserts_by_fill[b], n);
        Self::add(&self.insert_us_by_fill[b], super::elapsed_us(started));
    }

    pub fn inserts_by_fill(&self) -> Vec<(u64, u64)> {
        self.inserts_by_fill
            .iter()
            .zip(&self.insert_us_by_fill)
            .map(|(n, us)| (n.load(Relaxed), us.load(Relaxed)))
            .collect()
    }
}

/// A point-in-time view of the store, serialisable for the CLI (`stats --json`) and bindings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Resident pages.
    pub pages: u64,
    /// Aligned payload bytes of resident pages.
    pub live_bytes: u64,
    /// Bytes of all value-log segments.
    pub log_bytes: u64,
    /// Number of segments.
    pub segments: u64,
    /// Configured capacity bound on `log_bytes`, if any.
    pub capacity_bytes: Option<u64>,
    /// Configured free-space floor, if any.
    #[serde(default)]
    pub min_free_bytes: Option<u64>,
    /// Free bytes on the store's filesystem now (`statvfs`; `None` if it failed).
    #[serde(default)]
    pub free_bytes: Option<u64>,
    /// The bound on `log_bytes` in force: the smaller of `capacity_bytes` and what
    /// `min_free_bytes` allows (`log + free − min_free`, from a sample at most ~100 ms old).
    #[serde(default)]
    pub log_bound_bytes: Option<u64>,
    /// Namespaces with a quota, in name order.
    #[serde(default)]
    pub namespaces: Vec<NamespaceStats>,
    /// Index bytes on disk.
    pub index_disk_bytes: u64,
    /// Index tables.
    pub index_tables: u64,
    /// Bytes in the index's active memtable.
    pub memtable_bytes: u64,
    /// Highest sequence number persisted in index tables.
    pub persisted_seqno: Option<u64>,
    /// Pages written.
    pub put_pages: u64,
    /// Payload bytes written.
    pub put_bytes: u64,
    /// Puts of pages that already existed (no-op successes).
    pub put_existing_pages: u64,
    /// Puts that waited for a concurrent put of the same pages instead of writing them again.
    #[serde(default)]
    pub put_waits: u64,
    /// Pages declined for lack of room: capacity bound, free-space floor or namespace quota.
    pub put_declined_pages: u64,
    /// Pages declined by `second_sighting` admission (first sightings).
    pub put_unadmitted_pages: u64,
    /// Pages asked for by `get_batch`/`get`.
    pub get_pages: u64,
    /// Pages returned with verified bytes.
    pub get_hits: u64,
    /// Pages absent.
    pub get_misses: u64,
    /// Pages whose checksum failed: reported as misses and dropped.
    pub get_corrupt: u64,
    /// Pages whose read failed without a checksum verdict (I/O error, short read, a
    /// destination buffer the kernel could not write): reported as misses and kept.
    pub get_read_errors: u64,
    /// Payload bytes returned.
    pub get_bytes: u64,
    /// Read I/Os issued after coalescing.
    pub read_ios: u64,
    /// `probe` calls.
    pub probes: u64,
    /// Keys examined by `probe`.
    pub probe_keys: u64,
    /// Pages deleted.
    pub deletes: u64,
    /// Index memtable flushes.
    pub index_flushes: u64,
    /// Index compaction runs.
    pub index_compactions: u64,
    /// Background maintenance failures (logged).
    pub background_errors: u64,
    /// Segment files in `vlog/quarantine/`: they failed validation at this or an earlier open,
    /// and their pages are misses. Stays until an operator removes the files.
    #[serde(default)]
    pub quarantined_segments: u64,
    /// 1 if this open found the index damaged, set it aside and rebuilt it from the log.
    #[serde(default)]
    pub index_rebuilds: u64,
    /// Segments emptied and deleted by the reclaimer.
    pub segments_reclaimed: u64,
    /// Live pages rewritten at the log head by the reclaimer (kept: referenced or with children).
    pub relocated_pages: u64,
    /// Payload bytes of those relocations (background write I/O).
    pub relocated_bytes: u64,
    /// Pages evicted by the reclaimer (always leaves).
    pub evicted_pages: u64,
    /// Under `eviction = "s3fifo"`: bytes of probation segments (new pages on probation).
    #[serde(default)]
    pub probation_bytes: u64,
    /// Under `eviction = "s3fifo"`: pages moved from probation to main (read there, or the
    /// parent of a resident page).
    #[serde(default)]
    pub promoted_pages: u64,
    /// Under `eviction = "s3fifo"`: pages put again while remembered as evicted from
    /// probation (their frames go to main when they are at least half of it).
    #[serde(default)]
    pub ghost_returned_pages: u64,
    /// `(put_bytes + relocated_bytes) / put_bytes`: value-log write amplification.
    pub write_amplification: f64,
    /// Time the index spent flushing and compacting, us.
    pub index_busy_us: u64,
    /// The adaptive controller: knobs in force, workload, calibration, last window and
    /// decision.
    pub controller: ControllerStats,
}

/// Usage of one namespace with a quota.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceStats {
    /// The namespace (key bytes before the separator).
    pub namespace: String,
    /// Its quota on live bytes.
    pub quota_bytes: u64,
    /// Aligned payload bytes of its resident pages.
    pub live_bytes: u64,
    /// Its resident pages.
    pub pages: u64,
    /// Pages evicted to keep it under its quota (capacity reclamation is counted globally).
    pub evicted_pages: u64,
    /// Pages declined because they did not fit its quota.
    pub declined_pages: u64,
}
