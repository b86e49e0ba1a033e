//! What the replayer does to the store for one request, whoever bounds it: SGLang's prefetch
//! (load the hit prefix in `STORAGE_BATCH_SIZE` batches, each page's bytes checked) and its
//! write-back (store a run of blocks as a prefix chain).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use sglang_lsm::Store;
use sha2::{Digest, Sha256};

use crate::trace::{BlockId, Request, Trace};

/// Pages per store call, as SGLang batches them (`STORAGE_BATCH_SIZE`).
pub const STORAGE_BATCH_PAGES: usize = 128;

/// Bytes stamped at each end of a block so reads can be checked against the key.
pub(super) const STAMP_BYTES: usize = 8;

/// The store key for a trace block: the hex SHA-256 of the id, shaped like SGLang's 64-char
/// page keys so the index sees realistic (uniformly spread) keys rather than small integers.
pub fn block_key(block: BlockId) -> String {
    hex::encode(Sha256::digest(block.to_le_bytes()))
}

/// Every block's key, hashed once up front so the timed loop does not hash.
pub(super) struct BlockKeys(HashMap<BlockId, String>);

impl BlockKeys {
    pub(super) fn of(trace: &Trace) -> Self {
        Self(
            trace
                .requests
                .iter()
                .flat_map(|r| r.blocks.iter().copied())
                .map(|b| (b, block_key(b)))
                .collect(),
        )
    }

    /// The keys of a request's blocks, in prefix order (every block is in the map: it was
    /// built from the same trace).
    pub(super) fn of_request(&self, req: &Request) -> Vec<&[u8]> {
        req.blocks.iter().map(|b| self.get(*b)).collect()
    }

    pub(super) fn get(&self, block: BlockId) -> &[u8] {
        self.0.get(&block).map(|k| k.as_bytes()).unwrap_or_default()
    }
}

fn stamp(buf: &mut [u8], block: BlockId) {
    let id = block.to_le_bytes();
    let n = buf.len();
    buf[..STAMP_BYTES].copy_from_slice(&id);
    buf[n - STAMP_BYTES..].copy_from_slice(&id);
}

fn stamp_ok(buf: &[u8], block: BlockId) -> bool {
    let id = block.to_le_bytes();
    let n = buf.len();
    buf[..STAMP_BYTES] == id && buf[n - STAMP_BYTES..] == id
}

/// Page buffers for one SGLang batch and the time spent in the store's calls.
pub(super) struct PageIo {
    read_bufs: Vec<Vec<u8>>,
    write_bufs: Vec<Vec<u8>>,
    /// Time inside `get_batch`, summed.
    pub(super) load: Duration,
    /// Time inside `put_batch`, summed.
    pub(super) put: Duration,
    /// Pages passed to `put_batch` (stored, already present or declined).
    pub(super) offered_blocks: u64,
}

impl PageIo {
    pub(super) fn new(block_bytes: u64) -> anyhow::Result<Self> {
        let block_len = usize::try_from(block_bytes).context("block size overflows")?;
        Ok(Self {
            read_bufs: (0..STORAGE_BATCH_PAGES)
                .map(|_| vec![0u8; block_len])
                .collect(),
            write_bufs: (0..STORAGE_BATCH_PAGES)
                .map(|_| vec![0xA5u8; block_len])
                .collect(),
            load: Duration::ZERO,
            put: Duration::ZERO,
            offered_blocks: 0,
        })
    }

    /// Loads the first `n` blocks of request `ri` and returns how many leading ones read back
    /// (SGLang stops at the first page that fails). `strict`: every one must (the replayer
    /// enforces the policy, so nothing else removes pages); without it the store's own
    /// reclaimer may evict a page between the probe and the read, which then ends the hit.
    /// Returns the hits and the time inside `get_batch`.
    pub(super) fn load(
        &mut self,
        store: &Store,
        ri: usize,
        req: &Request,
        keys: &[&[u8]],
        n: usize,
        strict: bool,
    ) -> anyhow::Result<(usize, Duration)> {
        let started = Instant::now();
        let mut loaded = 0;
        'chunks: for chunk_start in (0..n).step_by(STORAGE_BATCH_PAGES) {
            let chunk_end = (chunk_start + STORAGE_BATCH_PAGES).min(n);
            let len = chunk_end - chunk_start;
            let mut outs: Vec<Vec<&mut [u8]>> = self.read_bufs[..len]
                .iter_mut()
                .map(|b| vec![b.as_mut_slice()])
                .collect();
            let found = store
                .get_batch(&keys[chunk_start..chunk_end], &mut outs)
                .with_context(|| format!("get_batch of request {ri}"))?;
            for (j, ok) in found.iter().enumerate() {
                let block = req.blocks[chunk_start + j];
                if !*ok {
                    ensure!(
                        !strict,
                        "request {ri}: probed block {block} did not read back"
                    );
                    break 'chunks;
                }
                ensure!(
                    stamp_ok(&self.read_bufs[j], block),
                    "request {ri}: block {block} read back another block's bytes"
                );
                loaded += 1;
            }
        }
        let took = started.elapsed();
        self.load += took;
        Ok((loaded, took))
    }

    /// Writes `req.blocks[from..to]` as one prefix chain whose parent chain is
    /// `keys[..from]`, in SGLang-sized `put_batch` calls; a call after the first continues
    /// the chain (`put_batch_continuing`), so a tail whose start was declined is declined
    /// too, as in one big batch. Returns the store's flag per page.
    pub(super) fn put_chain(
        &mut self,
        store: &Store,
        ri: usize,
        req: &Request,
        keys: &[&[u8]],
        from: usize,
        to: usize,
    ) -> anyhow::Result<Vec<bool>> {
        let started = Instant::now();
        let mut flags = Vec::with_capacity(to - from);
        for chunk_start in (from..to).step_by(STORAGE_BATCH_PAGES) {
            let chunk_end = (chunk_start + STORAGE_BATCH_PAGES).min(to);
            let run = &req.blocks[chunk_start..chunk_end];
            for (buf, &b) in self.write_bufs.iter_mut().zip(run) {
                stamp(buf, b);
            }
            let values: Vec<Vec<&[u8]>> = self.write_bufs[..run.len()]
                .iter()
                .map(|b| vec![b.as_slice()])
                .collect();
            let (chunk, prefix) = (&keys[chunk_start..chunk_end], &keys[..chunk_start]);
            let stored = if chunk_start == from {
                store.put_batch(chunk, &values, prefix)
            } else {
                store.put_batch_continuing(chunk, &values, prefix)
            }
            .with_context(|| format!("put_batch of request {ri}"))?;
            flags.extend(stored);
            self.offered_blocks += run.len() as u64;
        }
        self.put += started.elapsed();
        Ok(flags)
    }
}
