//! Victim choice for capacity reclamation (`reclaim_victim`), a pure function of per-segment
//! accounting so every policy is unit-tested without a store.
//!
//! Every policy takes a sealed segment without live pages first: deleting it frees its whole
//! file at no I/O. Among segments with live pages, with `u` = live bytes / file bytes:
//!
//! - `oldest`: smallest `first_seqno` (FIFO over segments). The default, and with the
//!   second-chance relocation CLOCK over segments.
//! - `greedy`: smallest `u` — the least live data to move or drop per byte freed.
//! - `cost_benefit`: largest `(1 − u) × age / (1 + u)` (Sprite LFS), `age = now − last_seqno`:
//!   cold, mostly-dead segments first.
//!
//! Ties go to the oldest segment, then the lowest id, so choices are deterministic.

use std::collections::BTreeMap;

use super::residency::SegmentMeta;
use crate::config::ReclaimVictim;

/// Picks the victim among `sealed` (id, file bytes), given the live accounting `live` of
/// segments holding live pages and the write clock `now` (the next sequence number).
pub(crate) fn choose(
    policy: ReclaimVictim,
    sealed: &[(u32, u64)],
    live: &BTreeMap<u32, SegmentMeta>,
    now: u64,
) -> Option<u32> {
    // A dead segment first, whatever the policy (same order as `oldest` has always used:
    // the first one listed).
    if let Some(&(id, _)) = sealed.iter().find(|(id, _)| !live.contains_key(id)) {
        return Some(id);
    }
    let with_meta = sealed
        .iter()
        .filter_map(|&(id, bytes)| live.get(&id).map(|m| (id, bytes, *m)));
    match policy {
        // `min_by_key` keeps the first of equal keys: the lowest id among equally old ones,
        // exactly the order this engine has always used.
        ReclaimVictim::Oldest => with_meta
            .min_by_key(|&(_, _, m)| m.first_seqno)
            .map(|v| v.0),
        ReclaimVictim::Greedy => with_meta
            .min_by(|a, b| {
                utilisation(a.1, &a.2)
                    .total_cmp(&utilisation(b.1, &b.2))
                    .then(a.2.first_seqno.cmp(&b.2.first_seqno))
                    .then(a.0.cmp(&b.0))
            })
            .map(|v| v.0),
        ReclaimVictim::CostBenefit => with_meta
            .max_by(|a, b| {
                cost_benefit(a.1, &a.2, now)
                    .total_cmp(&cost_benefit(b.1, &b.2, now))
                    // Reversed: on a tie the older (then lower id) segment must compare greater.
                    .then(b.2.first_seqno.cmp(&a.2.first_seqno))
                    .then(b.0.cmp(&a.0))
            })
            .map(|v| v.0),
    }
}

/// Live fraction of a segment's file, clamped to [0, 1] (live bytes are aligned payloads; the
/// file also holds headers, so `u` < 1 even for a fully live segment).
fn utilisation(file_bytes: u64, m: &SegmentMeta) -> f64 {
    if file_bytes == 0 {
        return 1.0;
    }
    (m.live_bytes as f64 / file_bytes as f64).clamp(0.0, 1.0)
}

/// LFS cost-benefit: bytes freed per byte moved (`(1 − u) / (1 + u)`: read the whole
/// segment, write back `u`), weighted by how long the data has stayed cold.
fn cost_benefit(file_bytes: u64, m: &SegmentMeta, now: u64) -> f64 {
    let u = utilisation(file_bytes, m);
    let age = now.saturating_sub(m.last_seqno) as f64;
    (1.0 - u) * age / (1.0 + u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(live_bytes: u64, first_seqno: u64, last_seqno: u64) -> SegmentMeta {
        SegmentMeta {
            live_bytes,
            first_seqno,
            last_seqno,
        }
    }

    /// Segment 1: old and full; 2: middle-aged and half empty; 3: young and nearly empty.
    fn fixture() -> (Vec<(u32, u64)>, BTreeMap<u32, SegmentMeta>) {
        let sealed = vec![(1, 1000), (2, 1000), (3, 1000)];
        let live = [
            (1, meta(900, 10, 20)),
            (2, meta(500, 30, 40)),
            (3, meta(100, 90, 95)),
        ]
        .into_iter()
        .collect();
        (sealed, live)
    }

    #[test]
    fn every_policy_takes_a_dead_segment_first() {
        let (mut sealed, live) = fixture();
        sealed.push((7, 1000)); // no live pages
        for p in [
            ReclaimVictim::Oldest,
            ReclaimVictim::Greedy,
            ReclaimVictim::CostBenefit,
        ] {
            assert_eq!(choose(p, &sealed, &live, 100), Some(7), "{p:?}");
        }
        assert_eq!(choose(ReclaimVictim::Greedy, &[], &live, 100), None);
    }

    #[test]
    fn oldest_is_fifo_over_first_seqno() {
        let (sealed, live) = fixture();
        assert_eq!(choose(ReclaimVictim::Oldest, &sealed, &live, 100), Some(1));
    }

    #[test]
    fn greedy_takes_the_lowest_live_fraction() {
        let (sealed, live) = fixture();
        assert_eq!(choose(ReclaimVictim::Greedy, &sealed, &live, 100), Some(3));
        // Equal live fractions: the older segment.
        let mut tied = live.clone();
        tied.insert(2, meta(100, 30, 40));
        assert_eq!(choose(ReclaimVictim::Greedy, &sealed, &tied, 100), Some(2));
    }

    #[test]
    fn cost_benefit_weighs_free_space_by_age() {
        let (sealed, live) = fixture();
        // Scores at now = 100: seg 1 (0.1 × 80 / 1.9) ≈ 4.2, seg 2 (0.5 × 60 / 1.5) = 20,
        // seg 3 (0.9 × 5 / 1.1) ≈ 4.1: the half-empty cold segment wins.
        assert_eq!(
            choose(ReclaimVictim::CostBenefit, &sealed, &live, 100),
            Some(2)
        );
        // Much later the nearly empty one overtakes it: at now = 1000, seg 2 scores
        // 0.5 × 960 / 1.5 = 320, seg 3 0.9 × 905 / 1.1 ≈ 740.
        assert_eq!(
            choose(ReclaimVictim::CostBenefit, &sealed, &live, 1000),
            Some(3)
        );
        // Identical scores: the older segment.
        let same: BTreeMap<u32, SegmentMeta> = [(4, meta(500, 50, 60)), (5, meta(500, 40, 60))]
            .into_iter()
            .collect();
        assert_eq!(
            choose(
                ReclaimVictim::CostBenefit,
                &[(4, 1000), (5, 1000)],
                &same,
                100
            ),
            Some(5)
        );
    }
}
