//! Who decides what stays in the store during a replay: the store itself ([`Own`], the
//! default) or a simulated policy the replayer enforces ([`Enforced`]).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use sglang_lsm::Store;

use super::io::{BlockKeys, PageIo};
use crate::policy::{Policy, PolicyKind};
use crate::trace::{BlockId, Request, Trace};

/// Request `ri` of the trace, its keys, and the leading blocks it hit.
#[derive(Clone, Copy)]
pub(super) struct Step<'a> {
    pub ri: usize,
    pub req: &'a Request,
    pub keys: &'a [&'a [u8]],
    pub hits: usize,
}

/// One request's write-back, after the replayer loaded the prefix hit.
pub(super) trait Bound {
    /// Whether every probed page must read back: true when nothing but the replayer removes
    /// pages.
    fn strict(&self) -> bool;
    /// Checks the store's probe of request `ri` (an enforced policy must agree with it).
    fn check_probe(&self, ri: usize, req: &Request, probed: usize) -> anyhow::Result<()>;
    /// Writes back what request `ri` missed (and, for an enforced policy, deletes what it
    /// evicted). `all_keys` holds every block's key.
    fn write_back(
        &mut self,
        store: &Store,
        io: &mut PageIo,
        all_keys: &BlockKeys,
        step: &Step<'_>,
    ) -> anyhow::Result<()>;
    /// Blocks the replayer deleted itself, and the time inside those deletes.
    fn deleted(&self) -> (u64, Duration);
    /// Checks at the end of the replay against the store's final pages.
    fn finish(&self, store_pages: u64) -> anyhow::Result<()>;
}

/// The store's own capacity bound and eviction: the replayer writes back every block after
/// the hit, as SGLang does, and never deletes; the store reclaims, evicts and declines.
pub(super) struct Own;

impl Bound for Own {
    fn strict(&self) -> bool {
        false
    }

    fn check_probe(&self, _: usize, _: &Request, _: usize) -> anyhow::Result<()> {
        Ok(())
    }

    fn write_back(
        &mut self,
        store: &Store,
        io: &mut PageIo,
        _all_keys: &BlockKeys,
        step: &Step<'_>,
    ) -> anyhow::Result<()> {
        let Step {
            ri,
            req,
            keys,
            hits,
        } = *step;
        if hits < req.blocks.len() {
            // Declined pages (the bound is reached and inline reclamation freed too little,
            // or admission said no) are the store's decision, counted in its stats.
            io.put_chain(store, ri, req, keys, hits, req.blocks.len())?;
        }
        Ok(())
    }

    fn deleted(&self) -> (u64, Duration) {
        (0, Duration::ZERO)
    }

    fn finish(&self, _: u64) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A simulated policy enforced on an unbounded store: for each request the replayer lets the
/// policy record the access, deletes what it evicted and writes the missed blocks it keeps.
/// After every request the store's probe must agree with the policy, so the measured hit
/// rate equals the simulator's.
pub(super) struct Enforced {
    policy: Box<dyn Policy>,
    in_store: HashSet<BlockId>,
    evicted: Vec<BlockId>,
    deleted_blocks: u64,
    delete_time: Duration,
}

impl Enforced {
    pub(super) fn new(kind: PolicyKind, trace: &Trace, capacity_blocks: usize) -> Self {
        Self {
            policy: kind.build(trace, capacity_blocks),
            in_store: HashSet::new(),
            evicted: Vec::new(),
            deleted_blocks: 0,
            delete_time: Duration::ZERO,
        }
    }
}

impl Bound for Enforced {
    fn strict(&self) -> bool {
        true
    }

    fn check_probe(&self, ri: usize, req: &Request, probed: usize) -> anyhow::Result<()> {
        let n_policy = self.policy.prefix_hits(&req.blocks);
        ensure!(
            probed == n_policy,
            "request {ri}: the store holds {probed} leading blocks but the {} policy {n_policy}",
            self.policy.name()
        );
        Ok(())
    }

    fn write_back(
        &mut self,
        store: &Store,
        io: &mut PageIo,
        all_keys: &BlockKeys,
        step: &Step<'_>,
    ) -> anyhow::Result<()> {
        let Step { ri, req, keys, .. } = *step;
        self.evicted.clear();
        self.policy.access(ri, &req.blocks, &mut self.evicted);
        let t_del = Instant::now();
        for b in &self.evicted {
            // A block evicted and re-admitted within the same access stays in the store.
            if !self.policy.contains(*b) && self.in_store.remove(b) {
                // Exactly this block: the simulated policies may leave orphans, and the store
                // must mirror them (`delete` would also drop the block's descendants).
                let existed = store
                    .remove_exact(&[all_keys.get(*b)])
                    .with_context(|| format!("delete of block {b} (request {ri})"))?
                    == 1;
                ensure!(
                    existed,
                    "request {ri}: evicted block {b} was not in the store"
                );
                self.deleted_blocks += 1;
            }
        }
        self.delete_time += t_del.elapsed();

        // Write the blocks the policy keeps and the store lacks, as contiguous prefix runs.
        let mut i = 0;
        while i < req.blocks.len() {
            let wanted = |b: &BlockId| self.policy.contains(*b) && !self.in_store.contains(b);
            if !wanted(&req.blocks[i]) {
                i += 1;
                continue;
            }
            let run_start = i;
            while i < req.blocks.len() && wanted(&req.blocks[i]) {
                i += 1;
            }
            let stored = io.put_chain(store, ri, req, keys, run_start, i)?;
            ensure!(
                stored.iter().all(|&s| s),
                "request {ri}: the store declined a write although it has no capacity bound"
            );
            self.in_store
                .extend(req.blocks[run_start..i].iter().copied());
        }
        Ok(())
    }

    fn deleted(&self) -> (u64, Duration) {
        (self.deleted_blocks, self.delete_time)
    }

    fn finish(&self, store_pages: u64) -> anyhow::Result<()> {
        ensure!(
            self.in_store.len() as u64 == store_pages,
            "the store holds {store_pages} pages but the replay wrote {} that are still live",
            self.in_store.len()
        );
        Ok(())
    }
}
