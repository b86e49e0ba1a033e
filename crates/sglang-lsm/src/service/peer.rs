//! Who is on the other end of the socket, and passing a descriptor to it.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{
    getsockopt, recvmsg, sendmsg, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
};

/// The kernel's word on the connecting process (`SO_PEERCRED`), which the peer cannot forge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Process id at connect time.
    pub pid: i32,
    /// Effective uid.
    pub uid: u32,
    /// Effective primary gid.
    pub gid: u32,
}

/// Reads the peer's identity.
///
/// # Errors
/// The socket is not a connected Unix socket.
pub fn identity(stream: &UnixStream) -> std::io::Result<PeerIdentity> {
    let cred = getsockopt(stream, sockopt::PeerCredentials).map_err(std::io::Error::from)?;
    Ok(PeerIdentity {
        pid: cred.pid(),
        uid: cred.uid(),
        gid: cred.gid(),
    })
}

/// Which peers may use the service: a uid in `uids` or a primary gid in `gids`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// Allowed user ids.
    pub uids: Vec<u32>,
    /// Allowed group ids (the peer's primary group).
    pub gids: Vec<u32>,
}

impl Access {
    /// Only the service's own user, the safe default.
    #[must_use]
    pub fn own_uid() -> Self {
        Self {
            uids: vec![nix::unistd::geteuid().as_raw()],
            gids: Vec::new(),
        }
    }

    /// Why `peer` is refused, or `None` if it is allowed.
    #[must_use]
    pub fn refusal(&self, peer: PeerIdentity) -> Option<String> {
        if self.uids.contains(&peer.uid) || self.gids.contains(&peer.gid) {
            return None;
        }
        Some(format!(
            "uid {} (gid {}, pid {}) is not allowed; the service allows uids {:?} and gids {:?} \
             (start it with --allow-uid {} or --allow-gid {})",
            peer.uid, peer.gid, peer.pid, self.uids, self.gids, peer.uid, peer.gid
        ))
    }
}

/// Sends `bytes` with `fd` attached (`SCM_RIGHTS`).
///
/// # Errors
/// The socket failed, or sent only part of `bytes` (the caller drops the connection).
pub fn send_with_fd(stream: &UnixStream, bytes: &[u8], fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &cmsg,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(std::io::Error::from)?;
    if sent != bytes.len() {
        // The descriptor went with the first part; the rest would need a second send the
        // peer's framing handles, but a short send of a ~30-byte message means trouble.
        return Err(std::io::Error::other(format!(
            "short send of the handshake: {sent} of {} bytes",
            bytes.len()
        )));
    }
    Ok(())
}

/// Receives up to `buf.len()` bytes and at most one attached descriptor.
///
/// # Errors
/// The socket failed or timed out.
pub fn recv_with_fd(
    stream: &UnixStream,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<OwnedFd>)> {
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut received = None;
    for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                // SAFETY: the kernel just installed this descriptor in our table for us.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                // Keep the first; any extra is closed on drop rather than leaked.
                if received.is_none() {
                    received = Some(owned);
                }
            }
        }
    }
    Ok((msg.bytes, received))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_uid_is_allowed_and_others_refused_with_the_fix() {
        let me = nix::unistd::geteuid().as_raw();
        let access = Access::own_uid();
        let peer = PeerIdentity {
            pid: 1,
            uid: me,
            gid: 12345,
        };
        assert_eq!(access.refusal(peer), None);
        let other = PeerIdentity {
            uid: me.wrapping_add(1),
            ..peer
        };
        let why = access.refusal(other).expect("refused");
        assert!(why.contains("--allow-uid"), "{why}");
        let by_group = Access {
            uids: vec![],
            gids: vec![12345],
        };
        assert_eq!(by_group.refusal(other), None);
    }

    #[test]
    fn identity_names_this_process_and_a_descriptor_crosses() {
        let (a, b) = UnixStream::pair().expect("pair");
        let id = identity(&a).expect("cred");
        assert_eq!(id.pid, std::process::id() as i32);
        let file = tempfile::tempfile().expect("file");
        send_with_fd(&a, b"hi", std::os::fd::AsFd::as_fd(&file)).expect("send");
        let mut buf = [0u8; 8];
        let (n, fd) = recv_with_fd(&b, &mut buf).expect("recv");
        assert_eq!(&buf[..n], b"hi");
        assert!(fd.is_some());
    }
}
