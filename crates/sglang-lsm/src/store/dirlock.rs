//! Exclusive ownership of a store directory and the format-version check.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::vlog::format::FORMAT_VERSION;

const LOCK_FILE: &str = "LOCK";
const FORMAT_FILE: &str = "FORMAT";

/// Holds the `LOCK` file's exclusive lock for the store's lifetime. A second `Store::open`
/// of the same directory (any process) gets [`Error::Locked`]; the OS drops the lock when the
/// holder dies, so a crashed writer never leaves the store stuck.
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock, creating the directory if needed.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
                path: dir.to_path_buf(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

/// Checks the bytes of a `FORMAT` file (at `path`) name the version this build reads.
/// Anything else (binary garbage, another program's file, a damaged version line) is
/// [`Error::Corrupt`] naming the file, never an I/O or decoding error.
pub(crate) fn check_format_bytes(bytes: &[u8], path: &Path) -> Result<()> {
    let corrupt = |detail: &str| Error::Corrupt {
        path: path.to_path_buf(),
        detail: format!("{detail}; restore FORMAT from a backup or use a new directory"),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt("FORMAT file is not text"))?;
    if text.lines().next().map(str::trim) != Some("sglang-lsm") {
        return Err(corrupt(
            "FORMAT file does not start with the line \"sglang-lsm\"",
        ));
    }
    let found = text
        .lines()
        .find_map(|l| l.strip_prefix("format_version="))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .ok_or_else(|| corrupt("FORMAT file has no valid format_version line"))?;
    if found != FORMAT_VERSION {
        return Err(Error::FormatVersion {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Checks `FORMAT`, writing it for a new store.
pub fn check_format(dir: &Path) -> Result<()> {
    let path = dir.join(FORMAT_FILE);
    let expected = format!("sglang-lsm\nformat_version={FORMAT_VERSION}\n");
    match File::open(&path) {
        Ok(mut f) => {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map_err(|e| Error::io(&path, e))?;
            check_format_bytes(&bytes, &path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.join("index").exists() || dir.join("vlog").exists() {
                return Err(Error::Corrupt {
                    path: path.clone(),
                    detail:
                        "store files exist but FORMAT is missing; restore it or use a new directory"
                            .into(),
                });
            }
            let tmp = dir.join("FORMAT.tmp");
            let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            f.write_all(expected.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
            crate::io::sync_dir(dir).map_err(|e| Error::io(dir, e))
        }
        Err(e) => Err(Error::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(bytes: &[u8]) -> (&'static str, String) {
        let e = check_format_bytes(bytes, Path::new("/s/FORMAT")).expect_err("rejected");
        (e.code(), e.to_string())
    }

    #[test]
    fn garbage_format_files_are_corrupt_and_named() {
        for bad in [
            &b"\xff\xfe\x00\x01garbage"[..],
            b"",
            b"someone-else\nformat_version=1\n",
            b"sglang-lsm\nformat_version=one\n",
            b"sglang-lsm\n",
        ] {
            let (code, msg) = code_of(bad);
            assert_eq!(code, "corrupt", "{bad:?}: {msg}");
            assert!(msg.contains("/s/FORMAT"), "{msg}");
        }
    }

    #[test]
    fn other_versions_are_format_errors_and_ours_passes() {
        assert_eq!(
            code_of(b"sglang-lsm\nformat_version=99\n").0,
            "format_version"
        );
        let ours = format!("sglang-lsm\nformat_version={FORMAT_VERSION}\n");
        assert!(check_format_bytes(ours.as_bytes(), Path::new("FORMAT")).is_ok());
    }
}
