//! A Delete frame outlives every Put it cancels (issue 15): reclaiming the segment that holds
//! a tombstone must not bring the deleted page back to anything that replays the log (a
//! fresh Follower, a store whose index is rebuilt).

mod common;

use common::{page_bytes, read_pages_with};
use sglang_lsm::{Follower, ReclaimVictim, Store, StoreConfig};

fn put(store: &Store, key: &str, len: usize) {
    let value = page_bytes(key.as_bytes(), len);
    let ok = store
        .put_batch(&[key.as_bytes()], &[vec![&value[..]]], &[])
        .expect("put_batch");
    assert_eq!(ok, vec![true], "{key}");
}

fn follower_has(dir: &std::path::Path, key: &str, len: usize) -> bool {
    let f = Follower::open(dir, 0).expect("follower");
    let got = read_pages_with(&[key.to_string()], len, |k, b| {
        f.get_batch(k, b).expect("follower get")
    });
    got[0].is_some()
}

#[test]
fn deleted_page_stays_deleted_after_its_tombstone_segment_is_reclaimed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        capacity_bytes: Some(32 << 20),
        segment_bytes: 1 << 20,
        // Emptiest first, and the fillers below are half dead, so segment 1 (P's Put, mostly
        // live) is reclaimed last: the window in which the bug showed.
        reclaim_victim: ReclaimVictim::Greedy,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), config).expect("open");
    let big = 256 << 10;
    // Segment 1: P and three live pages. B1 does not fit and rolls into segment 2 (Y).
    put(&store, "P", 64 << 10);
    for i in 0..3 {
        put(&store, &format!("X{i}"), big);
    }
    put(&store, "B1", big);
    assert!(store.delete(b"P").expect("delete P"));
    assert!(store.delete(b"B1").expect("delete B1"));
    // Y now holds only dead data and P's tombstone: the first victim once the log is full,
    // while segment 1 (three live pages) stays.
    let mut filler = 0;
    while store.stats().segments_reclaimed == 0 {
        let key = format!("F{filler}");
        put(&store, &key, big);
        if filler % 2 == 1 {
            store.delete(key.as_bytes()).expect("delete filler");
        }
        filler += 1;
        assert!(filler < 1000, "the store never reclaimed");
    }
    assert!(
        !store.exists(b"P").expect("exists"),
        "the store itself forgot the delete"
    );
    assert!(
        !follower_has(dir.path(), "P", 64 << 10),
        "a fresh follower replays P's Put without its tombstone"
    );
    drop(store);
    // The index rebuilt from the log alone (as after losing it) must agree.
    std::fs::remove_dir_all(dir.path().join("index")).expect("drop the index");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("reopen");
    assert!(
        !store.exists(b"P").expect("exists"),
        "a rebuilt index resurrects P"
    );
    assert!(
        store.exists(b"X0").expect("exists"),
        "live pages survive the rebuild"
    );
}

#[derive(Clone, Debug)]
enum Op {
    Put(usize),
    Delete(usize),
    /// Writes this many 256 KiB filler pages (every other one deleted again), so the log
    /// fills and reclamation takes segments in between the puts and deletes.
    Fill(usize),
}

const KEYS: usize = 12;

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0..KEYS).prop_map(Op::Put),
        3 => (0..KEYS).prop_map(Op::Delete),
        1 => (1usize..24).prop_map(Op::Fill),
    ]
}

fn page_len(k: usize) -> usize {
    (64 << 10) * (1 + k % 4)
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 24, ..Default::default() })]

    /// Whatever reclamation did, a fresh follower (pure log replay) never sees a page the
    /// model says is deleted, and every page it sees has its exact bytes.
    #[test]
    fn a_fresh_follower_never_sees_a_deleted_page(
        ops in proptest::collection::vec(op(), 1..40),
        greedy in proptest::bool::ANY,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig {
            capacity_bytes: Some(16 << 20),
            segment_bytes: 1 << 20,
            reclaim_victim: if greedy { ReclaimVictim::Greedy } else { ReclaimVictim::Oldest },
            ..StoreConfig::default()
        };
        let store = Store::open(dir.path(), config).expect("open");
        let mut live = [false; KEYS];
        let mut filler = 0usize;
        for op in &ops {
            match *op {
                Op::Put(k) => {
                    put(&store, &format!("k{k}"), page_len(k));
                    live[k] = true;
                }
                Op::Delete(k) => {
                    store.delete(format!("k{k}").as_bytes()).expect("delete");
                    live[k] = false;
                }
                Op::Fill(n) => {
                    for _ in 0..n {
                        let key = format!("F{filler}");
                        put(&store, &key, 256 << 10);
                        if filler % 2 == 1 {
                            store.delete(key.as_bytes()).expect("delete filler");
                        }
                        filler += 1;
                    }
                }
            }
        }
        drop(store);
        let f = Follower::open(dir.path(), 0).expect("follower");
        for (k, &is_live) in live.iter().enumerate() {
            let key = format!("k{k}");
            let got = read_pages_with(std::slice::from_ref(&key), page_len(k), |ks, b| {
                f.get_batch(ks, b).expect("follower get")
            });
            if let Some(bytes) = &got[0] {
                proptest::prop_assert!(is_live, "{key} was deleted but the follower has it");
                proptest::prop_assert!(bytes == &page_bytes(key.as_bytes(), page_len(k)));
            }
        }
    }
}
