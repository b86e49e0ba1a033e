//! Capacity enforcement: whole-segment reclamation with prefix-aware eviction.
//!
//! When the value log nears `capacity_bytes`, the reclaimer picks a sealed segment and empties
//! it:
//!
//! - **victim**: a segment with no live page first (it is simply deleted); otherwise the one
//!   `reclaim_victim` ranks first (`store::victim`). The default, `oldest`, takes the segment
//!   whose live pages are oldest; together with the second chance below this is CLOCK over
//!   segments, an LRU approximation. LFS's cost-benefit score (`cost_benefit`) prefers young
//!   segments whose pages were just relocated, so a relocated hot page can lose its second
//!   chance before it is read again; it is kept as a measured alternative, not the default.
//! - a live page is **kept** (relocated to the log head, in its original prefix order) if it
//!   was read or re-put since it was written — a second chance, as in CLOCK — or if it has
//!   resident children. Every other live page is **evicted**. So only leaves are ever evicted:
//!   a page is reachable only through its whole prefix, and a hit on a deep page keeps its
//!   ancestors alive because they have a resident child. With `protect_frequent_fraction`,
//!   pages seen at least twice are kept too, up to that share of the bound.
//!
//! With `eviction = "s3fifo"` the victim comes from the queue `store::s3fifo` drains, every
//! kept page is written to a main segment, a main relocation spends one banked hit rather than
//! all, and pages evicted from probation are remembered in its ghost list.
//!
//! Background reclamation runs under a byte-rate budget so foreground reads keep the device;
//! a `put_batch` that would overflow the bound reclaims inline (unthrottled, bounded number
//! of segments) and declines what still does not fit.

use std::time::{Duration, Instant};

use super::residency::Slot;
use super::stats::Counters;
use super::{s3fifo, victim, Inner};
use crate::error::Result;
use crate::index::IndexRecord;
use crate::key::{fingerprint, Fingerprint};
use crate::vlog::format::{FrameKind, MAX_FRAME_RECORDS};
use crate::vlog::frame::{page_crc, PutPage};
use crate::vlog::{PreparedFrame, Queue};

/// Largest relocation frame.
const RELOCATE_BATCH_BYTES: u64 = 32 << 20;
/// Leaf-eviction passes per segment (chain levels evicted within one reclamation).
const MAX_EVICT_PASSES: usize = 256;
/// Segments one inline (foreground) attempt may reclaim before giving up.
pub(crate) const INLINE_SEGMENTS_MAX: usize = 8;

/// A token bucket over bytes.
pub(crate) struct RateLimiter {
    bytes_per_s: f64,
    allowance: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(bytes_per_s: u64) -> Self {
        Self {
            bytes_per_s: bytes_per_s as f64,
            allowance: bytes_per_s as f64,
            last: Instant::now(),
        }
    }

    /// Changes the budget (the controller retunes it); accrued allowance is kept.
    pub fn set_rate(&mut self, bytes_per_s: u64) {
        self.bytes_per_s = bytes_per_s.max(1) as f64;
    }

    /// Waits until `bytes` fit the budget (at most one second of burst is kept).
    pub fn consume(&mut self, bytes: u64) {
        let now = Instant::now();
        self.allowance = (self.allowance
            + now.duration_since(self.last).as_secs_f64() * self.bytes_per_s)
            .min(self.bytes_per_s);
        self.last = now;
        self.allowance -= bytes as f64;
        if self.allowance < 0.0 {
            std::thread::sleep(Duration::from_secs_f64(-self.allowance / self.bytes_per_s));
        }
    }
}

/// What one segment's reclamation did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Reclaimed {
    pub segment_id: u32,
    pub relocated_pages: u64,
    pub relocated_bytes: u64,
    pub evicted_pages: u64,
    pub freed_bytes: u64,
}

/// How hard one reclamation frees space; each step drops one protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Referenced pages get their second chance, frequent ones their protection.
    Normal,
    /// Frequent pages lose their protection; referenced ones still get a second chance
    /// (a blocked put's second try when `protect_frequent_fraction` is on).
    Unprotected,
    /// Only pages with resident children are kept (a blocked put's last resort).
    Force,
}

/// How one reclamation treats pages without resident children.
#[derive(Clone, Copy, Debug)]
struct KeepRule {
    /// Everything but pages with children is evicted (a blocked put's last resort).
    force: bool,
    /// Every live page is kept (see `Inner::spares_live`).
    spare: bool,
    /// Frequent pages are kept too (`protect_frequent_fraction`, under its bound).
    frequent: bool,
}

/// Whether reclamation keeps (relocates) a page. Pages with resident children are always kept
/// (no orphans); referenced ones unless `force`; frequent ones when protected; every one when
/// `spare`.
fn keeps(slot: Slot, rule: KeepRule) -> bool {
    slot.children > 0
        || (!rule.force && (rule.spare || slot.referenced() || (rule.frequent && slot.frequent())))
}

struct LivePage {
    key: Vec<u8>,
    fp: Fingerprint,
    rec: IndexRecord,
}

impl Inner {
    /// Log bytes the reclaimer aims to stay under: the log bound (capacity, free-space floor)
    /// minus a headroom of one segment (or 2%), so foreground puts rarely wait for inline
    /// reclamation. Measured on the Mooncake trace, a 5% / two-segment headroom cost up to 2
    /// points of hit rate at small capacities (space held back is space not caching).
    pub(crate) fn reclaim_target_bytes(&self) -> Option<u64> {
        let cap = self.log_bound()?;
        let headroom = self.segment_bytes.max(cap / 50);
        Some(cap.saturating_sub(headroom))
    }

    /// Whether reclamation should relocate every live page rather than evict: only with
    /// namespace quotas, and only while live bytes sit at least a segment under the target.
    /// Then the log is over its bound because of garbage — typically a quota'd namespace
    /// churning within its quota — and evicting the victim's cold pages, which may belong to
    /// another namespace, would let one tenant flush another. Compacting frees the space
    /// instead. A blocked put's forced pass still evicts, so writes are never starved. Without
    /// quotas the policy is unchanged.
    fn spares_live(&self) -> bool {
        if self.quotas.is_empty() {
            return false;
        }
        let Some(target) = self.reclaim_target_bytes() else {
            return false;
        };
        self.residency.read().live_bytes() + self.segment_bytes <= target
    }

    /// Whether at least three quarters of the live bytes were read (or re-put) since last
    /// written or relocated: then a second-chance pass would mostly relocate, and a blocked
    /// put stops paying for it.
    fn mostly_referenced(&self) -> bool {
        let r = self.residency.read();
        r.referenced_bytes() * 4 >= r.live_bytes() * 3
    }

    /// Whether frequent pages are spared now: protection is on and frequent pages hold at
    /// most `protect_frequent_fraction` of the log bound. Past it they are evicted like any
    /// unreferenced page until they fall back under it, so the protected class can never
    /// fill the store and starve new pages.
    fn protects_frequent(&self) -> bool {
        let fraction = self.config.protect_frequent_fraction;
        if fraction <= 0.0 {
            return false;
        }
        let Some(bound) = self.log_bound() else {
            return false;
        };
        (self.residency.read().frequent_bytes() as f64) <= fraction * bound as f64
    }

    /// Whether S3-FIFO over segments is on (`Eviction::S3Fifo`).
    fn s3fifo(&self) -> bool {
        self.evicted_ghost.is_some()
    }

    /// The victim and its queue: under S3-FIFO from the queue `store::s3fifo` drains, else a
    /// sealed segment without live pages, else the one `reclaim_victim` ranks first
    /// (`store::victim`).
    fn pick_victim(&self) -> Option<(u32, Queue)> {
        if !self.s3fifo() {
            return self.pick_clock_victim().map(|id| (id, Queue::Main));
        }
        // Listed before the active id is read, for the reason `pick_clock_victim` gives.
        let mut sealed = self.vlog.segment_queues();
        let active = self.vlog.active_segment_id();
        let now = self.vlog.next_seqno();
        let active_probation_bytes = sealed
            .iter()
            .find(|s| s.id == active && s.queue == Queue::Probation)
            .map_or(0, |s| s.bytes);
        sealed.retain(|s| s.id < active);
        let bound = self.log_bound().unwrap_or(u64::MAX);
        let limit = (bound as f64 * self.config.probation_fraction) as u64;
        let r = self.residency.read();
        let id = s3fifo::choose(
            self.config.reclaim_victim,
            &sealed,
            active_probation_bytes,
            limit,
            bound.saturating_mul(s3fifo::MAX_AGE_LOG_BOUNDS),
            r.segments(),
            now,
        )?;
        let queue = sealed
            .iter()
            .find(|s| s.id == id)
            .map_or(Queue::Main, |s| s.queue);
        Some((id, queue))
    }

    /// A sealed segment without live pages, else the one `reclaim_victim` ranks first
    /// (`store::victim`).
    fn pick_clock_victim(&self) -> Option<u32> {
        // The segment list first, the active id after it: a roll between the two can only
        // raise the active id, so `id < active` drops every segment that was or became
        // active. Read the other way round, a roll in between left the fresh, empty active
        // segment in the list as the ideal victim, and removing it failed a writer's
        // put_batch ("segment N is the active segment", found by tests/stress.rs).
        let mut sealed = self.vlog.segment_sizes();
        let active = self.vlog.active_segment_id();
        let now = self.vlog.next_seqno();
        sealed.retain(|&(id, _)| id < active);
        let r = self.residency.read();
        victim::choose(self.config.reclaim_victim, &sealed, r.segments(), now)
    }

    /// Reclaims one segment, if any is sealed. `limiter` throttles relocation I/O. `pass`
    /// says which protections hold (see [`Pass`]).
    pub(crate) fn reclaim_one(
        &self,
        limiter: Option<&mut RateLimiter>,
        pass: Pass,
    ) -> Result<Option<Reclaimed>> {
        let force = pass == Pass::Force;
        let _one_at_a_time = self.reclaim_lock.lock();
        let Some((victim, queue)) = self.pick_victim() else {
            return Ok(None);
        };
        let before = self
            .vlog
            .segment_sizes()
            .iter()
            .find(|(id, _)| *id == victim)
            .map_or(0, |s| s.1);
        let rule = KeepRule {
            force,
            spare: !force && self.spares_live(),
            frequent: pass == Pass::Normal && self.protects_frequent(),
        };
        let (mut keep, evict) = self.classify(victim, rule)?;
        let mut out = Reclaimed {
            segment_id: victim,
            ..Reclaimed::default()
        };
        out.evicted_pages = self.evict(victim, queue, &evict)?;
        // Evicting leaves can leave their parents (in this segment) childless and unreferenced:
        // a cold chain goes as a whole, one level per pass. Bounded; deeper chains go next time.
        for _ in 0..MAX_EVICT_PASSES {
            let (still, now_evictable): (Vec<LivePage>, Vec<LivePage>) = {
                let r = self.residency.read();
                keep.into_iter().partition(|p| {
                    r.slot(p.fp)
                        .is_none_or(|s| keeps(s, rule) || self.pins.contains(p.fp))
                })
            };
            keep = still;
            if now_evictable.is_empty() {
                break;
            }
            out.evicted_pages += self.evict(victim, queue, &now_evictable)?;
        }
        let (pages, bytes) = self.relocate(victim, queue, &keep, limiter)?;
        out.relocated_pages = pages;
        out.relocated_bytes = bytes;
        if self.s3fifo() && queue == Queue::Probation {
            Counters::add(&self.counters.promoted_pages, pages);
        }
        let emptied = !self.residency.read().segments().contains_key(&victim);
        if emptied {
            // The victim's frames may carry effects the index has not persisted yet — above
            // all Delete frames for pages evicted from *other* segments. Deleting the file
            // would drop them from replay and resurrect stale records after a crash (found by
            // the bounded SIGKILL test), so persist the index up to the victim first.
            let frames = self.vlog.frames(victim);
            let newest = frames.iter().map(|(_, h)| h.seqno).max();
            if newest > self.index.persisted_seqno() {
                self.flush_index()?;
            }
            // And a Delete in the victim may cancel a Put in an older segment that stays.
            self.carry_tombstones(victim, &frames)?;
            self.vlog.remove_segment(victim)?;
            out.freed_bytes = before;
            Counters::add(&self.counters.segments_reclaimed, 1);
        }
        Counters::add(&self.counters.relocated_pages, out.relocated_pages);
        Counters::add(&self.counters.relocated_bytes, out.relocated_bytes);
        tracing::debug!(
            segment = out.segment_id,
            relocated = out.relocated_pages,
            evicted = out.evicted_pages,
            emptied,
            "reclaimed segment"
        );
        Ok(Some(out))
    }

    /// Live pages of `victim` in log (prefix) order, split into keep and evict.
    fn classify(&self, victim: u32, rule: KeepRule) -> Result<(Vec<LivePage>, Vec<LivePage>)> {
        let mut keep = Vec::new();
        let mut evict = Vec::new();
        for (frame_offset, h) in self.vlog.frames(victim) {
            if h.kind != FrameKind::Put {
                continue;
            }
            for e in h.entries {
                let fp = fingerprint(&e.key);
                let Some(slot) = self.residency.read().slot(fp) else {
                    continue;
                };
                if slot.segment_id != victim {
                    continue;
                }
                let Some(rec) = self.index.get(&e.key)? else {
                    continue;
                };
                if rec.segment_id != victim || rec.offset != frame_offset + e.payload_offset {
                    continue; // an older copy of a key re-put later in the same segment
                }
                let page = LivePage {
                    key: e.key,
                    fp,
                    rec,
                };
                if keeps(slot, rule) || self.pins.contains(fp) {
                    keep.push(page);
                } else {
                    evict.push(page);
                }
            }
        }
        Ok((keep, evict))
    }

    /// Rewrites `pages` at the log head in batches, preserving order and parents. A page that
    /// changed meanwhile (deleted, re-put, relocated) is skipped at publish time.
    fn relocate(
        &self,
        victim: u32,
        queue: Queue,
        pages: &[LivePage],
        mut limiter: Option<&mut RateLimiter>,
    ) -> Result<(u64, u64)> {
        let Some(seg) = self.vlog.segment(victim) else {
            return Ok((0, 0));
        };
        let (mut moved_pages, mut moved_bytes) = (0u64, 0u64);
        let mut start = 0;
        while start < pages.len() {
            let mut end = start;
            let mut batch_bytes = 0;
            while end < pages.len()
                && end - start < MAX_FRAME_RECORDS
                && (end == start || batch_bytes + pages[end].rec.len <= RELOCATE_BATCH_BYTES)
            {
                batch_bytes += pages[end].rec.len;
                end += 1;
            }
            if let Some(l) = limiter.as_deref_mut() {
                l.consume(2 * batch_bytes); // read + write
            }
            let batch = &pages[start..end];
            start = end;
            let mut bufs: Vec<Vec<u8>> = Vec::with_capacity(batch.len());
            let mut ok: Vec<&LivePage> = Vec::with_capacity(batch.len());
            for p in batch {
                let mut buf = vec![0u8; usize::try_from(p.rec.len).unwrap_or(0)];
                let read = seg
                    .read_into(&mut [&mut buf[..]], p.rec.offset, false)
                    .is_ok();
                if read && page_crc(&p.key, [&buf[..]]) == p.rec.crc {
                    bufs.push(buf);
                    ok.push(p);
                } else {
                    // Never copy bad bytes forward; it stays behind and is evicted below.
                    Counters::add(&self.counters.get_corrupt, 1);
                }
            }
            if ok.is_empty() {
                continue;
            }
            let parts: Vec<Vec<&[u8]>> = bufs.iter().map(|b| vec![&b[..]]).collect();
            let puts: Vec<PutPage<'_>> = ok
                .iter()
                .zip(&parts)
                .map(|(p, parts)| PutPage {
                    key: &p.key,
                    parent_fp: p.rec.parent_fp,
                    parts,
                })
                .collect();
            let mut frame = PreparedFrame::put(&puts);
            let mut w = self.vlog.lock_writer();
            // Under S3-FIFO every survivor goes to main: promoted out of probation, or
            // reinserted into main.
            let at = if self.s3fifo() {
                self.vlog.append_to(&mut w, &mut frame, Queue::Main)?
            } else {
                self.vlog.append(&mut w, &mut frame)?
            };
            let mut r = self.residency.write();
            // Copies of pages deleted while they were copied: tombstoned below, or a replay
            // after a crash (and every follower) would bring them back, maybe parentless.
            let mut tombstones: Vec<(&[u8], Fingerprint)> = Vec::new();
            for (e, p) in frame.entries().iter().zip(&ok) {
                let still_here = r.slot(p.fp).is_some_and(|s| s.segment_id == victim)
                    && self.index.get(&p.key)?.is_some_and(|now| now == p.rec);
                if !still_here {
                    if !r.contains(p.fp) {
                        tombstones.push((&p.key, e.parent_fp));
                    }
                    continue;
                }
                let rec = IndexRecord {
                    segment_id: at.segment_id,
                    offset: at.frame_offset + e.payload_offset,
                    len: e.payload_len,
                    crc: e.payload_crc,
                    parent_fp: e.parent_fp,
                    seqno: at.seqno,
                };
                self.index.insert(&p.key, p.fp, &rec);
                let to = Slot::new(at.segment_id, e.payload_len);
                // A main-queue reinsertion spends one banked hit; a promotion out of
                // probation, and CLOCK's second chance, spend them all.
                if self.s3fifo() && queue == Queue::Main {
                    r.relocate_spending_one(p.fp, to, at.seqno);
                } else {
                    r.relocate(p.fp, to, at.seqno);
                }
                moved_pages += 1;
                moved_bytes += e.payload_len;
            }
            drop(r);
            if !tombstones.is_empty() {
                self.log_deletes(&mut w, &tombstones)?;
            }
        }
        Ok((moved_pages, moved_bytes))
    }

    /// Evicts leaves of `victim` with logged Delete frames. Conditions are re-checked under
    /// the writer lock (children only change under it), so no page with a resident child is
    /// evicted, no pinned page (the parent of a put in flight), and no page that moved away.
    fn evict(&self, victim: u32, queue: Queue, pages: &[LivePage]) -> Result<u64> {
        let mut evicted = 0;
        for chunk in pages.chunks(MAX_FRAME_RECORDS) {
            let mut w = self.vlog.lock_writer();
            let (doomed, doomed_fps): (Vec<(&[u8], Fingerprint)>, Vec<Fingerprint>) = {
                let r = self.residency.read();
                self.pins.with(|pinned| {
                    chunk
                        .iter()
                        .filter(|p| {
                            r.slot(p.fp).is_some_and(|s| {
                                s.segment_id == victim && s.children == 0 && !pinned(p.fp)
                            })
                        })
                        .map(|p| ((p.key.as_slice(), p.rec.parent_fp), p.fp))
                        .unzip()
                })
            };
            if doomed.is_empty() {
                continue;
            }
            if queue == Queue::Probation {
                if let Some(ghost) = &self.evicted_ghost {
                    let resident = self.residency.read().len();
                    ghost.lock().remember(doomed_fps, resident);
                }
            }
            // Counted as they go, not when the whole reclamation ends: a `stats()` taken
            // meanwhile must see `pages` and `evicted_pages` agree (the replay checks it).
            evicted += self
                .log_deletes_counted(&mut w, &doomed, Some(&self.counters.evicted_pages))?
                .len() as u64;
        }
        Ok(evicted)
    }

    /// Seals the active segment so the reclaimer may take it (when it holds everything, e.g. a
    /// store of a few big batches). Returns whether there was anything to seal.
    pub(crate) fn seal_active(&self) -> Result<bool> {
        let mut w = self.vlog.lock_writer();
        if !self.vlog.active_has_frames(&w) {
            return Ok(false);
        }
        self.vlog.roll_now(&mut w)?;
        Ok(true)
    }

    /// Reclaims until `need_bytes` more fit under the log bound, or gives up after a bounded
    /// number of segments. Returns whether they fit.
    pub(crate) fn make_room(&self, need_bytes: u64) -> Result<bool> {
        let Some(cap) = self.log_bound() else {
            return Ok(true);
        };
        // First with second chances; if everything was recently read, without them. A
        // foreground writer waits for this, so the second-chance pass gives up once two or
        // more victims have freed (net of relocation) under a quarter of what they held:
        // relocating recently read pages then costs far more I/O than it wins (bench-capacity
        // measured an 8.5 s put stall after a read-back had marked every page referenced). One
        // low-yield victim is not enough evidence: it may be the relocated hot set itself.
        // Nor are several while most live bytes are unreferenced: the hot set may span them
        // (the oldest segments of a store whose first pages are the hot ones), and forcing
        // then evicts recently read pages while cold ones stay, which LRU never does (seen
        // under load in tests/capacity.rs, when the background reclaimer lagged behind).
        // With frequent pages protected, a middle pass drops that protection before the
        // second chances: protected pages are the likelier to go unread again.
        let passes: &[Pass] = if self.config.protect_frequent_fraction > 0.0 {
            &[Pass::Normal, Pass::Unprotected, Pass::Force]
        } else {
            &[Pass::Normal, Pass::Force]
        };
        for &pass in passes {
            let force = pass == Pass::Force;
            let (mut held_bytes, mut net_freed_bytes, mut victims) = (0u64, 0u64, 0usize);
            for _ in 0..INLINE_SEGMENTS_MAX {
                if self.vlog.total_bytes() + need_bytes <= cap {
                    return Ok(true);
                }
                match self.reclaim_one(None, pass)? {
                    None => {
                        if !self.seal_active()? {
                            break;
                        }
                    }
                    Some(r) => {
                        victims += 1;
                        held_bytes += r.freed_bytes;
                        net_freed_bytes += r.freed_bytes.saturating_sub(r.relocated_bytes);
                        // Not while compacting to spare other tenants' live pages: there
                        // low yield is the point (`spares_live`).
                        if !force
                            && victims >= 2
                            && net_freed_bytes * 4 < held_bytes
                            && self.mostly_referenced()
                            && !self.spares_live()
                        {
                            break;
                        }
                    }
                }
            }
        }
        Ok(self.vlog.total_bytes() + need_bytes <= cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_rule_per_pass() {
        let plain = Slot::new(1, 4096);
        let referenced = plain.with_referenced();
        let frequent = plain.with_frequent();
        let mut parent = plain;
        parent.children = 1;
        let rule = |force, spare, frequent| KeepRule {
            force,
            spare,
            frequent,
        };
        // Normal pass without protection: today's rule.
        let normal = rule(false, false, false);
        assert!(!keeps(plain, normal) && keeps(referenced, normal) && keeps(parent, normal));
        assert!(
            !keeps(frequent, normal),
            "frequent is spared only when protected"
        );
        // Protection on: frequent pages are relocated too.
        assert!(keeps(frequent, rule(false, false, true)));
        assert!(!keeps(plain, rule(false, false, true)));
        // Force: only pages with children stay, whatever else holds.
        let force = rule(true, false, true);
        assert!(!keeps(referenced, force) && !keeps(frequent, force) && keeps(parent, force));
        // Spare (quota compaction): everything stays.
        assert!(keeps(plain, rule(false, true, false)));
    }
}
