//! Several threads putting, probing and getting at once, including the same keys.

mod common;

use std::sync::Arc;

use common::{get_pages, keys, open, page_bytes, put_pages};

#[test]
fn concurrent_writers_and_readers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(open(dir.path()));
    let len = 9000;
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for round in 0..20 {
                    // Threads 0-2 share key sets, so the same key is written concurrently.
                    let ks = keys(&format!("t{}-r{round}", t % 3), 16);
                    assert!(put_pages(&s, &ks, len).iter().all(|&b| b));
                    let refs: Vec<&[u8]> = ks.iter().map(|k| k.as_bytes()).collect();
                    assert_eq!(s.probe(&refs, &[]).expect("probe"), 16);
                    for (k, g) in ks.iter().zip(get_pages(&s, &ks, len)) {
                        assert_eq!(g.as_deref(), Some(&page_bytes(k.as_bytes(), len)[..]));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let st = s.stats();
    assert_eq!(st.pages, 3 * 20 * 16);
    assert_eq!(st.get_corrupt, 0);
    let report = s.verify(|_, _| {}).expect("verify");
    assert_eq!((report.verified, report.corrupt), (960, 0));
}

/// Readers racing index flushes and compactions (tiny memtable, so the tree publishes new
/// versions constantly). Regression test: reads at a snapshot sequence number could find no
/// tree version once version GC ran, and lsm-tree panicked.
#[test]
fn reads_race_flushes_and_compactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(
        sglang_lsm::Store::open(
            dir.path(),
            sglang_lsm::StoreConfig {
                memtable_bytes: 64 << 10,
                ..common::small_config()
            },
        )
        .expect("open"),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let k = format!("race-{t}-{:06}", reads % 2000);
                    let _ = s.get(k.as_bytes()).expect("get");
                    let _ = s.probe(&[k.as_bytes()], &[]).expect("probe");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for round in 0..2000 {
        let ks: Vec<String> = (0..10)
            .map(|i| format!("race-{}-{:06}", round % 2, (round * 10 + i) % 20_000))
            .collect();
        put_pages(&s, &ks, 4096);
        if round % 50 == 0 {
            s.flush().expect("flush");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader panicked") > 0);
    }
    assert!(s.stats().index_flushes > 5, "{:?}", s.stats());
}

/// One thread extends a chain (`[p, c_i]` batches: `p` resident, so only `c_i` is new) while
/// another deletes `p` over and over. A delete cascades to `p`'s children, and a put whose
/// parent went meanwhile declines its page, so at every instant a present child has its
/// parent present. Before the fix, a child published between the delete's descendant scan and
/// its tombstone stayed behind as an orphan.
#[test]
fn deleting_a_parent_while_children_are_put_never_orphans() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(open(dir.path()));
    let child = |i: usize| format!("parent/child-{i:06}");
    let present =
        |s: &sglang_lsm::Store, k: &str| s.probe(&[k.as_bytes()], &[]).expect("probe") == 1;
    let done = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (s, done, next) = (Arc::clone(&s), Arc::clone(&done), Arc::clone(&next));
        std::thread::spawn(move || {
            for i in 0..3000 {
                put_pages(&s, &["parent".to_string(), child(i)], 4096);
                next.store(i + 1, Ordering::Release);
            }
            done.store(true, Ordering::Release);
        })
    };
    let (mut deletes, mut checks) = (0u32, 0u32);
    while !done.load(Ordering::Acquire) {
        if s.delete(b"parent").expect("delete") {
            deletes += 1;
        }
        // Children first, then the parent: only this thread deletes, so a child seen present
        // had its parent present then, and the parent is still there afterwards.
        let upto = next.load(Ordering::Acquire);
        let seen: Vec<usize> = (upto.saturating_sub(16)..upto)
            .filter(|&i| present(&s, &child(i)))
            .collect();
        if !seen.is_empty() {
            checks += 1;
            assert!(
                present(&s, "parent"),
                "children {seen:?} present without their parent: orphans"
            );
        }
    }
    writer.join().expect("writer");
    assert!(
        deletes > 10,
        "the race was not exercised: {deletes} deletes"
    );
    let _ = checks;
    // The final state obeys the same rule, and a last delete leaves no child behind.
    let left: Vec<usize> = (0..3000).filter(|&i| present(&s, &child(i))).collect();
    assert!(left.is_empty() || present(&s, "parent"), "orphans {left:?}");
    s.delete(b"parent").expect("delete");
    assert!(
        (0..3000).all(|i| !present(&s, &child(i))),
        "cascade left children"
    );
    // Children that were declined because their parent went are in the log, unpublished; they
    // must not come back when a replay (after a restart) or a follower reads the log.
    let follower = sglang_lsm::Follower::open(dir.path(), 0).expect("follower");
    let back: Vec<usize> = (0..3000)
        .filter(|&i| follower.exists(child(i).as_bytes()).expect("exists"))
        .collect();
    assert!(
        back.is_empty(),
        "the follower sees deleted children {back:?}"
    );
    match Arc::try_unwrap(s) {
        Ok(s) => drop(s),
        Err(_) => panic!("the store is still shared"),
    }
    let s = open(dir.path());
    let back: Vec<usize> = (0..3000).filter(|&i| present(&s, &child(i))).collect();
    assert!(
        back.is_empty(),
        "children {back:?} came back after a reopen"
    );
}

/// Two replicas backing up the same prompt at once (through a node service, the usual case)
/// write its pages once: the second put waits for the first and finds them resident.
#[test]
fn concurrent_puts_of_the_same_pages_write_them_once() {
    const ROUNDS: usize = 20;
    const PAGES: usize = 16;
    const PAGE_BYTES: usize = 256 << 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(
        sglang_lsm::Store::open(dir.path(), common::small_config()).expect("open"),
    );
    for round in 0..ROUNDS {
        let keys: Vec<String> = (0..PAGES).map(|i| format!("r{round}-p{i}")).collect();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let (store, keys, barrier) = (
                    std::sync::Arc::clone(&store),
                    keys.clone(),
                    std::sync::Arc::clone(&barrier),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    common::put_pages(&store, &keys, PAGE_BYTES)
                })
            })
            .collect();
        for w in writers {
            assert_eq!(
                w.join().expect("writer"),
                vec![true; PAGES],
                "round {round}"
            );
        }
        for k in &keys {
            let got = store.get(k.as_bytes()).expect("get");
            assert!(
                got == Some(common::page_bytes(k.as_bytes(), PAGE_BYTES)),
                "{k}"
            );
        }
    }
    let st = store.stats();
    assert_eq!(
        st.put_pages,
        (ROUNDS * PAGES) as u64,
        "every page written once: {st:?}"
    );
    assert_eq!(st.put_existing_pages, (ROUNDS * PAGES) as u64);
}
