//! The sglang-lsm engine behind [`KvBackend`].

use std::path::Path;

use anyhow::Context;
use sglang_lsm::{Store, StoreConfig};

use super::KvBackend;

/// A [`Store`] with the configuration it was opened with.
pub struct Ours {
    store: Store,
}

impl Ours {
    /// Opens (creating) a store in `dir`.
    ///
    /// # Errors
    /// Whatever [`Store::open`] reports, with the path.
    pub fn open(dir: &Path, config: StoreConfig) -> anyhow::Result<Self> {
        let store = Store::open(dir, config)
            .with_context(|| format!("opening sglang-lsm store at {}", dir.display()))?;
        Ok(Self { store })
    }

    /// The engine, for benchmarks that read its statistics.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl KvBackend for Ours {
    fn name(&self) -> &'static str {
        "ours"
    }

    fn put_batch(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        prefix_keys: &[&[u8]],
    ) -> anyhow::Result<Vec<bool>> {
        Ok(self.store.put_batch(keys, values, prefix_keys)?)
    }

    fn get_batch(
        &self,
        keys: &[&[u8]],
        buffers: &mut [Vec<&mut [u8]>],
    ) -> anyhow::Result<Vec<bool>> {
        Ok(self.store.get_batch(keys, buffers)?)
    }

    fn probe(&self, keys: &[&[u8]]) -> anyhow::Result<usize> {
        Ok(self.store.probe(keys, &[])?)
    }

    fn sync(&self) -> anyhow::Result<()> {
        Ok(self.store.flush()?)
    }

    fn disk_bytes(&self) -> anyhow::Result<u64> {
        super::du_bytes(self.store.dir())
    }

    fn read_ios(&self) -> Option<u64> {
        Some(self.store.stats().read_ios)
    }
}
