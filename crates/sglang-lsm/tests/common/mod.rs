//! Shared helpers for integration tests.
#![allow(dead_code)]

use sglang_lsm::{Store, StoreConfig};

/// Deterministic page bytes derived from the key, so any read can be checked for exactness.
pub fn page_bytes(key: &[u8], len: usize) -> Vec<u8> {
    let mut state = xorshift_seed(key);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn xorshift_seed(key: &[u8]) -> u64 {
    key.iter().fold(0x9E37_79B9_7F4A_7C15u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    }) | 1
}

pub fn small_config() -> StoreConfig {
    StoreConfig {
        segment_bytes: 1 << 20,
        memtable_bytes: 64 << 10,
        ..StoreConfig::default()
    }
}

pub fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, small_config()).expect("open store")
}

/// Puts pages whose bytes come from `page_bytes`; K/V split in two parts like SGLang.
pub fn put_pages(store: &Store, keys: &[String], len: usize) -> Vec<bool> {
    let vals: Vec<Vec<u8>> = keys.iter().map(|k| page_bytes(k.as_bytes(), len)).collect();
    let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let parts: Vec<Vec<&[u8]>> = vals
        .iter()
        .map(|v| {
            let (a, b) = v.split_at(v.len() / 2);
            vec![a, b]
        })
        .collect();
    store.put_batch(&key_refs, &parts, &[]).expect("put_batch")
}

/// Reads pages back; `Some(bytes)` on hit.
pub fn get_pages(store: &Store, keys: &[String], len: usize) -> Vec<Option<Vec<u8>>> {
    read_pages_with(keys, len, |k, b| store.get_batch(k, b).expect("get_batch"))
}

/// Reads pages of `len` bytes through `get_batch` (a store's or a follower's); `Some(bytes)`
/// on hit.
pub fn read_pages_with(
    keys: &[String],
    len: usize,
    get_batch: impl FnOnce(&[&[u8]], &mut [Vec<&mut [u8]>]) -> Vec<bool>,
) -> Vec<Option<Vec<u8>>> {
    let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let mut bufs: Vec<Vec<u8>> = keys.iter().map(|_| vec![0u8; len]).collect();
    let hits = {
        let mut parts: Vec<Vec<&mut [u8]>> = bufs.iter_mut().map(|b| vec![&mut b[..]]).collect();
        get_batch(&key_refs, &mut parts)
    };
    bufs.into_iter()
        .zip(hits)
        .map(|(b, h)| h.then_some(b))
        .collect()
}

pub fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:06}")).collect()
}
