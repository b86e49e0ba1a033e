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

/// Puts batch `b` of `chain` (pages `b * batch_pages ..`, the earlier ones as prefix), with
/// bytes from `page_bytes`; every page must be stored.
pub fn put_chain_batch(s: &Store, chain: &[String], b: usize, batch_pages: usize, len: usize) {
    let batch = &chain[b * batch_pages..(b + 1) * batch_pages];
    let vals: Vec<Vec<u8>> = batch
        .iter()
        .map(|k| page_bytes(k.as_bytes(), len))
        .collect();
    let refs: Vec<&[u8]> = batch.iter().map(|k| k.as_bytes()).collect();
    let parts: Vec<Vec<&[u8]>> = vals.iter().map(|v| vec![&v[..]]).collect();
    let prefix: Vec<&[u8]> = chain[..b * batch_pages]
        .iter()
        .map(|k| k.as_bytes())
        .collect();
    let stored = s.put_batch(&refs, &parts, &prefix).expect("put_batch");
    assert!(stored.iter().all(|&x| x), "put declined");
}

/// Runs the ignored test `child_test` of this test binary with `dir_env` set to `dir`, waits
/// until it prints "ready" (it wrote everything and waits), then SIGKILLs it.
pub fn run_child_until_ready_then_kill(child_test: &str, dir_env: &str, dir: &std::path::Path) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", child_test, "--ignored", "--nocapture"])
        .env(dir_env, dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("ready"));
    assert!(ready, "the child never finished writing");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

/// The body of an ignored child-writer test: opens the store named by `dir_env` (returns at
/// once when it is unset, i.e. when run directly), runs `write`, prints "ready" and waits to
/// be killed by [`run_child_until_ready_then_kill`].
pub fn child_writer(dir_env: &str, write: impl FnOnce(&Store)) {
    let Ok(dir) = std::env::var(dir_env) else {
        return;
    };
    let store = Store::open(&dir, small_config()).expect("child open");
    write(&store);
    println!("ready");
    loop {
        std::thread::park();
    }
}

/// The store's value-log segment files, oldest first.
pub fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut segs: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join("vlog"))
        .expect("vlog")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    segs
}
