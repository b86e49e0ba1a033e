//! The narrow seam between the engine and its users: what a [`crate::Store`], a
//! [`crate::Follower`] and a node service's [`crate::Client`] have in common, so bindings and
//! benchmarks write each call once for all of them.

use crate::{Client, Follower, Result, Store};

/// Reading pages into caller buffers (every handle can).
pub trait ReadPages: Sync {
    /// `get_batch`: one flag per key; buffers of a miss are unspecified.
    ///
    /// # Errors
    /// As the handle's `get_batch`.
    fn read_pages(&self, keys: &[&[u8]], buffers: &mut [Vec<&mut [u8]>]) -> Result<Vec<bool>>;

    /// `exists_batch`: one flag per key.
    ///
    /// # Errors
    /// As the handle's `exists_batch`.
    fn pages_exist(&self, keys: &[&[u8]]) -> Result<Vec<bool>>;
}

/// Writing pages (a store and a client; a follower never writes).
pub trait WritePages: ReadPages {
    /// `put_batch`.
    ///
    /// # Errors
    /// As the handle's `put_batch`.
    fn write_pages(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        prefix: &[&[u8]],
    ) -> Result<Vec<bool>>;

    /// `put_batch_with_parents`.
    ///
    /// # Errors
    /// As the handle's `put_batch_with_parents`.
    fn write_pages_under(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        parents: &[&[u8]],
    ) -> Result<Vec<bool>>;

    /// `probe`.
    ///
    /// # Errors
    /// As the handle's `probe`.
    fn probe_pages(&self, keys: &[&[u8]], prefix: &[&[u8]]) -> Result<usize>;

    /// `flush`.
    ///
    /// # Errors
    /// As the handle's `flush`.
    fn flush_pages(&self) -> Result<()>;
}

macro_rules! read_pages_for {
    ($($t:ty),*) => {$(
        impl ReadPages for $t {
            fn read_pages(&self, keys: &[&[u8]], buffers: &mut [Vec<&mut [u8]>]) -> Result<Vec<bool>> {
                self.get_batch(keys, buffers)
            }
            fn pages_exist(&self, keys: &[&[u8]]) -> Result<Vec<bool>> {
                self.exists_batch(keys)
            }
        }
    )*};
}
read_pages_for!(Store, Follower, Client);

macro_rules! write_pages_for {
    ($($t:ty),*) => {$(
        impl WritePages for $t {
            fn write_pages(
                &self,
                keys: &[&[u8]],
                values: &[Vec<&[u8]>],
                prefix: &[&[u8]],
            ) -> Result<Vec<bool>> {
                self.put_batch(keys, values, prefix)
            }
            fn write_pages_under(
                &self,
                keys: &[&[u8]],
                values: &[Vec<&[u8]>],
                parents: &[&[u8]],
            ) -> Result<Vec<bool>> {
                self.put_batch_with_parents(keys, values, parents)
            }
            fn probe_pages(&self, keys: &[&[u8]], prefix: &[&[u8]]) -> Result<usize> {
                self.probe(keys, prefix)
            }
            fn flush_pages(&self) -> Result<()> {
                self.flush()
            }
        }
    )*};
}
write_pages_for!(Store, Client);
