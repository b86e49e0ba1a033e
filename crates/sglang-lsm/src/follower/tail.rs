//! Tailing the value log of another process: which segments exist, how far each was read.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use super::Location;
use crate::error::{Error, Result};
use crate::io;
use crate::key::{fingerprint, Fingerprint};
use crate::vlog::format::{
    decode_segment_header, FrameHeader, FrameKind, FORMAT_VERSION, SEGMENT_HEADER_BYTES,
};
use crate::vlog::replay::{list_segment_ids, read_frame_at};
use crate::vlog::segment;

/// Frames applied per write-lock hold of the page map, so probes never wait long.
const FRAMES_PER_APPLY: usize = 64;

pub(super) struct Tail {
    vlog_dir: PathBuf,
    /// Per followed segment: the offset of the next frame to read.
    next_frame: BTreeMap<u32, u64>,
    /// When the last scan started.
    pub(super) last_scan: Option<Instant>,
    format_checked: bool,
}

impl Tail {
    pub(super) fn new(vlog_dir: PathBuf) -> Self {
        Self {
            vlog_dir,
            next_frame: BTreeMap::new(),
            last_scan: None,
            format_checked: false,
        }
    }

    /// Reads every complete frame written since the last scan, in log order, into `pages`;
    /// forgets segments the writer deleted. Returns the frames applied.
    pub(super) fn scan(
        &mut self,
        store_dir: &Path,
        pages: &RwLock<HashMap<Fingerprint, Location>>,
        files: &RwLock<HashMap<u32, Arc<File>>>,
    ) -> Result<u64> {
        self.last_scan = Some(Instant::now());
        if !self.format_checked {
            if !check_format(store_dir)? {
                return Ok(0); // no store yet: the writer has not created it
            }
            self.format_checked = true;
        }
        let ids = match list_segment_ids(&self.vlog_dir) {
            Ok(ids) => ids,
            // Not created yet (the writer creates FORMAT first, then the log directory).
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(0)
            }
            Err(e) => return Err(e),
        };
        self.forget_deleted(&ids, pages, files);
        let mut applied = 0u64;
        for id in ids {
            let known = files.read().get(&id).map(Arc::clone);
            let file = match known {
                Some(f) => f,
                None => match self.open_segment(id)? {
                    Some(f) => {
                        files.write().insert(id, Arc::clone(&f));
                        self.next_frame.insert(id, SEGMENT_HEADER_BYTES);
                        f
                    }
                    // Being created: its header is not written yet. Later segments cannot
                    // have frames before this one has; try again next scan.
                    None => break,
                },
            };
            applied += self.read_segment(id, &file, pages)?;
        }
        Ok(applied)
    }

    /// Drops segments that are gone from the directory, and every location inside them.
    fn forget_deleted(
        &mut self,
        ids: &[u32],
        pages: &RwLock<HashMap<Fingerprint, Location>>,
        files: &RwLock<HashMap<u32, Arc<File>>>,
    ) {
        let gone: Vec<u32> = self
            .next_frame
            .keys()
            .copied()
            .filter(|id| ids.binary_search(id).is_err())
            .collect();
        if gone.is_empty() {
            return;
        }
        {
            let mut f = files.write();
            for id in &gone {
                f.remove(id);
                self.next_frame.remove(id);
            }
        }
        pages
            .write()
            .retain(|_, loc| gone.binary_search(&loc.segment_id).is_err());
    }

    /// Opens a segment read-only and checks its header; `None` while it is being created.
    fn open_segment(&self, id: u32) -> Result<Option<Arc<File>>> {
        let path = self.vlog_dir.join(segment::file_name(id));
        let file = match OpenOptions::new().read(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut hdr = [0u8; 40];
        if len < SEGMENT_HEADER_BYTES || io::pread_all(&file, &mut hdr, 0).is_err() {
            return Ok(None);
        }
        match decode_segment_header(&hdr) {
            None => Err(Error::Corrupt {
                path,
                detail: "segment header checksum mismatch".into(),
            }),
            Some((version, _)) if version != FORMAT_VERSION => Err(Error::FormatVersion {
                path,
                found: version,
                supported: FORMAT_VERSION,
            }),
            Some(_) => Ok(Some(Arc::new(file))),
        }
    }

    /// Applies the complete frames of segment `id` past the last one read. Stops at the first
    /// incomplete frame (the writer is still writing it) and resumes there next scan.
    fn read_segment(
        &mut self,
        id: u32,
        file: &File,
        pages: &RwLock<HashMap<Fingerprint, Location>>,
    ) -> Result<u64> {
        let Some(&start) = self.next_frame.get(&id) else {
            return Ok(0);
        };
        let path = self.vlog_dir.join(segment::file_name(id));
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut offset = start;
        let mut applied = 0u64;
        let mut batch: Vec<(u64, FrameHeader)> = Vec::with_capacity(FRAMES_PER_APPLY);
        // Each frame is at least one block long, so this ends within len / 4096 frames.
        while let Some(h) = read_frame_at(file, offset, len) {
            let frame_len = h.frame_len;
            batch.push((offset, h));
            offset += frame_len;
            if batch.len() == FRAMES_PER_APPLY {
                applied += apply(id, &mut batch, pages);
            }
        }
        applied += apply(id, &mut batch, pages);
        self.next_frame.insert(id, offset);
        Ok(applied)
    }
}

/// Applies frames of segment `id`, in order, and empties `batch`.
fn apply(
    id: u32,
    batch: &mut Vec<(u64, FrameHeader)>,
    pages: &RwLock<HashMap<Fingerprint, Location>>,
) -> u64 {
    if batch.is_empty() {
        return 0;
    }
    let mut p = pages.write();
    for (frame_offset, h) in batch.iter() {
        match h.kind {
            FrameKind::Put => {
                for e in &h.entries {
                    let loc = Location {
                        segment_id: id,
                        offset: frame_offset + e.payload_offset,
                        len: e.payload_len,
                        crc: e.payload_crc,
                    };
                    p.insert(fingerprint(&e.key), loc);
                }
            }
            FrameKind::Delete => {
                for e in &h.entries {
                    p.remove(&fingerprint(&e.key));
                }
            }
            FrameKind::Clear => p.clear(),
        }
    }
    let n = batch.len() as u64;
    batch.clear();
    n
}

/// Checks the store's `FORMAT` file without writing anything. `Ok(false)`: no store yet.
fn check_format(store_dir: &Path) -> Result<bool> {
    let path = store_dir.join("FORMAT");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(&path, e)),
    };
    crate::store::dirlock::check_format_bytes(&bytes, &path)?;
    Ok(true)
}
