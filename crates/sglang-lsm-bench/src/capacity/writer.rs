//! The writer of `bench-capacity`: the store, page buffers and progress, and the checks it
//! runs on the chains it wrote (residency, orphans, exact bytes).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sglang_lsm::{Store, StoreConfig};

use super::disk::Samples;
use super::{CapacityArgs, ChainCheck, StoreSample};
use crate::pages::{page_key, PageSlots};

/// Seed of the page patterns (writer slots and the reference copy are built from it).
pub(super) const PATTERN_SEED: u64 = 0xCAFE;

/// The writer's state: store, page buffers, progress.
pub(super) struct Run<'a> {
    pub(super) args: &'a CapacityArgs,
    pub(super) dir: PathBuf,
    pub(super) config: StoreConfig,
    pub(super) store: Option<Store>,
    pub(super) slots: PageSlots,
    pub(super) reference: PageSlots,
    pub(super) read: PageSlots,
    pub(super) written: Arc<AtomicU64>,
    pub(super) declined: u64,
    pub(super) samples: Samples,
    pub(super) store_samples: Vec<StoreSample>,
    pub(super) start: Instant,
    /// Latency of every put_batch: inline reclamation shows up here.
    pub(super) put_ms: Vec<f64>,
    pub(super) wrong_hot_pages: u64,
    /// Counters of the store before the restart (a reopened store counts from zero):
    /// put bytes, relocated bytes, evicted pages, reclaimed segments.
    pub(super) before_counters: [u64; 4],
}

impl Run<'_> {
    pub(super) fn store(&self) -> anyhow::Result<&Store> {
        self.store.as_ref().context("store is closed")
    }

    pub(super) fn keys(&self, chain: usize) -> Vec<String> {
        let n = self.args.chain_pages;
        (0..n)
            .map(|j| page_key("cap", (chain * n + j) as u64))
            .collect()
    }

    /// Writes batch `b` of `chain`, passing the chain before it as `prefix_keys`.
    pub(super) fn put_batch(&mut self, chain: usize, b: usize) -> anyhow::Result<()> {
        let (cp, bp) = (self.args.chain_pages, self.args.batch_pages);
        let keys = self.keys(chain);
        for j in 0..bp {
            self.slots.stamp(j, (chain * cp + b * bp + j) as u64);
        }
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let (prefix, rest) = refs.split_at(b * bp);
        let t = Instant::now();
        let ok = self
            .store()?
            .put_batch(&rest[..bp], &self.slots.parts(bp), prefix)?;
        self.put_ms.push(t.elapsed().as_secs_f64() * 1e3);
        self.declined += ok.iter().filter(|&&x| !x).count() as u64;
        self.written
            .fetch_add(bp as u64 * self.args.page_bytes, Relaxed);
        let written = self.written.load(Relaxed);
        let st = self.store()?.stats();
        self.store_samples.push(StoreSample {
            written,
            log_bytes: st.log_bytes,
            index_disk_bytes: st.index_disk_bytes,
            pages: st.pages,
        });
        self.samples.take(&self.dir, self.start, written)?;
        Ok(())
    }

    pub(super) fn put_chain(&mut self, chain: usize, from_batch: usize) -> anyhow::Result<()> {
        for b in from_batch..self.args.chain_pages / self.args.batch_pages {
            self.put_batch(chain, b)?;
        }
        Ok(())
    }

    /// Reads `chain` into the read slots; returns the hit flags, counting pages whose bytes
    /// are wrong.
    pub(super) fn read_chain(&mut self, chain: usize) -> anyhow::Result<(Vec<bool>, u64)> {
        let cp = self.args.chain_pages;
        let keys = self.keys(chain);
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let store = self.store.as_ref().context("store is closed")?;
        let hits = store.get_batch(&refs, &mut self.read.parts_mut(cp))?;
        let mut wrong = 0;
        for (j, _) in hits.iter().enumerate().filter(|(_, &h)| h) {
            let idx = (chain * cp + j) as u64;
            let pattern = (idx % self.args.batch_pages as u64) as usize;
            if self.read.stamp_of(j) != idx || self.read.body(j) != self.reference.body(pattern) {
                wrong += 1;
            }
        }
        Ok((hits, wrong))
    }

    /// Reads the hot set like a returning prompt: probe, get, write back what missed.
    /// Returns (leading hits, pages asked).
    pub(super) fn read_hot(&mut self) -> anyhow::Result<(u64, u64)> {
        let (mut hit, mut asked) = (0, 0);
        for c in 0..self.args.hot_chains {
            let keys = self.keys(c);
            let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
            let n = self.store()?.probe(&refs, &[])?;
            let (hits, wrong) = self.read_chain(c)?;
            self.wrong_hot_pages += wrong;
            // A page relocated between lookup and read reads as a miss once; count the
            // leading run of hits, as SGLang does, and never more than the probe promised.
            let lead = hits.iter().take_while(|&&h| h).count().min(n);
            hit += lead as u64;
            asked += keys.len() as u64;
            if lead < keys.len() {
                self.put_chain(c, lead / self.args.batch_pages)?;
            }
        }
        Ok((hit, asked))
    }

    /// Waits until reclamation has settled (no change in log bytes, pages or reclaimed
    /// segments for three polls), so residency is stable while it is compared.
    pub(super) fn quiesce(&self) -> anyhow::Result<()> {
        let sig = |s: &Store| {
            let st = s.stats();
            (
                st.log_bytes,
                st.pages,
                st.segments_reclaimed,
                st.evicted_pages,
            )
        };
        let store = self.store()?;
        let mut last = sig(store);
        let mut stable = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while stable < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = sig(store);
            stable = if now == last { stable + 1 } else { 0 };
            last = now;
        }
        Ok(())
    }

    /// Residency of every chain (`exists`, no I/O), checked for orphans and against `probe`;
    /// with `read`, every resident page is also read and compared byte for byte. Returns the
    /// resident-prefix length per chain.
    pub(super) fn check_chains(
        &mut self,
        chains: usize,
        read: bool,
    ) -> anyhow::Result<(ChainCheck, Vec<usize>)> {
        let mut c = ChainCheck {
            chains,
            ..ChainCheck::default()
        };
        let mut lens = Vec::with_capacity(chains);
        for chain in 0..chains {
            let keys = self.keys(chain);
            let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
            let store = self.store()?;
            let present: Vec<bool> = refs
                .iter()
                .map(|k| store.exists(k))
                .collect::<Result<_, _>>()?;
            let lead = present.iter().take_while(|&&p| p).count();
            let resident = present.iter().filter(|&&p| p).count();
            c.resident_pages += resident as u64;
            c.orphans += (resident - lead) as u64;
            if store.probe(&refs, &[])? != lead {
                c.probe_mismatches += 1;
            }
            if read {
                let (hits, wrong) = self.read_chain(chain)?;
                c.verified_pages += hits.iter().filter(|&&h| h).count() as u64;
                c.wrong_pages += wrong;
                c.wrong_pages += hits
                    .iter()
                    .zip(&present)
                    .filter(|(h, p)| **p && !**h)
                    .count() as u64;
            }
            lens.push(lead);
        }
        c.store_pages = self.store()?.stats().pages;
        Ok((c, lens))
    }
}

pub(super) type RestartOutcome = (ChainCheck, ChainCheck, u64, u64, u64, u64, f64);

/// Closes and reopens the store once `chains` chains are written: residency before, then
/// after the reopen residency again and every resident page's bytes.
pub(super) fn restart_store(run: &mut Run<'_>, chains: usize) -> anyhow::Result<RestartOutcome> {
    run.quiesce()?;
    let (before, lens_before) = run.check_chains(chains, false)?;
    let restart_written = run.written.load(Relaxed);
    let st = run.store()?.stats();
    run.before_counters = [
        st.put_bytes,
        st.relocated_bytes,
        st.evicted_pages,
        st.segments_reclaimed,
    ];
    let t = Instant::now();
    drop(run.store.take());
    run.store = Some(
        Store::open(&run.dir, run.config.clone())
            .with_context(|| format!("reopening store at {}", run.dir.display()))?,
    );
    let reopen_s = t.elapsed().as_secs_f64();
    let (after, lens_after) = run.check_chains(chains, true)?;
    let (mut lost, mut gained, mut changed) = (0u64, 0u64, 0u64);
    for (b, a) in lens_before.iter().zip(&lens_after) {
        if a != b {
            changed += 1;
            lost += b.saturating_sub(*a) as u64;
            gained += a.saturating_sub(*b) as u64;
        }
    }
    Ok((
        before,
        after,
        lost,
        gained,
        changed,
        restart_written,
        reopen_s,
    ))
}
