//! Plain LRU over blocks, blind to the prefix structure: the baseline of REFERENCE.md §6.

use std::collections::{BTreeMap, HashMap};

use super::Policy;
use crate::trace::BlockId;

/// Least recently used. A request's blocks are touched in prefix order, so a request's first
/// block is its least recent one: under pressure LRU evicts the root of a chain first and leaves
/// the rest orphaned (cached but unreachable). That is the weakness the leaf policies fix.
#[derive(Debug)]
pub struct Lru {
    capacity_blocks: usize,
    /// block -> stamp of its last access.
    stamp_of: HashMap<BlockId, u64>,
    /// stamp -> block, oldest first: O(log n) touch and evict.
    by_stamp: BTreeMap<u64, BlockId>,
    clock: u64,
}

impl Lru {
    pub fn new(capacity_blocks: usize) -> Self {
        Self {
            capacity_blocks,
            stamp_of: HashMap::new(),
            by_stamp: BTreeMap::new(),
            clock: 0,
        }
    }
}

impl Policy for Lru {
    fn name(&self) -> &'static str {
        "lru"
    }

    fn capacity_blocks(&self) -> usize {
        self.capacity_blocks
    }

    fn len(&self) -> usize {
        self.stamp_of.len()
    }

    fn contains(&self, block: BlockId) -> bool {
        self.stamp_of.contains_key(&block)
    }

    fn access(&mut self, _request_idx: usize, blocks: &[BlockId], evicted: &mut Vec<BlockId>) {
        for &b in blocks {
            self.clock += 1;
            if let Some(old) = self.stamp_of.insert(b, self.clock) {
                self.by_stamp.remove(&old);
            }
            self.by_stamp.insert(self.clock, b);
            // Each iteration removes one entry, so this runs at most len - capacity times.
            while self.stamp_of.len() > self.capacity_blocks {
                let Some((_, victim)) = self.by_stamp.pop_first() else {
                    break;
                };
                self.stamp_of.remove(&victim);
                evicted.push(victim);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testutil::{per_request_hits, trace_of};

    #[test]
    fn hand_checked_small_trace() {
        // Capacity 3.
        // r0 [1,2]     miss both          -> cache {1,2}
        // r1 [1,2,3]   hits 1,2           -> cache {1,2,3}
        // r2 [4]       miss, evict 1      -> cache {2,3,4}
        // r3 [1,2,3]   1 missing: 0 hits although 2,3 are cached (orphans); touching 1,2,3
        //              evicts 4           -> cache {1,2,3}
        // r4 [1,2,3]   3 hits
        let t = trace_of(&[&[1, 2], &[1, 2, 3], &[4], &[1, 2, 3], &[1, 2, 3]]);
        let mut p = Lru::new(3);
        assert_eq!(per_request_hits(&t, &mut p), vec![0, 2, 0, 0, 3]);
    }

    #[test]
    fn evicts_least_recent_and_reports_it() {
        let mut p = Lru::new(2);
        let mut ev = Vec::new();
        p.access(0, &[1, 2], &mut ev);
        assert!(ev.is_empty());
        p.access(1, &[1], &mut ev); // 2 is now the least recent
        p.access(2, &[3], &mut ev);
        assert_eq!(ev, vec![2]);
        assert!(p.contains(1) && p.contains(3) && !p.contains(2));
    }

    #[test]
    fn request_longer_than_capacity_keeps_its_tail() {
        let mut p = Lru::new(2);
        let mut ev = Vec::new();
        p.access(0, &[1, 2, 3, 4], &mut ev);
        assert_eq!(ev, vec![1, 2]);
        assert_eq!(p.len(), 2);
    }
}
