//! The cost model (docs/CONTROLLER.md): predicts the index's CPU cost per second — background
//! flush + compaction time and foreground lookup time — from the knobs and the workload.
//!
//! Leveled LSM cost in the style of Monkey/Dostoevsky, with two terms calibrated online from
//! the store's own measurements (merge cost per byte; lookup cost per run probed), so the
//! model adapts to the machine instead of trusting constants.

use serde::{Deserialize, Serialize};

use super::knobs::Knobs;

/// A flush pays a fixed cost (table file, manifest, fsync) on top of its bytes; it is counted
/// as this many merged bytes. Chosen so a 16 MiB flush is ~6% fixed cost; the merge-cost
/// calibration absorbs any error in it.
pub const FLUSH_FIXED_BYTES: f64 = 1024.0 * 1024.0;

/// The workload as the model needs it (smoothed over recent windows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Index inserts per second (pages written, including relocations).
    pub inserts_per_s: f64,
    /// Index point lookups per second (pages read that were resident).
    pub lookups_per_s: f64,
    /// Resident pages (index entries).
    pub pages: f64,
    /// Index bytes per entry (on-disk index bytes / pages; ~170 B for SGLang keys).
    pub entry_bytes: f64,
}

/// Calibrated constants.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// CPU microseconds per index byte merged (flush or compaction).
    pub merge_us_per_byte: f64,
    /// Lookup cost independent of the tree's shape (memtable, residency, key hashing), us.
    pub lookup_base_us: f64,
    /// Lookup cost per sorted run probed (filter check, fence pointers), us.
    pub lookup_us_per_run: f64,
    /// Publication cost per page (index + residency insert, under the writer lock) into an
    /// empty memtable, us ...
    pub insert_base_us: f64,
    /// ... plus this much per doubling of the memtable's bytes (a skiplist insert walks
    /// log(n) levels, and a bigger memtable misses the CPU caches more).
    pub insert_us_per_log2: f64,
}

impl Default for Calibration {
    /// Priors, replaced by measurements as soon as the store has worked a few windows. They
    /// are the calibrations `bench-adaptive` logged on the development VM (2026-11-29, 4 KiB
    /// pages, ~1-2.5M entries): 7-16 ns per merged byte, lookups ~1-3 us with no measurable
    /// growth per run (bloom filters), publication ~2-3 us per page plus ~0.3 us per memtable
    /// doubling.
    fn default() -> Self {
        Self {
            merge_us_per_byte: 0.01,
            lookup_base_us: 2.0,
            lookup_us_per_run: 0.05,
            insert_base_us: 2.0,
            insert_us_per_log2: 0.25,
        }
    }
}

/// What the model predicts for one knob setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Levels below L0.
    pub levels: f64,
    /// Index bytes written per byte inserted.
    pub index_write_amp: f64,
    /// Mean sorted runs a lookup probes (memtable + half-full L0 + levels).
    pub lookup_runs: f64,
    /// Mean lookup time, us.
    pub lookup_us: f64,
    /// Mean publication time per page written (foreground, under the writer lock), us.
    pub insert_us: f64,
    /// Background index time per second of workload (fraction of one core).
    pub index_busy_frac: f64,
    /// Total index CPU per second of workload, us/s: background merging + lookups +
    /// publication. The objective.
    pub cost_us_per_s: f64,
}

/// Merged-byte units the model charges per second, before calibration (see
/// [`Calibration::merge_us_per_byte`]).
#[must_use]
pub fn merge_units_per_s(k: &Knobs, w: &Workload) -> f64 {
    let insert_bytes = w.inserts_per_s * w.entry_bytes;
    let memtable = k.memtable_bytes as f64;
    insert_bytes * write_amp(k, w) + insert_bytes / memtable * FLUSH_FIXED_BYTES
}

fn levels(k: &Knobs, w: &Workload) -> f64 {
    let tree = (w.pages * w.entry_bytes).max(1.0);
    let l0 = f64::from(k.l0_threshold) * k.memtable_bytes as f64;
    if tree <= l0 {
        1.0
    } else {
        ((tree / l0).ln() / f64::from(k.level_ratio).ln())
            .ceil()
            .max(1.0)
    }
}

/// Index write amplification of leveled compaction: 1 for the flush; an L0->L1 merge
/// rewrites L1 (half its target on average) for every `l0_threshold` tables; every deeper
/// level rewrites (T+1)/2 bytes per byte pushed down.
fn write_amp(k: &Knobs, w: &Workload) -> f64 {
    let tree = (w.pages * w.entry_bytes).max(1.0);
    let l0 = f64::from(k.l0_threshold) * k.memtable_bytes as f64;
    let t = f64::from(k.level_ratio);
    let l1 = tree.min(t * l0);
    let deeper = (levels(k, w) - 1.0).max(0.0);
    1.0 + (1.0 + l1 / (2.0 * l0)) + deeper * (t + 1.0) / 2.0
}

/// Predicts the index cost of running workload `w` under knobs `k`.
#[must_use]
pub fn predict(k: &Knobs, w: &Workload, c: &Calibration) -> Prediction {
    let levels = levels(k, w);
    let runs = 1.0 + f64::from(k.l0_threshold) / 2.0 + levels;
    let lookup_us = c.lookup_base_us + c.lookup_us_per_run * runs;
    let busy_us_per_s = merge_units_per_s(k, w) * c.merge_us_per_byte;
    // The memtable is on average half full when a page goes in.
    let insert_us =
        c.insert_base_us + c.insert_us_per_log2 * (k.memtable_bytes as f64 / 2.0).max(1.0).log2();
    Prediction {
        levels,
        index_write_amp: write_amp(k, w),
        lookup_runs: runs,
        lookup_us,
        insert_us,
        index_busy_frac: busy_us_per_s / 1e6,
        cost_us_per_s: busy_us_per_s + w.lookups_per_s * lookup_us + w.inserts_per_s * insert_us,
    }
}

/// One-time cost, us, of moving from `from` to `to` with `l0_runs` tables of `table_bytes`
/// in L0: a lower L0 trigger at or below the current run count compacts all of L0 into L1
/// at once (read + write of those bytes). Other changes take effect gradually, for free.
#[must_use]
pub fn transition_us(
    from: &Knobs,
    to: &Knobs,
    l0_runs: u64,
    table_bytes: u64,
    c: &Calibration,
) -> f64 {
    if to.l0_threshold < from.l0_threshold && u64::from(to.l0_threshold) <= l0_runs {
        2.0 * (l0_runs * table_bytes) as f64 * c.merge_us_per_byte
    } else {
        0.0
    }
}

/// Background reclamation budget for a bounded store: relocation must free space as fast as
/// writers fill it. Freeing one byte of a segment whose live fraction is `u` costs `u` bytes
/// read and `u` written, per `1 - u` freed (LFS); the budget is three times that so bursts
/// are absorbed in the background, within bounds.
#[must_use]
pub fn reclaim_budget_bytes_per_s(put_bytes_per_s: f64, live_fraction: f64) -> f64 {
    let u = live_fraction.clamp(0.0, 0.95);
    3.0 * put_bytes_per_s * (2.0 * u) / (1.0 - u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;

    fn knobs(memtable_mib: u64, l0: u8, ratio: u32) -> Knobs {
        Knobs {
            memtable_bytes: memtable_mib << 20,
            l0_threshold: l0,
            level_ratio: ratio,
            ..Knobs::from_config(&StoreConfig::default())
        }
    }

    fn big_tree(inserts: f64, lookups: f64) -> Workload {
        Workload {
            inserts_per_s: inserts,
            lookups_per_s: lookups,
            pages: 10e6,
            entry_bytes: 170.0,
        }
    }

    #[test]
    fn writes_favour_bigger_memtables_and_lazier_merging() {
        let c = Calibration {
            insert_us_per_log2: 0.0,
            ..Calibration::default()
        };
        let w = big_tree(100_000.0, 0.0);
        let eager = predict(&knobs(16, 4, 10), &w, &c);
        let lazy = predict(&knobs(64, 16, 10), &w, &c);
        assert!(lazy.index_write_amp < eager.index_write_amp);
        assert!(lazy.cost_us_per_s < eager.cost_us_per_s);
    }

    #[test]
    fn reads_favour_fewer_runs() {
        let c = Calibration {
            lookup_us_per_run: 0.5,
            ..Calibration::default()
        };
        let w = big_tree(0.0, 100_000.0);
        let few = predict(&knobs(16, 2, 10), &w, &c);
        let many = predict(&knobs(16, 16, 10), &w, &c);
        assert!(few.lookup_runs < many.lookup_runs);
        assert!(few.cost_us_per_s < many.cost_us_per_s);
    }

    #[test]
    fn levels_grow_with_the_tree_and_shrink_with_the_ratio() {
        let small = predict(
            &knobs(16, 4, 10),
            &big_tree(1.0, 1.0),
            &Calibration::default(),
        );
        let mut w = big_tree(1.0, 1.0);
        w.pages = 1e9;
        let large = predict(&knobs(16, 4, 10), &w, &Calibration::default());
        let wide = predict(&knobs(16, 4, 32), &w, &Calibration::default());
        assert!(large.levels > small.levels);
        assert!(wide.levels < large.levels);
    }

    #[test]
    fn reclaim_budget_rises_with_live_fraction() {
        assert!(reclaim_budget_bytes_per_s(1e9, 0.0) < 1.0);
        assert!(reclaim_budget_bytes_per_s(1e9, 0.5) < reclaim_budget_bytes_per_s(1e9, 0.9));
    }
}
