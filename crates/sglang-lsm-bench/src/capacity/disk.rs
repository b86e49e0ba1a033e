//! What the store occupies on disk, measured from outside the engine: a walk of its
//! directory counting allocated blocks (what `du` counts), split into the value log and the
//! rest (index tables, manifest, lock and format files). A thread samples it on a timer while
//! the writer runs, so a peak inside a `put_batch` is seen too, not only the state between
//! calls.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// One look at the directory.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct DiskSample {
    /// Seconds since the run started.
    pub t_s: f64,
    /// Bytes offered to `put_batch` so far.
    pub written: u64,
    /// Allocated bytes under `vlog/`.
    pub vlog_bytes: u64,
    /// Allocated bytes of everything else (index and metadata).
    pub other_bytes: u64,
    /// Largest value-log file.
    pub largest_segment: u64,
}

impl DiskSample {
    pub fn total(&self) -> u64 {
        self.vlog_bytes + self.other_bytes
    }
}

/// Allocated bytes under `dir` as (value log, everything else, largest value-log file).
/// Files removed between the listing and the `stat` (segments the reclaimer deletes, index
/// tables compaction replaces) are skipped: they are gone from the disk's point of view.
///
/// # Errors
/// The directory cannot be listed.
pub fn dir_bytes(dir: &Path) -> std::io::Result<(u64, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut vlog, mut other, mut largest) = (0u64, 0u64, 0u64);
    let vlog_dir = dir.join("vlog");
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && d != dir => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if md.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = md.blocks() * 512;
            if path.starts_with(&vlog_dir) {
                vlog += bytes;
                largest = largest.max(md.len());
            } else {
                other += bytes;
            }
        }
    }
    Ok((vlog, other, largest))
}

/// Samples shared by the timer thread and the writer.
#[derive(Clone, Default)]
pub struct Samples(Arc<Mutex<Vec<DiskSample>>>);

impl Samples {
    /// Takes one sample now.
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn take(&self, dir: &Path, start: Instant, written: u64) -> std::io::Result<()> {
        let (vlog_bytes, other_bytes, largest_segment) = dir_bytes(dir)?;
        self.0.lock().push(DiskSample {
            t_s: start.elapsed().as_secs_f64(),
            written,
            vlog_bytes,
            other_bytes,
            largest_segment,
        });
        Ok(())
    }

    /// Every sample, in time order.
    pub fn sorted(&self) -> Vec<DiskSample> {
        let mut v = self.0.lock().clone();
        v.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        v
    }
}

/// A thread that samples `dir` every `period` until dropped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Sampler {
    /// Starts sampling; `written` is read at each sample to place it on the x axis.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub fn spawn(
        dir: PathBuf,
        samples: Samples,
        start: Instant,
        written: Arc<AtomicU64>,
        period: Duration,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("capacity-sampler".into())
            .spawn(move || {
                while !flag.load(Relaxed) {
                    samples.take(&dir, start, written.load(Relaxed))?;
                    std::thread::sleep(period);
                }
                Ok(())
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the thread and reports whether it failed.
    ///
    /// # Errors
    /// The directory could not be listed, or the thread panicked.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Relaxed);
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("disk sampler panicked"))?
                .map_err(|e| anyhow::anyhow!("disk sampler: {e}")),
            None => Ok(()),
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
