//! The physical limit, measured in the same run: a sequential O_DIRECT write then read of the
//! same bytes, with a few threads for queue depth (fio's QD16 equivalent on this disk).

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use sglang_lsm::io::AlignedBuf;

/// Chunk per I/O.
const CHUNK_BYTES: usize = 4 << 20;

/// Device bandwidth in bytes per second.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct DeviceLimit {
    pub write_bytes_per_s: f64,
    pub read_bytes_per_s: f64,
    pub bytes: u64,
}

/// Writes then reads `bytes` in `dir` with O_DIRECT from `threads` threads.
pub fn measure(dir: &Path, bytes: u64, threads: usize) -> anyhow::Result<DeviceLimit> {
    let path = dir.join("device-limit.tmp");
    let chunks = bytes.div_ceil(CHUNK_BYTES as u64).max(1);
    let bytes = chunks * CHUNK_BYTES as u64;
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .with_context(|| {
            format!(
                "O_DIRECT open of {} (tmpfs cannot do direct I/O)",
                path.display()
            )
        })?;
    let run = |write: bool| -> anyhow::Result<f64> {
        let start = Instant::now();
        std::thread::scope(|s| -> anyhow::Result<()> {
            let handles: Vec<_> = (0..threads as u64)
                .map(|t| {
                    let file = &file;
                    s.spawn(move || -> std::io::Result<()> {
                        let mut buf = AlignedBuf::zeroed(CHUNK_BYTES);
                        buf.iter_mut()
                            .enumerate()
                            .for_each(|(i, b)| *b = (i % 251) as u8);
                        let mut c = t;
                        while c < chunks {
                            let off = c * CHUNK_BYTES as u64;
                            if write {
                                file.write_all_at(&buf, off)?;
                            } else {
                                file.read_exact_at(&mut buf, off)?;
                            }
                            c += threads as u64;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("device thread panicked"))??;
            }
            Ok(())
        })?;
        if write {
            file.sync_all()?;
        }
        Ok(bytes as f64 / start.elapsed().as_secs_f64())
    };
    let write_bytes_per_s = run(true)?;
    let read_bytes_per_s = run(false)?;
    drop(file);
    std::fs::remove_file(&path).ok();
    Ok(DeviceLimit {
        write_bytes_per_s,
        read_bytes_per_s,
        bytes,
    })
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`. False when not permitted (not root).
pub fn drop_caches() -> bool {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", b"3\n").is_ok()
}
