//! Offline Belady: evict the block whose next use is farthest in the future.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::Policy;
use crate::trace::{BlockId, Trace};

/// "Never used again".
const NEVER: u64 = u64::MAX;

/// Belady's farthest-next-use rule with full knowledge of the trace: an upper reference for
/// online policies, not something a store can deploy.
///
/// Conventions (they reproduce REFERENCE.md §6 to 0.1 points; reference-granular next uses
/// do not, giving 18.5% instead of 17.0% at 1%):
/// - a block's next use is the index of the next *request* that references it, so all blocks
///   of one future request tie;
/// - ties go to the smallest block id;
/// - a block just inserted competes like any other, so Belady may decline to keep it (bypass).
///
/// Note that it optimises block hits, not prefix hits, so it is a strong reference rather than
/// a proven optimum for the prefix objective.
#[derive(Debug)]
pub struct Belady {
    capacity_blocks: usize,
    /// For the j-th block reference of the trace (requests concatenated): the index of the next
    /// request that references the same block, or [`NEVER`].
    next_use: Vec<u64>,
    /// Offset of each request's first reference in `next_use`.
    request_start: Vec<usize>,
    /// block -> its next use (the heap key it is currently filed under).
    cached: HashMap<BlockId, u64>,
    /// Farthest next use on top; entries whose key no longer matches `cached` are stale.
    heap: BinaryHeap<(u64, Reverse<BlockId>)>,
}

impl Belady {
    pub fn new(trace: &Trace, capacity_blocks: usize) -> Self {
        let total: usize = trace.requests.iter().map(|r| r.blocks.len()).sum();
        let mut request_start = Vec::with_capacity(trace.requests.len());
        let mut pos = 0usize;
        for r in &trace.requests {
            request_start.push(pos);
            pos += r.blocks.len();
        }
        // One backward pass: remember, per block, the request where it is used next.
        let mut next_use = vec![NEVER; total];
        let mut seen_later: HashMap<BlockId, u64> = HashMap::new();
        for (ri, r) in trace.requests.iter().enumerate().rev() {
            let start = request_start[ri];
            for (i, b) in r.blocks.iter().enumerate() {
                next_use[start + i] = seen_later.get(b).copied().unwrap_or(NEVER);
            }
            for b in &r.blocks {
                seen_later.insert(*b, ri as u64);
            }
        }
        Self {
            capacity_blocks,
            next_use,
            request_start,
            cached: HashMap::new(),
            heap: BinaryHeap::new(),
        }
    }

    /// Drops stale heap entries once they dominate, keeping memory proportional to the cache.
    fn compact_heap(&mut self) {
        if self.heap.len() > 4 * self.cached.len() + 1024 {
            self.heap = self
                .cached
                .iter()
                .map(|(&b, &nu)| (nu, Reverse(b)))
                .collect();
        }
    }
}

impl Policy for Belady {
    fn name(&self) -> &'static str {
        "belady"
    }

    fn capacity_blocks(&self) -> usize {
        self.capacity_blocks
    }

    fn len(&self) -> usize {
        self.cached.len()
    }

    fn contains(&self, block: BlockId) -> bool {
        self.cached.contains_key(&block)
    }

    fn access(&mut self, request_idx: usize, blocks: &[BlockId], evicted: &mut Vec<BlockId>) {
        let start = self.request_start.get(request_idx).copied();
        for (i, &b) in blocks.iter().enumerate() {
            // A request outside the trace the policy was built for has no known future.
            let nu = start
                .and_then(|s| self.next_use.get(s + i))
                .copied()
                .unwrap_or(NEVER);
            self.cached.insert(b, nu);
            self.heap.push((nu, Reverse(b)));
            // Each iteration pops one heap entry; the heap is finite.
            while self.cached.len() > self.capacity_blocks {
                let Some((key, Reverse(victim))) = self.heap.pop() else {
                    break;
                };
                if self.cached.get(&victim) == Some(&key) {
                    self.cached.remove(&victim);
                    evicted.push(victim);
                }
            }
        }
        self.compact_heap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testutil::{per_request_hits, trace_of};

    #[test]
    fn next_uses_are_request_indices() {
        let t = trace_of(&[&[1, 2], &[3], &[1, 2], &[1]]);
        let b = Belady::new(&t, 10);
        assert_eq!(b.next_use, vec![2, 2, NEVER, 3, NEVER, NEVER]);
        assert_eq!(b.request_start, vec![0, 2, 3, 5]);
    }

    #[test]
    fn hand_checked_small_trace() {
        // Capacity 2.
        // r0 [1,2] next uses 1->r2, 2->r3      cache {1,2}
        // r1 [3]   3 never used again: bypassed (farthest)      cache {1,2}
        // r2 [1]   hit; 1 is next used at r3
        // r3 [1,2] both cached: 2 hits
        let t = trace_of(&[&[1, 2], &[3], &[1], &[1, 2]]);
        let mut p = Belady::new(&t, 2);
        assert_eq!(per_request_hits(&t, &mut p), vec![0, 0, 1, 2]);
    }

    #[test]
    fn keeps_the_sooner_reused_block() {
        // Capacity 1: after r0 [1] and r1 [2], block 1 is needed at r3 and 2 at r2 -> keep 2.
        let t = trace_of(&[&[1], &[2], &[2], &[1]]);
        let mut p = Belady::new(&t, 1);
        assert_eq!(per_request_hits(&t, &mut p), vec![0, 0, 1, 0]);
    }

    #[test]
    fn ties_evict_the_smallest_id() {
        // r0 [5,6] both next used at r1 (a tie); capacity 1 keeps 6.
        let t = trace_of(&[&[5, 6], &[5, 6]]);
        let mut p = Belady::new(&t, 1);
        let mut ev = Vec::new();
        p.access(0, &[5, 6], &mut ev);
        assert_eq!(ev, vec![5]);
        assert!(p.contains(6));
    }
}
