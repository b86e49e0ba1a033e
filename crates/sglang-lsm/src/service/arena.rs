//! A connection's shared-memory arena: a memfd the service creates, seals and maps, and the
//! client maps from the descriptor passed at the handshake.
//!
//! The service seals the memfd against shrinking and growing before it hands it out. Without
//! the seal a client could `ftruncate` the file under the service's mapping, and the service's
//! next access to the cut-off range would die of SIGBUS: one bad client would take down the
//! node's disk tier.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use super::wire::Extent;
use crate::{Error, Result};

/// A mapped arena. The bytes are shared with the peer process, which may write them at any
/// time; code here only hands out slices for the span of one call, while the protocol says
/// the peer leaves them alone (a peer that does not can only spoil its own pages, which the
/// store's checksums then catch).
pub struct Arena {
    ptr: NonNull<u8>,
    len_bytes: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain shared memory with no thread affinity; concurrent use is
// governed by the callers of the unsafe accessors.
unsafe impl Send for Arena {}
// SAFETY: as above.
unsafe impl Sync for Arena {}

fn os_error(what: &str, e: nix::Error) -> Error {
    Error::Io {
        path: "arena (memfd)".into(),
        source: std::io::Error::other(format!("{what}: {e}")),
    }
}

impl Arena {
    /// Creates, sizes, seals and maps a new arena (the service side).
    ///
    /// # Errors
    /// The kernel refused the memfd, its size, the seals or the mapping (for example, no
    /// memory or `vm.max_map_count` reached).
    pub fn create(len_bytes: usize) -> Result<Self> {
        if len_bytes == 0 {
            return Err(Error::InvalidArgument("arena of zero bytes".into()));
        }
        let fd = memfd_create(
            c"sglang-lsm-arena",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .map_err(|e| os_error("memfd_create", e))?;
        let len_off = libc::off_t::try_from(len_bytes)
            .map_err(|_| Error::InvalidArgument(format!("arena of {len_bytes} bytes")))?;
        nix::unistd::ftruncate(&fd, len_off).map_err(|e| os_error("ftruncate", e))?;
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).map_err(|e| os_error("F_ADD_SEALS", e))?;
        Self::map(fd, len_bytes)
    }

    /// Maps an arena received from the service (the client side), after checking that it is
    /// sealed and as large as announced.
    ///
    /// # Errors
    /// The descriptor is not a sealed memfd of at least `len_bytes`, or cannot be mapped.
    pub fn open_received(fd: OwnedFd, len_bytes: usize) -> Result<Self> {
        let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).map_err(|e| os_error("F_GET_SEALS", e))?;
        if seals & libc::F_SEAL_SHRINK == 0 {
            return Err(Error::Refused(
                "the service's arena is not sealed against shrinking".into(),
            ));
        }
        let st = nix::sys::stat::fstat(&fd).map_err(|e| os_error("fstat", e))?;
        if u64::try_from(st.st_size).unwrap_or(0) < len_bytes as u64 {
            return Err(Error::Refused(format!(
                "the service's arena holds {} bytes, {len_bytes} announced",
                st.st_size
            )));
        }
        Self::map(fd, len_bytes)
    }

    fn map(fd: OwnedFd, len_bytes: usize) -> Result<Self> {
        let len = std::num::NonZeroUsize::new(len_bytes)
            .ok_or_else(|| Error::InvalidArgument("arena of zero bytes".into()))?;
        // SAFETY: a fresh shared mapping of a file we hold open; nothing else aliases it yet.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        }
        .map_err(|e| os_error("mmap", e))?;
        Ok(Self {
            ptr: ptr.cast(),
            len_bytes,
            fd,
        })
    }

    /// The memfd, to pass to the client.
    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Size of the arena.
    #[must_use]
    pub fn len_bytes(&self) -> usize {
        self.len_bytes
    }

    /// Checks that every extent lies inside the arena, and with `disjoint` that no two
    /// overlap (a get writes them, so they must not alias).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first bad extent.
    pub fn check(&self, extents: &[Extent], disjoint: bool) -> Result<()> {
        for (i, e) in extents.iter().enumerate() {
            match e.end() {
                Some(end) if end <= self.len_bytes as u64 => {}
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "page {i}: arena extent {}+{} lies outside the {}-byte arena",
                        e.offset, e.len, self.len_bytes
                    )))
                }
            }
        }
        if disjoint {
            let mut sorted: Vec<Extent> = extents.iter().copied().filter(|e| e.len > 0).collect();
            sorted.sort_by_key(|e| e.offset);
            for w in sorted.windows(2) {
                if w[0].offset + w[0].len > w[1].offset {
                    return Err(Error::InvalidArgument(format!(
                        "arena extents {}+{} and {}+{} overlap",
                        w[0].offset, w[0].len, w[1].offset, w[1].len
                    )));
                }
            }
        }
        Ok(())
    }

    /// The bytes of `e`.
    ///
    /// # Safety
    /// `e` passed [`Arena::check`], and no `bytes_mut` slice overlapping it is alive.
    #[must_use]
    pub unsafe fn bytes(&self, e: Extent) -> &[u8] {
        debug_assert!(e.offset + e.len <= self.len_bytes as u64);
        // SAFETY: in bounds (checked by the caller) of a live mapping.
        unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().add(e.offset as usize), e.len as usize)
        }
    }

    /// The bytes of `e`, writable.
    ///
    /// # Safety
    /// `e` passed [`Arena::check`] and no other slice overlapping it is alive.
    #[must_use]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn bytes_mut(&self, e: Extent) -> &mut [u8] {
        debug_assert!(e.offset + e.len <= self.len_bytes as u64);
        // SAFETY: in bounds of a live mapping; exclusivity is the caller's promise.
        unsafe {
            std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(e.offset as usize), e.len as usize)
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this length and is unmapped once.
        if let Err(e) = unsafe { munmap(self.ptr.cast(), self.len_bytes) } {
            tracing::warn!(error = %e, "munmap of a service arena failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_arena_cannot_be_shrunk_by_the_peer() {
        let arena = Arena::create(1 << 20).expect("arena");
        let err = nix::unistd::ftruncate(arena.fd(), 4096).expect_err("sealed");
        assert_eq!(err, nix::Error::EPERM);
    }

    #[test]
    fn both_mappings_see_the_same_bytes() {
        let service = Arena::create(8192).expect("arena");
        let dup = service.fd().try_clone_to_owned().expect("dup");
        let client = Arena::open_received(dup, 8192).expect("client map");
        let e = Extent {
            offset: 4096,
            len: 5,
        };
        // SAFETY: checked extent, no other slice alive.
        unsafe { client.bytes_mut(e).copy_from_slice(b"hello") };
        // SAFETY: as above.
        assert_eq!(unsafe { service.bytes(e) }, b"hello");
    }

    #[test]
    fn extents_outside_or_overlapping_are_refused() {
        let arena = Arena::create(8192).expect("arena");
        let ok = [
            Extent {
                offset: 0,
                len: 4096,
            },
            Extent {
                offset: 4096,
                len: 4096,
            },
        ];
        arena.check(&ok, true).expect("fits");
        let outside = [Extent {
            offset: 4096,
            len: 4097,
        }];
        assert!(arena.check(&outside, false).is_err());
        let wrapping = [Extent {
            offset: u64::MAX,
            len: 2,
        }];
        assert!(arena.check(&wrapping, false).is_err());
        let overlap = [
            Extent {
                offset: 0,
                len: 4097,
            },
            Extent {
                offset: 4096,
                len: 10,
            },
        ];
        assert!(arena.check(&overlap, false).is_ok(), "reads may overlap");
        assert!(arena.check(&overlap, true).is_err(), "writes may not");
    }

    #[test]
    fn an_unsealed_memfd_is_refused_by_the_client() {
        let fd = memfd_create(c"plain", MFdFlags::MFD_CLOEXEC).expect("memfd");
        nix::unistd::ftruncate(&fd, 8192).expect("size");
        assert!(matches!(
            Arena::open_received(fd, 8192),
            Err(Error::Refused(_))
        ));
    }
}
