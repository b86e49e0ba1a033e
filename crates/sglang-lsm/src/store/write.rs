//! Writes: `put_batch`, `delete`, `clear`.

use super::residency::Slot;
use super::stats::Counters;
use super::Store;
use crate::controller::latency::Timer;
use crate::error::{key_display, Error, Result};
use crate::index::IndexRecord;
use crate::key::{self, fingerprint, Fingerprint};
use crate::vlog::format::{FrameKind, MAX_FRAME_RECORDS};
use crate::vlog::frame::PutPage;
use crate::vlog::{PreparedFrame, Queue};

fn validate_put(keys: &[&[u8]], values: &[Vec<&[u8]>], prefix_keys: &[&[u8]]) -> Result<()> {
    if keys.len() != values.len() {
        return Err(Error::InvalidArgument(format!(
            "put_batch got {} keys but {} values",
            keys.len(),
            values.len()
        )));
    }
    if keys.len() > MAX_FRAME_RECORDS {
        return Err(Error::InvalidArgument(format!(
            "put_batch of {} pages exceeds the {MAX_FRAME_RECORDS}-page limit; split the batch",
            keys.len()
        )));
    }
    for k in keys.iter().chain(prefix_keys) {
        key::validate(k)?;
    }
    for (k, parts) in keys.iter().zip(values) {
        if parts.iter().all(|p| p.is_empty()) {
            return Err(Error::EmptyValue {
                key: key_display(k),
            });
        }
    }
    Ok(())
}

/// Why `put_batch` left a page (and the rest of its batch) unpublished after appending it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unpublished {
    OverQuota,
    ParentGone,
}

/// How the pages of one put relate to their parents.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Links {
    /// `keys[i-1]` is the parent of `keys[i]`; the prefix's last key that of `keys[0]`.
    Chain,
    /// A chain continuing an earlier chunk: declined whole if its first parent is gone.
    ContinuedChain,
    /// Each page has its own parent; none depends on another.
    Parents,
}

/// Declines `chosen[from..]` (`false`, counted) and drops them from `chosen`.
fn decline(results: &mut [bool], chosen: &mut Vec<usize>, from: usize, counters: &Counters) {
    for &i in &chosen[from..] {
        results[i] = false;
    }
    Counters::add(&counters.put_declined_pages, (chosen.len() - from) as u64);
    chosen.truncate(from);
}

impl Store {
    /// Stores a batch of pages as one contiguous vectored append, in batch (prefix) order.
    ///
    /// `values[i]` holds page i as consecutive parts (SGLang passes K then V). `keys[i-1]` is
    /// the parent of `keys[i]`; `prefix_keys` is the chain before `keys[0]` (its last element is
    /// `keys[0]`'s parent). Returns one flag per page: `true` if stored or already present,
    /// `false` if declined: the capacity bound or free-space floor is reached, or the page's
    /// namespace quota (after evicting that namespace's coldest leaves), or admission.
    ///
    /// # Errors
    /// Invalid input (nothing written) or an I/O failure such as [`Error::NoSpace`] (the partial
    /// append is rolled back; the store stays usable).
    pub fn put_batch(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        prefix_keys: &[&[u8]],
    ) -> Result<Vec<bool>> {
        self.put_chunk(keys, values, prefix_keys, false)
    }

    /// [`Store::put_batch`] of one chunk of a batch split in several calls (the node service's
    /// arena chunks): the chunk continues the chain of the calls before it, so if its first
    /// page's parent is not resident (the previous chunk declined it), the whole chunk is
    /// declined, as the tail of one big batch would be, rather than stored unreachable.
    ///
    /// # Errors
    /// As [`Store::put_batch`].
    pub fn put_batch_continuing(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        prefix_keys: &[&[u8]],
    ) -> Result<Vec<bool>> {
        self.put_chunk(keys, values, prefix_keys, true)
    }

    /// Stores pages that are not a chain: `keys[i]` is a child of `parent_keys[i]`, which may
    /// or may not be stored yet. This is how a hybrid model's sidecar entries (Mamba state,
    /// indexer pages) hang under their KV page: one appended frame for the batch, each entry
    /// lives no longer than its parent (deleting or evicting the parent takes it along, and
    /// the parent is no leaf while it has one), and a parent stored later counts it.
    ///
    /// # Errors
    /// As [`Store::put_batch`], plus a `parent_keys` of the wrong length.
    pub fn put_batch_with_parents(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        parent_keys: &[&[u8]],
    ) -> Result<Vec<bool>> {
        if parent_keys.len() != keys.len() {
            return Err(Error::InvalidArgument(format!(
                "put_batch_with_parents got {} keys but {} parent keys",
                keys.len(),
                parent_keys.len()
            )));
        }
        validate_put(keys, values, parent_keys)?;
        let parents = parent_keys.iter().map(|k| fingerprint(k)).collect();
        self.put_linked(keys, values, parents, Links::Parents)
    }

    fn put_chunk(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        prefix_keys: &[&[u8]],
        continuing: bool,
    ) -> Result<Vec<bool>> {
        validate_put(keys, values, prefix_keys)?;
        let links = if continuing {
            Links::ContinuedChain
        } else {
            Links::Chain
        };
        self.put_linked(keys, values, key::parents(keys, prefix_keys), links)
    }

    fn put_linked(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        parents: Vec<Fingerprint>,
        links: Links,
    ) -> Result<Vec<bool>> {
        debug_assert_eq!(parents.len(), keys.len());
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let _timer = Timer::start(&inner.counters.put_latency);
        let fps: Vec<Fingerprint> = keys.iter().map(|k| fingerprint(k)).collect();
        // Claimed before the residency check below, so that after waiting for a concurrent
        // put of the same pages, that check sees what it published.
        let absent: Vec<Fingerprint> = {
            let r = inner.residency.read();
            fps.iter().copied().filter(|&f| !r.contains(f)).collect()
        };
        let (_claim, waited) = inner.in_flight.claim(&absent);
        if waited {
            Counters::add(&inner.counters.put_waits, 1);
        }
        let mut results = vec![true; keys.len()];
        let mut chosen: Vec<usize> = Vec::with_capacity(keys.len());
        // Pages whose parent must still be resident when they are published. In a chain:
        // every page after the first (its parent is in this batch), and the first if its
        // prefix parent is resident now; a first page whose parent is not in the store is
        // stored anyway, as SGLang asks L3 for suffixes whose prefix sits in host memory.
        // With explicit parents: each page whose parent is resident now.
        let mut needs_parent = vec![links != Links::Parents; keys.len()];
        {
            let r = inner.residency.read();
            let mut seen = std::collections::HashSet::with_capacity(keys.len());
            for (i, fp) in fps.iter().enumerate() {
                if !r.contains(*fp) && seen.insert(*fp) {
                    chosen.push(i);
                }
            }
            let parent_resident = parents[0] != key::NO_PARENT && r.contains(parents[0]);
            if links == Links::ContinuedChain && parents[0] != key::NO_PARENT && !parent_resident {
                // Pages already stored stay `true`, as in a batch declined past its start.
                drop(r);
                for &i in &chosen {
                    results[i] = false;
                }
                Counters::add(&inner.counters.put_declined_pages, chosen.len() as u64);
                return Ok(results);
            }
            if links == Links::Parents {
                for (need, &parent) in needs_parent.iter_mut().zip(&parents) {
                    *need = parent != key::NO_PARENT && r.contains(parent);
                }
            } else {
                needs_parent[0] = parent_resident;
            }
        }
        // Reclamation and quota eviction below must not take a parent of what we publish.
        let _pins = inner.pins.pin(
            chosen
                .iter()
                .filter(|&&i| needs_parent[i])
                .map(|&i| parents[i]),
        );
        let existing = (keys.len() - chosen.len()) as u64;
        Counters::add(&inner.counters.put_existing_pages, existing);
        if existing > 0 {
            // A re-put is a second sighting: the page is wanted again.
            let chosen_set: std::collections::HashSet<usize> = chosen.iter().copied().collect();
            let again = (0..keys.len())
                .filter(|i| !chosen_set.contains(i))
                .map(|i| fps[i]);
            inner.residency.write().touch(again);
        }
        // Sighted before, though not resident: evicted (or declined) and wanted again.
        let mut seen_before = vec![false; keys.len()];
        if let Some(history) = &inner.history {
            let mut h = history.lock();
            for &i in &chosen {
                seen_before[i] = h.sight(fps[i]);
            }
        }
        if let Some(ghost) = &inner.ghost {
            let new_fps: Vec<Fingerprint> = chosen.iter().map(|&i| fps[i]).collect();
            let admitted = ghost.lock().admit(&new_fps);
            for &i in &chosen[admitted..] {
                results[i] = false;
            }
            Counters::add(
                &inner.counters.put_unadmitted_pages,
                (chosen.len() - admitted) as u64,
            );
            chosen.truncate(admitted);
        }
        let quota_from = self.quota_cutoff(&chosen, keys, values, &parents)?;
        decline(&mut results, &mut chosen, quota_from, &inner.counters);
        let (capacity_from, reservation) = self.capacity_cutoff(&chosen, values)?;
        decline(&mut results, &mut chosen, capacity_from, &inner.counters);
        if chosen.is_empty() {
            return Ok(results);
        }
        let pages: Vec<PutPage<'_>> = chosen
            .iter()
            .map(|&i| PutPage {
                key: keys[i],
                parent_fp: parents[i],
                parts: &values[i],
            })
            .collect();
        let queue = inner.put_queue(chosen.iter().map(|&i| fps[i]));
        let mut frame = PreparedFrame::put(&pages);
        let mut bytes = 0u64;
        // Set at the first page left unpublished; the rest of the batch (its descendants) is
        // left unpublished too, as garbage in the log, reclaimed like any other.
        let mut stopped: Option<Unpublished> = None;
        let mut unpublished = 0u64;
        // Unpublished entries that are not resident either: tombstoned right after, or a
        // replay after a crash (and every follower) would take them for pages.
        let mut tombstones: Vec<(&[u8], crate::key::Fingerprint)> = Vec::new();
        {
            let mut w = inner.vlog.lock_writer();
            let at = inner.vlog.append_to(&mut w, &mut frame, queue)?;
            drop(reservation); // the log now counts these bytes itself
            let mut r = inner.residency.write();
            let publish_started = std::time::Instant::now();
            let memtable_fill_bytes = inner.index.memtable_bytes();
            let mut published = 0u64;
            for (e, &i) in frame.entries().iter().zip(&chosen) {
                if r.contains(fps[i]) {
                    continue; // a concurrent writer published it first; ours is garbage
                }
                let mut slot =
                    Slot::new(at.segment_id, e.payload_len).with_ns(inner.quotas.ns_of(keys[i]));
                if seen_before[i] {
                    slot = slot.with_frequent();
                }
                // Pinned, a parent can still go by an explicit delete; the page would be
                // unreachable. Concurrent batches of one namespace all passed `quota_cutoff`;
                // the quota is enforced exactly here.
                if needs_parent[i] && !r.contains(parents[i]) {
                    if links == Links::Parents {
                        // Independent pages: only this one is unreachable.
                        unpublished += 1;
                        results[i] = false;
                        tombstones.push((keys[i], e.parent_fp));
                        continue;
                    }
                    stopped.get_or_insert(Unpublished::ParentGone);
                }
                if stopped.is_none()
                    && r.namespace(slot.ns).live_bytes + slot.bytes() > inner.quotas.quota(slot.ns)
                {
                    stopped = Some(Unpublished::OverQuota);
                }
                if let Some(why) = stopped {
                    if why == Unpublished::OverQuota {
                        inner.quotas.add_declined(slot.ns, 1);
                    }
                    unpublished += 1;
                    results[i] = false;
                    tombstones.push((keys[i], e.parent_fp));
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
                inner.index.insert(keys[i], fps[i], &rec);
                r.insert(fps[i], slot, e.parent_fp, at.seqno);
                bytes += e.payload_len;
                published += 1;
            }
            // Publication runs under the writer lock, so its cost limits every writer; the
            // controller fits it against memtable fill (docs/CONTROLLER.md).
            inner
                .counters
                .record_inserts(published, publish_started, memtable_fill_bytes);
            drop(r);
            if !tombstones.is_empty() {
                inner.log_deletes(&mut w, &tombstones)?;
            }
        }
        Counters::add(&inner.counters.put_declined_pages, unpublished);
        Counters::add(&inner.counters.put_pages, chosen.len() as u64 - unpublished);
        Counters::add(&inner.counters.put_bytes, bytes);
        inner.after_publish()?;
        Ok(results)
    }

    /// Index into `chosen` from which pages are declined for the log bound (capacity and
    /// free-space floor). Pages are taken in batch order and the rest declined once one does
    /// not fit, because a child is useless without its parent. What fits is reserved until the
    /// batch has appended (drop the returned guard then), so concurrent batches never add up
    /// past the bound.
    fn capacity_cutoff(
        &self,
        chosen: &[usize],
        values: &[Vec<&[u8]>],
    ) -> Result<(usize, LogReservation<'_>)> {
        let reserved = &self.inner.log_reserved_bytes;
        let none = LogReservation { reserved, bytes: 0 };
        let Some(cap) = self.inner.log_bound() else {
            return Ok((chosen.len(), none));
        };
        let page_bytes = |i: usize| {
            crate::vlog::format::align_up(values[i].iter().map(|p| p.len() as u64).sum())
        };
        // One header block per frame, plus aligned payloads.
        let need: u64 = 4096 + chosen.iter().map(|&i| page_bytes(i)).sum::<u64>();
        let others = *reserved.lock();
        if self.inner.vlog.total_bytes() + others + need > cap {
            // Full: reclaim inline rather than fail; whatever still does not fit is declined.
            self.inner.make_room(need + others)?;
        }
        let mut held = reserved.lock();
        let used = self.inner.vlog.total_bytes() + *held;
        let mut take = 4096u64;
        for (n, &i) in chosen.iter().enumerate() {
            if used + take + page_bytes(i) > cap {
                return Ok((
                    n,
                    reserve(&mut held, reserved, if n == 0 { 0 } else { take }),
                ));
            }
            take += page_bytes(i);
        }
        Ok((chosen.len(), reserve(&mut held, reserved, take)))
    }

    /// Deletes a page and every resident descendant (a descendant is reachable only through
    /// this page, so keeping it would waste space on something that can never hit). Returns
    /// whether the page existed. The deletion is logged, so it survives a crash like a put.
    /// Any number of descendants: they go in steps of 4,096 pages, leaves first, each its own
    /// Delete frame and writer-lock hold, so other writers wait for a step, and a crash
    /// between steps leaves a smaller tree, never an orphan.
    ///
    /// # Errors
    /// Invalid key, an I/O failure writing a tombstone, or [`Error::CascadeUnfinished`] if
    /// concurrent puts under the page kept the cascade from finishing (retry).
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        key::validate(key)?;
        if !self.inner.residency.read().contains(fingerprint(key)) {
            return Ok(false);
        }
        Ok(self.delete_with_descendants(vec![key.to_vec()], |_| Ok(true))? > 0)
    }

    /// Deletes exactly these pages, leaving their descendants in place, with one logged frame
    /// per 65536 pages; returns how many existed. For callers that run their own eviction
    /// policy (the trace replayer mirrors LRU/Belady simulators, which allow orphans); every
    /// other caller wants [`Store::delete`], which never leaves unreachable descendants.
    ///
    /// # Errors
    /// Invalid key, or an I/O failure writing the tombstones.
    pub fn remove_exact(&self, keys: &[&[u8]]) -> Result<usize> {
        for k in keys {
            key::validate(k)?;
        }
        let mut removed = 0;
        for chunk in keys.chunks(MAX_FRAME_RECORDS) {
            let mut w = self.inner.vlog.lock_writer();
            removed += self.delete_frame(&mut w, chunk)?;
        }
        self.inner.after_publish()?;
        Ok(removed)
    }

    /// Drops pages whose bytes failed verification, with their descendants — but only those
    /// still at the location that failed (a concurrent relocation or re-put wins).
    pub(crate) fn drop_if_unchanged(&self, pages: &[(&[u8], IndexRecord)]) -> Result<usize> {
        let roots: Vec<Vec<u8>> = pages.iter().map(|(k, _)| k.to_vec()).collect();
        self.delete_with_descendants(roots, |i| {
            let (k, rec) = &pages[i];
            Ok(self.inner.index.get(k)?.is_some_and(|now| now == *rec))
        })
    }

    /// Logs one Delete frame for those of `keys` (at most `MAX_FRAME_RECORDS`) that exist,
    /// under the writer lock `w`; returns how many existed.
    fn delete_frame(&self, w: &mut crate::vlog::Writer, keys: &[&[u8]]) -> Result<usize> {
        let inner = &self.inner;
        let mut found: Vec<(&[u8], Fingerprint)> = Vec::with_capacity(keys.len());
        for k in keys {
            if inner.residency.read().contains(fingerprint(k)) {
                if let Some(rec) = inner.index.get(k)? {
                    found.push((k, rec.parent_fp));
                }
            }
        }
        if found.is_empty() {
            return Ok(0);
        }
        let removed = inner.log_deletes(w, &found)?.len();
        Counters::add(&inner.counters.deletes, removed as u64);
        Ok(removed)
    }

    /// Removes every page and every segment. Crash-safe: a `Clear` frame opens a fresh segment
    /// before older segments are deleted, and replay honours it.
    ///
    /// # Errors
    /// I/O failures; the store stays usable and a retry completes the clear.
    pub fn clear(&self) -> Result<()> {
        let inner = &self.inner;
        {
            let mut w = inner.vlog.lock_writer();
            let fresh = inner.vlog.roll_now(&mut w)?;
            let mut frame = PreparedFrame::marker(FrameKind::Clear, &[]);
            inner.vlog.append(&mut w, &mut frame)?;
            inner.index.clear()?;
            inner.residency.write().clear();
            inner.vlog.remove_segments_below(fresh)?;
        }
        // After the writer lock is released: an evictor takes its queue lock before it.
        inner.quotas.clear_queues();
        Ok(())
    }
}

impl super::Inner {
    /// Logs one Delete frame for `pages` (key, parent fingerprint) and drops each from the
    /// residency set and the index. The caller holds the writer lock `w`, so whatever it
    /// checked before (leaf, namespace, segment) still holds. Returns the slots removed; pages
    /// already gone are skipped.
    pub(crate) fn log_deletes(
        &self,
        w: &mut crate::vlog::Writer,
        pages: &[(&[u8], Fingerprint)],
    ) -> Result<Vec<Slot>> {
        self.log_deletes_counted(w, pages, None)
    }

    /// The eviction queue a put frame of pages `fps` goes to: `Main` without S3-FIFO;
    /// under it, `Main` when at least half of them were evicted from probation and are
    /// wanted again (the ghost forgets them either way), else `Probation`.
    fn put_queue(&self, fps: impl Iterator<Item = Fingerprint>) -> Queue {
        let Some(ghost) = &self.evicted_ghost else {
            return Queue::Main;
        };
        let mut g = ghost.lock();
        let (mut pages, mut returning) = (0usize, 0usize);
        for fp in fps {
            pages += 1;
            returning += usize::from(g.take(fp));
        }
        drop(g);
        Counters::add(&self.counters.ghost_returned_pages, returning as u64);
        if pages > 0 && 2 * returning >= pages {
            Queue::Main
        } else {
            Queue::Probation
        }
    }

    /// [`Self::log_deletes`], adding the pages removed to `removed_counter` under the same
    /// residency lock that removes them, so `stats()` (which reads its page count under that
    /// lock too) never sees a page gone but not yet counted.
    pub(crate) fn log_deletes_counted(
        &self,
        w: &mut crate::vlog::Writer,
        pages: &[(&[u8], Fingerprint)],
        removed_counter: Option<&std::sync::atomic::AtomicU64>,
    ) -> Result<Vec<Slot>> {
        let records: Vec<(&[u8], Fingerprint, u32)> = {
            let r = self.residency.read();
            pages
                .iter()
                .map(|&(k, parent)| {
                    (
                        k,
                        parent,
                        r.slot(fingerprint(k)).map_or(0, |s| s.segment_id),
                    )
                })
                .collect()
        };
        let mut frame = PreparedFrame::deletes(&records);
        let at = self.vlog.append(w, &mut frame)?;
        let mut r = self.residency.write();
        let mut removed = Vec::with_capacity(pages.len());
        for &(k, parent) in pages {
            let fp = fingerprint(k);
            if let Some(slot) = r.remove(fp, parent) {
                self.index.remove(k, fp, parent, at.seqno);
                removed.push(slot);
            }
        }
        if let Some(c) = removed_counter {
            Counters::add(c, removed.len() as u64);
        }
        drop(r);
        Ok(removed)
    }
}

/// Log bytes a batch holds under the bound until it has appended; released on drop.
pub(crate) struct LogReservation<'a> {
    reserved: &'a parking_lot::Mutex<u64>,
    bytes: u64,
}

impl Drop for LogReservation<'_> {
    fn drop(&mut self) {
        let mut r = self.reserved.lock();
        debug_assert!(*r >= self.bytes, "reservation released twice");
        *r = r.saturating_sub(self.bytes);
    }
}

fn reserve<'a>(
    held: &mut u64,
    reserved: &'a parking_lot::Mutex<u64>,
    bytes: u64,
) -> LogReservation<'a> {
    *held += bytes;
    LogReservation { reserved, bytes }
}
