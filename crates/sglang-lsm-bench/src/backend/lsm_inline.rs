//! Values inline in an `lsm-tree` 3.x tree: the "value log vs values in the index" ablation.
//!
//! Everything but the value placement matches our engine, so the comparison isolates it:
//! a page is one tree entry `key -> K‖V` written with the batch's sequence number; the same
//! in-memory residency set answers `probe` (lsm-tree has no key-only lookup, and reading
//! multi-megabyte values to answer `exists` would measure something else); reads run on the
//! same number of threads. The tree is driven like ours: the writer rotates the memtable at
//! 64 MiB and flushes it, and compacts (leveled, ratio 10) when L0 reaches 4 runs. What
//! differs is inherent to inline values: every value is copied into the memtable, written
//! again into a table at flush, and rewritten by every compaction that touches its table.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use lsm_tree::{AbstractTree, AnyTree, Config, Guard, SequenceNumberCounter};
use parking_lot::{Mutex, RwLock};

use super::fast_file::par_map;
use super::{check_get, check_put, fill_parts, fnv1a64, parts_len, KvBackend};

/// Memtable size that triggers a rotation and flush.
const MEMTABLE_BYTES: u64 = 64 << 20;
/// L0 runs that trigger a compaction (the engine's setting).
const L0_THRESHOLD: u8 = 4;
/// Level size ratio (the engine's setting).
const LEVEL_RATIO: f32 = 10.0;
/// Threads per `get_batch` (the engine's default `read_threads`).
const READ_THREADS: usize = 8;

/// See the module docs.
pub struct LsmInline {
    dir: PathBuf,
    tree: AnyTree,
    seqno: SequenceNumberCounter,
    visible: SequenceNumberCounter,
    resident: RwLock<HashSet<u64>>,
    writer: Mutex<()>,
}

impl LsmInline {
    /// Opens (creating) a tree in `dir`.
    ///
    /// # Errors
    /// The tree cannot be opened or scanned.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let seqno = SequenceNumberCounter::default();
        let visible = SequenceNumberCounter::default();
        let tree = Config::new(dir, seqno.clone(), visible.clone())
            .use_cache(Arc::new(lsm_tree::Cache::with_capacity_bytes(64 << 20)))
            .open()
            .with_context(|| format!("opening lsm-tree at {}", dir.display()))?;
        let mut resident = HashSet::new();
        if let Some(s) = tree.get_highest_seqno() {
            seqno.fetch_max(s + 1);
            visible.fetch_max(s + 1);
            for item in tree.iter(visible.get(), None) {
                resident.insert(fnv1a64(&item.key()?));
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            tree,
            seqno,
            visible,
            resident: RwLock::new(resident),
            writer: Mutex::new(()),
        })
    }

    fn flush_memtable(&self) -> anyhow::Result<()> {
        let lock = self.tree.get_flush_lock();
        self.tree.rotate_memtable();
        self.tree.flush(&lock, self.visible.get())?;
        drop(lock);
        if self.tree.l0_run_count() >= usize::from(L0_THRESHOLD) {
            let strategy = lsm_tree::compaction::Leveled::default()
                .with_level_ratio_policy(vec![LEVEL_RATIO])
                .with_l0_threshold(L0_THRESHOLD);
            self.tree.compact(Arc::new(strategy), self.visible.get())?;
        }
        Ok(())
    }
}

impl KvBackend for LsmInline {
    fn name(&self) -> &'static str {
        "lsm-inline"
    }

    fn put_batch(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        _prefix_keys: &[&[u8]],
    ) -> anyhow::Result<Vec<bool>> {
        check_put(keys, values)?;
        let _w = self.writer.lock();
        let seq = self.seqno.next();
        let mut fresh = Vec::new();
        {
            let r = self.resident.read();
            for (k, v) in keys.iter().zip(values) {
                let fp = fnv1a64(k);
                if r.contains(&fp) || fresh.contains(&fp) {
                    continue;
                }
                let mut value = Vec::with_capacity(parts_len(v));
                for p in v {
                    value.extend_from_slice(p);
                }
                self.tree.insert(k.to_vec(), value, seq);
                fresh.push(fp);
            }
        }
        self.visible.fetch_max(seq + 1);
        self.resident.write().extend(fresh);
        if self.tree.active_memtable().size() >= MEMTABLE_BYTES {
            self.flush_memtable()?;
        }
        Ok(vec![true; keys.len()])
    }

    fn get_batch(
        &self,
        keys: &[&[u8]],
        buffers: &mut [Vec<&mut [u8]>],
    ) -> anyhow::Result<Vec<bool>> {
        check_get(keys, buffers)?;
        let seq = self.visible.get();
        let mut items: Vec<(&[u8], &mut Vec<&mut [u8]>)> =
            keys.iter().copied().zip(buffers.iter_mut()).collect();
        let threads = if keys.len() < 8 {
            1
        } else {
            READ_THREADS.min(keys.len())
        };
        par_map(&mut items, threads, |(k, parts)| {
            let Some(v) = self.tree.get(*k, seq)? else {
                return Ok(false);
            };
            fill_parts(&v, parts)
        })
    }

    fn probe(&self, keys: &[&[u8]]) -> anyhow::Result<usize> {
        let r = self.resident.read();
        Ok(keys.iter().take_while(|k| r.contains(&fnv1a64(k))).count())
    }

    fn sync(&self) -> anyhow::Result<()> {
        let _w = self.writer.lock();
        self.flush_memtable()
    }

    fn disk_bytes(&self) -> anyhow::Result<u64> {
        super::du_bytes(&self.dir)
    }
}
