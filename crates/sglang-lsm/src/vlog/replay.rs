//! Opening the log: find segments, skip what the index already persisted, replay the rest,
//! and cut a torn tail.

use std::fs::File;
use std::path::Path;

use super::format::{self, FrameHeader, FrameKind, SEGMENT_HEADER_BYTES};
use super::frame::page_crc;
use super::quarantine::{self, Quarantined};
use super::segment::{self, Segment};
use super::LogOptions;
use crate::error::{Error, Result};
use crate::io::{self, IO_ALIGN};

/// A complete, checksummed frame found while opening.
pub struct ReplayedFrame {
    /// Decoded header.
    pub header: FrameHeader,
    /// Segment holding it.
    pub segment_id: u32,
    /// Offset of the frame in the segment.
    pub frame_offset: u64,
}

/// Entries of a repaired torn frame that the log no longer lists: keys by (segment id,
/// absolute payload offset).
pub type DroppedEntries = std::collections::HashMap<(u32, u64), Vec<Vec<u8>>>;

pub(super) struct Scanned {
    pub segments: Vec<Segment>,
    pub next_segment_id: u32,
    pub next_seqno: u64,
    /// Set when a quarantined segment may have held frames the index never saw: pages put
    /// after this sequence number may have lost a parent that only that segment named.
    pub parents_lost_after_seqno: Option<u64>,
    /// Entries a torn tail frame lost, by (segment id, absolute payload offset), with their
    /// keys: also those whose bytes are still in the file (rotten, or orphaned by a lost
    /// parent). An index record naming one of them names a page the log no longer holds.
    pub dropped: DroppedEntries,
}

/// Segment ids in `dir`, ascending.
pub(crate) fn list_segment_ids(dir: &Path) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_file_name)
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Reads the frame header at `offset`, or `None` when there is no complete, valid frame there.
pub(super) fn read_frame(seg: &Segment, offset: u64, file_len: u64) -> Option<FrameHeader> {
    read_frame_at(seg.file(), offset, file_len)
}

/// [`read_frame`] on any handle of a segment file (the follower's read-only ones).
pub(crate) fn read_frame_at(file: &File, offset: u64, file_len: u64) -> Option<FrameHeader> {
    if offset + IO_ALIGN as u64 > file_len {
        return None;
    }
    let mut block = vec![0u8; IO_ALIGN];
    io::pread_all(file, &mut block, offset).ok()?;
    let prefix = format::decode_prefix(&block)?;
    if offset + prefix.frame_len > file_len {
        return None; // torn: the write never finished
    }
    if prefix.header_len > block.len() {
        block.resize(prefix.header_len, 0);
        io::pread_all(file, &mut block, offset).ok()?;
    }
    format::decode_header(&block)
}

/// The entries that pass `intact`, less every descendant (within the frame) of one that does
/// not: replaying a child whose parent rotted would leave a page `exists` counts and `probe`
/// can never reach (issue 14). A batch lists a chain parent first, but the loop does not rely
/// on that: it repeats until nothing more drops, at most once per entry.
fn intact_without_orphans(
    entries: Vec<format::EntryMeta>,
    intact: impl Fn(&format::EntryMeta) -> bool,
) -> Vec<format::EntryMeta> {
    let (mut kept, rotten): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| intact(e));
    let mut dropped: std::collections::HashSet<u64> = rotten
        .iter()
        .map(|e| crate::key::fingerprint(&e.key))
        .collect();
    for _ in 0..=kept.len() {
        let (orphans, rest): (Vec<_>, Vec<_>) = kept
            .into_iter()
            .partition(|e| dropped.contains(&e.parent_fp));
        kept = rest;
        if orphans.is_empty() {
            break;
        }
        dropped.extend(orphans.iter().map(|e| crate::key::fingerprint(&e.key)));
    }
    kept
}

/// A frame header at `offset` that decodes and checksums but whose frame runs past
/// `file_len`: the tail was torn (a crash mid-append) or cut (a truncated file). `None` when
/// not even the header is whole.
fn read_torn_header(file: &File, offset: u64, file_len: u64) -> Option<FrameHeader> {
    let avail = usize::try_from(file_len.checked_sub(offset)?).ok()?;
    let mut block = vec![0u8; avail.min(IO_ALIGN)];
    io::pread_all(file, &mut block, offset).ok()?;
    let prefix = format::decode_prefix(&block)?;
    if prefix.header_len > avail {
        return None;
    }
    if prefix.header_len > block.len() {
        block.resize(prefix.header_len, 0);
        io::pread_all(file, &mut block, offset).ok()?;
    }
    format::decode_header(&block)
}

/// What [`repair_torn_tail`] made of a torn last frame.
struct Repaired {
    /// The frame as it now stands in the file: only entries whose payloads are whole and
    /// verify, and no entry whose parent (within the frame) was lost.
    header: FrameHeader,
    /// The entries that were dropped, as they were in the frame.
    dropped: Vec<format::EntryMeta>,
}

/// Salvages the torn last frame at `offset` of the last segment (issue 14.5). Every entry
/// carries its own checksum, so an entry whose payload lies wholly before the cut and verifies
/// is a good page even though its frame is incomplete. Keeps those (less the in-frame
/// descendants of the lost ones: no orphan) by making the frame complete again: the file is
/// cut (or zero-extended, when only padding was lost) to the end of the last kept payload,
/// then the header is rewritten to list only the kept entries, then synced. The log is then
/// self-describing again, so replay, a follower and an index rebuild all see the same frame.
///
/// Crash safety: until the header is rewritten the old header still names a frame longer
/// than the file, so a crash in between leaves a torn frame that the next open repairs the
/// same way. A crash during the header write leaves a header whose checksum fails; the next
/// open then cuts the frame whole, as before this repair existed (pages lost, never wrong).
///
/// Returns `None` when nothing can be kept (no whole header, or no whole verified page); the
/// caller then truncates at `offset` as for any torn tail.
fn repair_torn_tail(seg: &Segment, offset: u64, file_len: u64) -> Result<Option<Repaired>> {
    let Some(mut h) = read_torn_header(seg.file(), offset, file_len) else {
        return Ok(None);
    };
    let avail = file_len - offset;
    // The header region as written: the rewrite zeroes all of it, so no stale entry bytes
    // stay behind the shorter header (FORMAT.md: the region is zero-padded).
    let old_region =
        format::align_up(format::header_len(h.entries.iter().map(|e| e.key.len())) as u64);
    let all = std::mem::take(&mut h.entries);
    let (kept, dropped) = match h.kind {
        FrameKind::Put => {
            let kept = intact_without_orphans(all.clone(), |e| {
                e.payload_offset
                    .checked_add(e.payload_len)
                    .is_some_and(|end| end <= avail)
                    && payload_intact(seg, offset, e)
            });
            // `kept` is a subsequence of `all` in order (the partition is stable), so one
            // walk in step finds the rest.
            let mut next_kept = kept.iter().peekable();
            let mut dropped = Vec::new();
            for e in all {
                if next_kept.peek().is_some_and(|k| **k == e) {
                    next_kept.next();
                } else {
                    dropped.push(e);
                }
            }
            (kept, dropped)
        }
        // Header-only frames are whole once their header is: only padding was cut.
        FrameKind::Delete | FrameKind::Clear => (all, Vec::new()),
    };
    if h.kind == FrameKind::Put && kept.is_empty() {
        return Ok(None);
    }
    let payload_end = kept
        .iter()
        .map(|e| e.payload_offset + e.payload_len)
        .max()
        .unwrap_or(0);
    h.entries = kept;
    let new_region =
        format::align_up(format::header_len(h.entries.iter().map(|e| e.key.len())) as u64);
    h.frame_len = format::align_up(payload_end).max(new_region);
    // A subset of the entries never needs a larger header, and the kept payloads start after
    // the old region, so the rewritten header overlaps no payload.
    assert!(
        new_region <= old_region,
        "rewritten header outgrew its region"
    );
    assert!(
        h.frame_len <= format::align_up(avail),
        "kept frame reaches past the cut"
    );
    let region = usize::try_from(old_region).map_err(|_| Error::Corrupt {
        path: seg.path.clone(),
        detail: format!("frame header at {offset} too large"),
    })?;
    let mut buf = vec![0u8; region];
    format::encode_header(&h, &mut buf);
    let end = offset + h.frame_len;
    seg.file()
        .set_len(end)
        .map_err(|e| Error::io(&seg.path, e))?;
    std::os::unix::fs::FileExt::write_all_at(seg.file(), &buf, offset)
        .map_err(|e| Error::io(&seg.path, e))?;
    io::fdatasync(seg.file()).map_err(|e| Error::io(&seg.path, e))?;
    Ok(Some(Repaired { header: h, dropped }))
}

/// Whether an entry's payload matches its checksum.
fn payload_intact(seg: &Segment, frame_offset: u64, e: &format::EntryMeta) -> bool {
    let Ok(len) = usize::try_from(e.payload_len) else {
        return false;
    };
    let mut buf = vec![0u8; len];
    io::pread_all(seg.file(), &mut buf, frame_offset + e.payload_offset).is_ok()
        && page_crc(&e.key, [&buf[..]]) == e.payload_crc
}

fn first_seqno(seg: &Segment) -> Option<u64> {
    read_frame(seg, SEGMENT_HEADER_BYTES, seg.len_bytes()).map(|h| h.seqno)
}

/// Sequence number of the last readable frame of `seg` (0 if none).
fn last_seqno(seg: &Segment) -> u64 {
    let (len, mut offset, mut last) = (seg.len_bytes(), SEGMENT_HEADER_BYTES, 0);
    while let Some(h) = read_frame(seg, offset, len) {
        last = h.seqno;
        offset += h.frame_len;
    }
    last
}

/// Whether every frame of a segment whose successor starts at `next_first` is in the index
/// tables (persisted through `after`): then each of its pages the index still needs has a
/// record, and losing the segment shows up as records into it.
fn provably_indexed(next_first: Option<u64>, after: Option<u64>) -> bool {
    matches!((next_first, after), (Some(n), Some(a)) if n <= a + 1)
}

/// `quarantined` holds the segments this open already set aside (an earlier attempt that
/// failed on the index); the scan adds those it sets aside, also when it fails.
pub(super) fn scan(
    dir: &Path,
    opts: &LogOptions,
    after_seqno: Option<u64>,
    quarantined: &mut Vec<Quarantined>,
    mut on_frame: impl FnMut(ReplayedFrame) -> Result<()>,
) -> Result<Scanned> {
    let ids = list_segment_ids(dir)?;
    // Ids of quarantined files count too: a stale index record naming one must never hit a
    // new segment that reused its id.
    let highest = ids.iter().copied().chain(quarantine::ids(dir)?).max();
    let next_segment_id = highest.map_or(1, |id| id.saturating_add(1));
    let mut segments = Vec::with_capacity(ids.len());
    for &id in &ids {
        let path = dir.join(segment::file_name(id));
        match Segment::open(&path, id, opts.direct_write || opts.direct_read) {
            Ok(Some(seg)) => segments.push(seg),
            Ok(None) => {
                // Torn during creation: it can hold no acknowledged frame.
                tracing::warn!(path = %path.display(), "removing segment with torn header");
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
            // One bad file must not keep a cache from starting: set it aside, serve the rest.
            Err(e @ Error::Corrupt { .. }) => {
                quarantined.push(quarantine::move_aside(dir, &path, id, &e.to_string())?);
            }
            Err(e) => return Err(e),
        }
    }
    let firsts: Vec<Option<u64>> = segments.iter().map(first_seqno).collect();
    // For each segment this open quarantined: how many surviving segments precede it.
    let quarantined_at: Vec<usize> = quarantined
        .iter()
        .map(|q| segments.partition_point(|s| s.id < q.id))
        .collect();
    let parents_lost_after_seqno = quarantined_at
        .iter()
        .filter(|&&at| !provably_indexed(firsts.get(at).copied().flatten(), after_seqno))
        .map(|&at| {
            at.checked_sub(1)
                .and_then(|p| segments.get(p))
                .map_or(0, last_seqno)
        })
        .min();
    let mut max_seqno = after_seqno;
    let mut dropped = DroppedEntries::new();
    let last_idx = segments.len().checked_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        let is_last = Some(i) == last_idx;
        // Frames of segment i all precede the first frame of segment i+1.
        let fully_persisted = provably_indexed(firsts.get(i + 1).copied().flatten(), after_seqno);
        if fully_persisted && !is_last {
            continue;
        }
        let file_len = seg.len_bytes();
        let mut offset = SEGMENT_HEADER_BYTES;
        let mut frames = Vec::new();
        while let Some(h) = read_frame(seg, offset, file_len) {
            let len = h.frame_len;
            frames.push((offset, h));
            offset += len;
        }
        let mut file_len = file_len;
        if is_last && offset < file_len {
            if let Some(r) = repair_torn_tail(seg, offset, file_len)? {
                tracing::warn!(
                    segment = seg.id,
                    at = offset,
                    kept = r.header.entries.len(),
                    dropped = r.dropped.len(),
                    "torn last frame: kept its whole, verified pages, cut the rest"
                );
                for e in r.dropped {
                    dropped
                        .entry((seg.id, offset + e.payload_offset))
                        .or_default()
                        .push(e.key);
                }
                let end = offset + r.header.frame_len;
                frames.push((offset, r.header));
                offset = end;
                file_len = end;
            }
        }
        // The last frame of the log is the only one a crash can leave half-written with a
        // complete header (the size check above catches the usual case). If it is not yet in
        // the index, replay only its entries whose payloads verify. Never truncate for this:
        // a payload that fails at rest is bit rot, and its neighbours are still good.
        if is_last {
            if let Some((off, h)) = frames.last_mut() {
                if h.kind == FrameKind::Put && after_seqno.is_none_or(|a| h.seqno > a) {
                    let before = h.entries.len();
                    h.entries = intact_without_orphans(std::mem::take(&mut h.entries), |e| {
                        payload_intact(seg, *off, e)
                    });
                    if h.entries.len() < before {
                        tracing::warn!(
                            segment = seg.id,
                            dropped = before - h.entries.len(),
                            "last frame has pages that fail their checksum; not replaying them"
                        );
                    }
                }
            }
        }
        if offset < file_len {
            if is_last {
                tracing::warn!(
                    segment = seg.id,
                    from = offset,
                    to = file_len,
                    "truncating torn tail"
                );
                seg.file()
                    .set_len(offset)
                    .map_err(|e| Error::io(&seg.path, e))?;
            } else {
                tracing::warn!(
                    segment = seg.id,
                    at = offset,
                    "unreadable frame inside a sealed segment; later frames of it are not replayed"
                );
            }
        }
        seg.set_len_bytes(if is_last { offset } else { file_len });
        for (frame_offset, header) in frames {
            max_seqno = max_seqno.max(Some(header.seqno));
            if after_seqno.is_some_and(|a| header.seqno <= a) {
                continue;
            }
            on_frame(ReplayedFrame {
                header,
                segment_id: seg.id,
                frame_offset,
            })?;
        }
    }
    Ok(Scanned {
        segments,
        next_segment_id,
        next_seqno: max_seqno.map_or(1, |s| s + 1),
        parents_lost_after_seqno,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{fingerprint, NO_PARENT};

    fn entry(key: &str, parent: Option<&str>) -> format::EntryMeta {
        format::EntryMeta {
            key: key.as_bytes().to_vec(),
            parent_fp: parent.map_or(NO_PARENT, |p| fingerprint(p.as_bytes())),
            payload_offset: 4096,
            payload_len: 1,
            payload_crc: 0,
        }
    }

    fn opts() -> LogOptions {
        LogOptions {
            segment_bytes: 64 << 20,
            direct_write: false,
            direct_read: false,
            durability: crate::config::Durability::None,
        }
    }

    /// Opens the log in `dir`, returning it and the frames replayed (all of them: no index).
    fn open_log(dir: &Path) -> (super::super::ValueLog, Vec<ReplayedFrame>) {
        let mut frames = Vec::new();
        let log = super::super::ValueLog::open(
            dir,
            opts(),
            std::sync::Arc::new(crate::io::FaultInjector::default()),
            None,
            &mut Vec::new(),
            |f| {
                frames.push(f);
                Ok(())
            },
        )
        .expect("open log");
        (log, frames)
    }

    /// A log of one Put frame of three 5000-byte pages (a chain p0 -> p1 -> p2), then one
    /// Delete frame; returns the Put frame's offset and the segment's path.
    fn put_then_delete(dir: &Path) -> (u64, std::path::PathBuf) {
        let (log, _) = open_log(dir);
        let vals: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i + 1; 5000]).collect();
        let parts: Vec<Vec<&[u8]>> = vals.iter().map(|v| vec![&v[..]]).collect();
        let keys = ["p0", "p1", "p2"];
        let pages: Vec<super::super::frame::PutPage<'_>> = (0..3)
            .map(|i| super::super::frame::PutPage {
                key: keys[i].as_bytes(),
                parent_fp: if i == 0 {
                    NO_PARENT
                } else {
                    fingerprint(keys[i - 1].as_bytes())
                },
                parts: &parts[i],
            })
            .collect();
        let mut w = log.lock_writer();
        let put = log
            .append(&mut w, &mut super::super::PreparedFrame::put(&pages))
            .expect("put");
        let gone = [(&b"old"[..], NO_PARENT, 0u32)];
        log.append(&mut w, &mut super::super::PreparedFrame::deletes(&gone))
            .expect("delete");
        (
            put.frame_offset,
            dir.join(segment::file_name(put.segment_id)),
        )
    }

    fn cut(path: &Path, len: u64) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("open")
            .set_len(len)
            .expect("cut");
    }

    fn keys_of(f: &ReplayedFrame) -> Vec<&[u8]> {
        f.header.entries.iter().map(|e| e.key.as_slice()).collect()
    }

    #[test]
    fn a_cut_put_frame_keeps_its_whole_pages_and_is_complete_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (at, path) = put_then_delete(dir.path());
        // Header block, then p0 at +4096, p1 at +12288, p2 at +20480 (8 KiB slots, frame
        // 28672 bytes): cut inside p1.
        cut(&path, at + 12288 + 100);
        let (log, frames) = open_log(dir.path());
        assert_eq!(frames.len(), 1);
        assert_eq!(keys_of(&frames[0]), vec![&b"p0"[..]]);
        assert_eq!(frames[0].header.frame_len, 12288);
        let len = std::fs::metadata(&path).expect("stat").len();
        assert_eq!(len, at + 12288, "cut to the end of the kept page's slot");
        let id = log.active_segment_id();
        assert_eq!(
            log.frames(id).len(),
            1,
            "the rewritten frame reads as complete"
        );
        drop(log);
        // Idempotent: a second open finds a complete frame and changes nothing.
        let (_, again) = open_log(dir.path());
        assert_eq!(keys_of(&again[0]), vec![&b"p0"[..]]);
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), len);
    }

    #[test]
    fn a_rotten_page_before_the_cut_goes_with_its_descendants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (at, path) = put_then_delete(dir.path());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        std::os::unix::fs::FileExt::write_all_at(&f, &[0xff], at + 12288 + 7).expect("rot p1");
        // Cut inside p2: p0 and p1 are whole, but p1 fails its checksum.
        cut(&path, at + 20480 + 100);
        let (_, frames) = open_log(dir.path());
        assert_eq!(frames.len(), 1);
        assert_eq!(keys_of(&frames[0]), vec![&b"p0"[..]], "p2's parent rotted");
    }

    #[test]
    fn a_delete_frame_cut_in_its_padding_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (at, path) = put_then_delete(dir.path());
        let delete_at = at + 28672;
        cut(&path, delete_at + 2000);
        let (_, frames) = open_log(dir.path());
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].header.kind, FrameKind::Delete);
        assert_eq!(keys_of(&frames[1]), vec![&b"old"[..]]);
        let len = std::fs::metadata(&path).expect("stat").len();
        assert_eq!(len, delete_at + 4096, "padding restored as zeros");
    }

    #[test]
    fn a_frame_cut_inside_its_header_or_first_page_is_dropped() {
        for keep in [30, 4096 + 100] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (at, path) = put_then_delete(dir.path());
            cut(&path, at + keep);
            let (_, frames) = open_log(dir.path());
            assert!(frames.is_empty(), "cut at +{keep}");
            assert_eq!(std::fs::metadata(&path).expect("stat").len(), at);
        }
    }

    #[test]
    fn a_rotten_page_takes_its_descendants_in_the_frame_with_it() {
        // Chain a -> b -> c -> d (listed child first, to not rely on order), plus x -> y.
        let entries = vec![
            entry("d", Some("c")),
            entry("c", Some("b")),
            entry("b", Some("a")),
            entry("a", None),
            entry("x", None),
            entry("y", Some("x")),
        ];
        let kept = intact_without_orphans(entries, |e| e.key != b"b");
        let keys: Vec<&[u8]> = kept.iter().map(|e| e.key.as_slice()).collect();
        assert_eq!(keys, vec![&b"a"[..], b"x", b"y"]);
    }
}
