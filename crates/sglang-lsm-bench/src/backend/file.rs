//! File-per-page stores that do what SGLang's reference `HiCacheFile` (sglang 0.5.23,
//! `srt/mem_cache/hicache_storage.py`) does, in Rust so the comparison measures the layout and
//! the syscalls rather than Python:
//!
//! - one `<key>.bin` file per page;
//! - a write first checks existence (`stat`; an existing page is skipped), gathers the page
//!   into a flat staging buffer (`get_data_page(flat=True)`), writes it to a uniquely named
//!   temporary file with buffered I/O and renames it over the final name (`os.replace`);
//! - a read opens the file and reads it into a flat staging page, then copies it into the
//!   destination (`get_dummy_flat_data_page` + `set_from_flat_data_page`);
//! - pages are handled one after another (the reference loops over keys);
//! - `batch_exists` stats key after key until the first miss.
//!
//! [`Layout::Flat`] keeps every file in one directory, as the reference does;
//! [`Layout::Sharded`] spreads them over 64 x 64 subdirectories chosen by a hash of the key,
//! created up front so no write pays for a `mkdir`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

use super::{check_get, check_put, fnv1a64, parts_len, scatter, KvBackend};

/// Subdirectories per level for sharded layouts: 4096 leaves keep a directory under ~2.5k
/// entries at 10M pages without making small stores pay for tens of thousands of empty dirs.
pub(crate) const SHARD_FANOUT: u64 = 64;

/// Where a page's file lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `root/<name>.bin`.
    Flat,
    /// `root/<h1>/<h2>/<name>.bin`, `h1`, `h2` from a hash of the key.
    Sharded,
}

/// Maps keys to paths; shared with [`super::fast_file`].
pub(crate) struct Namer {
    root: PathBuf,
    layout: Layout,
    tmp_seq: AtomicU64,
}

impl Namer {
    pub(crate) fn new(root: &Path, layout: Layout) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        if layout == Layout::Sharded {
            for a in 0..SHARD_FANOUT {
                for b in 0..SHARD_FANOUT {
                    let d = root.join(format!("{a:02x}")).join(format!("{b:02x}"));
                    std::fs::create_dir_all(&d)
                        .with_context(|| format!("creating {}", d.display()))?;
                }
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            layout,
            tmp_seq: AtomicU64::new(0),
        })
    }

    fn dir_of(&self, key: &[u8]) -> PathBuf {
        match self.layout {
            Layout::Flat => self.root.clone(),
            Layout::Sharded => {
                let h = fnv1a64(key);
                self.root
                    .join(format!("{:02x}", (h >> 32) % SHARD_FANOUT))
                    .join(format!("{:02x}", h % SHARD_FANOUT))
            }
        }
    }

    /// The file name for a key: the key itself when it is a safe file name (SGLang's keys are
    /// hex digests plus a suffix), else a SHA-256 of it so any opaque key maps to a valid name.
    fn file_name(key: &[u8]) -> std::ffi::OsString {
        let safe = key.len() <= 200
            && key
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
            && key.first() != Some(&b'.');
        let mut name = if safe {
            std::ffi::OsStr::from_bytes(key).to_os_string()
        } else {
            use sha2::Digest;
            std::ffi::OsString::from(format!("h-{}", hex::encode(sha2::Sha256::digest(key))))
        };
        name.push(".bin");
        name
    }

    pub(crate) fn path(&self, key: &[u8]) -> PathBuf {
        self.dir_of(key).join(Self::file_name(key))
    }

    /// A fresh temporary path beside the final one (same directory, so rename is atomic).
    pub(crate) fn tmp_path(&self, key: &[u8]) -> PathBuf {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.dir_of(key)
            .join(format!(".{}-{n}.tmp", std::process::id()))
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }
}

/// `stat`-based existence, as `os.path.exists`.
impl Namer {
    /// How many keys, from the start, have a file: one `stat` each, stopping at the first miss
    /// (what `batch_exists` does in SGLang's file backend). Serial on purpose: a cached `stat`
    /// costs ~1-2 us, and fanning 128 of them out to threads measured 3x slower here.
    pub(crate) fn leading_present(&self, keys: &[&[u8]]) -> anyhow::Result<usize> {
        for (i, k) in keys.iter().enumerate() {
            if !exists(&self.path(k))? {
                return Ok(i);
            }
        }
        Ok(keys.len())
    }
}

/// Opens a page file and checks it holds `want` bytes; `None` if there is no such page.
pub(crate) fn open_page(path: &Path, want: usize) -> anyhow::Result<Option<File>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let have = f.metadata()?.size();
    anyhow::ensure!(
        have == want as u64,
        "{}: page holds {have} bytes but the buffers take {want}",
        path.display()
    );
    Ok(Some(f))
}

pub(crate) fn exists(path: &Path) -> anyhow::Result<bool> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("stat {}", path.display())),
    }
}

/// Flushes every dirty page of the filesystem holding `dir` (`syncfs`): file-per-page stores
/// never fsync individual files, so this is what makes their writes durable.
pub(crate) fn syncfs(dir: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    // SAFETY: the descriptor is valid for the duration of the call.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("syncfs {}", dir.display()));
    }
    Ok(())
}

/// The reference file backend (see the module docs).
pub struct FileStore {
    namer: Namer,
    layout: Layout,
}

impl FileStore {
    /// Opens (creating) a store rooted at `dir`.
    ///
    /// # Errors
    /// The directories cannot be created.
    pub fn open(dir: &Path, layout: Layout) -> anyhow::Result<Self> {
        Ok(Self {
            namer: Namer::new(dir, layout)?,
            layout,
        })
    }

    fn put_one(&self, key: &[u8], parts: &[&[u8]], staging: &mut Vec<u8>) -> anyhow::Result<()> {
        let path = self.namer.path(key);
        if exists(&path)? {
            return Ok(());
        }
        staging.clear();
        for p in parts {
            staging.extend_from_slice(p);
        }
        let tmp = self.namer.tmp_path(key);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(staging)?;
            drop(f);
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            std::fs::remove_file(&tmp).ok();
            return Err(e).with_context(|| format!("writing {}", path.display()));
        }
        Ok(())
    }

    fn get_one(
        &self,
        key: &[u8],
        parts: &mut [&mut [u8]],
        staging: &mut Vec<u8>,
    ) -> anyhow::Result<bool> {
        let path = self.namer.path(key);
        let want = parts_len(parts);
        let Some(mut f) = open_page(&path, want)? else {
            return Ok(false);
        };
        staging.resize(want, 0);
        f.read_exact(staging)
            .with_context(|| format!("reading {}", path.display()))?;
        scatter(staging, parts);
        Ok(true)
    }
}

impl KvBackend for FileStore {
    fn name(&self) -> &'static str {
        match self.layout {
            Layout::Flat => "file-flat",
            Layout::Sharded => "file-sharded",
        }
    }

    fn put_batch(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        _prefix_keys: &[&[u8]],
    ) -> anyhow::Result<Vec<bool>> {
        check_put(keys, values)?;
        let mut staging = Vec::new();
        for (k, v) in keys.iter().zip(values) {
            self.put_one(k, v, &mut staging)?;
        }
        Ok(vec![true; keys.len()])
    }

    fn get_batch(
        &self,
        keys: &[&[u8]],
        buffers: &mut [Vec<&mut [u8]>],
    ) -> anyhow::Result<Vec<bool>> {
        check_get(keys, buffers)?;
        let mut staging = Vec::new();
        keys.iter()
            .zip(buffers.iter_mut())
            .map(|(k, b)| self.get_one(k, b, &mut staging))
            .collect()
    }

    fn probe(&self, keys: &[&[u8]]) -> anyhow::Result<usize> {
        self.namer.leading_present(keys)
    }

    fn sync(&self) -> anyhow::Result<()> {
        syncfs(self.namer.root())
    }

    fn disk_bytes(&self) -> anyhow::Result<u64> {
        super::du_bytes(self.namer.root())
    }
}
