//! The bundled Mooncake trace (`data/traces/`): counts and the REFERENCE.md §6 hit-rate anchors.
//!
//! The trace ships inside the repository, so a fresh clone runs this with nothing beside it;
//! set `SGLANG_LSM_TRACE` to check another copy.

use std::path::PathBuf;

use sglang_lsm_bench::policy::{simulate_kind, PolicyKind};
use sglang_lsm_bench::trace::{bundled_trace_path, Trace};

fn trace_path() -> PathBuf {
    let p = std::env::var_os("SGLANG_LSM_TRACE").map_or_else(bundled_trace_path, PathBuf::from);
    assert!(
        p.is_file(),
        "the Mooncake trace is missing: expected {}",
        p.display()
    );
    p
}

#[test]
fn trace_counts_match_reference() {
    let t = Trace::load(trace_path(), 512).expect("trace loads");
    let s = t.stats();
    assert_eq!(s.requests, 3_993);
    assert_eq!(s.block_refs, 121_877);
    assert_eq!(s.distinct_blocks, 43_924);
    // "With unlimited capacity, 64% of block references are prefix hits."
    assert!(
        (s.unlimited_hit_rate() - 0.64).abs() < 0.005,
        "{}",
        s.unlimited_hit_rate()
    );
}

/// REFERENCE.md §6: (capacity fraction, LRU %, Belady %).
const ANCHORS: [(f64, f64, f64); 4] = [
    (0.01, 3.4, 17.0),
    (0.05, 15.5, 38.6),
    (0.10, 26.0, 50.1),
    (0.25, 44.3, 62.5),
];

#[test]
fn lru_and_belady_match_reference_anchors() {
    let t = Trace::load(trace_path(), 512).expect("trace loads");
    for (frac, lru_pct, belady_pct) in ANCHORS {
        let cap = t.capacity_blocks(frac);
        let lru = 100.0 * simulate_kind(&t, PolicyKind::Lru, cap).hit_rate;
        let belady = 100.0 * simulate_kind(&t, PolicyKind::Belady, cap).hit_rate;
        assert!(
            (lru - lru_pct).abs() <= 0.5,
            "LRU at {frac}: {lru:.2}% vs anchor {lru_pct}%"
        );
        assert!(
            (belady - belady_pct).abs() <= 0.5,
            "Belady at {frac}: {belady:.2}% vs anchor {belady_pct}%"
        );
    }
}

#[test]
fn prefix_policy_beats_lru_at_every_anchor_capacity() {
    let t = Trace::load(trace_path(), 512).expect("trace loads");
    for (frac, _, _) in ANCHORS {
        let cap = t.capacity_blocks(frac);
        let lru = simulate_kind(&t, PolicyKind::Lru, cap).hit_rate;
        let prefix = simulate_kind(&t, PolicyKind::Prefix, cap).hit_rate;
        let belady = simulate_kind(&t, PolicyKind::Belady, cap).hit_rate;
        assert!(prefix > lru, "prefix {prefix} <= lru {lru} at {frac}");
        assert!(
            prefix < belady,
            "prefix {prefix} >= belady {belady} at {frac}"
        );
    }
}
