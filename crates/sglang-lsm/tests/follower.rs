//! A read-only follower of a store another handle writes (MLA ranks that are not the writer).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{keys, page_bytes, put_pages, small_config};
use sglang_lsm::{Error, Follower, Store, StoreConfig};

fn read(f: &Follower, ks: &[String], len: usize) -> Vec<Option<Vec<u8>>> {
    common::read_pages_with(ks, len, |k, b| f.get_batch(k, b).expect("get_batch"))
}

fn probe(f: &Follower, ks: &[String]) -> usize {
    let refs: Vec<&[u8]> = ks.iter().map(|k| k.as_bytes()).collect();
    f.probe(&refs).expect("probe")
}

#[test]
fn follower_sees_puts_deletes_and_clear_of_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path(), small_config()).expect("open writer");
    let f = Follower::open(dir.path(), 0).expect("open follower");
    assert_eq!(f.stats().pages, 0);
    let ks = keys("p", 20);
    assert!(put_pages(&s, &ks, 70_000).iter().all(|&b| b));
    assert_eq!(probe(&f, &ks), 20);
    for (k, got) in ks.iter().zip(read(&f, &ks, 70_000)) {
        assert_eq!(
            got.as_deref(),
            Some(&page_bytes(k.as_bytes(), 70_000)[..]),
            "{k}"
        );
    }
    assert!(s.delete(ks[5].as_bytes()).expect("delete"));
    assert_eq!(probe(&f, &ks), 5, "the follower applies the delete");
    assert!(!f.exists(ks[5].as_bytes()).expect("exists"));
    s.clear().expect("clear");
    put_pages(&s, &ks[..2], 100);
    assert_eq!(probe(&f, &ks), 2);
    assert_eq!(f.stats().pages, 2, "{:?}", f.stats());
    assert_eq!(
        read(&f, &ks[..2], 100)[1].as_deref(),
        Some(&page_bytes(ks[1].as_bytes(), 100)[..])
    );
}

#[test]
fn a_follower_can_start_before_the_writer_creates_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_dir = dir.path().join("rank0");
    let f = Follower::open(&store_dir, 0).expect("follower of a store that does not exist yet");
    assert_eq!(probe(&f, &keys("x", 1)), 0);
    let s = Store::open(&store_dir, small_config()).expect("open writer");
    put_pages(&s, &keys("x", 3), 5000);
    assert_eq!(probe(&f, &keys("x", 3)), 3);
    assert!(!store_dir.join("LOCK").exists() || Store::open(&store_dir, small_config()).is_err());
}

#[test]
fn the_refresh_interval_bounds_how_often_the_log_is_scanned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path(), small_config()).expect("open writer");
    let f = Follower::open(dir.path(), 60_000).expect("open follower");
    put_pages(&s, &keys("y", 2), 5000);
    assert_eq!(
        probe(&f, &keys("y", 2)),
        0,
        "within the interval: not rescanned"
    );
    f.refresh().expect("refresh");
    assert_eq!(probe(&f, &keys("y", 2)), 2);
}

#[test]
fn a_follower_writes_nothing_and_survives_writer_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ks = keys("r", 30);
    {
        let s = Store::open(dir.path(), small_config()).expect("open writer");
        put_pages(&s, &ks[..10], 40_000);
    }
    let listing = |p: &std::path::Path| {
        let mut v: Vec<(String, u64, std::time::SystemTime)> = walk(p)
            .into_iter()
            .map(|e| {
                let m = std::fs::metadata(&e).expect("metadata");
                (
                    e.display().to_string(),
                    m.len(),
                    m.modified().expect("mtime"),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = listing(dir.path());
    let f = Follower::open(dir.path(), 0).expect("open follower");
    assert_eq!(probe(&f, &ks), 10);
    read(&f, &ks, 40_000);
    assert_eq!(
        listing(dir.path()),
        before,
        "the follower changed the store directory"
    );
    // The writer restarts (replay, new segment) and goes on writing.
    let s = Store::open(dir.path(), small_config()).expect("reopen writer");
    put_pages(&s, &ks[10..], 40_000);
    assert_eq!(probe(&f, &ks), 30);
    for (k, got) in ks.iter().zip(read(&f, &ks, 40_000)) {
        assert_eq!(
            got.as_deref(),
            Some(&page_bytes(k.as_bytes(), 40_000)[..]),
            "{k}"
        );
    }
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).expect("read_dir") {
        let path = e.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_store_of_another_format_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("FORMAT"), "sglang-lsm\nformat_version=99\n").expect("write");
    match Follower::open(dir.path(), 0) {
        Err(Error::FormatVersion { found: 99, .. }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a format-99 store"),
    }
}

/// The writer reclaims (relocates and evicts) under a capacity bound while a follower reads
/// all the time: every hit has exact bytes; once the writer is idle and the follower has
/// scanned, the follower knows exactly the writer's pages.
#[test]
fn follower_reads_exact_bytes_while_the_writer_reclaims() {
    let dir = tempfile::tempdir().expect("tempdir");
    let page = 256 << 10;
    let cfg = StoreConfig {
        capacity_bytes: Some(32 << 20),
        memtable_bytes: 256 << 10,
        ..StoreConfig::default()
    };
    let s = Arc::new(Store::open(dir.path(), cfg).expect("open writer"));
    let f = Arc::new(Follower::open(dir.path(), 1).expect("open follower"));
    let done = Arc::new(AtomicBool::new(false));
    let chains: Vec<Vec<String>> = (0..160).map(|c| keys(&format!("chain{c}"), 4)).collect();
    let reader = {
        let (f, done, chains) = (Arc::clone(&f), Arc::clone(&done), chains.clone());
        std::thread::spawn(move || {
            let (mut hits, mut rounds) = (0u64, 0u64);
            while !done.load(Ordering::Acquire) {
                for ks in chains.iter().step_by(7) {
                    for (k, got) in ks.iter().zip(read(&f, ks, page)) {
                        if let Some(bytes) = got {
                            assert!(bytes == page_bytes(k.as_bytes(), page), "{k}: wrong bytes");
                            hits += 1;
                        }
                    }
                }
                rounds += 1;
            }
            (hits, rounds)
        })
    };
    for (c, ks) in chains.iter().enumerate() {
        put_pages(&s, ks, page);
        if c % 3 == 0 {
            // Read back: referenced pages are relocated instead of evicted.
            common::get_pages(&s, &ks[..2], page);
        }
    }
    done.store(true, Ordering::Release);
    let (hits, rounds) = reader.join().expect("reader");
    assert!(hits > 0 && rounds > 0, "hits {hits} rounds {rounds}");
    let st = s.stats();
    assert!(st.evicted_pages > 0 && st.relocated_pages > 0, "{st:?}");
    // Quiesce the writer's background reclamation, then compare the two views.
    match Arc::try_unwrap(s) {
        Ok(s) => drop(s),
        Err(_) => panic!("the writer is still shared"),
    }
    // Unbounded now, so no background reclamation moves pages while the views are compared.
    let s = Store::open(dir.path(), small_config()).expect("reopen");
    f.refresh().expect("refresh");
    let mut differ: HashMap<String, (bool, bool)> = HashMap::new();
    for ks in &chains {
        for k in ks {
            let w = s.exists(k.as_bytes()).expect("exists");
            let r = f.exists(k.as_bytes()).expect("exists");
            if w != r {
                differ.insert(k.clone(), (w, r));
            }
        }
    }
    assert!(differ.is_empty(), "writer vs follower: {differ:?}");
    let all: Vec<String> = chains.concat();
    for (k, got) in all.iter().zip(read(&f, &all, page)) {
        if s.exists(k.as_bytes()).expect("exists") {
            assert_eq!(
                got.as_deref(),
                Some(&page_bytes(k.as_bytes(), page)[..]),
                "{k}"
            );
        }
    }
}
