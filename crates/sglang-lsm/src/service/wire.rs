//! Messages between [`super::Client`] and [`super::Server`], and their framing.
//!
//! A frame is a little-endian `u32` length followed by that many bytes of `postcard`-encoded
//! message. Lengths above [`MAX_MESSAGE_BYTES`] are refused before anything is allocated, so
//! a garbage length cannot make either side allocate gigabytes.

use std::io::{Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::MAX_MESSAGE_BYTES;
use crate::Error;

/// A byte range of the connection's arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    /// Offset from the start of the arena.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Extent {
    /// One past the last byte, or `None` if that overflows.
    #[must_use]
    pub fn end(self) -> Option<u64> {
        self.offset.checked_add(self.len)
    }
}

/// A list of keys as one byte string and their lengths: one copy to encode and no allocation
/// per key to decode (a `Vec<Vec<u8>>` goes byte by byte through serde and cost a 128-key
/// probe about 25 µs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
    lens: Vec<u32>,
}

impl Keys {
    /// Packs `keys`.
    ///
    /// # Errors
    /// A key longer than `u32::MAX` bytes (the engine refuses far shorter ones anyway).
    pub fn pack<K: AsRef<[u8]>>(keys: &[K]) -> Result<Self, Error> {
        let total: usize = keys.iter().map(|k| k.as_ref().len()).sum();
        let mut bytes = Vec::with_capacity(total);
        let mut lens = Vec::with_capacity(keys.len());
        for k in keys {
            let k = k.as_ref();
            lens.push(u32::try_from(k.len()).map_err(|_| Error::KeyTooLong {
                len_bytes: k.len(),
                max_bytes: crate::MAX_KEY_BYTES,
            })?);
            bytes.extend_from_slice(k);
        }
        Ok(Self { bytes, lens })
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// The keys, borrowed.
    ///
    /// # Errors
    /// The lengths do not add up to the bytes (a broken or hostile peer).
    pub fn slices(&self) -> Result<Vec<&[u8]>, Error> {
        let mut out = Vec::with_capacity(self.lens.len());
        let mut at = 0usize;
        for &len in &self.lens {
            let end = at
                .checked_add(len as usize)
                .filter(|&e| e <= self.bytes.len())
                .ok_or_else(|| {
                    Error::InvalidArgument("key lengths overrun the key bytes".into())
                })?;
            out.push(&self.bytes[at..end]);
            at = end;
        }
        if at != self.bytes.len() {
            return Err(Error::InvalidArgument(
                "key bytes left over after the last key".into(),
            ));
        }
        Ok(out)
    }
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// First message of every connection.
    Hello {
        /// [`super::MAGIC`].
        magic: u32,
        /// The client's [`super::PROTOCOL_VERSION`].
        version: u32,
    },
    /// `Store::put_batch`, page `i` being `pages[i]` of the arena.
    Put {
        /// Page keys.
        keys: Keys,
        /// Pages before `keys[0]`, oldest first.
        prefix: Keys,
        /// Where each page's bytes lie in the arena.
        pages: Vec<Extent>,
        /// A later chunk of one batch: decline it whole if its first page's parent is not
        /// resident ([`crate::Store::put_batch_continuing`]).
        continuing: bool,
    },
    /// `Store::get_batch` into the arena.
    Get {
        /// Page keys.
        keys: Keys,
        /// Where each page goes; lengths must match the stored pages.
        pages: Vec<Extent>,
    },
    /// `Store::get`: the page is copied to the start of the arena.
    GetOne {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// `Store::probe`.
    Probe {
        /// Page keys.
        keys: Keys,
        /// Pages before `keys[0]`.
        prefix: Keys,
    },
    /// `Store::exists`.
    Exists {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// `Store::delete`.
    Delete {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// `Store::clear`.
    Clear,
    /// `Store::flush`.
    Flush,
    /// `Store::stats`, as JSON.
    Stats,
    /// `Store::metrics_text` plus the service's own metrics.
    Metrics,
    /// `Store::put_batch_with_parents`: `keys[i]` is a child of `parents[i]`.
    PutUnder {
        /// Page keys.
        keys: Keys,
        /// One parent key per page.
        parents: Keys,
        /// Where each page's bytes lie in the arena.
        pages: Vec<Extent>,
    },
    /// `Store::exists_batch`.
    ExistsBatch {
        /// Page keys.
        keys: Keys,
    },
}

/// What the service answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The handshake succeeded; the arena's memfd travels with this message.
    Welcome {
        /// The service's [`super::PROTOCOL_VERSION`].
        version: u32,
        /// Size of the arena passed with this message.
        arena_bytes: u64,
        /// The service's process id, for logs.
        service_pid: u32,
    },
    /// One flag per page (put, get).
    Flags(Vec<bool>),
    /// A count (probe).
    Count(u64),
    /// A yes/no answer (exists, delete).
    Bool(bool),
    /// `GetOne`: the page's length at arena offset 0, or `None` for a miss.
    Value(Option<u64>),
    /// Done, nothing to return.
    Unit,
    /// Text (stats JSON, metrics).
    Text(String),
    /// The call failed; the connection stays usable unless the error says otherwise.
    Error(WireError),
}

/// An engine [`Error`] in a form that crosses the socket and comes back as the same variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum WireError {
    InvalidArgument(String),
    KeyTooLong {
        len_bytes: u64,
        max_bytes: u64,
    },
    EmptyKey,
    EmptyValue {
        key: String,
    },
    LengthMismatch {
        key: String,
        stored_bytes: u64,
        given_bytes: u64,
    },
    Locked {
        path: String,
    },
    NoSpace {
        path: String,
    },
    FormatVersion {
        path: String,
        found: u32,
        supported: u32,
    },
    Corrupt {
        path: String,
        detail: String,
    },
    Io {
        path: String,
        message: String,
    },
    Index(String),
    Unavailable(String),
    Refused(String),
    // Appended last: postcard numbers variants in order, so older peers keep decoding the rest.
    CascadeUnfinished(String),
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> Self {
        let path = |p: &PathBuf| p.display().to_string();
        match e {
            Error::InvalidArgument(m) => Self::InvalidArgument(m.clone()),
            Error::KeyTooLong {
                len_bytes,
                max_bytes,
            } => Self::KeyTooLong {
                len_bytes: *len_bytes as u64,
                max_bytes: *max_bytes as u64,
            },
            Error::EmptyKey => Self::EmptyKey,
            Error::EmptyValue { key } => Self::EmptyValue { key: key.clone() },
            Error::LengthMismatch {
                key,
                stored_bytes,
                given_bytes,
            } => Self::LengthMismatch {
                key: key.clone(),
                stored_bytes: *stored_bytes,
                given_bytes: *given_bytes,
            },
            Error::Locked { path: p } => Self::Locked { path: path(p) },
            Error::NoSpace { path: p } => Self::NoSpace { path: path(p) },
            Error::FormatVersion {
                path: p,
                found,
                supported,
            } => Self::FormatVersion {
                path: path(p),
                found: *found,
                supported: *supported,
            },
            Error::Corrupt { path: p, detail } => Self::Corrupt {
                path: path(p),
                detail: detail.clone(),
            },
            Error::Io { path: p, source } => Self::Io {
                path: path(p),
                message: source.to_string(),
            },
            Error::Index(m) => Self::Index(m.clone()),
            Error::Unavailable(m) => Self::Unavailable(m.clone()),
            Error::Refused(m) => Self::Refused(m.clone()),
            Error::CascadeUnfinished(m) => Self::CascadeUnfinished(m.clone()),
        }
    }
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Self {
        // A length that does not fit usize came from a broken peer; saturate rather than fail.
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        match e {
            WireError::InvalidArgument(m) => Self::InvalidArgument(m),
            WireError::KeyTooLong {
                len_bytes,
                max_bytes,
            } => Self::KeyTooLong {
                len_bytes: size(len_bytes),
                max_bytes: size(max_bytes),
            },
            WireError::EmptyKey => Self::EmptyKey,
            WireError::EmptyValue { key } => Self::EmptyValue { key },
            WireError::LengthMismatch {
                key,
                stored_bytes,
                given_bytes,
            } => Self::LengthMismatch {
                key,
                stored_bytes,
                given_bytes,
            },
            WireError::Locked { path } => Self::Locked { path: path.into() },
            WireError::NoSpace { path } => Self::NoSpace { path: path.into() },
            WireError::FormatVersion {
                path,
                found,
                supported,
            } => Self::FormatVersion {
                path: path.into(),
                found,
                supported,
            },
            WireError::Corrupt { path, detail } => Self::Corrupt {
                path: path.into(),
                detail,
            },
            WireError::Io { path, message } => Self::Io {
                path: path.into(),
                source: std::io::Error::other(message),
            },
            WireError::Index(m) => Self::Index(m),
            WireError::Unavailable(m) => Self::Unavailable(m),
            WireError::Refused(m) => Self::Refused(m),
            WireError::CascadeUnfinished(m) => Self::CascadeUnfinished(m),
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed or timed out (`WouldBlock`/`TimedOut` for a timeout).
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// The length prefix is over the bound.
    #[error("message of {len_bytes} bytes exceeds the {max_bytes}-byte bound")]
    TooLong {
        /// The announced length.
        len_bytes: usize,
        /// [`MAX_MESSAGE_BYTES`].
        max_bytes: usize,
    },
    /// The bytes are not a message.
    #[error("undecodable message: {0}")]
    Decode(String),
}

/// Encodes `msg` as a frame (length prefix included).
///
/// # Errors
/// The message does not encode or is over [`MAX_MESSAGE_BYTES`] (a caller's batch too big).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, Error> {
    let mut frame = postcard::to_extend(msg, vec![0u8; 4])
        .map_err(|e| Error::InvalidArgument(format!("cannot encode message: {e}")))?;
    let body_bytes = frame.len() - 4;
    if body_bytes > MAX_MESSAGE_BYTES {
        return Err(Error::InvalidArgument(format!(
            "request of {body_bytes} bytes exceeds the service's {MAX_MESSAGE_BYTES}-byte \
             message bound; send fewer or shorter keys per call"
        )));
    }
    frame[..4].copy_from_slice(&(body_bytes as u32).to_le_bytes());
    Ok(frame)
}

/// Decodes one message body.
///
/// # Errors
/// The bytes are not exactly one `T`.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) =
        postcard::take_from_bytes(body).map_err(|e| FrameError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(format!(
            "{} trailing bytes after the message",
            rest.len()
        )));
    }
    Ok(msg)
}

/// Reads a frame's length prefix, or [`FrameError::Closed`] at a clean end of stream.
///
/// # Errors
/// Socket failure, a length over the bound, or EOF inside the prefix.
pub fn read_len(r: &mut impl Read) -> Result<usize, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        match r.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Decode("truncated length prefix".into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len_bytes = u32::from_le_bytes(prefix) as usize;
    if len_bytes > MAX_MESSAGE_BYTES {
        return Err(FrameError::TooLong {
            len_bytes,
            max_bytes: MAX_MESSAGE_BYTES,
        });
    }
    Ok(len_bytes)
}

/// Reads a body of `len_bytes` (from [`read_len`]) and decodes it.
///
/// # Errors
/// Socket failure, EOF inside the body, or undecodable bytes.
pub fn read_body<T: for<'de> Deserialize<'de>>(
    r: &mut impl Read,
    len_bytes: usize,
) -> Result<T, FrameError> {
    debug_assert!(len_bytes <= MAX_MESSAGE_BYTES);
    let mut body = vec![0u8; len_bytes];
    r.read_exact(&mut body).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Decode("truncated message".into())
        } else {
            FrameError::Io(e)
        }
    })?;
    decode(&body)
}

/// Reads one whole frame.
///
/// # Errors
/// As [`read_len`] and [`read_body`].
pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<T, FrameError> {
    let len_bytes = read_len(r)?;
    read_body(r, len_bytes)
}

/// Writes one frame.
///
/// # Errors
/// Encoding (see [`encode`]) or socket failure.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), Error> {
    let frame = encode(msg)?;
    w.write_all(&frame)
        .map_err(|e| Error::Unavailable(format!("cannot send to the node service: {e}")))
}

/// Sends one frame on a socket with `MSG_NOSIGNAL`: a peer that died is an error here, not
/// a SIGPIPE that kills a host process which never ignored it.
///
/// # Errors
/// Encoding (see [`encode`]), socket failure or the send timeout.
pub fn send_frame<T: Serialize>(
    stream: &std::os::unix::net::UnixStream,
    msg: &T,
) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    let frame = encode(msg)?;
    let mut sent = 0;
    while sent < frame.len() {
        match nix::sys::socket::send(
            stream.as_raw_fd(),
            &frame[sent..],
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(0) => return Err(Error::Unavailable("the peer closed the connection".into())),
            Ok(n) => sent += n,
            Err(nix::Error::EINTR) => {}
            Err(e) => {
                return Err(Error::Unavailable(format!(
                    "cannot send to the node service: {}",
                    std::io::Error::from(e)
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_request_round_trips() {
        let req = Request::Put {
            continuing: true,
            keys: Keys::pack(&[b"a".as_slice(), b"bb"]).expect("keys"),
            prefix: Keys::pack(&[b"p"]).expect("keys"),
            pages: vec![
                Extent { offset: 0, len: 8 },
                Extent {
                    offset: 4096,
                    len: 8,
                },
            ],
        };
        let frame = encode(&req).expect("encodes");
        let back: Request = read_frame(&mut frame.as_slice()).expect("decodes");
        assert_eq!(back, req);
    }

    #[test]
    fn keys_whose_lengths_do_not_add_up_are_refused() {
        let keys = Keys::pack(&[b"abc".as_slice(), b"de"]).expect("keys");
        assert_eq!(
            keys.slices().expect("valid"),
            vec![b"abc".as_slice(), b"de"]
        );
        let overrun = Keys {
            bytes: b"abc".to_vec(),
            lens: vec![2, 2],
        };
        assert!(overrun.slices().is_err());
        let left_over = Keys {
            bytes: b"abcd".to_vec(),
            lens: vec![3],
        };
        assert!(left_over.slices().is_err());
        let huge = Keys {
            bytes: vec![],
            lens: vec![u32::MAX, u32::MAX],
        };
        assert!(huge.slices().is_err());
    }

    #[test]
    fn a_huge_length_is_refused_before_allocating() {
        let frame = u32::MAX.to_le_bytes();
        let err = read_frame::<Request>(&mut frame.as_slice()).expect_err("too long");
        assert!(matches!(err, FrameError::TooLong { .. }), "{err}");
    }

    #[test]
    fn truncated_frames_are_decode_errors_not_clean_closes() {
        let frame = encode(&Request::Stats).expect("encodes");
        for cut in 1..frame.len() {
            let err = read_frame::<Request>(&mut &frame[..cut]).expect_err("truncated");
            assert!(matches!(err, FrameError::Decode(_)), "cut {cut}: {err}");
        }
        let err = read_frame::<Request>(&mut &[][..]).expect_err("empty");
        assert!(matches!(err, FrameError::Closed));
    }

    #[test]
    fn errors_come_back_as_the_same_variant() {
        let original = Error::LengthMismatch {
            key: "k".into(),
            stored_bytes: 8,
            given_bytes: 4,
        };
        let back = Error::from(WireError::from(&original));
        assert_eq!(back.code(), original.code());
        assert_eq!(back.to_string(), original.to_string());
        let io = Error::io("/x/seg", std::io::Error::from_raw_os_error(libc::EIO));
        let back = Error::from(WireError::from(&io));
        assert_eq!(back.code(), "io");
        assert_eq!(back.to_string(), io.to_string());
    }

    proptest! {
        /// The decoder never panics and never allocates past the bound, whatever it is fed.
        #[test]
        fn the_decoder_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = read_frame::<Request>(&mut bytes.as_slice());
            let _ = decode::<Request>(&bytes);
            let _ = decode::<Response>(&bytes);
        }

        /// Flipping any byte of a valid frame gives an error or some message, never a panic.
        #[test]
        fn the_decoder_survives_corrupted_frames(at in 0usize..64, bit in 0u8..8) {
            let frame = encode(&Request::Probe {
                keys: Keys::pack(&[b"key-1", b"key-2"]).expect("keys"),
                prefix: Keys::pack(&[b"root"]).expect("keys"),
            }).expect("encodes");
            let mut bad = frame.clone();
            let at = at % bad.len();
            bad[at] ^= 1 << bit;
            let _ = read_frame::<Request>(&mut bad.as_slice());
        }
    }
}
