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

/// Checks the text of a `FORMAT` file (at `path`) names the version this build reads.
pub(crate) fn check_format_text(text: &str, path: &Path) -> Result<()> {
    let found = text
        .lines()
        .find_map(|l| l.strip_prefix("format_version="))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .ok_or_else(|| Error::Corrupt {
            path: path.to_path_buf(),
            detail: "FORMAT file has no format_version line".into(),
        })?;
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
            let mut s = String::new();
            f.read_to_string(&mut s).map_err(|e| Error::io(&path, e))?;
            check_format_text(&s, &path)
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
