//! Reads: `get_batch`, `get`, `probe`, `exists`.
//!
//! A batch is planned as I/Os: extents sorted by (segment, offset), adjacent ones coalesced into
//! one vectored read (gaps land in a scratch buffer), and the I/Os run in parallel. Every page
//! is verified against its checksum; a mismatch is a miss and the page is dropped.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::stats::Counters;
use super::Store;
use crate::controller::latency::Timer;
use crate::error::{Error, Result};
use crate::index::IndexRecord;
use crate::io::AlignedBuf;
use crate::key::{self, fingerprint};
use crate::vlog::format::align_up;
use crate::vlog::frame::page_crc;

/// A batch is read on the calling thread only when it is both small in bytes and in I/Os:
/// spawning threads (~20 us each) costs more than a few small reads, but 128 scattered
/// 4 KiB reads at queue depth 1 cost ~9 ms.
const PARALLEL_MIN_BYTES: u64 = 1 << 20;
const PARALLEL_MIN_IOS: usize = 8;
/// Coalesced reads are split to spread a batch over the read threads, but not below this.
const MIN_SPLIT_IO_BYTES: u64 = 1 << 20;
/// Pages this large are read with their own I/O. Merging pays where per-I/O cost dominates:
/// 64-page prefixes of 4 KiB pages read 1.11-1.15x faster merged, but of 128 KiB pages
/// 1.1-1.8x faster unmerged, 8 I/Os in flight (`bench` ablation, 2026-11-29).
const UNMERGED_PAGE_BYTES: u64 = 128 << 10;
/// Reads of one batch, counting re-reads of pages that background reclamation moved while
/// they were being read. A page moves at most once per reclaimed segment, and the reclaimer
/// takes one segment at a time, so a second move during one read is already rare.
const READ_ATTEMPTS: usize = 4;

struct PageRead<'b, 'a> {
    page: usize,
    rec: IndexRecord,
    bufs: &'b mut Vec<&'a mut [u8]>,
}

/// One coalesced read: consecutive extents of one segment.
struct IoPlan<'b, 'a> {
    segment_id: u32,
    pages: Vec<PageRead<'b, 'a>>,
}

impl IoPlan<'_, '_> {
    fn end(&self) -> u64 {
        self.pages.last().map_or(0, |p| p.rec.offset + p.rec.len)
    }
    fn start(&self) -> u64 {
        self.pages.first().map_or(0, |p| p.rec.offset)
    }
}

enum Outcome {
    Hit(u64),
    /// The extent is gone (its segment was reclaimed after the index lookup): the page moved
    /// or was evicted; `get_batch` looks it up again.
    Gone(IndexRecord),
    /// Bytes failed their checksum: a miss, and the page is dropped.
    Corrupt(IndexRecord),
    /// The read itself failed (an I/O error, a short read, or a destination the kernel could
    /// not write, EFAULT): a miss, but the page stays. Nothing proves its bytes are bad, and a
    /// caller's bad buffer must never cost the store a page.
    ReadFailed,
}

impl Store {
    /// Reads pages into caller buffers. `buffers[i]` receives page i as consecutive parts
    /// whose lengths must add up to the stored length. Returns one flag per page: `true` for a
    /// hit with verified bytes, `false` for a miss (absent, or dropped because its checksum
    /// failed — wrong bytes are never reported as a hit).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`], [`Error::LengthMismatch`] (checked before any read), index
    /// failures.
    pub fn get_batch(&self, keys: &[&[u8]], buffers: &mut [Vec<&mut [u8]>]) -> Result<Vec<bool>> {
        key::validate_get(keys, buffers.len())?;
        let inner = &self.inner;
        let _timer = Timer::start(&inner.counters.get_latency);
        Counters::add(&inner.counters.get_pages, keys.len() as u64);
        let mut found: Vec<Option<IndexRecord>> = vec![None; keys.len()];
        {
            let candidates: Vec<usize> = {
                let r = inner.residency.read();
                (0..keys.len())
                    .filter(|&i| r.contains(fingerprint(keys[i])))
                    .collect()
            };
            let started = std::time::Instant::now();
            let runs = inner.index.lookup_runs() as u64;
            let lookups = candidates.len() as u64;
            for i in candidates {
                found[i] = inner.index.get(keys[i])?;
            }
            if lookups > 0 {
                // The controller fits lookup cost against runs probed (docs/CONTROLLER.md).
                Counters::add(&inner.counters.index_lookups, lookups);
                Counters::add(&inner.counters.index_lookup_runs, lookups * runs);
                Counters::add(&inner.counters.index_lookup_us, super::elapsed_us(started));
            }
        }
        key::check_buffer_lengths(keys, buffers, found.iter().map(|r| r.map(|r| r.len)))?;
        let mut hits = vec![false; keys.len()];
        let mut corrupt: Vec<(&[u8], IndexRecord)> = Vec::new();
        let mut hit_bytes = 0;
        let mut read_failed = 0u64;
        let mut pending = found;
        for attempt in 1..=READ_ATTEMPTS {
            let mut reads: Vec<PageRead<'_, '_>> = pending
                .iter()
                .zip(buffers.iter_mut())
                .enumerate()
                .filter_map(|(page, (rec, bufs))| rec.map(|rec| PageRead { page, rec, bufs }))
                .collect();
            reads.sort_by_key(|r| (r.rec.segment_id, r.rec.offset));
            let plans = self.coalesce(reads);
            let outcomes = self.execute(keys, plans);
            pending = vec![None; keys.len()];
            let mut moved = 0;
            for (page, outcome) in outcomes {
                match outcome {
                    Outcome::Hit(len) => {
                        hits[page] = true;
                        hit_bytes += len;
                    }
                    // Background reclamation removed the segment between our index lookup
                    // and the read: the page was relocated (read it at its new place) or
                    // evicted (a miss). Not a fault, so not a corrupt page either.
                    Outcome::Gone(was) => {
                        let now = inner.index.get(keys[page])?;
                        if let Some(now) = now.filter(|n| *n != was && n.len == was.len) {
                            pending[page] = Some(now);
                            moved += 1;
                        }
                    }
                    Outcome::Corrupt(rec) => corrupt.push((keys[page], rec)),
                    Outcome::ReadFailed => read_failed += 1,
                }
            }
            if moved == 0 {
                break;
            }
            tracing::trace!(attempt, moved, "pages moved while read; reading them again");
        }
        if hit_bytes > 0 {
            let touched = (0..keys.len())
                .filter(|&i| hits[i])
                .map(|i| fingerprint(keys[i]));
            inner.residency.write().touch(touched);
        }
        let hit_count = hits.iter().filter(|&&h| h).count() as u64;
        Counters::add(&inner.counters.get_hits, hit_count);
        Counters::add(&inner.counters.get_misses, keys.len() as u64 - hit_count);
        Counters::add(&inner.counters.get_bytes, hit_bytes);
        if read_failed > 0 {
            Counters::add(&inner.counters.get_read_errors, read_failed);
        }
        if !corrupt.is_empty() {
            Counters::add(&inner.counters.get_corrupt, corrupt.len() as u64);
            tracing::warn!(
                pages = corrupt.len(),
                "checksum mismatch: pages dropped and reported as misses"
            );
            if let Err(e) = self.drop_if_unchanged(&corrupt) {
                tracing::error!(error = %e, "could not drop corrupt pages; they stay misses");
            }
        }
        Ok(hits)
    }

    fn coalesce<'b, 'a>(&self, reads: Vec<PageRead<'b, 'a>>) -> Vec<IoPlan<'b, 'a>> {
        let gap_max = self.inner.knobs.coalesce_gap_bytes();
        // Merged reads no larger than an equal share per read thread: one 8 MiB prefix read
        // as two 4 MiB I/Os kept 6 of 8 threads idle and made cold prefix reads 1.3x slower
        // than no coalescing at all (bench ablation). Never below 1 MiB (the disk's sweet spot).
        let total_bytes: u64 = reads.iter().map(|r| r.rec.len).sum();
        let share = total_bytes.div_ceil(self.inner.knobs.read_threads().max(1) as u64);
        let io_max = self
            .inner
            .config
            .max_io_bytes
            .min(share.max(MIN_SPLIT_IO_BYTES));
        let enabled = self.inner.config.coalesce_reads;
        let mut plans: Vec<IoPlan<'b, 'a>> = Vec::new();
        for r in reads {
            if let Some(cur) = plans.last_mut().filter(|_| enabled) {
                let end = cur.end();
                let small = |len: u64| len < UNMERGED_PAGE_BYTES;
                let joins = small(r.rec.len)
                    && cur.pages.first().is_some_and(|p| small(p.rec.len))
                    && cur.segment_id == r.rec.segment_id
                    && r.rec.offset >= end
                    && r.rec.offset - end <= gap_max
                    && r.rec.offset + r.rec.len - cur.start() <= io_max;
                if joins {
                    cur.pages.push(r);
                    continue;
                }
            }
            plans.push(IoPlan {
                segment_id: r.rec.segment_id,
                pages: vec![r],
            });
        }
        plans
    }

    fn execute(&self, keys: &[&[u8]], plans: Vec<IoPlan<'_, '_>>) -> Vec<(usize, Outcome)> {
        Counters::add(&self.inner.counters.read_ios, plans.len() as u64);
        let total: u64 = plans.iter().map(|p| p.end() - p.start()).sum();
        let threads = self.inner.knobs.read_threads().min(plans.len());
        if threads <= 1 || (total < PARALLEL_MIN_BYTES && plans.len() < PARALLEL_MIN_IOS) {
            return plans
                .into_iter()
                .flat_map(|p| self.run_io(keys, p))
                .collect();
        }
        // Work-stealing by index: big and small I/Os balance across threads.
        let slots: Vec<parking_lot::Mutex<Option<IoPlan<'_, '_>>>> = plans
            .into_iter()
            .map(|p| parking_lot::Mutex::new(Some(p)))
            .collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Relaxed);
                            let Some(slot) = slots.get(i) else { break };
                            if let Some(plan) = slot.lock().take() {
                                out.extend(self.run_io(keys, plan));
                            }
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    }

    /// Performs one coalesced read and verifies each page.
    fn run_io(&self, keys: &[&[u8]], mut plan: IoPlan<'_, '_>) -> Vec<(usize, Outcome)> {
        let Some(seg) = self.inner.vlog.segment(plan.segment_id) else {
            // Reclaimed after we looked the records up: the pages moved or were evicted.
            return plan
                .pages
                .iter()
                .map(|p| (p.page, Outcome::Gone(p.rec)))
                .collect();
        };
        let start = plan.start();
        // Gaps between extents (padding and skipped records) go to scratch space.
        let gaps: Vec<u64> = plan
            .pages
            .windows(2)
            .map(|w| w[1].rec.offset - (w[0].rec.offset + w[0].rec.len))
            .collect();
        let mut scratch =
            AlignedBuf::zeroed(gaps.iter().map(|g| align_up(*g)).sum::<u64>() as usize);
        let read = {
            let mut rest: &mut [u8] = &mut scratch;
            let mut iov: Vec<&mut [u8]> = Vec::new();
            let mut pages = plan.pages;
            for (i, p) in pages.iter_mut().enumerate() {
                iov.extend(p.bufs.iter_mut().map(|b| &mut b[..]));
                if let Some(&g) = gaps.get(i) {
                    let (gap, tail) = std::mem::take(&mut rest).split_at_mut(align_up(g) as usize);
                    iov.push(&mut gap[..g as usize]);
                    rest = tail;
                }
            }
            let read = seg.read_into(&mut iov, start, self.inner.config.direct_read);
            drop(iov);
            plan.pages = pages;
            read
        };
        if let Err(e) = read {
            tracing::warn!(
                segment = plan.segment_id,
                offset = start,
                pages = plan.pages.len(),
                error = %e,
                "read failed: pages reported as misses and kept"
            );
            return plan
                .pages
                .iter()
                .map(|p| (p.page, Outcome::ReadFailed))
                .collect();
        }
        plan.pages
            .iter()
            .map(|p| {
                let crc = page_crc(keys[p.page], p.bufs.iter().map(|b| &**b));
                let outcome = if crc == p.rec.crc {
                    Outcome::Hit(p.rec.len)
                } else {
                    Outcome::Corrupt(p.rec)
                };
                (p.page, outcome)
            })
            .collect()
    }

    /// Reads one page into a new vector, or `None` on a miss.
    ///
    /// # Errors
    /// Invalid key or index failure.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        key::validate(key)?;
        if !self.inner.residency.read().contains(fingerprint(key)) {
            Counters::add(&self.inner.counters.get_pages, 1);
            Counters::add(&self.inner.counters.get_misses, 1);
            return Ok(None);
        }
        let Some(rec) = self.inner.index.get(key)? else {
            return Ok(None);
        };
        let len = usize::try_from(rec.len)
            .map_err(|_| Error::InvalidArgument("page larger than memory".into()))?;
        let mut buf = vec![0u8; len];
        let hit = {
            let mut parts: Vec<Vec<&mut [u8]>> = vec![vec![&mut buf[..]]];
            self.get_batch(&[key], &mut parts)?[0]
        };
        Ok(hit.then_some(buf))
    }

    /// The number of consecutive keys, from the start, that are present. `prefix_keys` (the
    /// chain before `keys`) is accepted for symmetry with `put_batch` and does not change the
    /// count. One in-memory pass, no I/O.
    ///
    /// # Errors
    /// Invalid key.
    pub fn probe(&self, keys: &[&[u8]], prefix_keys: &[&[u8]]) -> Result<usize> {
        for k in keys.iter().chain(prefix_keys) {
            key::validate(k)?;
        }
        let fps: Vec<u64> = keys.iter().map(|k| fingerprint(k)).collect();
        let n = {
            let r = self.inner.residency.read();
            r.leading_present(&fps)
        };
        Counters::add(&self.inner.counters.probes, 1);
        Counters::add(&self.inner.counters.probe_keys, keys.len() as u64);
        Ok(n)
    }

    /// Whether each page is present, in one pass over the residency set: how a hybrid
    /// model's sidecar entries are checked, whose stop points are not a leading run.
    ///
    /// # Errors
    /// Invalid key.
    pub fn exists_batch(&self, keys: &[&[u8]]) -> Result<Vec<bool>> {
        for k in keys {
            key::validate(k)?;
        }
        let fps: Vec<u64> = keys.iter().map(|k| fingerprint(k)).collect();
        let r = self.inner.residency.read();
        let present = fps.iter().map(|&fp| r.contains(fp)).collect();
        drop(r);
        Counters::add(&self.inner.counters.probes, 1);
        Counters::add(&self.inner.counters.probe_keys, keys.len() as u64);
        Ok(present)
    }

    /// Whether a page is present.
    ///
    /// # Errors
    /// Invalid key.
    pub fn exists(&self, key: &[u8]) -> Result<bool> {
        key::validate(key)?;
        Ok(self.inner.residency.read().contains(fingerprint(key)))
    }
}
