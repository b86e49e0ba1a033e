//! Positioned vectored syscalls with complete-transfer loops.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::FaultInjector;

/// Alignment of every value-log extent, and of O_DIRECT buffers.
pub const IO_ALIGN: usize = 4096;

/// Linux caps iovecs per call at 1024 (IOV_MAX).
const IOV_MAX: usize = 1024;

fn to_off(offset: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(offset).map_err(|_| io::Error::other("file offset beyond off_t"))
}

/// Writes every byte of `parts`, in order, at `offset`. Loops over short writes and EINTR.
/// `granule` is the transfer unit (4 KiB for an O_DIRECT handle, else 1); it only shapes
/// injected short writes, which must look like the kernel's.
pub fn pwritev_all(
    file: &File,
    parts: &[&[u8]],
    mut offset: u64,
    granule: usize,
    faults: &FaultInjector,
) -> io::Result<()> {
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    let mut idx = 0usize; // first part not yet fully written
    let mut skip = 0usize; // bytes of parts[idx] already written
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(parts.len().min(IOV_MAX));
    while idx < parts.len() {
        iov.clear();
        let mut want = 0usize;
        for (i, p) in parts[idx..].iter().enumerate().take(IOV_MAX) {
            let s = if i == 0 { &p[skip..] } else { p };
            if s.is_empty() {
                continue;
            }
            iov.push(libc::iovec {
                iov_base: s.as_ptr() as *mut libc::c_void,
                iov_len: s.len(),
            });
            want += s.len();
        }
        if want == 0 {
            break;
        }
        let cap = faults.before_write(want, granule)?;
        truncate_iovecs(&mut iov, cap);
        // SAFETY: every iovec points into a live borrowed slice of the stated length.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                iov.as_ptr(),
                iov.len() as libc::c_int,
                to_off(offset)?,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "pwritev wrote 0 bytes",
            ));
        }
        offset += n as u64;
        advance(&lens, &mut idx, &mut skip, n as usize);
    }
    Ok(())
}

/// Moves the (part index, bytes into that part) cursor past `n` transferred bytes and any
/// empty parts.
fn advance(lens: &[usize], idx: &mut usize, skip: &mut usize, mut n: usize) {
    while n > 0 && *idx < lens.len() {
        let left = lens[*idx] - *skip;
        if n >= left {
            n -= left;
            *idx += 1;
            *skip = 0;
        } else {
            *skip += n;
            n = 0;
        }
    }
    while *idx < lens.len() && lens[*idx] == *skip {
        *idx += 1;
        *skip = 0;
    }
}

fn truncate_iovecs(iov: &mut Vec<libc::iovec>, mut cap: usize) {
    let mut keep = 0;
    for v in iov.iter_mut() {
        if cap == 0 {
            break;
        }
        v.iov_len = v.iov_len.min(cap);
        cap -= v.iov_len;
        keep += 1;
    }
    iov.truncate(keep);
}

/// Fills every buffer of `bufs`, in order, from `offset`. EOF before the end is an error.
pub fn preadv_all(file: &File, bufs: &mut [&mut [u8]], mut offset: u64) -> io::Result<()> {
    let lens: Vec<usize> = bufs.iter().map(|b| b.len()).collect();
    let mut idx = 0usize;
    let mut skip = 0usize;
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(bufs.len().min(IOV_MAX));
    while idx < bufs.len() {
        iov.clear();
        for (i, b) in bufs[idx..].iter_mut().enumerate().take(IOV_MAX) {
            let s = if i == 0 { &mut b[skip..] } else { &mut b[..] };
            if s.is_empty() {
                continue;
            }
            iov.push(libc::iovec {
                iov_base: s.as_mut_ptr().cast(),
                iov_len: s.len(),
            });
        }
        if iov.is_empty() {
            break;
        }
        // SAFETY: every iovec points into a live, exclusively borrowed buffer.
        let n = unsafe {
            libc::preadv(
                file.as_raw_fd(),
                iov.as_ptr(),
                iov.len() as libc::c_int,
                to_off(offset)?,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "extent extends past end of file",
            ));
        }
        offset += n as u64;
        advance(&lens, &mut idx, &mut skip, n as usize);
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub fn pread_all(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    preadv_all(file, &mut [buf], offset)
}

/// `fdatasync(2)`.
pub fn fdatasync(file: &File) -> io::Result<()> {
    file.sync_data()
}

/// Makes a directory's entries (new or removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Bytes an unprivileged writer may still allocate on the filesystem holding `path`
/// (`statvfs`: `f_bavail * f_frsize`; root's reserved blocks are not counted as free).
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` points at writable storage of the right
    // type; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // field widths differ between targets
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Opens `path` for O_DIRECT reads and writes, or `None` where the filesystem refuses it
/// (tmpfs answers EINVAL).
pub fn open_direct(path: &Path) -> io::Result<Option<File>> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_of_a_real_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(free_bytes(dir.path()).expect("statvfs") > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn short_writes_complete_across_iovecs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let faults = FaultInjector::default();
        faults.short_writes(7);
        let a = vec![1u8; 10];
        let b: Vec<u8> = Vec::new();
        let c = vec![3u8; 25];
        pwritev_all(&file, &[&a, &b, &c], 5, 1, &faults).expect("write");
        let mut x = vec![0u8; 12];
        let mut y = vec![0u8; 23];
        preadv_all(&file, &mut [&mut x, &mut y], 5).expect("read");
        assert_eq!(&x[..10], &a[..]);
        assert_eq!(&x[10..], &[3, 3]);
        assert!(y.iter().all(|&v| v == 3));
        let mut past = vec![0u8; 4];
        assert!(pread_all(&file, &mut past, 38).is_err(), "EOF is an error");
    }

    #[test]
    fn enospc_injection_fails_then_clears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = File::create(dir.path().join("f")).expect("create");
        let faults = FaultInjector::default();
        faults.enospc_after(1);
        pwritev_all(&file, &[b"ok"], 0, 1, &faults).expect("first write passes");
        let e = pwritev_all(&file, &[b"no"], 2, 1, &faults).expect_err("second fails");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        faults.clear();
        pwritev_all(&file, &[b"ok"], 2, 1, &faults).expect("cleared");
    }
}
