use std::time::{Duration, Instant};

use super::*;
use crate::config::StoreConfig;

/// A machine where lookups grow with runs and memtable size is free: the model then has a
/// real trade-off to make (the default priors, measured on a VM with bloom filters doing
/// their job, see almost none).
fn tradeoff() -> Calibration {
    Calibration {
        merge_us_per_byte: 0.004,
        lookup_base_us: 2.0,
        lookup_us_per_run: 0.5,
        insert_base_us: 1.0,
        insert_us_per_log2: 0.0,
    }
}

/// Drives a controller with synthetic one-second windows.
struct Sim {
    t0: Instant,
    secs: u64,
    put_pages: u64,
    lookups: u64,
    busy_us: u64,
    lookup_us: u64,
    lookup_runs: u64,
    put_call_us: u64,
    get_call_us: u64,
    /// Extra foreground us per written page under knobs `k` (the machine's truth, which the
    /// model may not know).
    put_penalty_us: fn(&Knobs) -> u64,
}

impl Sim {
    fn new() -> Self {
        Self {
            t0: Instant::now(),
            secs: 0,
            put_pages: 0,
            lookups: 0,
            busy_us: 0,
            lookup_us: 0,
            lookup_runs: 0,
            put_call_us: 0,
            get_call_us: 0,
            put_penalty_us: |_| 0,
        }
    }

    fn obs(&self) -> Observation {
        Observation {
            at: self.t0 + Duration::from_secs(self.secs),
            put_pages: self.put_pages,
            put_bytes: self.put_pages * 16384,
            get_pages: self.lookups,
            get_hits: self.lookups,
            get_bytes: self.lookups * 16384,
            probe_keys: 0,
            read_ios: self.lookups,
            relocated_bytes: 0,
            index_busy_us: self.busy_us,
            index_lookups: self.lookups,
            index_lookup_us: self.lookup_us,
            index_lookup_runs: self.lookup_runs,
            inserts_by_fill: Vec::new(),
            fill_log2_min: 14,
            l0_runs: 0,
            index_table_bytes: 8 << 20,
            put_latency: vec![0; latency::BUCKETS],
            get_latency: vec![0; latency::BUCKETS],
            put_call_us: self.put_call_us,
            get_call_us: self.get_call_us,
            pages: 5_000_000,
            live_bytes: 5_000_000 * 16384,
            log_bytes: 5_000_000 * 16384,
            index_disk_bytes: 5_000_000 * 170,
            free_bytes: None,
        }
    }

    /// One second of `puts` page writes and `gets` page reads under knobs `k`, costed the
    /// way the model says (so the controller's calibration converges).
    fn second(&mut self, k: &Knobs, puts: u64, gets: u64) -> Observation {
        let w = Workload {
            inserts_per_s: puts as f64,
            lookups_per_s: gets as f64,
            pages: 5e6,
            entry_bytes: 170.0,
        };
        let p = cost::predict(k, &w, &tradeoff());
        self.secs += 1;
        self.put_pages += puts;
        self.lookups += gets;
        self.busy_us += (p.index_busy_frac * 1e6) as u64;
        self.lookup_us += (p.lookup_us * gets as f64) as u64;
        self.lookup_runs += (p.lookup_runs * gets as f64) as u64;
        self.put_call_us += puts * (10 + (self.put_penalty_us)(k));
        self.get_call_us += gets * 20;
        self.obs()
    }
}

fn run(c: &mut Controller, sim: &mut Sim, k: &mut Knobs, secs: u32, puts: u64, gets: u64) -> u32 {
    let mut changes = 0;
    for _ in 0..secs {
        let obs = sim.second(k, puts, gets);
        if let Some(next) = c.tick(obs, *k, None) {
            assert_eq!(next, next.clamped(), "decisions stay inside BOUNDS");
            assert_eq!(
                next.read_threads, k.read_threads,
                "undecided knobs are kept"
            );
            *k = next;
            changes += 1;
        }
    }
    changes
}

#[test]
fn follows_a_shift_from_writes_to_reads() {
    let mut c = Controller::with_calibration(true, tradeoff());
    let mut sim = Sim::new();
    let mut k = Knobs::from_config(&StoreConfig::default());
    c.tick(sim.obs(), k, None);
    run(&mut c, &mut sim, &mut k, 20, 200_000, 0);
    assert!(k.l0_threshold > 4, "write-heavy: lazier L0 ({k:?})");
    assert!(
        k.memtable_bytes > 16 << 20,
        "write-heavy: bigger memtable ({k:?})"
    );
    run(&mut c, &mut sim, &mut k, 20, 0, 400_000);
    assert!(k.l0_threshold <= 4, "read-heavy: fewer runs ({k:?})");
    assert!(c.stats(k).decisions_total >= 2);
    let d = c.decisions();
    let last = d.last().expect("a decision");
    assert!(last.predicted_after.cost_us_per_s < last.predicted_before.cost_us_per_s);
}

#[test]
fn never_changes_knobs_when_not_adaptive() {
    let mut c = Controller::new(false);
    let mut sim = Sim::new();
    let mut k = Knobs::from_config(&StoreConfig::default());
    c.tick(sim.obs(), k, None);
    assert_eq!(run(&mut c, &mut sim, &mut k, 30, 200_000, 0), 0);
    assert_eq!(run(&mut c, &mut sim, &mut k, 30, 0, 400_000), 0);
    assert!(!c.history().is_empty(), "still observes and predicts");
}

#[test]
fn a_flapping_workload_cannot_make_it_oscillate() {
    let mut c = Controller::with_calibration(true, tradeoff());
    let mut sim = Sim::new();
    let mut k = Knobs::from_config(&StoreConfig::default());
    c.tick(sim.obs(), k, None);
    let mut changes = 0;
    for i in 0..60 {
        let (p, g) = if i % 2 == 0 {
            (200_000, 0)
        } else {
            (0, 400_000)
        };
        changes += run(&mut c, &mut sim, &mut k, 1, p, g);
    }
    assert!(
        changes <= 60 / MIN_DWELL_WINDOWS,
        "at most one change per dwell period, got {changes}"
    );
}

#[test]
fn idle_windows_change_nothing() {
    let mut c = Controller::new(true);
    let mut sim = Sim::new();
    let mut k = Knobs::from_config(&StoreConfig::default());
    c.tick(sim.obs(), k, None);
    assert_eq!(run(&mut c, &mut sim, &mut k, 30, 0, 0), 0);
    assert!(c.history().is_empty());
}

#[test]
fn calibration_learns_the_lookup_cost_per_run() {
    let mut c = Controller::new(false);
    let mut sim = Sim::new();
    c.tick(sim.obs(), Knobs::from_config(&StoreConfig::default()), None);
    // Measured lookups cost 1 us + 3 us per run, at varying run counts.
    for i in 0..40u64 {
        let runs = 2 + i % 8;
        sim.secs += 1;
        sim.lookups += 1000;
        sim.lookup_runs += runs * 1000;
        sim.lookup_us += (1 + 3 * runs) * 1000;
        c.tick(sim.obs(), Knobs::from_config(&StoreConfig::default()), None);
    }
    let cal = c
        .stats(Knobs::from_config(&StoreConfig::default()))
        .calibration
        .expect("set");
    assert!((cal.lookup_us_per_run - 3.0).abs() < 0.2, "{cal:?}");
    assert!((cal.lookup_base_us - 1.0).abs() < 1.0, "{cal:?}");
}

#[test]
fn lowering_the_l0_trigger_below_the_runs_in_l0_costs_a_merge_of_l0() {
    let c = Calibration::default();
    let from = Knobs::from_config(&StoreConfig::default());
    let lazy = Knobs {
        l0_threshold: 16,
        ..from
    };
    let eager = Knobs {
        l0_threshold: 2,
        ..from
    };
    assert_eq!(cost::transition_us(&from, &lazy, 12, 8 << 20, &c), 0.0);
    let once = cost::transition_us(&lazy, &eager, 12, 8 << 20, &c);
    assert!((once - 2.0 * 12.0 * 8.0 * 1048576.0 * c.merge_us_per_byte).abs() < 1.0);
    assert_eq!(cost::transition_us(&lazy, &eager, 1, 8 << 20, &c), 0.0);
}

#[test]
fn a_costly_memtable_insert_keeps_the_memtable_small() {
    let w = Workload {
        inserts_per_s: 100_000.0,
        lookups_per_s: 0.0,
        pages: 5e6,
        entry_bytes: 170.0,
    };
    let cheap = tradeoff();
    let costly = Calibration {
        insert_us_per_log2: 5.0,
        ..cheap
    };
    let k = |m: u64| Knobs {
        memtable_bytes: m << 20,
        ..Knobs::from_config(&StoreConfig::default())
    };
    assert!(
        cost::predict(&k(128), &w, &cheap).cost_us_per_s
            < cost::predict(&k(16), &w, &cheap).cost_us_per_s
    );
    assert!(
        cost::predict(&k(128), &w, &costly).cost_us_per_s
            > cost::predict(&k(16), &w, &costly).cost_us_per_s
    );
}

#[test]
fn knobs_it_does_not_decide_keep_their_hand_set_values() {
    // A test-sized memtable (below the controller's bounds) and a bounded store: the
    // reclamation budget may change, the memtable must not be clamped behind the user's back.
    let mut c = Controller::with_calibration(true, tradeoff());
    let mut sim = Sim::new();
    let mut k = Knobs {
        memtable_bytes: 256 << 10,
        ..Knobs::from_config(&StoreConfig::default())
    };
    c.tick(sim.obs(), k, Some(1 << 30));
    for _ in 0..20 {
        let obs = sim.second(&k, 0, 1000);
        if let Some(next) = c.tick(obs, k, Some(1 << 30)) {
            k = next;
        }
    }
    assert_eq!(k.memtable_bytes, 256 << 10, "{k:?}");
}

#[test]
fn a_retune_that_measures_slower_is_reverted_and_not_retried_soon() {
    let mut c = Controller::with_calibration(true, tradeoff());
    let mut sim = Sim::new();
    // The model favours big memtables for writes; this machine punishes them.
    sim.put_penalty_us = |k| if k.memtable_bytes > 16 << 20 { 5 } else { 0 };
    let start = Knobs::from_config(&StoreConfig::default());
    let mut k = start;
    c.tick(sim.obs(), k, None);
    let changes = run(&mut c, &mut sim, &mut k, 60, 200_000, 0);
    let stats = c.stats(k);
    assert_eq!(stats.reverts_total, 1, "{:?}", c.decisions());
    assert_eq!(
        changes,
        2,
        "one retune, one revert, no retry: {:?}",
        c.decisions()
    );
    assert_eq!(k.memtable_bytes, start.memtable_bytes);
    let revert = c.decisions().last().cloned().expect("decisions");
    assert_eq!(revert.kind, "revert");
    assert!(revert.measured_after_us > revert.measured_before_us);
}

#[test]
fn a_retune_that_measures_no_worse_is_kept() {
    let mut c = Controller::with_calibration(true, tradeoff());
    let mut sim = Sim::new();
    let mut k = Knobs::from_config(&StoreConfig::default());
    c.tick(sim.obs(), k, None);
    run(&mut c, &mut sim, &mut k, 40, 200_000, 0);
    assert_eq!(c.stats(k).reverts_total, 0);
    assert!(k.memtable_bytes > 16 << 20);
}
