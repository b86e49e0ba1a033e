//! S3-FIFO over segments (`Eviction::S3Fifo`; Yang et al., "FIFO queues are all you need for
//! cache eviction", SOSP 2023), mapped onto the value log:
//!
//! - **probation queue**: segments that new pages are put into. Once probation segments
//!   hold more than `probation_fraction` of the log bound, the reclaimer drains the oldest
//!   of them: a page read meanwhile is **promoted** (relocated into a main segment, its hits
//!   spent), a page with children is relocated too (no orphans), every other page is evicted
//!   and its fingerprint goes to the [`EvictedGhost`] list.
//! - **main queue**: segments that promoted and relocated pages are written to, reclaimed
//!   oldest first while probation is within its share. A page is relocated while it has hits
//!   banked (up to 3; each main relocation spends one), so a page read often survives a few
//!   passes without a new read, and one read once leaves after one.
//! - **ghost**: a page put again while its fingerprint is remembered was evicted from
//!   probation too early; its frame goes straight to main.
//!
//! Segments hold one queue each (`ValueLog::append_to` seals the active segment when the
//! queue changes), so draining probation never relocates a main page. Compared with CLOCK
//! over one FIFO (`Eviction::Clock`), pages that are never read again leave after a short
//! probation rather than a whole pass through the store, and main pages are not pushed out by
//! a flood of new ones. docs/BENCHMARKS.md ("Issue 11: S3-FIFO over segments") has the
//! measured effect on four traces.

use std::collections::{BTreeMap, VecDeque};

use super::fptable::FpTable;
use super::residency::SegmentMeta;
use super::victim;
use crate::config::ReclaimVictim;
use crate::key::Fingerprint;
use crate::vlog::{Queue, SegmentInfo};

/// A segment is reclaimed, whatever its queue, once the log has appended this many times its
/// bound since the segment became active (see [`choose`]).
pub(crate) const MAX_AGE_LOG_BOUNDS: u64 = 8;

/// Fewest fingerprints the ghost keeps, whatever the store holds.
const GHOST_MIN_PAGES: usize = 1024;

/// Fingerprints of pages evicted from probation, oldest first. Its bound follows the store:
/// as many entries as resident pages (S3-FIFO's ghost is as long as the main queue), at least
/// [`GHOST_MIN_PAGES`], at most `admission_ghost_pages`.
pub(crate) struct EvictedGhost {
    members: FpTable<u8>,
    order: VecDeque<Fingerprint>,
    max_pages: usize,
}

impl EvictedGhost {
    pub fn new(max_pages: usize) -> Self {
        Self {
            members: FpTable::default(),
            order: VecDeque::new(),
            max_pages: max_pages.max(1),
        }
    }

    /// Remembers evicted pages; `resident_pages` sets the bound.
    pub fn remember(&mut self, fps: impl IntoIterator<Item = Fingerprint>, resident_pages: usize) {
        for fp in fps {
            if self.members.insert(fp, 1) {
                self.order.push_back(fp);
            }
        }
        let bound = resident_pages.clamp(GHOST_MIN_PAGES, self.max_pages.max(GHOST_MIN_PAGES));
        // `take` leaves stale entries in `order`; both shrink here, so each stays bounded.
        while self.members.len() > bound || self.order.len() > 2 * bound {
            match self.order.pop_front() {
                Some(old) => {
                    self.members.remove(old);
                }
                None => break,
            }
        }
    }

    /// Whether `fp` was remembered (and forgets it: it is resident again).
    pub fn take(&mut self, fp: Fingerprint) -> bool {
        self.members.remove(fp).is_some()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.members.len()
    }
}

/// Picks the victim among `sealed` segments: a segment without live pages first; then the
/// oldest segment of either queue once the log has appended more than `max_age_bytes` since
/// it became active; then the oldest probation segment while probation holds more than
/// `probation_limit_bytes` (counting `active_probation_bytes`, the active segment's share);
/// else a main segment ranked by `policy`; the other queue when one has no sealed segment.
///
/// The age bound keeps every segment's life finite. Tombstones are carried forward while any
/// segment at or below their cancelled Put's exists (`store::tombstones`), so a main segment
/// that probation's pressure kept forever would keep every later tombstone alive, and
/// reclaiming segments of carried tombstones would free nothing (seen at 1% of the Mooncake
/// trace before the bound: 100k pages declined).
pub(crate) fn choose(
    policy: ReclaimVictim,
    sealed: &[SegmentInfo],
    active_probation_bytes: u64,
    probation_limit_bytes: u64,
    max_age_bytes: u64,
    live: &BTreeMap<u32, SegmentMeta>,
    now: u64,
) -> Option<u32> {
    if let Some(s) = sealed.iter().find(|s| !live.contains_key(&s.id)) {
        return Some(s.id);
    }
    if let Some(oldest) = sealed.iter().min_by_key(|s| s.id) {
        if oldest.age_bytes > max_age_bytes {
            return Some(oldest.id);
        }
    }
    let of = |q: Queue| -> Vec<(u32, u64)> {
        sealed
            .iter()
            .filter(|s| s.queue == q)
            .map(|s| (s.id, s.bytes))
            .collect()
    };
    let (probation, main) = (of(Queue::Probation), of(Queue::Main));
    let probation_bytes: u64 = probation.iter().map(|s| s.1).sum::<u64>() + active_probation_bytes;
    let oldest_probation = || victim::choose(ReclaimVictim::Oldest, &probation, live, now);
    if probation_bytes > probation_limit_bytes || main.is_empty() {
        if let Some(id) = oldest_probation() {
            return Some(id);
        }
    }
    victim::choose(policy, &main, live, now).or_else(oldest_probation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first_seqno: u64) -> SegmentMeta {
        SegmentMeta {
            live_bytes: 100,
            first_seqno,
            last_seqno: first_seqno,
        }
    }

    fn info(id: u32, queue: Queue, age_bytes: u64) -> SegmentInfo {
        SegmentInfo {
            id,
            bytes: 1000,
            queue,
            age_bytes,
        }
    }

    /// Main 1 (oldest), probation 2 and 3, main 4.
    fn fixture() -> (Vec<SegmentInfo>, BTreeMap<u32, SegmentMeta>) {
        let sealed = vec![
            info(1, Queue::Main, 4000),
            info(2, Queue::Probation, 3000),
            info(3, Queue::Probation, 2000),
            info(4, Queue::Main, 1000),
        ];
        let live = [(1, meta(10)), (2, meta(20)), (3, meta(30)), (4, meta(40))]
            .into_iter()
            .collect();
        (sealed, live)
    }

    const NO_AGE_BOUND: u64 = u64::MAX;

    #[test]
    fn probation_over_its_share_is_drained_first_oldest_first() {
        let (sealed, live) = fixture();
        let pick = |active, limit| {
            choose(
                ReclaimVictim::Oldest,
                &sealed,
                active,
                limit,
                NO_AGE_BOUND,
                &live,
                50,
            )
        };
        assert_eq!(
            pick(0, 1999),
            Some(2),
            "2000 probation bytes over a 1999 limit"
        );
        assert_eq!(
            pick(0, 2000),
            Some(1),
            "within its share: the oldest main segment"
        );
        assert_eq!(
            pick(1, 2000),
            Some(2),
            "the active segment's probation bytes count"
        );
    }

    #[test]
    fn a_segment_past_the_age_bound_goes_whatever_its_queue() {
        let (sealed, live) = fixture();
        // Probation is over its share, but main segment 1 has lived past the bound.
        assert_eq!(
            choose(ReclaimVictim::Oldest, &sealed, 0, 0, 3999, &live, 50),
            Some(1)
        );
        assert_eq!(
            choose(ReclaimVictim::Oldest, &sealed, 0, 0, 4000, &live, 50),
            Some(2),
            "at the bound it still waits"
        );
    }

    #[test]
    fn a_dead_segment_and_a_missing_queue_fall_back() {
        let (mut sealed, live) = fixture();
        sealed.push(info(9, Queue::Main, 0)); // no live pages
        assert_eq!(
            choose(
                ReclaimVictim::Oldest,
                &sealed,
                0,
                1 << 40,
                NO_AGE_BOUND,
                &live,
                50
            ),
            Some(9)
        );
        sealed.pop();
        let only = |q: Queue| -> Vec<SegmentInfo> {
            sealed.iter().copied().filter(|s| s.queue == q).collect()
        };
        assert_eq!(
            choose(
                ReclaimVictim::Oldest,
                &only(Queue::Probation),
                0,
                1 << 40,
                NO_AGE_BOUND,
                &live,
                50
            ),
            Some(2),
            "no main segment: probation even within its share"
        );
        assert_eq!(
            choose(
                ReclaimVictim::Oldest,
                &only(Queue::Main),
                5000,
                0,
                NO_AGE_BOUND,
                &live,
                50
            ),
            Some(1),
            "probation over its share but all of it active: main"
        );
        assert_eq!(
            choose(ReclaimVictim::Oldest, &[], 0, 0, NO_AGE_BOUND, &live, 50),
            None
        );
    }

    #[test]
    fn the_ghost_is_bounded_by_the_resident_pages() {
        let mut g = EvictedGhost::new(1 << 20);
        // Fingerprint 0 is the table's empty marker; `key::fingerprint` never returns it.
        g.remember(1..5001u64, 2000);
        assert_eq!(g.len(), 2000, "bounded by resident pages");
        assert!(!g.take(1), "the oldest were forgotten");
        assert!(g.take(5000) && !g.take(5000), "taken once");
        g.remember(5001..5011u64, 0);
        assert_eq!(g.len(), GHOST_MIN_PAGES.min(2009), "never below its floor");
        let mut small = EvictedGhost::new(10);
        small.remember(1..101u64, 1_000_000);
        assert_eq!(small.len(), GHOST_MIN_PAGES.min(100));
    }
}
