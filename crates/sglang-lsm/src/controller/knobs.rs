//! The knobs the controller may turn while the store runs, their hard bounds, and the atomic
//! cell the hot paths read them from.
//!
//! Every knob here is a performance setting only: any value inside its bounds keeps every
//! correctness invariant (docs/DESIGN.md), which is why the controller may change them
//! without coordination. Settings that lsm-tree fixes at open (bloom bits, block cache) are
//! not knobs; docs/CONTROLLER.md says how they are chosen.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use crate::config::StoreConfig;

/// One complete setting of the runtime knobs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Knobs {
    /// Memtable size that triggers a rotation + flush of the index.
    pub memtable_bytes: u64,
    /// Sorted runs in L0 that trigger a compaction (also passed to `compact()`).
    pub l0_threshold: u8,
    /// Leveled size ratio between adjacent index levels (passed to `compact()`).
    pub level_ratio: u32,
    /// I/O budget of background reclamation, bytes per second.
    pub reclaim_bytes_per_s: u64,
    /// Neighbouring extents closer than this are read with one I/O.
    pub coalesce_gap_bytes: u64,
    /// Parallel I/Os per `get_batch`.
    pub read_threads: u32,
    /// Background `fdatasync` interval under `periodic` durability.
    pub sync_interval_ms: u64,
}

/// Inclusive bounds per knob: the range the controller may choose from, whatever the cost
/// model says. Hand-set values (`adaptive = false`) are checked by `StoreConfig::validate`,
/// whose ranges are wider (tests use 64 KiB memtables to force flushes).
pub struct KnobBounds {
    pub memtable_bytes: (u64, u64),
    pub l0_threshold: (u8, u8),
    pub level_ratio: (u32, u32),
    pub reclaim_bytes_per_s: (u64, u64),
    pub coalesce_gap_bytes: (u64, u64),
    pub read_threads: (u32, u32),
    pub sync_interval_ms: (u64, u64),
}

/// Hard bounds. Memtables above 256 MiB would make replay after a crash slow; L0 above 32
/// runs makes every index miss probe 32 filters; ratios outside 2..=32 are degenerate trees.
pub const BOUNDS: KnobBounds = KnobBounds {
    memtable_bytes: (4 << 20, 256 << 20),
    l0_threshold: (2, 32),
    level_ratio: (2, 32),
    reclaim_bytes_per_s: (16 << 20, 4 << 30),
    coalesce_gap_bytes: (0, 1 << 20),
    read_threads: (1, 32),
    sync_interval_ms: (50, 10_000),
};

impl Knobs {
    /// The static defaults: what a store runs with when `adaptive = false`, taken from the
    /// config so that hand-set values are honoured.
    #[must_use]
    pub fn from_config(c: &StoreConfig) -> Self {
        Self {
            memtable_bytes: c.memtable_bytes,
            l0_threshold: c.l0_threshold,
            level_ratio: c.level_ratio,
            reclaim_bytes_per_s: c.reclaim_bytes_per_s,
            coalesce_gap_bytes: c.coalesce_gap_bytes,
            read_threads: u32::try_from(c.read_threads).unwrap_or(u32::MAX),
            sync_interval_ms: c.sync_interval_ms,
        }
    }

    /// The same setting with every knob forced into [`BOUNDS`].
    #[must_use]
    pub fn clamped(self) -> Self {
        let b = &BOUNDS;
        Self {
            memtable_bytes: self
                .memtable_bytes
                .clamp(b.memtable_bytes.0, b.memtable_bytes.1),
            l0_threshold: self.l0_threshold.clamp(b.l0_threshold.0, b.l0_threshold.1),
            level_ratio: self.level_ratio.clamp(b.level_ratio.0, b.level_ratio.1),
            reclaim_bytes_per_s: self
                .reclaim_bytes_per_s
                .clamp(b.reclaim_bytes_per_s.0, b.reclaim_bytes_per_s.1),
            coalesce_gap_bytes: self
                .coalesce_gap_bytes
                .clamp(b.coalesce_gap_bytes.0, b.coalesce_gap_bytes.1),
            read_threads: self.read_threads.clamp(b.read_threads.0, b.read_threads.1),
            sync_interval_ms: self
                .sync_interval_ms
                .clamp(b.sync_interval_ms.0, b.sync_interval_ms.1),
        }
    }
}

/// The knobs in force, readable from any thread without a lock. Each knob is read on its own
/// (a reader may see a half-applied change); that is safe because every combination of
/// in-bounds values is safe.
pub struct LiveKnobs {
    memtable_bytes: AtomicU64,
    l0_threshold: AtomicU64,
    level_ratio: AtomicU64,
    reclaim_bytes_per_s: AtomicU64,
    coalesce_gap_bytes: AtomicU64,
    read_threads: AtomicU64,
    sync_interval_ms: AtomicU64,
}

impl LiveKnobs {
    /// Starts from `k` as given (a validated config).
    #[must_use]
    pub fn new(k: Knobs) -> Self {
        Self {
            memtable_bytes: AtomicU64::new(k.memtable_bytes),
            l0_threshold: AtomicU64::new(u64::from(k.l0_threshold)),
            level_ratio: AtomicU64::new(u64::from(k.level_ratio)),
            reclaim_bytes_per_s: AtomicU64::new(k.reclaim_bytes_per_s),
            coalesce_gap_bytes: AtomicU64::new(k.coalesce_gap_bytes),
            read_threads: AtomicU64::new(u64::from(k.read_threads)),
            sync_interval_ms: AtomicU64::new(k.sync_interval_ms),
        }
    }

    /// Installs a setting. The controller keeps what it changes inside [`BOUNDS`]; knobs it
    /// did not decide keep their (validated, possibly hand-set) values.
    pub fn set(&self, k: Knobs) {
        self.memtable_bytes.store(k.memtable_bytes, Relaxed);
        self.l0_threshold.store(u64::from(k.l0_threshold), Relaxed);
        self.level_ratio.store(u64::from(k.level_ratio), Relaxed);
        self.reclaim_bytes_per_s
            .store(k.reclaim_bytes_per_s, Relaxed);
        self.coalesce_gap_bytes.store(k.coalesce_gap_bytes, Relaxed);
        self.read_threads.store(u64::from(k.read_threads), Relaxed);
        self.sync_interval_ms.store(k.sync_interval_ms, Relaxed);
    }

    /// The setting in force.
    #[must_use]
    pub fn get(&self) -> Knobs {
        Knobs {
            memtable_bytes: self.memtable_bytes.load(Relaxed),
            l0_threshold: u8::try_from(self.l0_threshold.load(Relaxed)).unwrap_or(u8::MAX),
            level_ratio: u32::try_from(self.level_ratio.load(Relaxed)).unwrap_or(u32::MAX),
            reclaim_bytes_per_s: self.reclaim_bytes_per_s.load(Relaxed),
            coalesce_gap_bytes: self.coalesce_gap_bytes.load(Relaxed),
            read_threads: u32::try_from(self.read_threads.load(Relaxed)).unwrap_or(u32::MAX),
            sync_interval_ms: self.sync_interval_ms.load(Relaxed),
        }
    }

    #[must_use]
    pub fn memtable_bytes(&self) -> u64 {
        self.memtable_bytes.load(Relaxed)
    }
    #[must_use]
    pub fn l0_threshold(&self) -> u8 {
        u8::try_from(self.l0_threshold.load(Relaxed)).unwrap_or(u8::MAX)
    }
    #[must_use]
    pub fn level_ratio(&self) -> u32 {
        u32::try_from(self.level_ratio.load(Relaxed)).unwrap_or(u32::MAX)
    }
    #[must_use]
    pub fn reclaim_bytes_per_s(&self) -> u64 {
        self.reclaim_bytes_per_s.load(Relaxed)
    }
    #[must_use]
    pub fn coalesce_gap_bytes(&self) -> u64 {
        self.coalesce_gap_bytes.load(Relaxed)
    }
    #[must_use]
    pub fn read_threads(&self) -> usize {
        usize::try_from(self.read_threads.load(Relaxed)).unwrap_or(1)
    }
    #[must_use]
    pub fn sync_interval_ms(&self) -> u64 {
        self.sync_interval_ms.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamping_lands_inside_bounds_and_live_knobs_round_trip() {
        let mut k = Knobs::from_config(&StoreConfig::default());
        k.l0_threshold = 200;
        k.memtable_bytes = 1;
        k.read_threads = 0;
        let c = k.clamped();
        assert_eq!(c.l0_threshold, BOUNDS.l0_threshold.1);
        assert_eq!(c.memtable_bytes, BOUNDS.memtable_bytes.0);
        assert_eq!(c.read_threads, 1);
        assert_eq!(c, c.clamped(), "clamping is idempotent");
        let live = LiveKnobs::new(k);
        assert_eq!(live.get(), k, "hand-set values are kept as given");
        live.set(c);
        assert_eq!(live.get(), c);
    }

    #[test]
    fn defaults_sit_inside_bounds() {
        let k = Knobs::from_config(&StoreConfig::default());
        assert_eq!(k, k.clamped());
    }
}
