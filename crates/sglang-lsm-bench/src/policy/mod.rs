//! Capacity-bounded cache simulators over block ids, measuring the **prefix** hit rate.
//!
//! SGLang's prefetch asks the disk tier how many leading pages exist and stops at the first
//! miss, so a block only helps if every block before it in the request is cached. For each
//! request the simulators:
//! 1. count the leading run of cached blocks (the hits);
//! 2. then record that every block of the request was accessed (hits were loaded, misses were
//!    computed by prefill and written back), evicting as needed to stay within capacity.
//!
//! Hit rate = hits / all block references. Capacity is a block count; see
//! [`crate::trace::Trace::capacity_blocks`]. These conventions reproduce REFERENCE.md §6
//! (tested in `tests/real_trace.rs`).

mod belady;
mod leaf;
mod lru;

use serde::{Deserialize, Serialize};

pub use belady::Belady;
pub use leaf::{LeafPolicy, LeafScore};
pub use lru::Lru;

use crate::trace::{ratio, BlockId, Trace};

/// A cache of blocks with a fixed capacity in blocks.
pub trait Policy {
    /// Short name for reports.
    fn name(&self) -> &'static str;
    /// The bound on [`Policy::len`] after every [`Policy::access`].
    fn capacity_blocks(&self) -> usize;
    /// Cached blocks.
    fn len(&self) -> usize;
    /// Whether nothing is cached.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether `block` is cached.
    fn contains(&self, block: BlockId) -> bool;
    /// Records that request number `request_idx` (0-based, in trace order, each exactly once)
    /// accessed `blocks` in prefix order. Inserts or touches them and evicts to stay within
    /// capacity; evicted blocks are appended to `evicted`. A block inserted by this call may be
    /// evicted by it too (the policy declined to keep it), and a block of this request evicted
    /// early in the call may be re-admitted later in it (LRU does this); both are reported, so
    /// use [`Policy::contains`] afterwards for the net effect.
    fn access(&mut self, request_idx: usize, blocks: &[BlockId], evicted: &mut Vec<BlockId>);

    /// The number of leading blocks of `blocks` that are cached: the prefix hit.
    fn prefix_hits(&self, blocks: &[BlockId]) -> usize {
        blocks.iter().take_while(|&&b| self.contains(b)).count()
    }
}

/// The policies the tools can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// Least recently used over all blocks.
    Lru,
    /// Offline optimum for this objective's usual proxy: evict the block whose next use is
    /// farthest in the future (needs the whole trace; a bound, not a deployable policy).
    Belady,
    /// LRU restricted to leaf blocks (no cached child), so no block is ever orphaned.
    LeafLru,
    /// Leaf-only eviction that protects blocks seen at least twice (see [`LeafScore::Prefix`]).
    Prefix,
}

impl PolicyKind {
    /// Every kind, in report order.
    pub const ALL: [PolicyKind; 4] = [Self::Lru, Self::Belady, Self::LeafLru, Self::Prefix];

    /// The kebab-case name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lru => "lru",
            Self::Belady => "belady",
            Self::LeafLru => "leaf-lru",
            Self::Prefix => "prefix",
        }
    }

    /// Builds the policy for `trace` (Belady precomputes next uses from it).
    pub fn build(self, trace: &Trace, capacity_blocks: usize) -> Box<dyn Policy> {
        match self {
            Self::Lru => Box::new(Lru::new(capacity_blocks)),
            Self::Belady => Box::new(Belady::new(trace, capacity_blocks)),
            Self::LeafLru => Box::new(LeafPolicy::new(capacity_blocks, LeafScore::Lru)),
            Self::Prefix => Box::new(LeafPolicy::new(capacity_blocks, LeafScore::Prefix)),
        }
    }
}

/// The outcome of simulating one policy over one trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimResult {
    pub policy: String,
    pub capacity_blocks: usize,
    pub requests: u64,
    pub block_refs: u64,
    pub hit_blocks: u64,
    pub hit_rate: f64,
    /// Blocks evicted over the run (including ones declined on insertion).
    pub evictions: u64,
}

/// Runs `policy` over the whole trace.
pub fn simulate(trace: &Trace, policy: &mut dyn Policy) -> SimResult {
    let mut hits = 0u64;
    let mut refs = 0u64;
    let mut evicted = Vec::new();
    let mut evictions = 0u64;
    for (i, r) in trace.requests.iter().enumerate() {
        hits += policy.prefix_hits(&r.blocks) as u64;
        refs += r.blocks.len() as u64;
        evicted.clear();
        policy.access(i, &r.blocks, &mut evicted);
        evictions += evicted.len() as u64;
    }
    SimResult {
        policy: policy.name().to_string(),
        capacity_blocks: policy.capacity_blocks(),
        requests: trace.requests.len() as u64,
        block_refs: refs,
        hit_blocks: hits,
        hit_rate: ratio(hits, refs),
        evictions,
    }
}

/// Simulates `kind` at `capacity_blocks`.
pub fn simulate_kind(trace: &Trace, kind: PolicyKind, capacity_blocks: usize) -> SimResult {
    let mut p = kind.build(trace, capacity_blocks);
    simulate(trace, p.as_mut())
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use crate::trace::Request;

    /// A trace from block lists alone (4-token blocks, full blocks, 1 ms apart).
    pub fn trace_of(reqs: &[&[BlockId]]) -> Trace {
        Trace {
            block_tokens: 4,
            requests: reqs
                .iter()
                .enumerate()
                .map(|(i, b)| Request {
                    timestamp_ms: i as u64,
                    input_tokens: 4 * b.len() as u64,
                    output_tokens: 0,
                    blocks: b.to_vec(),
                })
                .collect(),
        }
    }

    /// Per-request prefix hits of a policy over a trace, checking the capacity bound and that
    /// `evicted` reports exactly the blocks that left.
    pub fn per_request_hits(trace: &Trace, policy: &mut dyn Policy) -> Vec<usize> {
        let mut out = Vec::new();
        let mut evicted = Vec::new();
        for (i, r) in trace.requests.iter().enumerate() {
            out.push(policy.prefix_hits(&r.blocks));
            evicted.clear();
            policy.access(i, &r.blocks, &mut evicted);
            assert!(
                policy.len() <= policy.capacity_blocks(),
                "capacity exceeded"
            );
            for b in &evicted {
                assert!(
                    !policy.contains(*b) || r.blocks.contains(b),
                    "{b} reported evicted but still cached"
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::trace_of;
    use super::*;

    #[test]
    fn unlimited_capacity_matches_trace_ceiling() {
        let t = crate::trace::fixture::small();
        let ceiling = t.stats().unlimited_prefix_hits;
        for kind in PolicyKind::ALL {
            let r = simulate_kind(&t, kind, 1_000);
            assert_eq!(r.hit_blocks, ceiling, "{}", kind.name());
            assert_eq!(r.evictions, 0);
        }
    }

    #[test]
    fn belady_is_at_least_every_online_policy_on_a_mixed_trace() {
        // Two long-lived shared prefixes interleaved with one-off requests.
        let mut reqs: Vec<Vec<BlockId>> = Vec::new();
        for i in 0..40u64 {
            reqs.push(vec![1, 2, 3]);
            reqs.push(vec![100 + 3 * i, 101 + 3 * i, 102 + 3 * i]);
            if i % 3 == 0 {
                reqs.push(vec![7, 8]);
            }
        }
        let refs: Vec<&[BlockId]> = reqs.iter().map(|v| v.as_slice()).collect();
        let t = trace_of(&refs);
        let belady = simulate_kind(&t, PolicyKind::Belady, 4).hit_blocks;
        for kind in [PolicyKind::Lru, PolicyKind::LeafLru, PolicyKind::Prefix] {
            let h = simulate_kind(&t, kind, 4).hit_blocks;
            assert!(h <= belady, "{} {h} > belady {belady}", kind.name());
        }
        // The shared prefix [1,2,3] recurs every ~2 requests; LRU with 4 slots keeps losing it to
        // the one-off requests, the prefix policy keeps it.
        let lru = simulate_kind(&t, PolicyKind::Lru, 4).hit_blocks;
        let prefix = simulate_kind(&t, PolicyKind::Prefix, 4).hit_blocks;
        assert!(prefix > lru, "prefix {prefix} should beat lru {lru}");
    }
}
