//! The physical limit, measured in the same run: a sequential O_DIRECT write then read of the
//! same bytes, with a few threads for queue depth (fio's QD16 equivalent on this disk).

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use sglang_lsm::io::AlignedBuf;

/// Write: 4 MiB x 16 in flight (fio's reference setting). Read: the better of 4 MiB x 16 and
/// 1 MiB x 32 — on this virtual disk large direct reads are split badly and 1 MiB requests
/// at a deeper queue read ~2x faster, so the limit is the best we can find, not one setting.
const WRITE_SHAPE: (usize, usize) = (4 << 20, 16);
const READ_SHAPES: [(usize, usize); 2] = [(4 << 20, 16), (1 << 20, 32)];

/// Device bandwidth in bytes per second.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct DeviceLimit {
    pub write_bytes_per_s: f64,
    pub read_bytes_per_s: f64,
    pub bytes: u64,
}

/// Writes then reads `bytes` in `dir` with O_DIRECT.
pub fn measure(dir: &Path, bytes: u64) -> anyhow::Result<DeviceLimit> {
    let path = dir.join("device-limit.tmp");
    let bytes = bytes.div_ceil(4 << 20).max(1) * (4 << 20);
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
    let run = |write: bool, (chunk_bytes, threads): (usize, usize)| -> anyhow::Result<f64> {
        let chunks = bytes / chunk_bytes as u64;
        let start = Instant::now();
        std::thread::scope(|s| -> anyhow::Result<()> {
            let handles: Vec<_> = (0..threads as u64)
                .map(|t| {
                    let file = &file;
                    s.spawn(move || -> std::io::Result<()> {
                        let mut buf = AlignedBuf::zeroed(chunk_bytes);
                        buf.iter_mut()
                            .enumerate()
                            .for_each(|(i, b)| *b = (i % 251) as u8);
                        let mut c = t;
                        while c < chunks {
                            let off = c * chunk_bytes as u64;
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
    let write_bytes_per_s = run(true, WRITE_SHAPE)?;
    let mut read_bytes_per_s = 0.0f64;
    for shape in READ_SHAPES {
        read_bytes_per_s = read_bytes_per_s.max(run(false, shape)?);
    }
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
