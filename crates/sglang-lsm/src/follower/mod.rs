//! A read-only follower of a store that another process writes.
//!
//! Why: with MLA models SGLang replicates the KV cache on every tensor-parallel rank and lets
//! only one rank write it to storage (`is_storage_writer`); every rank still prefetches from
//! storage into its own host memory. Each rank is a process, and a [`crate::Store`] directory
//! belongs to one process (the `LOCK` flock), so the other ranks read the writer's directory
//! through a `Follower`.
//!
//! How: the value log is the store's write-ahead log and every frame names its keys, so the
//! follower tails the log — it scans frames it has not seen yet (puts, relocations, deletes,
//! clears, in log order) into an in-memory map of key fingerprint → location — and never reads
//! the writer's index or takes its lock. It writes nothing in the directory.
//!
//! Safety: a follower can lag the writer by up to `refresh_interval_ms`, and the writer may
//! reclaim a segment before the follower has seen where its pages went. Neither can yield
//! wrong bytes: every read is checked against the crc32c of key‖payload recorded in the frame,
//! so a stale location is a miss, never another page's bytes. A page the follower has not seen
//! yet is a miss. SGLang takes the minimum hit count over the TP ranks, so a lagging follower
//! costs hits, not correctness.

mod tail;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::key::{self, fingerprint, Fingerprint};
use crate::vlog::frame::page_crc;

/// Where a page the follower has seen lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Location {
    segment_id: u32,
    /// Absolute offset of the payload in the segment file.
    offset: u64,
    len: u64,
    crc: u32,
}

/// Counters of one follower (`stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FollowerStats {
    /// Pages the follower knows of.
    pub pages: u64,
    /// Segments it tails.
    pub segments: u64,
    /// Log frames applied since open.
    pub frames_applied: u64,
    /// Scans of the log for new frames.
    pub refreshes: u64,
    /// Pages read with verified bytes.
    pub get_hits: u64,
    /// Pages asked for and not returned (unknown, moved away, or failed their checksum).
    pub get_misses: u64,
    /// Pages whose bytes failed their checksum (a stale location after the writer reclaimed
    /// the segment, or damage): reported as misses.
    pub get_stale_or_corrupt: u64,
}

#[derive(Default)]
struct Counters {
    frames_applied: AtomicU64,
    refreshes: AtomicU64,
    get_hits: AtomicU64,
    get_misses: AtomicU64,
    get_stale_or_corrupt: AtomicU64,
}

/// A read-only view of the store in `dir`, kept current by tailing its value log.
/// `Send + Sync`; any number of followers (in any processes) may follow one writer.
pub struct Follower {
    dir: PathBuf,
    refresh_interval: Duration,
    pages: RwLock<HashMap<Fingerprint, Location>>,
    /// Read-only handles of the segments being followed, by id.
    files: RwLock<HashMap<u32, Arc<File>>>,
    tail: Mutex<tail::Tail>,
    counters: Counters,
}

impl Follower {
    /// Opens a follower of the store in `dir` and reads the log once. The directory may not
    /// exist yet (the writer rank may start later): the follower is then empty until the
    /// writer creates it. `refresh_interval_ms` bounds how often calls rescan the log (and so
    /// how far the follower may lag); 0 rescans on every call.
    ///
    /// # Errors
    /// [`Error::FormatVersion`] if the store was written by an incompatible build;
    /// [`Error::Io`] if the directory exists but cannot be read.
    pub fn open(dir: impl AsRef<Path>, refresh_interval_ms: u64) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let follower = Self {
            tail: Mutex::new(tail::Tail::new(dir.join("vlog"))),
            dir,
            refresh_interval: Duration::from_millis(refresh_interval_ms),
            pages: RwLock::new(HashMap::new()),
            files: RwLock::new(HashMap::new()),
            counters: Counters::default(),
        };
        follower.refresh()?;
        Ok(follower)
    }

    /// The followed store's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Scans the log for frames written since the last scan and applies them.
    ///
    /// # Errors
    /// As for [`Follower::open`].
    pub fn refresh(&self) -> Result<()> {
        let mut tail = self.tail.lock();
        self.refresh_locked(&mut tail)
    }

    fn refresh_locked(&self, tail: &mut tail::Tail) -> Result<()> {
        let applied = tail.scan(&self.dir, &self.pages, &self.files)?;
        Counters::add(&self.counters.frames_applied, applied);
        Counters::add(&self.counters.refreshes, 1);
        Ok(())
    }

    /// Refreshes if the last scan is older than the refresh interval. A call that finds
    /// another thread scanning goes on with what is known: calls never queue behind a scan.
    fn maybe_refresh(&self) -> Result<()> {
        let Some(mut tail) = self.tail.try_lock() else {
            return Ok(());
        };
        if tail
            .last_scan
            .is_some_and(|at| at.elapsed() < self.refresh_interval)
        {
            return Ok(());
        }
        self.refresh_locked(&mut tail)
    }

    /// The number of consecutive keys, from the start, that the follower knows of. No I/O
    /// beyond an occasional log scan.
    ///
    /// # Errors
    /// Invalid key; a failed log scan.
    pub fn probe(&self, keys: &[&[u8]]) -> Result<usize> {
        let pages = self.known_pages(keys)?;
        Ok(keys
            .iter()
            .take_while(|k| pages.contains_key(&fingerprint(k)))
            .count())
    }

    /// Whether the follower knows of each page ([`crate::Store::exists_batch`]).
    ///
    /// # Errors
    /// As for [`Follower::probe`].
    pub fn exists_batch(&self, keys: &[&[u8]]) -> Result<Vec<bool>> {
        let pages = self.known_pages(keys)?;
        Ok(keys
            .iter()
            .map(|k| pages.contains_key(&fingerprint(k)))
            .collect())
    }

    /// The pages the follower knows of, refreshed if due, after validating `keys`.
    fn known_pages(
        &self,
        keys: &[&[u8]],
    ) -> Result<parking_lot::RwLockReadGuard<'_, HashMap<Fingerprint, Location>>> {
        for k in keys {
            key::validate(k)?;
        }
        self.maybe_refresh()?;
        Ok(self.pages.read())
    }

    /// Whether the follower knows of a page.
    ///
    /// # Errors
    /// As for [`Follower::probe`].
    pub fn exists(&self, key: &[u8]) -> Result<bool> {
        Ok(self.probe(&[key])? == 1)
    }

    /// Reads pages into caller buffers, like [`crate::Store::get_batch`]: `buffers[i]` gets
    /// page i as consecutive parts; `true` for a hit with verified bytes, `false` otherwise.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`]; [`Error::LengthMismatch`] (checked before any read); a
    /// failed log scan.
    pub fn get_batch(&self, keys: &[&[u8]], buffers: &mut [Vec<&mut [u8]>]) -> Result<Vec<bool>> {
        key::validate_get(keys, buffers.len())?;
        self.maybe_refresh()?;
        let found: Vec<Option<Location>> = {
            let pages = self.pages.read();
            keys.iter()
                .map(|k| pages.get(&fingerprint(k)).copied())
                .collect()
        };
        key::check_buffer_lengths(keys, buffers, found.iter().map(|l| l.map(|l| l.len)))?;
        // File handles are taken under a short lock: a log scan must never wait for reads.
        let work: Vec<PageRead<'_, '_>> = {
            let files = self.files.read();
            found
                .iter()
                .zip(buffers.iter_mut())
                .enumerate()
                .filter_map(|(page, (loc, bufs))| {
                    let loc = (*loc)?;
                    // A missing file: the writer reclaimed the segment; the page moved or went.
                    let file = Arc::clone(files.get(&loc.segment_id)?);
                    Some(PageRead {
                        page,
                        loc,
                        file,
                        bufs,
                    })
                })
                .collect()
        };
        let mut hits = vec![false; keys.len()];
        for (page, ok) in read_pages(keys, work) {
            hits[page] = ok;
            if !ok {
                Counters::add(&self.counters.get_stale_or_corrupt, 1);
            }
        }
        let hit_count = hits.iter().filter(|&&h| h).count() as u64;
        Counters::add(&self.counters.get_hits, hit_count);
        Counters::add(&self.counters.get_misses, keys.len() as u64 - hit_count);
        Ok(hits)
    }

    /// Reads one page into a new vector, or `None` on a miss.
    ///
    /// # Errors
    /// As for [`Follower::get_batch`].
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        key::validate(key)?;
        self.maybe_refresh()?;
        let Some(loc) = self.pages.read().get(&fingerprint(key)).copied() else {
            Counters::add(&self.counters.get_misses, 1);
            return Ok(None);
        };
        let len = usize::try_from(loc.len)
            .map_err(|_| Error::InvalidArgument("page larger than memory".into()))?;
        let mut buf = vec![0u8; len];
        let hit = self.get_batch(&[key], &mut [vec![&mut buf[..]]])?[0];
        Ok(hit.then_some(buf))
    }

    /// Counters and sizes.
    #[must_use]
    pub fn stats(&self) -> FollowerStats {
        let c = &self.counters;
        FollowerStats {
            pages: self.pages.read().len() as u64,
            segments: self.files.read().len() as u64,
            frames_applied: c.frames_applied.load(Relaxed),
            refreshes: c.refreshes.load(Relaxed),
            get_hits: c.get_hits.load(Relaxed),
            get_misses: c.get_misses.load(Relaxed),
            get_stale_or_corrupt: c.get_stale_or_corrupt.load(Relaxed),
        }
    }
}

/// One page to read: where, and into which caller buffers.
struct PageRead<'b, 'a> {
    page: usize,
    loc: Location,
    file: Arc<File>,
    bufs: &'b mut Vec<&'a mut [u8]>,
}

/// Batches at least this large are read on several threads (like the store's read path:
/// one thread at queue depth 1 leaves most of an SSD idle).
const PARALLEL_READ_BYTES: u64 = 1 << 20;
const READ_THREADS: usize = 8;

/// Reads and verifies every page; returns (page, verified) pairs.
fn read_pages(keys: &[&[u8]], work: Vec<PageRead<'_, '_>>) -> Vec<(usize, bool)> {
    let one = |w: PageRead<'_, '_>| {
        let mut iov: Vec<&mut [u8]> = w.bufs.iter_mut().map(|b| &mut b[..]).collect();
        let read = crate::io::preadv_all(&w.file, &mut iov, w.loc.offset).is_ok();
        let ok = read && page_crc(keys[w.page], w.bufs.iter().map(|b| &**b)) == w.loc.crc;
        (w.page, ok)
    };
    let total: u64 = work.iter().map(|w| w.loc.len).sum();
    let threads = READ_THREADS.min(work.len());
    if threads <= 1 || total < PARALLEL_READ_BYTES {
        return work.into_iter().map(one).collect();
    }
    // Deal pages round-robin so each thread gets a similar share of a batch of equal pages.
    let mut shares: Vec<Vec<PageRead<'_, '_>>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, w) in work.into_iter().enumerate() {
        shares[i % threads].push(w);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| s.spawn(move || share.into_iter().map(one).collect::<Vec<_>>()))
            .collect();
        // A panicked reader thread reports nothing for its pages: they stay misses.
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

impl Follower {
    /// The counters in the Prometheus text format (`sglang_lsm_follower_*`).
    #[must_use]
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write as _;
        let st = self.stats();
        let mut out = String::new();
        for (name, kind, help, value) in [
            ("pages", "gauge", "Pages the follower knows of.", st.pages),
            (
                "segments",
                "gauge",
                "Value-log segments followed.",
                st.segments,
            ),
            (
                "frames_applied_total",
                "counter",
                "Log frames applied.",
                st.frames_applied,
            ),
            (
                "refreshes_total",
                "counter",
                "Scans of the log.",
                st.refreshes,
            ),
            (
                "get_hits_total",
                "counter",
                "Pages read with verified bytes.",
                st.get_hits,
            ),
            (
                "get_misses_total",
                "counter",
                "Pages asked for and not returned.",
                st.get_misses,
            ),
            (
                "get_stale_or_corrupt_total",
                "counter",
                "Reads whose bytes failed their checksum (stale location or damage).",
                st.get_stale_or_corrupt,
            ),
        ] {
            let _ = writeln!(out, "# HELP sglang_lsm_follower_{name} {help}");
            let _ = writeln!(out, "# TYPE sglang_lsm_follower_{name} {kind}");
            let _ = writeln!(out, "sglang_lsm_follower_{name} {value}");
        }
        out
    }
}

impl Counters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }
}
