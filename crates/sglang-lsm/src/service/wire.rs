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
        keys: Vec<Vec<u8>>,
        /// Pages before `keys[0]`, oldest first.
        prefix: Vec<Vec<u8>>,
        /// Where each page's bytes lie in the arena.
        pages: Vec<Extent>,
    },
    /// `Store::get_batch` into the arena.
    Get {
        /// Page keys.
        keys: Vec<Vec<u8>>,
        /// Where each page goes; lengths must match the stored pages.
        pages: Vec<Extent>,
    },
    /// `Store::get`: the page is copied to the start of the arena.
    GetOne {
        /// The key.
        key: Vec<u8>,
    },
    /// `Store::probe`.
    Probe {
        /// Page keys.
        keys: Vec<Vec<u8>>,
        /// Pages before `keys[0]`.
        prefix: Vec<Vec<u8>>,
    },
    /// `Store::exists`.
    Exists {
        /// The key.
        key: Vec<u8>,
    },
    /// `Store::delete`.
    Delete {
        /// The key.
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_request_round_trips() {
        let req = Request::Put {
            keys: vec![b"a".to_vec(), b"b".to_vec()],
            prefix: vec![b"p".to_vec()],
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
                keys: vec![b"key-1".to_vec(), b"key-2".to_vec()],
                prefix: vec![b"root".to_vec()],
            }).expect("encodes");
            let mut bad = frame.clone();
            let at = at % bad.len();
            bad[at] ^= 1 << bit;
            let _ = read_frame::<Request>(&mut bad.as_slice());
        }
    }
}
