//! Thin, positioned, vectored file I/O over `libc`, plus the fault-injection seam used by tests.
//!
//! Why our own wrappers: std has no `pwritev`/`preadv`, and we need short-write loops that
//! advance across iovecs, O_DIRECT with a buffered fallback, and a single place to inject faults.

mod aligned;
mod fault;
mod sys;

pub use aligned::AlignedBuf;
pub use fault::FaultInjector;
pub use sys::{
    fdatasync, free_bytes, open_direct, pread_all, preadv_all, pwritev_all, sync_dir, IO_ALIGN,
};
