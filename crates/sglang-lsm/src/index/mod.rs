//! The LSM index (lsm-tree) over two keyspaces:
//!
//! - `0x01 | key` → [`IndexRecord`]: point lookups by the caller's opaque key.
//! - `0x02 | parent_fp (BE) | child_fp (BE)` → child key: every child of a prefix is adjacent
//!   in key order, so descendants are found by prefix scans (cascading deletes walk these).
//!
//! The tree has no journal: the value log is its write-ahead log. We drive memtable rotation,
//! flushes and compactions (see `store::maintenance`) so a controller can steer them.

mod record;

use std::path::Path;
use std::sync::Arc;

use lsm_tree::{AbstractTree, AnyTree, Config, Guard, SequenceNumberCounter};

use crate::error::{Error, Result};
use crate::key::Fingerprint;
pub use record::IndexRecord;

const PRIMARY: u8 = 0x01;
const READ_NEWEST_SEQNO: u64 = 0x7FFF_FFFF_FFFF_FFFF;
const CHILDREN: u8 = 0x02;

fn primary_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(PRIMARY);
    k.extend_from_slice(key);
    k
}

fn child_key(parent: Fingerprint, child: Fingerprint) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = CHILDREN;
    k[1..9].copy_from_slice(&parent.to_be_bytes());
    k[9..17].copy_from_slice(&child.to_be_bytes());
    k
}

/// The page index.
pub struct Index {
    tree: AnyTree,
    seqno: SequenceNumberCounter,
    visible: SequenceNumberCounter,
}

impl Index {
    /// Opens or creates the index in `dir`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        let seqno = SequenceNumberCounter::default();
        let visible = SequenceNumberCounter::default();
        let tree = Config::new(dir, seqno.clone(), visible.clone())
            .use_cache(Arc::new(lsm_tree::Cache::with_capacity_bytes(cache_bytes)))
            .expect_point_read_hits(false)
            .open()?;
        if let Some(s) = tree.get_highest_seqno() {
            seqno.fetch_max(s + 1);
            visible.fetch_max(s + 1);
        }
        Ok(Self {
            tree,
            seqno,
            visible,
        })
    }

    /// Highest sequence number whose effects are in flushed tables.
    #[must_use]
    pub fn persisted_seqno(&self) -> Option<u64> {
        self.tree.get_highest_persisted_seqno()
    }

    /// Reads see the newest version of everything: the store needs no snapshots (publication
    /// is ordered by the log's writer lock). Reading at `visible` instead raced with version
    /// GC: a flush or compaction could drop the last tree version older than a reader's
    /// snapshot and lsm-tree panics ("should always find a SuperVersion"; seen under the
    /// bounded SIGKILL test). The top bit of a sequence number is reserved by lsm-tree.
    fn read_seqno(&self) -> u64 {
        READ_NEWEST_SEQNO
    }

    /// Versions and entries older than this may be garbage-collected by flushes/compactions.
    fn gc_seqno(&self) -> u64 {
        self.visible.get()
    }

    fn advance(&self, seqno: u64) {
        self.seqno.fetch_max(seqno + 1);
        self.visible.fetch_max(seqno + 1);
    }

    /// Looks up a page record.
    pub fn get(&self, key: &[u8]) -> Result<Option<IndexRecord>> {
        match self.tree.get(primary_key(key), self.read_seqno())? {
            None => Ok(None),
            Some(v) => IndexRecord::decode(&v)
                .map(Some)
                .ok_or_else(|| Error::Corrupt {
                    path: "index".into(),
                    detail: format!("undecodable record of {} bytes", v.len()),
                }),
        }
    }

    /// Inserts a page record and its parent-to-child link.
    pub fn insert(&self, key: &[u8], fp: Fingerprint, rec: &IndexRecord) {
        self.tree
            .insert(primary_key(key), rec.encode().to_vec(), rec.seqno);
        if rec.parent_fp != crate::key::NO_PARENT {
            self.tree.insert(
                child_key(rec.parent_fp, fp).to_vec(),
                key.to_vec(),
                rec.seqno,
            );
        }
        self.advance(rec.seqno);
    }

    /// Removes a page record and its parent link.
    pub fn remove(&self, key: &[u8], fp: Fingerprint, parent_fp: Fingerprint, seqno: u64) {
        self.tree.remove(primary_key(key), seqno);
        if parent_fp != crate::key::NO_PARENT {
            self.tree.remove(child_key(parent_fp, fp).to_vec(), seqno);
        }
        self.advance(seqno);
    }

    /// Keys of the direct children of `parent` ever linked and not removed (one prefix scan).
    pub fn children(&self, parent: Fingerprint) -> Result<Vec<Vec<u8>>> {
        let mut prefix = [0u8; 9];
        prefix[0] = CHILDREN;
        prefix[1..9].copy_from_slice(&parent.to_be_bytes());
        let mut out = Vec::new();
        for item in self.tree.prefix(prefix, self.read_seqno(), None) {
            let (_, child_key) = item.into_inner()?;
            out.push(child_key.to_vec());
        }
        Ok(out)
    }

    /// The child of `parent` with the smallest fingerprint above `after` (any, when `after` is
    /// `None`) that `accept` takes, among those linked and not removed, and whether `accept`
    /// takes another after it (read from the same scan, so a walk need not seek again to learn
    /// that a page has no more children). Links sort by child fingerprint, so a walk over a
    /// page's children holds only the last fingerprint seen, never the list: a cascade over a
    /// page with a million children stays small.
    pub fn next_child(
        &self,
        parent: Fingerprint,
        after: Option<Fingerprint>,
        mut accept: impl FnMut(Fingerprint) -> bool,
    ) -> Result<Option<(Fingerprint, bool)>> {
        let from = match after {
            None => 0,
            Some(u64::MAX) => return Ok(None),
            Some(fp) => fp + 1,
        };
        let range = child_key(parent, from)..=child_key(parent, u64::MAX);
        let mut found = None;
        for item in self.tree.range(range, self.read_seqno(), None) {
            let link = item.key()?;
            let Some(child) = link
                .get(9..17)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
            else {
                return Err(Error::Corrupt {
                    path: "index".into(),
                    detail: format!("child link key of {} bytes", link.len()),
                });
            };
            if accept(child) {
                if found.is_some() {
                    return Ok(found.map(|c| (c, true)));
                }
                found = Some(child);
            }
        }
        Ok(found.map(|c| (c, false)))
    }

    /// The key of `child` if it is linked under `parent` (one point lookup of the link).
    pub fn child_link(&self, parent: Fingerprint, child: Fingerprint) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tree
            .get(child_key(parent, child), self.read_seqno())?
            .map(|v| v.to_vec()))
    }

    /// Reads every parent-to-child link once, so that damage to their blocks shows at open
    /// (where the index is rebuilt) rather than in a later delete. Returns the link count.
    pub fn check_links(&self) -> Result<u64> {
        let mut n = 0;
        for item in self.tree.prefix([CHILDREN], self.read_seqno(), None) {
            item.into_inner()?;
            n += 1;
        }
        Ok(n)
    }

    /// Visits every page record in key order.
    pub fn for_each_record(&self, f: impl FnMut(&[u8], IndexRecord) -> Result<()>) -> Result<()> {
        self.for_each_record_prefixed(&[], f)
    }

    /// Visits, in key order, every page record whose key starts with `key_prefix` (one range
    /// scan: the work is proportional to the matching records, not to the whole index).
    pub fn for_each_record_prefixed(
        &self,
        key_prefix: &[u8],
        mut f: impl FnMut(&[u8], IndexRecord) -> Result<()>,
    ) -> Result<()> {
        for item in self
            .tree
            .prefix(primary_key(key_prefix), self.read_seqno(), None)
        {
            let (k, v) = item.into_inner()?;
            let rec = IndexRecord::decode(&v).ok_or_else(|| Error::Corrupt {
                path: "index".into(),
                detail: "undecodable record".into(),
            })?;
            f(&k[1..], rec)?;
        }
        Ok(())
    }

    /// Drops every entry (used by `clear`).
    pub fn clear(&self) -> Result<()> {
        Ok(self.tree.clear()?)
    }

    /// Bytes in the active memtable.
    #[must_use]
    pub fn memtable_bytes(&self) -> u64 {
        self.tree.active_memtable().size()
    }

    /// Seals the active memtable. The caller must hold the log's writer lock so that no frame's
    /// records are split across memtables (replay restarts after the persisted seqno).
    pub fn rotate(&self) -> bool {
        self.tree.rotate_memtable().is_some()
    }

    /// Flushes sealed memtables to tables.
    pub fn flush_sealed(&self) -> Result<()> {
        let lock = self.tree.get_flush_lock();
        self.tree.flush(&lock, self.gc_seqno())?;
        Ok(())
    }

    /// Runs leveled compaction with the given parameters (changeable on every call).
    pub fn compact(&self, level_ratio: f32, l0_threshold: u8) -> Result<()> {
        let strategy = lsm_tree::compaction::Leveled::default()
            .with_level_ratio_policy(vec![level_ratio])
            .with_l0_threshold(l0_threshold);
        self.tree.compact(Arc::new(strategy), self.gc_seqno())?;
        Ok(())
    }

    /// Number of tables in L0 (write-stall signal).
    #[must_use]
    pub fn l0_runs(&self) -> usize {
        self.tree.l0_run_count()
    }

    /// Sorted runs a point lookup may probe: memtables, L0 tables, and non-empty deeper
    /// levels (the cost model's `lookup_runs`).
    #[must_use]
    pub fn lookup_runs(&self) -> usize {
        let deeper = (1..7)
            .filter(|&l| self.tree.level_table_count(l).is_some_and(|n| n > 0))
            .count();
        1 + self.tree.sealed_memtable_count() + self.tree.l0_run_count() + deeper
    }

    /// Index bytes on disk.
    #[must_use]
    pub fn disk_bytes(&self) -> u64 {
        self.tree.disk_space()
    }

    /// Number of sealed memtables awaiting flush.
    #[must_use]
    pub fn sealed_count(&self) -> usize {
        self.tree.sealed_memtable_count()
    }

    /// Table count.
    #[must_use]
    pub fn table_count(&self) -> usize {
        self.tree.table_count()
    }
}
