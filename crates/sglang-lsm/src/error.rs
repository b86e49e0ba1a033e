//! Typed errors. Every variant names the problem and, where there is one, what to do about it.

use std::path::PathBuf;

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller passed arguments that can never succeed (mismatched list lengths, bad option).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Keys are bounded so the index stays small and records stay one block.
    #[error("key of {len_bytes} bytes exceeds the {max_bytes}-byte limit; hash long keys before storing them")]
    KeyTooLong {
        /// Length of the offending key.
        len_bytes: usize,
        /// The configured maximum.
        max_bytes: usize,
    },

    /// Empty keys cannot be told apart from missing ones.
    #[error("empty key: every page needs a non-empty key")]
    EmptyKey,

    /// A page with no bytes is almost certainly a caller bug (a wrong size list).
    #[error("zero-length value for key {key:?}: pages must hold at least one byte")]
    EmptyValue {
        /// The key, lossily decoded for display.
        key: String,
    },

    /// The caller's buffers do not add up to the stored page length.
    #[error("buffer size mismatch for key {key:?}: stored {stored_bytes} bytes, buffers hold {given_bytes}; pass buffers that match the page size used when writing")]
    LengthMismatch {
        /// The key, lossily decoded for display.
        key: String,
        /// Length on disk.
        stored_bytes: u64,
        /// Sum of the caller's buffer lengths.
        given_bytes: u64,
    },

    /// Another process (or another handle in this one) holds the store.
    #[error("store at {path} is locked by another process or handle; close it first or use a different directory")]
    Locked {
        /// The store directory.
        path: PathBuf,
    },

    /// The filesystem ran out of space. The store rolled the failed write back and stays usable.
    #[error(
        "no space left on device while writing {path}; free disk space or lower capacity_bytes"
    )]
    NoSpace {
        /// The file being written.
        path: PathBuf,
    },

    /// The directory was written by an incompatible version of the engine.
    #[error("unsupported on-disk format at {path}: found version {found}, this build reads version {supported}; open it with a matching sglang-lsm release or use a new directory")]
    FormatVersion {
        /// The store directory.
        path: PathBuf,
        /// Version found on disk.
        found: u32,
        /// Version this build supports.
        supported: u32,
    },

    /// On-disk bytes failed validation in a way that prevents opening (not a single bad page,
    /// which is reported as a miss).
    #[error("corrupt store file {path}: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },

    /// Any other I/O failure, with the path it happened on.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The LSM index found its own files damaged. `Store::open` rebuilds the index from the
    /// value log when its scan meets this; a block the scan does not read (a deeper level's
    /// bloom filter) can still fail a later lookup.
    #[error("index error: {0}; to rebuild the index from the value log, close the store, move its index/ directory aside and reopen")]
    Index(String),

    /// The node service could not be reached, timed out, or broke the connection. The call
    /// had no effect the client can rely on; the next call reconnects.
    #[error("node service unavailable: {0}")]
    Unavailable(String),

    /// The node service refused this client: another protocol version, a uid or gid it does
    /// not allow, or its client bound reached.
    #[error("node service refused the connection: {0}")]
    Refused(String),

    /// A cascading delete stopped before its subtree was gone: concurrent puts kept adding
    /// pages under it faster than it removed them, past its step bound. What it removed is
    /// logged, and what remains is a smaller tree (never an orphan); a retry continues.
    #[error("cascading delete unfinished: {0}")]
    CascadeUnfinished(String),
}

impl Error {
    /// A short, stable code for bindings and metrics.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "invalid_argument",
            Self::KeyTooLong { .. } => "key_too_long",
            Self::EmptyKey => "empty_key",
            Self::EmptyValue { .. } => "empty_value",
            Self::LengthMismatch { .. } => "length_mismatch",
            Self::Locked { .. } => "locked",
            Self::NoSpace { .. } => "no_space",
            Self::FormatVersion { .. } => "format_version",
            Self::Corrupt { .. } => "corrupt",
            Self::Io { .. } => "io",
            Self::Index(_) => "index",
            Self::Unavailable(_) => "unavailable",
            Self::Refused(_) => "refused",
            Self::CascadeUnfinished(_) => "cascade_unfinished",
        }
    }

    /// Wraps an OS error with the path it concerns, mapping ENOSPC/EDQUOT to [`Error::NoSpace`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Self::NoSpace { path },
            _ => Self::Io { path, source },
        }
    }
}

impl From<lsm_tree::Error> for Error {
    /// OS errors keep their kind (`Io`), so that open can tell a failing disk or a missing
    /// permission, which a rebuild cannot cure, from damaged index bytes (`Index`).
    fn from(e: lsm_tree::Error) -> Self {
        match e {
            lsm_tree::Error::Io(io) => Self::io("index", io),
            other => Self::Index(other.to_string()),
        }
    }
}

/// Lossy display form of a key for error messages.
pub(crate) fn key_display(key: &[u8]) -> String {
    const SHOWN: usize = 80;
    let s = String::from_utf8_lossy(&key[..key.len().min(SHOWN)]).into_owned();
    if key.len() > SHOWN {
        format!("{s}…")
    } else {
        s
    }
}
