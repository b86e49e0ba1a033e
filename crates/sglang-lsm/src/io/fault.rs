//! Fault injection for write paths: forced short writes and ENOSPC.
//!
//! Production code consults one shared `FaultInjector` before every write syscall; it is inert
//! unless a test arms it, and costs two relaxed atomic loads.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Shared switchboard of injected write faults.
#[derive(Debug)]
pub struct FaultInjector {
    /// When non-zero, each write syscall transfers at most this many bytes.
    short_write_max_bytes: AtomicU64,
    /// -1 = off. Otherwise the number of write syscalls that still succeed before every
    /// following one fails with ENOSPC (until [`FaultInjector::clear`]).
    enospc_after_syscalls: AtomicI64,
}

impl Default for FaultInjector {
    fn default() -> Self {
        Self {
            short_write_max_bytes: AtomicU64::new(0),
            enospc_after_syscalls: AtomicI64::new(-1),
        }
    }
}

impl FaultInjector {
    /// Caps every write syscall at `max_bytes` (0 disables), exercising short-write loops.
    pub fn short_writes(&self, max_bytes: u64) {
        self.short_write_max_bytes.store(max_bytes, Relaxed);
    }

    /// Lets `n` more write syscalls succeed, then fails all writes with ENOSPC.
    pub fn enospc_after(&self, n: i64) {
        self.enospc_after_syscalls.store(n.max(0), Relaxed);
    }

    /// Disarms every fault ("space was freed").
    pub fn clear(&self) {
        self.short_write_max_bytes.store(0, Relaxed);
        self.enospc_after_syscalls.store(-1, Relaxed);
    }

    /// Called before a write syscall: `Err(ENOSPC)` to fail it, or the byte cap to apply.
    /// `granule` is the unit a real short write comes in (4 KiB under O_DIRECT, else 1).
    pub(crate) fn before_write(&self, want_bytes: usize, granule: usize) -> std::io::Result<usize> {
        let left = self.enospc_after_syscalls.load(Relaxed);
        if left == 0 {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        if left > 0 {
            self.enospc_after_syscalls.fetch_sub(1, Relaxed);
        }
        let cap = self.short_write_max_bytes.load(Relaxed);
        Ok(if cap == 0 {
            want_bytes
        } else {
            let cap = usize::try_from(cap).unwrap_or(usize::MAX);
            let cap = (cap / granule * granule).max(granule);
            want_bytes.min(cap)
        })
    }
}
