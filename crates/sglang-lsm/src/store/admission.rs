//! Optional admission control: admit a page only on its second sighting.
//!
//! Most KV pages of a trace are never reused (unique prompt suffixes). Writing them costs
//! device bandwidth and evicts pages that would have hit. With `admission = second_sighting`
//! the first `put` of a page only records its fingerprint in a bounded FIFO "ghost" list and
//! declines it (`false`); a later `put` of the same page is admitted. Measured, not assumed:
//! see docs/BENCHMARKS.md for the trace numbers with and without it.

use std::collections::VecDeque;

use super::fptable::FpTable;
use crate::key::Fingerprint;

/// Fingerprints seen once and not yet admitted, oldest first, bounded.
pub(crate) struct Ghost {
    members: FpTable<u8>,
    order: VecDeque<Fingerprint>,
    capacity: usize,
}

impl Ghost {
    pub fn new(capacity: usize) -> Self {
        Self {
            members: FpTable::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Splits `fps` (a batch's new pages, in prefix order) into an admitted prefix and a
    /// declined suffix: the suffix starts at the first page not seen before. Admitted pages
    /// leave the ghost list; declined ones are remembered. Returns the admitted count.
    pub fn admit(&mut self, fps: &[Fingerprint]) -> usize {
        let admitted = fps
            .iter()
            .take_while(|&&fp| self.members.contains(fp))
            .count();
        for &fp in &fps[..admitted] {
            self.members.remove(fp);
        }
        for &fp in &fps[admitted..] {
            if self.members.insert(fp, 1) {
                self.order.push_back(fp);
            }
        }
        // Bounded: forget the oldest sightings (including stale entries already admitted).
        while self.members.len() > self.capacity || self.order.len() > 2 * self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.members.remove(old);
                }
                None => break,
            }
        }
        admitted
    }
}

/// Fingerprints of pages recently put as new (whether admitted, declined or since evicted),
/// oldest first, bounded. With `protect_frequent_fraction` a page put again while still
/// remembered here starts out frequent: it was evicted (or declined) and then wanted again,
/// the "seen at least twice" signal the residency table alone loses on eviction.
pub(crate) struct History {
    members: FpTable<u8>,
    order: VecDeque<Fingerprint>,
    capacity: usize,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        Self {
            members: FpTable::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records a sighting of `fp`; returns whether it was already remembered.
    pub fn sight(&mut self, fp: Fingerprint) -> bool {
        if !self.members.insert(fp, 1) {
            return true;
        }
        self.order.push_back(fp);
        // Every remembered fingerprint is queued exactly once, so the two stay equal.
        debug_assert_eq!(self.members.len(), self.order.len());
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.members.remove(old);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_sighting_admits_and_bound_holds() {
        let mut g = Ghost::new(3);
        assert_eq!(g.admit(&[1, 2]), 0, "first sighting declines");
        assert_eq!(
            g.admit(&[1, 2, 3]),
            2,
            "seen pages admitted, new suffix declined"
        );
        assert_eq!(g.admit(&[1]), 0, "admitted pages leave the ghost list");
        for fp in 10..20 {
            g.admit(&[fp]);
        }
        assert!(g.members.len() <= 3);
        assert_eq!(g.admit(&[19]), 1, "recent sightings are remembered");
    }

    #[test]
    fn history_remembers_recent_sightings_within_its_bound() {
        let mut h = History::new(3);
        assert!(!h.sight(1), "first sighting");
        assert!(h.sight(1), "second sighting");
        for fp in 2..=4 {
            assert!(!h.sight(fp));
        }
        assert!(!h.sight(1), "the oldest sighting was forgotten");
        assert!(h.members.len() <= 3 && h.order.len() <= 3);
    }
}
