//! Per-namespace quotas: one tenant (model, rank, user) cannot flush another's pages.
//!
//! A key's namespace is its bytes before the first separator (`""` without one). Each quota'd
//! namespace gets a small id, kept in the page's residency slot, so live bytes per namespace
//! are accounted with no key and no extra memory per page, and rebuilt with the residency set
//! on open. A put that would take its namespace over quota first evicts that namespace's
//! coldest leaves, then declines what still does not fit. Pages of other namespaces are never
//! touched: every eviction re-checks the page's namespace id under the writer lock.
//!
//! **Eviction rule** (the reclaimer's, restricted to one namespace): only leaves — pages
//! without resident children — go, so no descendant is orphaned; coldest first, by (referenced
//! bit, write sequence number, deepest first within a frame); a first pass spares referenced
//! pages (second chance), a second does not. Evicting a leaf can make its parent a leaf, which
//! then competes at its own age, so a cold chain goes as a whole. Evictions are logged Delete
//! frames, so they are crash-safe like any delete.
//!
//! **Complexity.** Candidates come from a range scan of the namespace's index records (its
//! keys share the prefix `name + separator`; for `""` the whole index is scanned and
//! filtered), keeping the K coldest in a bounded heap: O(n log K) time, O(K) memory, with
//! K = n/16 clamped to [1024, 65536] (n = the namespace's pages). Leftover candidates are kept,
//! coldest first, for the next eviction, so a scan is amortised over up to K evictions (about
//! 16 index records read per evicted page; ~9 MiB of queue at most with SGLang's ~90-byte
//! keys). Selection is O(K log K). Each eviction frees a little more than needed (1/64 of the
//! quota, at most 64 MiB) so that a stream of puts does not pay one eviction each.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

use super::residency::{Residency, Slot};
use super::stats::{Counters, NamespaceStats};
use super::{Inner, Store};
use crate::config::StoreConfig;
use crate::error::Result;
use crate::key::{fingerprint, Fingerprint};
use crate::vlog::format::{align_up, MAX_FRAME_RECORDS};

/// Queue bounds (see the module comment).
const QUEUE_MIN: usize = 1024;
const QUEUE_MAX: usize = 65536;
/// Scans one eviction may run before it declines.
const MAX_SCANS: usize = 4;
/// Rounds of one eviction (each frees something or rescans), a safety bound.
const MAX_ROUNDS: usize = 64;

/// An eviction candidate from a scan.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Candidate {
    /// Coldness: unreferenced first, then oldest write, then deepest within a frame (a frame
    /// holds parents before children).
    rank: (bool, u64, Reverse<u64>),
    fp: Fingerprint,
    parent_fp: Fingerprint,
    key: Vec<u8>,
}

struct Namespace {
    name: String,
    quota: u64,
    evicted_pages: AtomicU64,
    declined_pages: AtomicU64,
    /// Coldest-first candidates left by the last scan. Its lock also makes evictions of one
    /// namespace take turns. Lock order: this, then the log's writer lock, then residency.
    queue: Mutex<Vec<Candidate>>,
}

/// The configured quotas. Namespace ids are 1-based positions in `namespaces`; 0 means "no
/// quota" (not tracked).
pub(crate) struct Quotas {
    separator: u8,
    ids: HashMap<Vec<u8>, u16>,
    namespaces: Vec<Namespace>,
}

impl Quotas {
    pub fn new(config: &StoreConfig) -> Self {
        // Validation caps the count far below u16::MAX.
        assert!(config.namespace_quotas.len() < usize::from(u16::MAX));
        let namespaces: Vec<Namespace> = config
            .namespace_quotas
            .iter()
            .map(|(name, &quota)| Namespace {
                name: name.clone(),
                quota,
                evicted_pages: AtomicU64::new(0),
                declined_pages: AtomicU64::new(0),
                queue: Mutex::new(Vec::new()),
            })
            .collect();
        let ids = (1u16..)
            .zip(&namespaces)
            .map(|(id, ns)| (ns.name.as_bytes().to_vec(), id))
            .collect();
        Self {
            separator: config.separator_byte(),
            ids,
            namespaces,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }

    /// The quota'd namespace id of `key`, 0 if its namespace has no quota.
    pub fn ns_of(&self, key: &[u8]) -> u16 {
        if self.ids.is_empty() {
            return 0;
        }
        let name = match key.iter().position(|&b| b == self.separator) {
            Some(end) => &key[..end],
            None => &[],
        };
        self.ids.get(name).copied().unwrap_or(0)
    }

    fn get(&self, ns: u16) -> Option<&Namespace> {
        self.namespaces.get(usize::from(ns).checked_sub(1)?)
    }

    /// The quota of namespace id `ns` (`u64::MAX` for 0: unbounded).
    pub fn quota(&self, ns: u16) -> u64 {
        self.get(ns).map_or(u64::MAX, |n| n.quota)
    }

    pub fn ids(&self) -> impl Iterator<Item = u16> {
        (1u16..).take(self.namespaces.len())
    }

    pub fn add_declined(&self, ns: u16, pages: u64) {
        if let Some(n) = self.get(ns) {
            Counters::add(&n.declined_pages, pages);
        }
    }

    /// Drops cached candidates (after `clear`: they would only be validated away one by one).
    pub fn clear_queues(&self) {
        for n in &self.namespaces {
            n.queue.lock().clear();
        }
    }

    pub fn stats(&self, r: &Residency) -> Vec<NamespaceStats> {
        self.ids()
            .zip(&self.namespaces)
            .map(|(id, n)| {
                let usage = r.namespace(id);
                NamespaceStats {
                    namespace: n.name.clone(),
                    quota_bytes: n.quota,
                    live_bytes: usage.live_bytes,
                    pages: usage.pages,
                    evicted_pages: n.evicted_pages.load(Relaxed),
                    declined_pages: n.declined_pages.load(Relaxed),
                }
            })
            .collect()
    }
}

/// Picks pages to evict from `cands` (coldest first) until `want` bytes: only leaves, and a
/// page becomes a leaf once every resident child was picked before it. `slots` are the pages'
/// current slots; pages in `protect` (parents of a batch being put) and, unless `force`,
/// referenced pages are spared. Returns indices into `cands`, children before parents.
fn select(
    cands: &[Candidate],
    slots: &[Slot],
    want: u64,
    force: bool,
    protect: &HashSet<Fingerprint>,
) -> Vec<usize> {
    let at: HashMap<Fingerprint, usize> =
        cands.iter().enumerate().map(|(i, c)| (c.fp, i)).collect();
    let mut children: Vec<u32> = slots.iter().map(|s| s.children).collect();
    let mut queued = vec![false; cands.len()];
    let eligible = |i: usize, children: &[u32]| {
        children[i] == 0 && (force || !slots[i].referenced()) && !protect.contains(&cands[i].fp)
    };
    // Indices are ranks (cands is sorted coldest first), so a min-heap of indices pops the
    // coldest eligible page.
    let mut heap: BinaryHeap<Reverse<usize>> = BinaryHeap::new();
    for (i, q) in queued.iter_mut().enumerate() {
        if eligible(i, &children) {
            *q = true;
            heap.push(Reverse(i));
        }
    }
    let (mut out, mut freed) = (Vec::new(), 0u64);
    while freed < want {
        let Some(Reverse(i)) = heap.pop() else { break };
        out.push(i);
        freed += slots[i].bytes();
        if let Some(&p) = at.get(&cands[i].parent_fp) {
            children[p] = children[p].saturating_sub(1);
            if !queued[p] && eligible(p, &children) {
                queued[p] = true;
                heap.push(Reverse(p));
            }
        }
    }
    out
}

impl Inner {
    /// Evicts leaves of namespace `ns` until `need` more bytes fit its quota (plus slack), or
    /// gives up after a bounded number of scans. Returns whether they fit. Never touches
    /// another namespace, never evicts a page in `protect`.
    pub(crate) fn evict_for_quota(
        &self,
        ns: u16,
        need: u64,
        protect: &HashSet<Fingerprint>,
    ) -> Result<bool> {
        let Some(n) = self.quotas.get(ns) else {
            return Ok(true);
        };
        let mut queue = n.queue.lock();
        let slack = (n.quota / 64).min(64 << 20);
        let live = || self.residency.read().namespace(ns).live_bytes;
        let (mut scans, mut leaves_only, mut rounds) = (0, false, 0);
        for force in [false, true] {
            while rounds < MAX_ROUNDS {
                rounds += 1;
                let now = live();
                if now + need <= n.quota {
                    return Ok(true);
                }
                if queue.is_empty() {
                    if scans == MAX_SCANS {
                        break;
                    }
                    *queue = self.scan_namespace(ns, leaves_only)?;
                    scans += 1;
                }
                let want = (now + need + slack - n.quota).min(now);
                if self.evict_from_queue(ns, &mut queue, want, force, protect)? == 0 {
                    // The queue was stale, or every candidate is blocked: interior pages whose
                    // leaves are younger than the K coldest pages, or (first pass) referenced.
                    // Rescan for current leaves only; after that, this pass is done.
                    queue.clear();
                    if leaves_only {
                        break;
                    }
                    leaves_only = true;
                }
            }
        }
        Ok(live() + need <= n.quota)
    }

    /// The coldest pages of namespace `ns` (see the module comment), coldest first.
    fn scan_namespace(&self, ns: u16, leaves_only: bool) -> Result<Vec<Candidate>> {
        let Some(n) = self.quotas.get(ns) else {
            return Ok(Vec::new());
        };
        let mut prefix = n.name.as_bytes().to_vec();
        if !prefix.is_empty() {
            prefix.push(self.quotas.separator);
        }
        let pages = self.residency.read().namespace(ns).pages;
        let cap = usize::try_from(pages / 16)
            .unwrap_or(QUEUE_MAX)
            .clamp(QUEUE_MIN, QUEUE_MAX);
        let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(cap + 1);
        self.index.for_each_record_prefixed(&prefix, |key, rec| {
            if prefix.is_empty() && self.quotas.ns_of(key) != ns {
                return Ok(());
            }
            let fp = fingerprint(key);
            let Some(slot) = self.residency.read().slot(fp) else {
                return Ok(());
            };
            if slot.ns != ns || slot.segment_id != rec.segment_id {
                return Ok(()); // racing a relocation or re-put; the next scan sees it
            }
            if leaves_only && slot.children > 0 {
                return Ok(());
            }
            let rank = (slot.referenced(), rec.seqno, Reverse(rec.offset));
            if heap.len() >= cap && heap.peek().is_some_and(|top| rank >= top.rank) {
                return Ok(()); // not among the K coldest: skip without copying the key
            }
            heap.push(Candidate {
                rank,
                fp,
                parent_fp: rec.parent_fp,
                key: key.to_vec(),
            });
            if heap.len() > cap {
                heap.pop();
            }
            Ok(())
        })?;
        Ok(heap.into_sorted_vec())
    }

    /// Selects from `queue` and evicts; the unpicked, still-valid candidates stay queued.
    /// Returns the bytes freed.
    fn evict_from_queue(
        &self,
        ns: u16,
        queue: &mut Vec<Candidate>,
        want: u64,
        force: bool,
        protect: &HashSet<Fingerprint>,
    ) -> Result<u64> {
        let slots: Vec<Option<Slot>> = {
            let r = self.residency.read();
            queue
                .iter()
                .map(|c| r.slot(c.fp).filter(|s| s.ns == ns))
                .collect()
        };
        let (mut valid, mut valid_slots) = (Vec::with_capacity(queue.len()), Vec::new());
        for (c, s) in queue.drain(..).zip(slots) {
            if let Some(s) = s {
                valid.push(c);
                valid_slots.push(s);
            }
        }
        let picked = select(&valid, &valid_slots, want, force, protect);
        let mut order = vec![usize::MAX; valid.len()];
        for (rank, &i) in picked.iter().enumerate() {
            order[i] = rank;
        }
        let mut doomed: Vec<(usize, Candidate)> = Vec::with_capacity(picked.len());
        for (i, c) in valid.into_iter().enumerate() {
            if order[i] == usize::MAX {
                queue.push(c);
            } else {
                doomed.push((order[i], c));
            }
        }
        doomed.sort_unstable_by_key(|(rank, _)| *rank); // children before parents
        let doomed: Vec<Candidate> = doomed.into_iter().map(|(_, c)| c).collect();
        self.evict_candidates(ns, &doomed, force)
    }

    /// Evicts `pages` (children before parents) with logged Delete frames. Every condition is
    /// re-checked under the writer lock, where children and namespaces can no longer change:
    /// still resident, still in `ns`, a leaf once the children picked before it are gone, not
    /// pinned by a put in flight (`store::pins`), and unreferenced unless `force`. Returns the
    /// bytes freed.
    fn evict_candidates(&self, ns: u16, pages: &[Candidate], force: bool) -> Result<u64> {
        let (mut freed, mut evicted) = (0u64, 0u64);
        for chunk in pages.chunks(MAX_FRAME_RECORDS) {
            let mut w = self.vlog.lock_writer();
            // The parent recorded now, not at scan time: a delete and re-put may have moved
            // the page under another parent, and children counts follow the current one.
            let mut recs = Vec::with_capacity(chunk.len());
            for c in chunk {
                recs.push(self.index.get(&c.key)?);
            }
            let doomed: Vec<(&[u8], Fingerprint)> = {
                let r = self.residency.read();
                let mut going: HashMap<Fingerprint, u32> = HashMap::new();
                let mut doomed = Vec::new();
                self.pins.with(|pinned| {
                    for (c, rec) in chunk.iter().zip(recs) {
                        let (Some(slot), Some(rec)) = (r.slot(c.fp), rec) else {
                            continue;
                        };
                        let leaf = slot.children <= going.get(&c.fp).copied().unwrap_or(0);
                        if slot.ns != ns || !leaf || (!force && slot.referenced()) || pinned(c.fp) {
                            continue;
                        }
                        *going.entry(rec.parent_fp).or_insert(0) += 1;
                        doomed.push((c.key.as_slice(), rec.parent_fp));
                    }
                });
                doomed
            };
            if doomed.is_empty() {
                continue;
            }
            for slot in self.log_deletes(&mut w, &doomed)? {
                debug_assert_eq!(slot.ns, ns, "evicted a page of another namespace");
                freed += slot.bytes();
                evicted += 1;
            }
        }
        if let Some(n) = self.quotas.get(ns) {
            Counters::add(&n.evicted_pages, evicted);
        }
        if evicted > 0 {
            self.after_publish()?;
        }
        Ok(freed)
    }
}

impl Store {
    /// Index into `chosen` from which pages are declined for namespace quotas. Namespaces that
    /// would go over quota evict their own coldest leaves first; then pages are taken in batch
    /// order and the rest declined once one does not fit (a child is useless without its
    /// parent). `put_batch` re-checks at publication, under the writer lock, so concurrent
    /// batches cannot overshoot a quota.
    pub(super) fn quota_cutoff(
        &self,
        chosen: &[usize],
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        parents: &[Fingerprint],
    ) -> Result<usize> {
        let q = &self.inner.quotas;
        if q.is_empty() {
            return Ok(chosen.len());
        }
        let sizes: Vec<(u16, u64)> = chosen
            .iter()
            .map(|&i| {
                let len = values[i].iter().map(|p| p.len() as u64).sum();
                (q.ns_of(keys[i]), align_up(len))
            })
            .collect();
        // Per namespace, what the batch adds — only as far as it could fit at all, so a batch
        // larger than the quota does not evict the whole namespace and then get declined.
        let mut need: Vec<(u16, u64)> = Vec::new();
        let mut capped: HashSet<u16> = HashSet::new();
        for &(ns, bytes) in &sizes {
            if ns == 0 || capped.contains(&ns) {
                continue;
            }
            let pos = need.iter().position(|e| e.0 == ns).unwrap_or_else(|| {
                need.push((ns, 0));
                need.len() - 1
            });
            if need[pos].1 + bytes > q.quota(ns) {
                capped.insert(ns);
            } else {
                need[pos].1 += bytes;
            }
        }
        let protect: HashSet<Fingerprint> = chosen.iter().map(|&i| parents[i]).collect();
        for &(ns, bytes) in &need {
            if self.inner.residency.read().namespace(ns).live_bytes + bytes > q.quota(ns) {
                self.inner.evict_for_quota(ns, bytes, &protect)?;
            }
        }
        let r = self.inner.residency.read();
        let mut used: HashMap<u16, u64> = HashMap::new();
        for (n, &(ns, bytes)) in sizes.iter().enumerate() {
            if ns == 0 {
                continue;
            }
            let u = used.entry(ns).or_insert(0);
            *u += bytes;
            if r.namespace(ns).live_bytes + *u > q.quota(ns) {
                for &(ns, _) in &sizes[n..] {
                    q.add_declined(ns, 1);
                }
                return Ok(n);
            }
        }
        Ok(chosen.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::NO_PARENT;

    fn cand(fp: Fingerprint, parent_fp: Fingerprint, seqno: u64) -> Candidate {
        Candidate {
            rank: (false, seqno, Reverse(0)),
            fp,
            parent_fp,
            key: fp.to_be_bytes().to_vec(),
        }
    }

    fn slot(children: u32) -> Slot {
        let mut s = Slot::new(1, 4096);
        s.children = children;
        s
    }

    #[test]
    fn namespace_of_a_key() {
        let cfg = StoreConfig {
            namespace_quotas: [("a".to_string(), 1 << 20), (String::new(), 1 << 20)].into(),
            ..StoreConfig::default()
        };
        let q = Quotas::new(&cfg);
        let (empty, a) = (q.ns_of(b"plain"), q.ns_of(b"a:x:y"));
        assert!(empty != 0 && a != 0 && empty != a);
        assert_eq!(
            q.ns_of(b":x"),
            empty,
            "an empty prefix is the \"\" namespace"
        );
        assert_eq!(q.ns_of(b"b:x"), 0, "no quota");
        assert_eq!(q.ns_of(b"ab:x"), 0);
        assert_eq!(q.quota(a), 1 << 20);
        assert_eq!(q.quota(0), u64::MAX);
        assert_eq!(Quotas::new(&StoreConfig::default()).ns_of(b"a:x"), 0);
    }

    #[test]
    fn selection_takes_coldest_leaves_and_cascades_up_chains() {
        // Chain 1 → 2 → 3 (oldest), chain 10 → 11, a lone page 20 (youngest).
        let cands = vec![
            cand(1, NO_PARENT, 1),
            cand(2, 1, 1),
            cand(3, 2, 1),
            cand(10, NO_PARENT, 2),
            cand(11, 10, 2),
            cand(20, NO_PARENT, 3),
        ];
        let slots = vec![slot(1), slot(1), slot(0), slot(1), slot(0), slot(0)];
        let none = HashSet::new();
        let fps = |picked: Vec<usize>| picked.iter().map(|&i| cands[i].fp).collect::<Vec<_>>();
        assert_eq!(
            fps(select(&cands, &slots, 3 * 4096, false, &none)),
            vec![3, 2, 1],
            "the oldest chain goes whole, leaf first"
        );
        assert_eq!(
            fps(select(&cands, &slots, u64::MAX, false, &none)),
            vec![3, 2, 1, 11, 10, 20]
        );
        // A resident child outside the candidates blocks its parent.
        let mut blocked = slots.clone();
        blocked[2].children = 1;
        assert_eq!(
            fps(select(&cands, &blocked, u64::MAX, false, &none)),
            vec![11, 10, 20]
        );
        // Protected and (without force) referenced pages are spared, with their ancestors.
        let protect: HashSet<Fingerprint> = [11].into();
        let mut referenced = slots.clone();
        referenced[2] = referenced[2].with_referenced();
        assert_eq!(
            fps(select(&cands, &referenced, u64::MAX, false, &protect)),
            vec![20]
        );
        assert_eq!(
            fps(select(&cands, &referenced, u64::MAX, true, &protect)),
            vec![3, 2, 1, 20]
        );
    }
}
