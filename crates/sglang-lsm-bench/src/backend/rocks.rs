//! RocksDB with integrated BlobDB (key-value separation inside RocksDB), configured the way a
//! KV-cache tier would use it:
//!
//! - values of 4 KiB and more go to blob files (`min_blob_size`), 256 MiB each, uncompressed
//!   (KV tensors barely compress and the other stores do not compress either);
//! - one `WriteBatch` per `put_batch`, WAL off (values are written once, at flush, like our
//!   store's single append; the REFERENCE measurement shows the WAL costs ~30% more);
//! - a second column family `meta` holds an empty marker per page, written in the same batch,
//!   so `probe` reads tiny entries behind a bloom filter instead of fetching blobs;
//! - reads are point gets split over 8 threads (the other stores' read depth);
//! - `sync` flushes both memtables (values reach blob files, keys reach tables).

use std::path::{Path, PathBuf};

use anyhow::Context;
use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DBCompressionType, Options, WriteBatch,
    WriteOptions, DB,
};

use super::fast_file::par_map;
use super::{check_get, check_put, fill_parts, parts_len, KvBackend};

const META_CF: &str = "meta";
const READ_THREADS: usize = 8;

/// See the module docs.
pub struct Rocks {
    dir: PathBuf,
    db: DB,
}

fn cf_options(blobs: bool) -> Options {
    let mut o = Options::default();
    o.set_compression_type(DBCompressionType::None);
    let mut t = BlockBasedOptions::default();
    t.set_bloom_filter(10.0, false);
    o.set_block_based_table_factory(&t);
    if blobs {
        o.set_enable_blob_files(true);
        o.set_min_blob_size(4096);
        o.set_blob_file_size(256 << 20);
        o.set_blob_compression_type(DBCompressionType::None);
        o.set_enable_blob_gc(true);
        o.set_write_buffer_size(64 << 20);
    }
    o
}

impl Rocks {
    /// Opens (creating) a database in `dir`.
    ///
    /// # Errors
    /// RocksDB refuses to open the directory.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let mut db_opts = cf_options(true);
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        let cfs = vec![
            ColumnFamilyDescriptor::new("default", cf_options(true)),
            ColumnFamilyDescriptor::new(META_CF, cf_options(false)),
        ];
        let db = DB::open_cf_descriptors(&db_opts, dir, cfs)
            .with_context(|| format!("opening RocksDB at {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            db,
        })
    }

    fn meta(&self) -> anyhow::Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(META_CF)
            .ok_or_else(|| anyhow::anyhow!("column family {META_CF} missing"))
    }
}

impl KvBackend for Rocks {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn put_batch(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        _prefix_keys: &[&[u8]],
    ) -> anyhow::Result<Vec<bool>> {
        check_put(keys, values)?;
        let meta = self.meta()?;
        let mut batch = WriteBatch::default();
        for (k, v) in keys.iter().zip(values) {
            if self.db.get_pinned_cf(meta, k)?.is_some() {
                continue;
            }
            let mut value = Vec::with_capacity(parts_len(v));
            for p in v {
                value.extend_from_slice(p);
            }
            batch.put(k, value);
            batch.put_cf(meta, k, []);
        }
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(batch, &wo)?;
        Ok(vec![true; keys.len()])
    }

    fn get_batch(
        &self,
        keys: &[&[u8]],
        buffers: &mut [Vec<&mut [u8]>],
    ) -> anyhow::Result<Vec<bool>> {
        check_get(keys, buffers)?;
        let cf = self
            .db
            .cf_handle("default")
            .ok_or_else(|| anyhow::anyhow!("default column family missing"))?;
        let mut items: Vec<(&[u8], &mut Vec<&mut [u8]>)> =
            keys.iter().copied().zip(buffers.iter_mut()).collect();
        let threads = if keys.len() < 8 {
            1
        } else {
            READ_THREADS.min(keys.len())
        };
        par_map(&mut items, threads, |(k, parts)| {
            let Some(v) = self.db.get_pinned_cf(cf, k)? else {
                return Ok(false);
            };
            fill_parts(&v, parts)
        })
    }

    fn probe(&self, keys: &[&[u8]]) -> anyhow::Result<usize> {
        let meta = self.meta()?;
        for (i, k) in keys.iter().enumerate() {
            if self.db.get_pinned_cf(meta, k)?.is_none() {
                return Ok(i);
            }
        }
        Ok(keys.len())
    }

    fn sync(&self) -> anyhow::Result<()> {
        self.db.flush()?;
        self.db.flush_cf(self.meta()?)?;
        Ok(())
    }

    fn disk_bytes(&self) -> anyhow::Result<u64> {
        super::du_bytes(&self.dir)
    }
}
