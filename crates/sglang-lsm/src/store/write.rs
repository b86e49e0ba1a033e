//! Writes: `put_batch`, `delete`, `clear`.

use super::residency::Slot;
use super::stats::Counters;
use super::Store;
use crate::error::{key_display, Error, Result};
use crate::index::IndexRecord;
use crate::key::{self, fingerprint, Fingerprint};
use crate::vlog::format::{FrameKind, MAX_FRAME_RECORDS};
use crate::vlog::frame::PutPage;
use crate::vlog::PreparedFrame;

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

impl Store {
    /// Stores a batch of pages as one contiguous vectored append, in batch (prefix) order.
    ///
    /// `values[i]` holds page i as consecutive parts (SGLang passes K then V). `keys[i-1]` is
    /// the parent of `keys[i]`; `prefix_keys` is the chain before `keys[0]` (its last element is
    /// `keys[0]`'s parent). Returns one flag per page: `true` if stored or already present,
    /// `false` if declined because the capacity bound is reached.
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
        validate_put(keys, values, prefix_keys)?;
        let inner = &self.inner;
        let parents = key::parents(keys, prefix_keys);
        let fps: Vec<Fingerprint> = keys.iter().map(|k| fingerprint(k)).collect();
        let mut results = vec![true; keys.len()];
        let mut chosen: Vec<usize> = Vec::with_capacity(keys.len());
        {
            let r = inner.residency.read();
            let mut seen = std::collections::HashSet::with_capacity(keys.len());
            for (i, fp) in fps.iter().enumerate() {
                if !r.contains(*fp) && seen.insert(*fp) {
                    chosen.push(i);
                }
            }
        }
        let existing = (keys.len() - chosen.len()) as u64;
        Counters::add(&inner.counters.put_existing_pages, existing);
        let declined_from = self.capacity_cutoff(&chosen, values);
        for &i in &chosen[declined_from..] {
            results[i] = false;
        }
        Counters::add(
            &inner.counters.put_declined_pages,
            (chosen.len() - declined_from) as u64,
        );
        chosen.truncate(declined_from);
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
        let mut frame = PreparedFrame::put(&pages);
        let mut bytes = 0u64;
        {
            let mut w = inner.vlog.lock_writer();
            let at = inner.vlog.append(&mut w, &mut frame)?;
            let mut r = inner.residency.write();
            for (e, &i) in frame.entries().iter().zip(&chosen) {
                if r.contains(fps[i]) {
                    continue; // a concurrent writer published it first; ours is garbage
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
                r.insert(fps[i], Slot::new(at.segment_id, e.payload_len));
                bytes += e.payload_len;
            }
        }
        Counters::add(&inner.counters.put_pages, chosen.len() as u64);
        Counters::add(&inner.counters.put_bytes, bytes);
        inner.after_publish()?;
        Ok(results)
    }

    /// Index into `chosen` from which pages are declined for capacity. Pages are taken in
    /// batch order and the rest declined once one does not fit, because a child is useless
    /// without its parent. Checked before the append lock, so concurrent batches can overshoot
    /// the bound by at most the batches in flight.
    fn capacity_cutoff(&self, chosen: &[usize], values: &[Vec<&[u8]>]) -> usize {
        let Some(cap) = self.inner.config.capacity_bytes else {
            return chosen.len();
        };
        let used: u64 = self.inner.vlog.segment_sizes().iter().map(|(_, l)| l).sum();
        // One header block per frame, plus aligned payloads.
        let mut need = 4096u64;
        for (n, &i) in chosen.iter().enumerate() {
            let len: u64 = values[i].iter().map(|p| p.len() as u64).sum();
            need += crate::vlog::format::align_up(len);
            if used + need > cap {
                return n;
            }
        }
        chosen.len()
    }

    /// Deletes a page. Returns whether it existed. The deletion is logged, so it survives a
    /// crash like a put does.
    ///
    /// # Errors
    /// Invalid key, or an I/O failure writing the tombstone.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        key::validate(key)?;
        Ok(self.delete_batch(&[key])? == 1)
    }

    /// Deletes several pages with one logged frame; returns how many existed.
    pub(crate) fn delete_batch(&self, keys: &[&[u8]]) -> Result<usize> {
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
        let mut frame = PreparedFrame::marker(FrameKind::Delete, &found);
        let mut removed = 0;
        {
            let mut w = inner.vlog.lock_writer();
            let at = inner.vlog.append(&mut w, &mut frame)?;
            let mut r = inner.residency.write();
            for (k, parent) in &found {
                let fp = fingerprint(k);
                if r.remove(fp).is_some() {
                    inner.index.remove(k, fp, *parent, at.seqno);
                    removed += 1;
                }
            }
        }
        Counters::add(&inner.counters.deletes, removed as u64);
        inner.after_publish()?;
        Ok(removed)
    }

    /// Removes every page and every segment. Crash-safe: a `Clear` frame opens a fresh segment
    /// before older segments are deleted, and replay honours it.
    ///
    /// # Errors
    /// I/O failures; the store stays usable and a retry completes the clear.
    pub fn clear(&self) -> Result<()> {
        let inner = &self.inner;
        let mut w = inner.vlog.lock_writer();
        let fresh = inner.vlog.roll_now(&mut w)?;
        let mut frame = PreparedFrame::marker(FrameKind::Clear, &[]);
        inner.vlog.append(&mut w, &mut frame)?;
        inner.index.clear()?;
        inner.residency.write().clear();
        inner.vlog.remove_segments_below(fresh)
    }
}
