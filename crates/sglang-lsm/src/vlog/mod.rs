//! The value log: append-only segments of frames, one frame per batch.
//!
//! Why our own log instead of a crate: tensors must go from the caller's (K, V) buffers to disk
//! with one vectored write and no staging copy, land 4 KiB-aligned for O_DIRECT, carry their
//! own checksums and sequence numbers (the log is also the index's write-ahead log), and be
//! reclaimed a whole segment at a time. See docs/DESIGN.md.

mod bounce;
pub mod format;
pub mod frame;
pub mod quarantine;
pub(crate) mod replay;
pub mod segment;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::config::Durability;
use crate::error::{Error, Result};
use crate::io::{self, FaultInjector, IO_ALIGN};
use bounce::Bounce;

pub use frame::PreparedFrame;
pub use quarantine::Quarantined;
pub use replay::ReplayedFrame;
pub use segment::Queue;

use segment::Segment;

/// Value-log options derived from the store config.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Roll to a new segment once the active one would exceed this.
    pub segment_bytes: u64,
    /// O_DIRECT for aligned appends.
    pub direct_write: bool,
    /// O_DIRECT for aligned reads.
    pub direct_read: bool,
    /// Power-loss durability mode.
    pub durability: Durability,
}

/// One segment as the S3-FIFO victim choice sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Segment id.
    pub id: u32,
    /// File bytes.
    pub bytes: u64,
    /// Its eviction queue.
    pub queue: Queue,
    /// Bytes the log appended since it became active (since open, for a segment found then).
    pub age_bytes: u64,
}

/// The single append point. Holding its lock serialises appends, which keeps every frame
/// complete before the next begins (torn data can only be at the tail) and lets the store
/// publish index records in sequence-number order.
pub struct Writer {
    active: Arc<Segment>,
    tail: u64,
    next_seqno: u64,
    unsynced: bool,
    /// Whether the active segment holds a Put frame: only then does a change of eviction
    /// queue seal it. One of Delete frames alone changes queue in place, or every
    /// reclamation's tombstones would leave a segment of their own behind, which the next
    /// reclamation takes (dead) and whose tombstones it carries forward into yet another.
    active_has_puts: bool,
    /// Aligned staging for frames whose caller buffers O_DIRECT cannot take directly.
    bounce: Bounce,
}

impl Writer {
    /// The sequence number the next frame will get.
    #[must_use]
    pub fn next_seqno(&self) -> u64 {
        self.next_seqno
    }
}

/// Where an appended frame landed.
#[derive(Clone, Copy, Debug)]
pub struct Appended {
    /// Segment holding the frame.
    pub segment_id: u32,
    /// Offset of the frame's first byte in that segment.
    pub frame_offset: u64,
    /// The frame's sequence number.
    pub seqno: u64,
}

/// Append-only value log over a directory of segments.
pub struct ValueLog {
    dir: PathBuf,
    /// Mirrors of writer state readable without the lock (victim choice, ages).
    active_id: AtomicU32,
    next_seqno: AtomicU64,
    /// Bytes appended since open (frames of every kind): the clock of segment ages.
    appended_bytes: AtomicU64,
    opts: LogOptions,
    segments: RwLock<BTreeMap<u32, Arc<Segment>>>,
    writer: Mutex<Writer>,
    faults: Arc<FaultInjector>,
    /// Every file in the quarantine folder at open, this open's first.
    quarantined: Vec<Quarantined>,
    parents_lost_after_seqno: Option<u64>,
    /// Entries a torn tail frame lost at open. Their offsets are never written again (appends
    /// go past the repaired frame), so the map stays true for the life of the log.
    dropped_at_open: replay::DroppedEntries,
}

impl ValueLog {
    /// Opens (or creates) the log in `dir`, replaying every frame with seqno `> after_seqno`
    /// through `on_frame` in log order, and truncating a torn tail. Segments that fail
    /// validation are quarantined and added to `quarantined`, even if the open then fails;
    /// pass them back to a retry of the same open, so it knows what this open lost.
    pub fn open(
        dir: &Path,
        opts: LogOptions,
        faults: Arc<FaultInjector>,
        after_seqno: Option<u64>,
        quarantined: &mut Vec<Quarantined>,
        on_frame: impl FnMut(ReplayedFrame) -> Result<()>,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let scanned = replay::scan(dir, &opts, after_seqno, quarantined, on_frame)?;
        let mut segments: BTreeMap<u32, Arc<Segment>> = scanned
            .segments
            .into_iter()
            .map(|s| (s.id, Arc::new(s)))
            .collect();
        let active = match segments.last_key_value() {
            // A full (or, after a config change, oversized) last segment stays sealed, so the
            // reclaimer can take it; appends start a fresh one.
            Some((_, seg)) if seg.len_bytes() < opts.segment_bytes => Arc::clone(seg),
            _ => {
                let seg = Arc::new(Segment::create(
                    dir,
                    scanned.next_segment_id,
                    opts.direct_write || opts.direct_read,
                    opts.durability != Durability::None,
                    &faults,
                )?);
                segments.insert(seg.id, Arc::clone(&seg));
                seg
            }
        };
        let tail = active.len_bytes();
        let mut quarantined = quarantined.clone();
        for path in quarantine::list(dir)? {
            if quarantined.iter().all(|q| q.path != path) {
                quarantined.push(Quarantined {
                    id: quarantine::id_of(&path).unwrap_or(0),
                    path,
                    reason: "set aside by an earlier open".into(),
                });
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            active_id: AtomicU32::new(active.id),
            next_seqno: AtomicU64::new(scanned.next_seqno),
            appended_bytes: AtomicU64::new(0),
            opts,
            segments: RwLock::new(segments),
            writer: Mutex::new(Writer {
                active,
                tail,
                next_seqno: scanned.next_seqno,
                unsynced: false,
                // A reopened active segment may hold pages; under S3-FIFO the first put
                // seals it (it is Main) rather than mix probation pages into it.
                active_has_puts: tail > format::SEGMENT_HEADER_BYTES,
                bounce: Bounce::default(),
            }),
            faults,
            quarantined,
            parents_lost_after_seqno: scanned.parents_lost_after_seqno,
            dropped_at_open: scanned.dropped,
        })
    }

    /// Takes the append lock.
    pub fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock()
    }

    /// Appends one frame under the writer lock. On failure nothing is published, the tail is
    /// rolled back (so the next append overwrites the partial bytes) and the error names the
    /// file; the log stays usable.
    pub fn append(&self, w: &mut Writer, frame: &mut PreparedFrame<'_>) -> Result<Appended> {
        let queue = w.active.queue();
        self.append_to(w, frame, queue)
    }

    /// [`Self::append`] into a segment of eviction queue `queue`: the active segment is
    /// sealed first if it holds frames of the other queue, so no segment mixes the two.
    pub fn append_to(
        &self,
        w: &mut Writer,
        frame: &mut PreparedFrame<'_>,
        queue: Queue,
    ) -> Result<Appended> {
        let frame_len = frame.frame_len();
        let has_frames = w.tail > format::SEGMENT_HEADER_BYTES;
        let full = has_frames && w.tail + frame_len > self.opts.segment_bytes;
        if full || (w.active_has_puts && w.active.queue() != queue) {
            self.roll(w, queue)?;
        } else if w.active.queue() != queue {
            // No page in it yet: it simply changes queue.
            w.active.set_queue(queue);
        }
        debug_assert_eq!(w.active.queue(), queue);
        let seqno = w.next_seqno;
        frame.seal(seqno);
        let seg = Arc::clone(&w.active);
        let offset = w.tail;
        let written = match seg.direct() {
            Some(d) if self.opts.direct_write && frame.direct_compatible() => {
                io::pwritev_all(d, &frame.iovecs(), offset, IO_ALIGN, &self.faults)
            }
            // Unaligned caller memory (e.g. torch's 64-byte-aligned CPU tensors): a memcpy
            // into an aligned buffer plus O_DIRECT beats the page cache several-fold here.
            Some(d) if self.opts.direct_write => {
                w.bounce.write(d, &frame.iovecs(), offset, &self.faults)
            }
            _ => io::pwritev_all(seg.file(), &frame.iovecs(), offset, 1, &self.faults),
        };
        if let Err(e) = written {
            // Drop the partial bytes so a reopen does not have to; failure to truncate is
            // harmless because the next append overwrites from `offset` anyway.
            let _ = seg.file().set_len(offset);
            return Err(Error::io(&seg.path, e));
        }
        if self.opts.durability == Durability::Batch {
            io::fdatasync(seg.file()).map_err(|e| Error::io(&seg.path, e))?;
        } else {
            w.unsynced = true;
        }
        w.tail = offset + frame_len;
        w.active_has_puts |= frame.is_put();
        self.appended_bytes.fetch_add(frame_len, Relaxed);
        w.next_seqno += 1;
        self.next_seqno.store(w.next_seqno, Relaxed);
        seg.set_len_bytes(w.tail);
        Ok(Appended {
            segment_id: seg.id,
            frame_offset: offset,
            seqno,
        })
    }

    fn roll(&self, w: &mut Writer, queue: Queue) -> Result<()> {
        let sync = self.opts.durability != Durability::None;
        if sync && w.unsynced {
            io::fdatasync(w.active.file()).map_err(|e| Error::io(&w.active.path, e))?;
            w.unsynced = false;
        }
        let id = w.active.id.checked_add(1).ok_or_else(|| {
            Error::InvalidArgument("segment id space exhausted; clear the store".into())
        })?;
        let seg = Arc::new(Segment::create(
            &self.dir,
            id,
            self.opts.direct_write || self.opts.direct_read,
            sync,
            &self.faults,
        )?);
        seg.set_queue(queue);
        seg.set_born_at(self.appended_bytes.load(Relaxed));
        self.segments.write().insert(id, Arc::clone(&seg));
        w.tail = seg.len_bytes();
        w.active_has_puts = false;
        self.active_id.store(id, Relaxed);
        w.active = seg;
        Ok(())
    }

    /// Starts a fresh segment now (used by `clear`, so its marker frame opens a segment).
    pub fn roll_now(&self, w: &mut Writer) -> Result<u32> {
        let queue = w.active.queue();
        self.roll(w, queue)?;
        Ok(w.active.id)
    }

    /// Deletes every segment with an id below `id` (after a `Clear` frame made them dead).
    pub fn remove_segments_below(&self, id: u32) -> Result<()> {
        let old: Vec<Arc<Segment>> = {
            let mut segs = self.segments.write();
            let old_ids: Vec<u32> = segs.range(..id).map(|(k, _)| *k).collect();
            old_ids.iter().filter_map(|k| segs.remove(k)).collect()
        };
        if old.is_empty() {
            return Ok(());
        }
        for seg in old {
            std::fs::remove_file(&seg.path).map_err(|e| Error::io(&seg.path, e))?;
        }
        io::sync_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))
    }

    /// Whether the active segment holds any frame.
    #[must_use]
    pub fn active_has_frames(&self, w: &Writer) -> bool {
        w.tail > format::SEGMENT_HEADER_BYTES
    }

    /// Deletes one segment file (reclamation). Readers holding its handle finish safely.
    pub fn remove_segment(&self, id: u32) -> Result<()> {
        if id == self.active_id.load(Relaxed) {
            return Err(Error::InvalidArgument(format!(
                "segment {id} is the active segment and cannot be removed"
            )));
        }
        let Some(seg) = self.segments.write().remove(&id) else {
            return Ok(());
        };
        std::fs::remove_file(&seg.path).map_err(|e| Error::io(&seg.path, e))?;
        if self.opts.durability != Durability::None {
            io::sync_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        }
        Ok(())
    }

    /// Frame headers of a segment, in log order, with their offsets.
    pub fn frames(&self, id: u32) -> Vec<(u64, format::FrameHeader)> {
        let Some(seg) = self.segment(id) else {
            return Vec::new();
        };
        let len = seg.len_bytes();
        let mut out = Vec::new();
        let mut offset = format::SEGMENT_HEADER_BYTES;
        while let Some(h) = replay::read_frame(&seg, offset, len) {
            let next = offset + h.frame_len;
            out.push((offset, h));
            offset = next;
        }
        out
    }

    /// Id of the segment appends go to.
    #[must_use]
    pub fn active_segment_id(&self) -> u32 {
        self.active_id.load(Relaxed)
    }

    /// The sequence number the next frame will get (a clock for ages).
    #[must_use]
    pub fn next_seqno(&self) -> u64 {
        self.next_seqno.load(Relaxed)
    }

    /// Bytes of all segments.
    #[must_use]
    pub fn total_bytes(&self) -> u64 {
        self.segments.read().values().map(|s| s.len_bytes()).sum()
    }

    /// The segment with this id, if it still exists.
    #[must_use]
    pub fn segment(&self, id: u32) -> Option<Arc<Segment>> {
        self.segments.read().get(&id).cloned()
    }

    /// Ids and lengths of every segment.
    #[must_use]
    pub fn segment_sizes(&self) -> Vec<(u32, u64)> {
        self.segments
            .read()
            .values()
            .map(|s| (s.id, s.len_bytes()))
            .collect()
    }

    /// Id, length, eviction queue and age of every segment.
    #[must_use]
    pub fn segment_queues(&self) -> Vec<SegmentInfo> {
        let appended = self.appended_bytes.load(Relaxed);
        self.segments
            .read()
            .values()
            .map(|s| SegmentInfo {
                id: s.id,
                bytes: s.len_bytes(),
                queue: s.queue(),
                age_bytes: appended.saturating_sub(s.born_at_appended_bytes()),
            })
            .collect()
    }

    /// `fdatasync`s the active segment if anything was appended since the last sync.
    pub fn sync(&self) -> Result<()> {
        let seg = {
            let mut w = self.writer.lock();
            if !w.unsynced {
                return Ok(());
            }
            w.unsynced = false;
            Arc::clone(&w.active)
        };
        io::fdatasync(seg.file()).map_err(|e| Error::io(&seg.path, e))
    }

    /// Segment files in the quarantine folder when the log was opened.
    #[must_use]
    pub fn quarantined(&self) -> &[Quarantined] {
        &self.quarantined
    }

    /// Set when a segment quarantined by this open may have held frames the index never saw:
    /// pages put after this sequence number whose parent is absent may have lost it there.
    #[must_use]
    pub fn parents_lost_after_seqno(&self) -> Option<u64> {
        self.parents_lost_after_seqno
    }

    /// Whether the log still holds the page an index record names: its segment exists, the
    /// extent lies within the segment's complete frames, and open did not drop it from a
    /// torn tail frame. A record that fails this names bytes that are gone or were never
    /// whole (a truncated file), and must be forgotten, with its descendants.
    #[must_use]
    pub fn holds(&self, key: &[u8], segment_id: u32, offset: u64, len: u64) -> bool {
        let Some(seg) = self.segment(segment_id) else {
            return false;
        };
        let within = offset
            .checked_add(len)
            .is_some_and(|end| end <= seg.len_bytes());
        let dropped = self
            .dropped_at_open
            .get(&(segment_id, offset))
            .is_some_and(|keys| keys.iter().any(|k| k == key));
        within && !dropped
    }

    /// The shared fault injector (tests arm it).
    #[must_use]
    pub fn faults(&self) -> &Arc<FaultInjector> {
        &self.faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::NO_PARENT;
    use frame::PutPage;

    fn open_log(dir: &Path) -> ValueLog {
        let opts = LogOptions {
            segment_bytes: 64 << 20,
            direct_write: false,
            direct_read: false,
            durability: Durability::None,
        };
        ValueLog::open(
            dir,
            opts,
            Arc::new(FaultInjector::default()),
            None,
            &mut Vec::new(),
            |_| Ok(()),
        )
        .expect("open log")
    }

    fn put(log: &ValueLog, key: &[u8], queue: Queue) -> u32 {
        let payload = [7u8; 4096];
        let parts: [&[u8]; 1] = [&payload];
        let pages = [PutPage {
            key,
            parent_fp: NO_PARENT,
            parts: &parts,
        }];
        let mut w = log.lock_writer();
        let mut frame = PreparedFrame::put(&pages);
        log.append_to(&mut w, &mut frame, queue)
            .expect("append")
            .segment_id
    }

    fn delete(log: &ValueLog, key: &[u8]) -> u32 {
        let mut w = log.lock_writer();
        let mut frame = PreparedFrame::deletes(&[(key, NO_PARENT, 0)]);
        log.append(&mut w, &mut frame).expect("append").segment_id
    }

    #[test]
    fn a_segment_holds_the_pages_of_one_queue_and_ages_by_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open_log(dir.path());
        let first = put(&log, b"a", Queue::Probation);
        assert_eq!(
            put(&log, b"b", Queue::Probation),
            first,
            "same queue: same segment"
        );
        assert_eq!(delete(&log, b"a"), first, "a Delete frame never seals");
        let main = put(&log, b"c", Queue::Main);
        assert!(main > first, "a page of the other queue seals the segment");
        // A segment of Delete frames alone changes queue in place rather than being sealed,
        // so tombstones never fill segments of their own.
        let mut w = log.lock_writer();
        let tombstones_only = log.roll_now(&mut w).expect("roll");
        drop(w);
        assert_eq!(delete(&log, b"b"), tombstones_only);
        assert_eq!(put(&log, b"d", Queue::Probation), tombstones_only);
        let info = log.segment_queues();
        let queue_of = |id: u32| info.iter().find(|s| s.id == id).map(|s| s.queue);
        assert_eq!(queue_of(first), Some(Queue::Probation));
        assert_eq!(queue_of(main), Some(Queue::Main));
        assert_eq!(queue_of(tombstones_only), Some(Queue::Probation));
        let age = |id: u32| info.iter().find(|s| s.id == id).map_or(0, |s| s.age_bytes);
        assert!(
            age(first) > age(main) && age(main) > age(tombstones_only),
            "older segments have seen more appends: {info:?}"
        );
    }
}
