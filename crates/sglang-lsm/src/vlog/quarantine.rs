//! Segments that fail validation at open are moved into `vlog/quarantine/` instead of
//! refusing the open: for a cache, one bad file must cost its pages, not the whole store.
//! Nothing is deleted, so an operator can inspect the file; the store never reads it again.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::io;

/// Folder under `vlog/` holding quarantined files.
pub const QUARANTINE_DIR: &str = "quarantine";

/// A segment file set aside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Quarantined {
    /// Segment id from its file name.
    pub id: u32,
    /// Where the file is now.
    pub path: PathBuf,
    /// Why it was set aside; for files set aside by an earlier open, only that.
    pub reason: String,
}

/// Moves the segment file at `path` into the quarantine folder under a name not yet taken,
/// durably, and logs it.
pub(crate) fn move_aside(
    vlog_dir: &Path,
    path: &Path,
    id: u32,
    reason: &str,
) -> Result<Quarantined> {
    let qdir = vlog_dir.join(QUARANTINE_DIR);
    std::fs::create_dir_all(&qdir).map_err(|e| Error::io(&qdir, e))?;
    let name = super::segment::file_name(id);
    let mut to = qdir.join(&name);
    // A second bad file with the same id (a stray copy) keeps the first one's evidence.
    let mut n = 1u32;
    while to.exists() {
        to = qdir.join(format!("{name}.{n}"));
        n += 1;
    }
    std::fs::rename(path, &to).map_err(|e| Error::io(path, e))?;
    io::sync_dir(&qdir).map_err(|e| Error::io(&qdir, e))?;
    io::sync_dir(vlog_dir).map_err(|e| Error::io(vlog_dir, e))?;
    tracing::error!(
        from = %path.display(),
        to = %to.display(),
        reason,
        "segment quarantined: its pages are misses; inspect or delete the file"
    );
    Ok(Quarantined {
        id,
        path: to,
        reason: reason.to_string(),
    })
}

/// Every file in the quarantine folder (none if it does not exist), in name order.
pub(crate) fn list(vlog_dir: &Path) -> Result<Vec<PathBuf>> {
    let qdir = vlog_dir.join(QUARANTINE_DIR);
    let entries = match std::fs::read_dir(&qdir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&qdir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        out.push(entry.map_err(|e| Error::io(&qdir, e))?.path());
    }
    out.sort();
    Ok(out)
}

/// The segment id a quarantined file is named after (`seg-NNNNNNNNNN.log`, maybe `.N`).
pub(crate) fn id_of(path: &Path) -> Option<u32> {
    path.file_name()?
        .to_str()?
        .strip_prefix("seg-")?
        .get(..10)?
        .parse()
        .ok()
}

/// Segment ids named by quarantined files.
pub(crate) fn ids(vlog_dir: &Path) -> Result<Vec<u32>> {
    Ok(list(vlog_dir)?.iter().filter_map(|p| id_of(p)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_file_of_one_id_keeps_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        for body in [b"one", b"two"] {
            let path = dir.path().join(super::super::segment::file_name(7));
            std::fs::write(&path, body).expect("write");
            move_aside(dir.path(), &path, 7, "test").expect("quarantine");
        }
        let files = list(dir.path()).expect("list");
        assert_eq!(files.len(), 2);
        assert_eq!(std::fs::read(&files[0]).expect("read"), b"one");
        assert_eq!(ids(dir.path()).expect("ids"), vec![7, 7]);
    }
}
