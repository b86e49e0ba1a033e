//! The free-space floor (`min_free_bytes`) and the log bound it implies.
//!
//! The floor bounds the log by `log bytes + free bytes − min_free_bytes`. That sum hardly moves
//! with our own writes (an append adds to the log what it takes from free space, a reclaimed
//! segment the reverse), so a cached sample stays accurate for us and only has to catch other
//! writers to the disk (and our index files). Hence `statvfs` runs at most every
//! [`REFRESH_INTERVAL`] or after the log moved by [`REFRESH_LOG_BYTES`], not on every put.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// Longest a free-space sample is trusted.
const REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// Log growth or shrinkage after which a sample is refreshed regardless of its age.
const REFRESH_LOG_BYTES: u64 = 64 << 20;

/// Where free-space figures come from: `statvfs` in production, a fake in unit tests.
pub(crate) type FreeSource = Box<dyn Fn(&Path) -> std::io::Result<u64> + Send + Sync>;

struct Sample {
    at: Instant,
    /// Log bytes when sampled.
    log: u64,
    /// Free bytes when sampled.
    free: u64,
}

/// A cached view of the filesystem's free space.
pub(crate) struct FreeSpace {
    dir: PathBuf,
    min_free: u64,
    source: FreeSource,
    sample: Mutex<Sample>,
}

impl FreeSpace {
    /// Samples free space on the filesystem of `dir` once (so a broken path fails `open`).
    pub fn new(dir: &Path, min_free: u64, log_bytes: u64) -> Result<Self> {
        Self::with_source(dir, min_free, log_bytes, Box::new(crate::io::free_bytes))
    }

    pub fn with_source(
        dir: &Path,
        min_free: u64,
        log_bytes: u64,
        source: FreeSource,
    ) -> Result<Self> {
        let free = source(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            min_free,
            source,
            sample: Mutex::new(Sample {
                at: Instant::now(),
                log: log_bytes,
                free,
            }),
        })
    }

    /// The log bound the floor allows, given the log's current size: the cached
    /// `log + free − min_free` of the last sample, refreshed first if it is stale.
    pub fn bound(&self, log_bytes: u64) -> u64 {
        let mut s = self.sample.lock();
        if s.at.elapsed() >= REFRESH_INTERVAL || s.log.abs_diff(log_bytes) >= REFRESH_LOG_BYTES {
            match (self.source)(&self.dir) {
                Ok(free) => {
                    s.free = free;
                    s.log = log_bytes;
                }
                // Keep the old sample: failing or declining writes because statvfs hiccuped
                // would be worse than a slightly stale bound. Retried after the interval.
                Err(e) => tracing::warn!(error = %e, dir = %self.dir.display(),
                    "cannot read free space; keeping the previous sample"),
            }
            s.at = Instant::now();
        }
        (s.log + s.free).saturating_sub(self.min_free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;

    fn fake(free: &Arc<AtomicU64>, calls: &Arc<AtomicU64>) -> FreeSource {
        let (free, calls) = (Arc::clone(free), Arc::clone(calls));
        Box::new(move |_| {
            calls.fetch_add(1, Relaxed);
            Ok(free.load(Relaxed))
        })
    }

    #[test]
    fn bound_is_cached_and_refreshed_by_time_or_log_growth() {
        let free = Arc::new(AtomicU64::new(1000 << 20));
        let calls = Arc::new(AtomicU64::new(0));
        let fs = FreeSpace::with_source(Path::new("/x"), 100 << 20, 50 << 20, fake(&free, &calls))
            .expect("sample");
        assert_eq!(fs.bound(50 << 20), 950 << 20);
        // Another writer takes 500 MiB: invisible until the sample is refreshed.
        free.store(500 << 20, Relaxed);
        assert_eq!(fs.bound(51 << 20), 950 << 20, "cached");
        assert_eq!(calls.load(Relaxed), 1);
        // Our log grew by 64 MiB: refreshed without waiting.
        assert_eq!(fs.bound((50 + 64) << 20), (50 + 64 + 500 - 100) << 20);
        assert_eq!(calls.load(Relaxed), 2);
        free.store(10 << 20, Relaxed);
        std::thread::sleep(REFRESH_INTERVAL);
        // Less free than the floor: the bound falls below the log (the store must shrink).
        assert_eq!(fs.bound(114 << 20), (114 + 10 - 100) << 20);
        free.store(0, Relaxed);
        std::thread::sleep(REFRESH_INTERVAL);
        assert_eq!(fs.bound(20 << 20), 0, "saturates at zero");
    }

    #[test]
    fn a_failing_source_keeps_the_last_sample() {
        let ok = Arc::new(AtomicU64::new(1));
        let ok2 = Arc::clone(&ok);
        let fs = FreeSpace::with_source(
            Path::new("/x"),
            0,
            0,
            Box::new(move |_| {
                if ok2.load(Relaxed) == 1 {
                    Ok(7 << 20)
                } else {
                    Err(std::io::Error::other("gone"))
                }
            }),
        )
        .expect("sample");
        ok.store(0, Relaxed);
        std::thread::sleep(REFRESH_INTERVAL);
        assert_eq!(fs.bound(0), 7 << 20);
        assert!(FreeSpace::with_source(
            Path::new("/x"),
            0,
            0,
            Box::new(|_| Err(std::io::Error::other("no")))
        )
        .is_err());
    }
}
