//! Checks that caller-supplied addresses (`tensor.data_ptr()` integers) name memory this
//! process may read, or write, before the engine touches a byte of it.
//!
//! A bad address must become a typed error, never a SIGSEGV that takes SGLang down with it.
//! Dereferencing is what faults, so the check asks the kernel instead:
//! - `process_vm_readv` (and, for destinations, `process_vm_writev`) on our own pid copy the
//!   first and last byte of every span and report `EFAULT` for unmapped, `PROT_NONE` or
//!   read-only memory instead of raising a signal. One syscall covers up to `IOV_MAX` probes.
//! - Spans of `MINCORE_MIN_SPAN_BYTES` or more are also checked whole by `mincore`, which fails
//!   with `ENOMEM` if any page in between is unmapped.
//!
//! Cost, measured on 128 x 128 KiB destinations (`get_batch_ptrs` of absent keys, so no I/O):
//! probing every memory page took 3.5 ms per call, as long as the read itself; `mincore` on
//! every span plus the end probes 0.51 ms (mincore is ~2.5 us a call, whatever its length).
//! Ends only, with mincore kept for large spans, is what runs. What it cannot see is an
//! unmapped hole inside a small span, or a `PROT_NONE`/read-only page strictly inside any span
//! whose ends are fine: a single tensor has neither.
//!
//! The write probe writes back the byte it just read. A destination that another thread
//! writes during `get_batch` is already a data race the caller owns; the probe adds no new one.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Most iovecs one `process_vm_*` call accepts (Linux `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// A memory region named by address and byte length.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub addr: usize,
    pub len: usize,
}

/// Set once the kernel refuses the probe itself (`ENOSYS`, or `EPERM` under a seccomp profile
/// that forbids `process_vm_*`): later calls skip it instead of failing every request.
static PROBE_UNAVAILABLE: AtomicBool = AtomicBool::new(false);

fn page_bytes() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// The first and last byte of every non-empty span, with the span's index.
fn probe_addresses(spans: &[Span]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(spans.len() * 2);
    for (i, s) in spans.iter().enumerate().filter(|(_, s)| s.len > 0) {
        out.push((s.addr, i));
        if s.len > 1 {
            // Callers reject spans that wrap the address space, so this cannot overflow.
            out.push((s.addr + (s.len - 1), i));
        }
    }
    out
}

/// Spans at least this long are also checked for unmapped holes: a syscall is cheap next to
/// the I/O of so many bytes.
const MINCORE_MIN_SPAN_BYTES: usize = 2 << 20;

/// Pages `mincore` looks at per call: bounds its result vector (and the work a single absurd
/// length can ask for before the first unmapped page stops it).
const MINCORE_WINDOW_PAGES: usize = 16 << 10;

/// `Err(address)` of the first window of `span` that holds an unmapped page.
fn check_mapped(span: Span, page: usize, vec: &mut Vec<u8>) -> Result<(), usize> {
    let start = span.addr / page * page;
    let end = span.addr + span.len; // exclusive; no wrap (see probe_addresses)
    let mut at = start;
    while at < end {
        let pages = ((end - at).div_ceil(page)).min(MINCORE_WINDOW_PAGES);
        vec.resize(pages, 0);
        // SAFETY: `at` is page-aligned and `vec` holds one byte per page asked for; mincore
        // only reports, it never touches the memory it is asked about.
        let rc = unsafe { libc::mincore(at as *mut libc::c_void, pages * page, vec.as_mut_ptr()) };
        if rc != 0 {
            return Err(at.max(span.addr));
        }
        at += pages * page;
    }
    Ok(())
}

/// Returns `Err((span index, address))` for the first span with a byte this process cannot
/// read (or, with `writable`, write).
pub fn check(spans: &[Span], writable: bool) -> Result<(), (usize, usize)> {
    if PROBE_UNAVAILABLE.load(Relaxed) {
        return Ok(());
    }
    let page = page_bytes();
    let mut vec = Vec::new();
    for (i, span) in spans
        .iter()
        .enumerate()
        .filter(|(_, s)| s.len >= MINCORE_MIN_SPAN_BYTES)
    {
        check_mapped(*span, page, &mut vec).map_err(|addr| (i, addr))?;
    }
    let probes = probe_addresses(spans);
    let mut scratch = vec![0u8; IOV_MAX.min(probes.len())];
    for chunk in probes.chunks(IOV_MAX) {
        let remote: Vec<libc::iovec> = chunk
            .iter()
            .map(|&(addr, _)| libc::iovec {
                iov_base: addr as *mut libc::c_void,
                iov_len: 1,
            })
            .collect();
        let local = libc::iovec {
            iov_base: scratch.as_mut_ptr().cast(),
            iov_len: chunk.len(),
        };
        done(transfer(libc::process_vm_readv, &local, &remote), chunk)?;
        if writable {
            // Writes back the bytes just read, to the same addresses.
            done(transfer(libc::process_vm_writev, &local, &remote), chunk)?;
        }
    }
    Ok(())
}

/// The signature `process_vm_readv` and `process_vm_writev` share.
type VmCopy = unsafe extern "C" fn(
    libc::pid_t,
    *const libc::iovec,
    libc::c_ulong,
    *const libc::iovec,
    libc::c_ulong,
    libc::c_ulong,
) -> libc::ssize_t;

/// One `process_vm_*` call between our `local` scratch and the `remote` probes, on our own pid.
fn transfer(copy: VmCopy, local: &libc::iovec, remote: &[libc::iovec]) -> isize {
    // SAFETY: `local` is our own scratch buffer, as long as there are probes; the kernel
    // checks every remote address and fails with EFAULT instead of faulting.
    unsafe {
        copy(
            libc::getpid(),
            local,
            1,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    }
}

/// A partial transfer stops at the first failing iovec, so the count of bytes moved is the
/// index of the bad probe.
fn done(moved: isize, chunk: &[(usize, usize)]) -> Result<(), (usize, usize)> {
    if moved < 0 {
        let errno = std::io::Error::last_os_error().raw_os_error();
        if matches!(errno, Some(libc::ENOSYS) | Some(libc::EPERM)) {
            PROBE_UNAVAILABLE.store(true, Relaxed);
            return Ok(());
        }
        return Err(chunk.first().map_or((0, 0), |&(a, i)| (i, a)));
    }
    match chunk.get(moved as usize) {
        None => Ok(()),
        Some(&(addr, i)) => Err((i, addr)),
    }
}
