//! One value-log segment file.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use super::format::{
    decode_segment_header, encode_segment_header, FORMAT_VERSION, SEGMENT_HEADER_BYTES,
};
use crate::error::{Error, Result};
use crate::io::{self, AlignedBuf, FaultInjector, IO_ALIGN};

/// An open segment: a buffered handle, plus an O_DIRECT handle where the filesystem allows.
pub struct Segment {
    /// Segment id; ids are never reused, so a stale index record can never hit new bytes.
    pub id: u32,
    /// File path.
    pub path: PathBuf,
    file: File,
    direct: Option<File>,
    /// Bytes in the file that belong to complete frames (the append tail for the active one).
    len_bytes: AtomicU64,
    /// The eviction queue its pages belong to ([`Queue`] as a `u8`).
    queue: AtomicU8,
    /// Bytes the log had appended (since open) when this segment became active: its age is
    /// the log's appends since then (`ValueLog::appended_bytes`).
    born_at_appended_bytes: AtomicU64,
}

/// The eviction queue a segment's pages belong to, for S3-FIFO over segments
/// (`config::Eviction::S3Fifo`, `store::victim`): new pages go to `Probation` segments,
/// pages that earned a second chance to `Main` ones, so each segment holds one kind and the
/// reclaimer can drain the probation queue without relocating main pages. In memory only: a
/// segment found at open, and every segment under `Eviction::Clock`, is `Main`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// Pages put once and not yet read: one-hit wonders leave from here.
    Probation,
    /// Pages that were read (or wanted again) and everything written before S3-FIFO applied.
    Main,
}

impl Queue {
    const fn to_u8(self) -> u8 {
        match self {
            Self::Probation => 0,
            Self::Main => 1,
        }
    }

    const fn from_u8(v: u8) -> Self {
        if v == 0 {
            Self::Probation
        } else {
            Self::Main
        }
    }
}

/// File name of segment `id`.
#[must_use]
pub fn file_name(id: u32) -> String {
    format!("seg-{id:010}.log")
}

/// Parses a segment file name back into its id.
#[must_use]
pub fn parse_file_name(name: &str) -> Option<u32> {
    name.strip_prefix("seg-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Segment {
    /// Creates a new segment with its header block written (and synced if `sync`).
    pub fn create(
        dir: &Path,
        id: u32,
        direct_io: bool,
        sync: bool,
        faults: &FaultInjector,
    ) -> Result<Self> {
        let path = dir.join(file_name(id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let mut block = AlignedBuf::zeroed(IO_ALIGN);
        let hdr = encode_segment_header(id, unix_now_s());
        block[..hdr.len()].copy_from_slice(&hdr);
        let written = io::pwritev_all(&file, &[&block], 0, 1, faults);
        if let Err(e) = written {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(Error::io(&path, e));
        }
        if sync {
            io::fdatasync(&file).map_err(|e| Error::io(&path, e))?;
            io::sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        }
        Self::with_handles(id, path, file, direct_io, SEGMENT_HEADER_BYTES)
    }

    /// Opens an existing segment and checks its header. `Ok(None)` means the header is torn
    /// (a crash during creation) and the file holds nothing.
    pub fn open(path: &Path, id: u32, direct_io: bool) -> Result<Option<Self>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut hdr = [0u8; 40];
        if len < SEGMENT_HEADER_BYTES || io::pread_all(&file, &mut hdr, 0).is_err() {
            return Ok(None);
        }
        match decode_segment_header(&hdr) {
            None => Err(Error::Corrupt {
                path: path.to_path_buf(),
                detail: "segment header checksum mismatch".into(),
            }),
            Some((version, _)) if version != FORMAT_VERSION => Err(Error::FormatVersion {
                path: path.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            }),
            Some((_, stored_id)) if stored_id != id => Err(Error::Corrupt {
                path: path.to_path_buf(),
                detail: format!("header names segment {stored_id}, file name says {id}"),
            }),
            Some(_) => Self::with_handles(id, path.to_path_buf(), file, direct_io, len).map(Some),
        }
    }

    fn with_handles(id: u32, path: PathBuf, file: File, direct_io: bool, len: u64) -> Result<Self> {
        let direct = if direct_io {
            io::open_direct(&path).map_err(|e| Error::io(&path, e))?
        } else {
            None
        };
        Ok(Self {
            id,
            path,
            file,
            direct,
            len_bytes: AtomicU64::new(len),
            queue: AtomicU8::new(Queue::Main.to_u8()),
            born_at_appended_bytes: AtomicU64::new(0),
        })
    }

    /// The log's appended bytes when this segment became active (0 for segments found at
    /// open).
    #[must_use]
    pub fn born_at_appended_bytes(&self) -> u64 {
        self.born_at_appended_bytes.load(Relaxed)
    }

    /// The eviction queue this segment belongs to.
    #[must_use]
    pub fn queue(&self) -> Queue {
        Queue::from_u8(self.queue.load(Relaxed))
    }

    /// Assigns the queue; only before the segment receives its first frame.
    pub fn set_queue(&self, queue: Queue) {
        self.queue.store(queue.to_u8(), Relaxed);
    }

    pub(super) fn set_born_at(&self, appended_bytes: u64) {
        self.born_at_appended_bytes.store(appended_bytes, Relaxed);
    }

    /// The buffered handle.
    #[must_use]
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The O_DIRECT handle, if direct I/O is on and supported here.
    #[must_use]
    pub fn direct(&self) -> Option<&File> {
        self.direct.as_ref()
    }

    /// Bytes of complete frames.
    #[must_use]
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes.load(Relaxed)
    }

    pub(crate) fn set_len_bytes(&self, len: u64) {
        self.len_bytes.store(len, Relaxed);
    }

    /// Reads `bufs` back to back from `offset`, through O_DIRECT when asked and every buffer
    /// allows it.
    pub fn read_into(
        &self,
        bufs: &mut [&mut [u8]],
        offset: u64,
        direct: bool,
    ) -> std::io::Result<()> {
        match &self.direct {
            Some(d) if direct && direct_compatible(bufs.iter().map(|b| &**b), offset) => {
                io::preadv_all(d, bufs, offset)
            }
            _ => io::preadv_all(&self.file, bufs, offset),
        }
    }
}

/// O_DIRECT needs aligned offsets, addresses and lengths.
pub fn direct_compatible<'a>(bufs: impl Iterator<Item = &'a [u8]>, offset: u64) -> bool {
    let a = IO_ALIGN;
    offset.is_multiple_of(a as u64)
        && bufs
            .into_iter()
            .all(|b| (b.as_ptr() as usize).is_multiple_of(a) && b.len() % a == 0)
}
