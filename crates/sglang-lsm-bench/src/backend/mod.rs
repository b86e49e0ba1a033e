//! Stores under test, behind one trait so every benchmark drives them the same way.
//!
//! - [`ours::Ours`]: the sglang-lsm engine (value log + LSM index).
//! - [`file::FileStore`] in [`file::Layout::Flat`]: what SGLang's reference `HiCacheFile` does —
//!   one `<key>.bin` per page in one directory, serial per-page I/O through a staging buffer,
//!   a temporary file plus rename per write, existence by `stat`.
//! - [`file::FileStore`] in [`file::Layout::Sharded`]: the same with two-level sharded
//!   directories (the usual fix for huge directories).
//! - [`fast_file::FastFile`]: a strong file-per-page backend in the spirit of SGLang's
//!   `fast_file` proposal — parallel vectored I/O straight from the caller's buffers (no
//!   staging copy), O_DIRECT writes when buffers are aligned, sharded directories, atomic
//!   publication by rename, existence by `stat`.
//! - [`lsm_inline::LsmInline`]: values stored inline in an `lsm-tree` 3.x tree (the ablation
//!   "value log vs values in the index").
//! - `rocks::Rocks` (cargo feature `rocksdb`): RocksDB with integrated BlobDB.
//!
//! Semantics every backend shares (checked by the conformance tests in `tests/backends.rs`):
//! a put of a key already present is a no-op success (SGLang's `HiCacheFile.set` and our
//! store both skip it, so the first bytes stay); a get fills the caller's parts in order and
//! reports a miss as `false` without touching its buffers; `probe` counts the leading run of
//! present keys (SGLang's `batch_exists`); a page whose stored length differs from the
//! caller's buffers is an error, never a partial copy.

pub mod fast_file;
pub mod file;
pub mod lsm_inline;
pub mod ours;
#[cfg(feature = "rocksdb")]
pub mod rocks;

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A KV-cache page store as the benchmarks see it.
pub trait KvBackend: Send + Sync {
    /// Short name for tables and plots.
    fn name(&self) -> &'static str;

    /// Stores pages: `values[i]` is page i as consecutive parts (K then V). `keys[i-1]` is the
    /// parent of `keys[i]` and `prefix_keys` the chain before `keys[0]`; backends without
    /// prefix awareness ignore both. Returns one flag per page (true: stored or already there).
    fn put_batch(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        prefix_keys: &[&[u8]],
    ) -> anyhow::Result<Vec<bool>>;

    /// Reads pages into the caller's parts; `false` for a miss (buffers untouched).
    fn get_batch(
        &self,
        keys: &[&[u8]],
        buffers: &mut [Vec<&mut [u8]>],
    ) -> anyhow::Result<Vec<bool>>;

    /// The number of leading keys that are present.
    fn probe(&self, keys: &[&[u8]]) -> anyhow::Result<usize>;

    /// Makes everything written so far durable (the benchmarks include it in put time, so a
    /// backend cannot look fast by leaving work in memory).
    fn sync(&self) -> anyhow::Result<()>;

    /// Bytes the store occupies on disk (allocated blocks, including metadata files).
    fn disk_bytes(&self) -> anyhow::Result<u64>;

    /// Read I/Os issued so far, for stores that count them (ours): the coalescing ablation
    /// reports I/Os per prefix read, which is what the switch changes.
    fn read_ios(&self) -> Option<u64> {
        None
    }
}

/// The backends the tools can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// sglang-lsm.
    Ours,
    /// One file per page in one directory, like SGLang's HiCacheFile.
    FileFlat,
    /// One file per page in two-level sharded directories.
    FileSharded,
    /// Parallel, vectored, zero-copy, sharded file per page (SGLang's fast_file proposal).
    FileFast,
    /// Values inline in an lsm-tree (no value log).
    LsmInline,
    /// RocksDB with integrated BlobDB (needs the `rocksdb` cargo feature).
    Rocksdb,
}

impl BackendKind {
    /// Every backend compiled into this build, in report order.
    pub fn available() -> Vec<BackendKind> {
        let mut v = vec![
            Self::Ours,
            Self::FileFlat,
            Self::FileSharded,
            Self::FileFast,
            Self::LsmInline,
        ];
        if cfg!(feature = "rocksdb") {
            v.push(Self::Rocksdb);
        }
        v
    }

    /// The kebab-case name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::FileFlat => "file-flat",
            Self::FileSharded => "file-sharded",
            Self::FileFast => "file-fast",
            Self::LsmInline => "lsm-inline",
            Self::Rocksdb => "rocksdb",
        }
    }

    /// Opens (creating) the backend in `dir`.
    ///
    /// # Errors
    /// The directory cannot be created or opened, or the backend is not compiled in.
    pub fn open(self, dir: &Path) -> anyhow::Result<Box<dyn KvBackend>> {
        Ok(match self {
            Self::Ours => Box::new(ours::Ours::open(dir, sglang_lsm::StoreConfig::default())?),
            Self::FileFlat => Box::new(file::FileStore::open(dir, file::Layout::Flat)?),
            Self::FileSharded => Box::new(file::FileStore::open(dir, file::Layout::Sharded)?),
            Self::FileFast => Box::new(fast_file::FastFile::open(
                dir,
                fast_file::FastFileOptions::default(),
            )?),
            Self::LsmInline => Box::new(lsm_inline::LsmInline::open(dir)?),
            Self::Rocksdb => open_rocksdb(dir)?,
        })
    }
}

#[cfg(feature = "rocksdb")]
fn open_rocksdb(dir: &Path) -> anyhow::Result<Box<dyn KvBackend>> {
    Ok(Box::new(rocks::Rocks::open(dir)?))
}

#[cfg(not(feature = "rocksdb"))]
fn open_rocksdb(_dir: &Path) -> anyhow::Result<Box<dyn KvBackend>> {
    anyhow::bail!("the rocksdb backend is not compiled in; rebuild with `--features rocksdb`")
}

/// Total length of a page's parts.
pub(crate) fn parts_len<T: AsRef<[u8]>>(parts: &[T]) -> usize {
    parts.iter().map(|p| p.as_ref().len()).sum()
}

/// Checks a put's shape (same rule as the engine: one value per key, no empty pages).
pub(crate) fn check_put(keys: &[&[u8]], values: &[Vec<&[u8]>]) -> anyhow::Result<()> {
    anyhow::ensure!(
        keys.len() == values.len(),
        "{} keys but {} values",
        keys.len(),
        values.len()
    );
    for (k, v) in keys.iter().zip(values) {
        anyhow::ensure!(!k.is_empty(), "empty key");
        anyhow::ensure!(parts_len(v) > 0, "empty value");
    }
    Ok(())
}

/// Checks a get's shape.
pub(crate) fn check_get(keys: &[&[u8]], buffers: &[Vec<&mut [u8]>]) -> anyhow::Result<()> {
    anyhow::ensure!(
        keys.len() == buffers.len(),
        "{} keys but {} buffers",
        keys.len(),
        buffers.len()
    );
    Ok(())
}

/// Copies `src` into the parts in order; the caller has checked the lengths match.
pub(crate) fn scatter(src: &[u8], parts: &mut [&mut [u8]]) {
    let mut off = 0;
    for p in parts.iter_mut() {
        let n = p.len();
        p.copy_from_slice(&src[off..off + n]);
        off += n;
    }
}

/// Copies a stored page into the caller's parts after checking the sizes agree (the shared
/// tail of every key-value store's get). Returns `Ok(true)`: the page was found.
pub(crate) fn fill_parts(page: &[u8], parts: &mut [&mut [u8]]) -> anyhow::Result<bool> {
    let want = parts_len(parts);
    anyhow::ensure!(
        page.len() == want,
        "page holds {} bytes but the buffers take {want}",
        page.len()
    );
    scatter(page, parts);
    Ok(true)
}

/// 64-bit FNV-1a: a stable, dependency-free hash for directory sharding (std's hasher is
/// randomly seeded per process, which would move files between runs).
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Allocated bytes of every file under `dir` (what `du` counts).
pub(crate) fn du_bytes(dir: &Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let md = entry.metadata()?;
            if md.is_dir() {
                stack.push(entry.path());
            }
            total += md.blocks() * 512;
        }
    }
    Ok(total)
}
