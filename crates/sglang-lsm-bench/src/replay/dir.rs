//! Where the replay's store lives.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};

/// A caller's empty directory, or a temporary one removed on drop.
pub(super) enum StoreDir {
    Given(PathBuf),
    Temp(tempfile::TempDir),
}

impl StoreDir {
    pub(super) fn prepare(dir: Option<&Path>) -> anyhow::Result<Self> {
        match dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("creating store directory {}", d.display()))?;
                let mut entries = std::fs::read_dir(d)
                    .with_context(|| format!("reading store directory {}", d.display()))?;
                // A replay must start empty: pages already there would count as hits the
                // trace never earned (and disagree with an enforced policy).
                ensure!(
                    entries.next().is_none(),
                    "store directory {} is not empty; the replay needs a fresh store",
                    d.display()
                );
                Ok(Self::Given(d.to_path_buf()))
            }
            None => Ok(Self::Temp(
                tempfile::Builder::new()
                    .prefix("sglang-lsm-replay-")
                    .tempdir()
                    .context("creating a temporary store directory")?,
            )),
        }
    }

    pub(super) fn path(&self) -> &Path {
        match self {
            Self::Given(p) => p,
            Self::Temp(t) => t.path(),
        }
    }
}
