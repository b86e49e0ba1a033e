//! Capacity bound, reclamation and prefix-aware eviction.

mod common;

use std::collections::HashMap;

use common::page_bytes;
use proptest::prelude::*;
use sglang_lsm::{Eviction, Store, StoreConfig};

const CAP: u64 = 32 << 20;

fn bounded_config() -> StoreConfig {
    StoreConfig {
        capacity_bytes: Some(CAP),
        memtable_bytes: 256 << 10,
        ..StoreConfig::default()
    }
}

fn bounded_config_with(eviction: Eviction) -> StoreConfig {
    StoreConfig {
        eviction,
        ..bounded_config()
    }
}

/// Chain `c`: keys c/0 → c/1 → … (each the parent of the next).
fn chain(c: u32, len: usize) -> Vec<String> {
    (0..len).map(|i| format!("chain-{c:05}/{i:03}")).collect()
}

fn put_chain(s: &Store, keys: &[String], page: usize) -> Vec<bool> {
    let vals: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| page_bytes(k.as_bytes(), page))
        .collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let parts: Vec<Vec<&[u8]>> = vals.iter().map(|v| vec![&v[..]]).collect();
    s.put_batch(&refs, &parts, &[]).expect("put")
}

/// Every resident page reads back exactly, and each chain's resident pages are a prefix of it
/// (eviction never orphans a descendant). Background reclamation may run meanwhile; since it
/// only ever evicts leaves, walking a chain from its root, once a page is missing every later
/// page must be missing too.
fn check_invariants(s: &Store, chains: &HashMap<u32, usize>, page: usize) {
    // One batch is one frame, and a frame never spans segments: a batch larger than
    // `segment_bytes` makes a segment of its own, and relocating that segment borrows its size.
    // So the bound is capacity + one segment, or + the largest batch (header and segment
    // header included) if that is larger (docs/DESIGN.md).
    let segment_bytes = (CAP / 32).max(1 << 20);
    let largest_batch = chains
        .values()
        .max()
        .map_or(0, |&n| (n * page) as u64 + 8192);
    let st = s.stats();
    assert!(
        st.log_bytes <= CAP + segment_bytes.max(largest_batch),
        "log {} exceeds capacity {} + one segment",
        st.log_bytes,
        CAP
    );
    for (&c, &len) in chains {
        let mut missing_from = None;
        for (i, k) in chain(c, len).iter().enumerate() {
            match s.get(k.as_bytes()).expect("get") {
                Some(bytes) => {
                    assert!(
                        missing_from.is_none(),
                        "chain {c}: page {i} present after missing page {missing_from:?}: orphan"
                    );
                    assert!(
                        bytes == page_bytes(k.as_bytes(), page),
                        "chain {c}: page {i} has wrong bytes"
                    );
                }
                None => missing_from = missing_from.or(Some(i)),
            }
        }
    }
}

#[test]
fn ten_times_capacity_stays_bounded_and_keeps_read_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let page = 64 << 10;
    let s = Store::open(dir.path(), bounded_config()).expect("open");
    let mut chains = HashMap::new();
    // A hot set, read after every write burst: it must survive by relocation.
    let hot: Vec<u32> = (0..4).collect();
    for &c in &hot {
        assert!(put_chain(&s, &chain(c, 8), page).iter().all(|&b| b));
        chains.insert(c, 8);
    }
    let total_chains = (10 * CAP / (8 * page as u64)) as u32;
    for c in 4..4 + total_chains {
        let ok = put_chain(&s, &chain(c, 8), page);
        assert!(
            ok.iter().all(|&b| b),
            "bounded store declined a write it could make room for: {:?}\n{:?}",
            s.stats(),
            s.segment_usage()
        );
        chains.insert(c, 8);
        for &h in &hot {
            let got = common::get_pages(&s, &chain(h, 8), page);
            assert!(
                got.iter().all(Option::is_some),
                "hot chain {h} lost at chain {c}"
            );
        }
        // Only the bound mid-run: reading every page here would make every page "hot".
        let segment_bytes = (CAP / 32).max(1 << 20);
        assert!(s.stats().log_bytes <= CAP + segment_bytes);
    }
    check_invariants(&s, &chains, page);
    let st = s.stats();
    assert!(
        st.segments_reclaimed > 0 && st.evicted_pages > 0 && st.relocated_pages > 0,
        "{st:?}"
    );
    assert!(st.write_amplification >= 1.0);
    // The bound and the contents survive a restart.
    drop(s);
    let s = Store::open(dir.path(), bounded_config()).expect("reopen");
    check_invariants(&s, &chains, page);
    for &h in &hot {
        assert!(common::get_pages(&s, &chain(h, 8), page)
            .iter()
            .all(Option::is_some));
    }
}

#[test]
fn reopening_with_a_smaller_capacity_shrinks_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let page = 256 << 10;
    let mut chains = HashMap::new();
    {
        let s = Store::open(
            dir.path(),
            StoreConfig {
                memtable_bytes: 256 << 10,
                ..StoreConfig::default()
            },
        )
        .expect("open");
        for c in 0..64 {
            put_chain(&s, &chain(c, 4), page);
            chains.insert(c, 4);
        }
        assert!(s.stats().log_bytes > 2 * CAP);
    }
    let s = Store::open(dir.path(), bounded_config()).expect("reopen bounded");
    // Background reclamation brings it under the bound; a put forces it inline if needed.
    put_chain(&s, &chain(999, 1), page);
    chains.insert(999, 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s.stats().log_bytes > CAP && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    check_invariants(&s, &chains, page);
}

#[derive(Clone, Debug)]
enum Op {
    Put(u32, usize),
    Read(u32),
    Delete(u32, usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..200, 1usize..6).prop_map(|(c, n)| Op::Put(c, n)),
        3 => (0u32..200).prop_map(Op::Read),
        1 => (0u32..200, 0usize..6).prop_map(|(c, i)| Op::Delete(c, i)),
        1 => Just(Op::Reopen),
    ]
}

/// Runs `ops` on a bounded store, checking the bound, orphans and bytes as it goes.
fn run_bounded_ops(ops: Vec<Op>, eviction: Eviction) {
    // 200 chains of up to 5 pages of 256 KiB: ~8x the 32 MiB bound.
    let page = 256 << 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Some(Store::open(dir.path(), bounded_config_with(eviction)).expect("open"));
    let mut chains: HashMap<u32, usize> = HashMap::new();
    for (step, op) in ops.into_iter().enumerate() {
        let s = store.as_ref().expect("open store");
        match op {
            Op::Put(c, n) => {
                let keys = chain(c, n);
                put_chain(s, &keys, page);
                let e = chains.entry(c).or_insert(0);
                *e = (*e).max(n);
            }
            Op::Read(c) => {
                if let Some(&n) = chains.get(&c) {
                    let keys = chain(c, n);
                    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
                    let hit = s.probe(&refs, &[]).expect("probe");
                    let got = common::get_pages(s, &keys[..hit], page);
                    for (k, g) in keys.iter().zip(got) {
                        if let Some(g) = g {
                            assert!(g == page_bytes(k.as_bytes(), page), "{k}: wrong bytes");
                        }
                    }
                }
            }
            Op::Delete(c, i) => {
                s.delete(chain(c, i + 1)[i].as_bytes()).expect("delete");
            }
            Op::Reopen => {
                drop(store.take());
                store =
                    Some(Store::open(dir.path(), bounded_config_with(eviction)).expect("reopen"));
            }
        }
        if step % 4 == 3 {
            check_invariants(store.as_ref().expect("open store"), &chains, page);
        }
    }
    check_invariants(store.as_ref().expect("open store"), &chains, page);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    /// Random puts, reads (which make pages worth keeping), deletes and reopens on a store far
    /// smaller than the data: the bound holds, no orphans appear, resident bytes are exact.
    #[test]
    fn bounded_store_invariants(ops in prop::collection::vec(op(), 20..120)) {
        run_bounded_ops(ops, Eviction::Clock);
    }

    /// The same under S3-FIFO over segments: queues change where pages go, not what holds.
    #[test]
    fn bounded_store_invariants_under_s3fifo(ops in prop::collection::vec(op(), 20..120)) {
        run_bounded_ops(ops, Eviction::S3Fifo);
    }
}

/// A relocation that fails half-way (ENOSPC on its append) loses no live page: the victim
/// segment is only deleted once everything in it moved or was evicted.
#[test]
fn failed_relocation_loses_nothing_live() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(sglang_lsm::io::FaultInjector::default());
    let page = 256 << 10;
    let mut chains = HashMap::new();
    {
        let s = Store::open_with_faults(dir.path(), bounded_config(), Arc::clone(&faults))
            .expect("open");
        // 24 MiB of single-page chains, all read once: every page is worth keeping.
        for c in 0..96 {
            put_chain(&s, &chain(c, 1), page);
            chains.insert(c, 1);
        }
        for c in 0..96 {
            assert!(s.get(chain(c, 1)[0].as_bytes()).expect("get").is_some());
        }
        faults.enospc_after(2);
        let mut failed = false;
        for c in 1000..1040 {
            match s.put_batch(
                &[chain(c, 1)[0].as_bytes()],
                &[vec![&page_bytes(chain(c, 1)[0].as_bytes(), page)[..]]],
                &[],
            ) {
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.code(), "no_space", "{e}");
                    failed = true;
                }
            }
        }
        assert!(failed, "the injected ENOSPC must surface");
        faults.clear();
        for c in 0..96 {
            let k = &chain(c, 1)[0];
            assert_eq!(
                s.get(k.as_bytes()).expect("get"),
                Some(page_bytes(k.as_bytes(), page)),
                "{k} lost"
            );
        }
    }
    let s = Store::open(dir.path(), bounded_config()).expect("reopen");
    for c in 0..96 {
        let k = &chain(c, 1)[0];
        assert_eq!(
            s.get(k.as_bytes()).expect("get"),
            Some(page_bytes(k.as_bytes(), page)),
            "{k} lost after reopen"
        );
    }
    check_invariants(&s, &chains, page);
}

/// Second chances must not block writes: after every page was just read, a blocked put
/// reclaims without them (the CLOCK hand's second sweep) instead of declining.
#[test]
fn writes_continue_after_everything_was_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let page = 512 << 10;
    let s = Store::open(dir.path(), bounded_config()).expect("open");
    for c in 0..56 {
        assert!(put_chain(&s, &chain(c, 1), page)[0]);
    }
    for c in 0..56 {
        assert!(s.get(chain(c, 1)[0].as_bytes()).expect("get").is_some());
    }
    for c in 100..140 {
        assert!(
            put_chain(&s, &chain(c, 1), page)[0],
            "declined after a full read"
        );
    }
    assert!(s.stats().log_bytes <= CAP + (CAP / 32).max(1 << 20));
    assert!(s.stats().evicted_pages > 0);
}

/// Extending a resident chain while the store is full must not orphan the new page: inline
/// reclamation for the extending put may not evict the chain it extends, and if anything
/// (the background reclaimer, another tenant's eviction) took the parent meanwhile, the new
/// page is declined rather than stored unreachable. Found by the quota proptest in CI.
#[test]
fn extending_a_chain_under_pressure_never_orphans_the_new_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let page = 512 << 10;
    let s = Store::open(dir.path(), bounded_config()).expect("open");
    let mut chains = HashMap::new();
    for c in 0..56 {
        assert!(put_chain(&s, &chain(c, 1), page)[0]);
        chains.insert(c, 1);
    }
    // Every page referenced: the blocked puts below reclaim without second chances.
    for c in 0..56 {
        assert!(s.get(chain(c, 1)[0].as_bytes()).expect("get").is_some());
    }
    let mut extended = 0;
    for c in 0..56 {
        let keys = chain(c, 2);
        if s.get(keys[0].as_bytes()).expect("get").is_none() {
            continue; // evicted by an earlier extension: re-putting would not be an extension
        }
        let ok = put_chain(&s, &keys, page);
        chains.insert(c, 2);
        if ok[1] {
            extended += 1;
            assert!(
                s.get(keys[0].as_bytes()).expect("get").is_some(),
                "chain {c}: new page stored but its parent was evicted for it: orphan"
            );
        }
        check_invariants(&s, &chains, page);
    }
    assert!(extended > 0, "no chain was extended");
}

/// Background and inline reclamation relocate (or evict) pages while another thread reads
/// them. A page that is still present must read back exactly: a page whose segment was
/// reclaimed between the index lookup and the read is read again at its new place (before,
/// it was reported as a miss, and the quota proptest saw phantom orphans).
#[test]
fn reads_hit_pages_that_reclamation_moves_under_them() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let page = 256 << 10;
    let s = Arc::new(Store::open(dir.path(), bounded_config()).expect("open"));
    for c in 0..4 {
        assert!(put_chain(&s, &chain(c, 8), page).iter().all(|&b| b));
    }
    let interior: Vec<String> = (0..4).flat_map(|c| chain(c, 7)).collect();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, done, interior) = (Arc::clone(&s), Arc::clone(&done), interior.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !done.load(Ordering::Acquire) {
                for (k, got) in interior.iter().zip(common::get_pages(&s, &interior, page)) {
                    match got {
                        Some(bytes) => {
                            assert!(bytes == page_bytes(k.as_bytes(), page), "{k}: wrong bytes");
                        }
                        // Evicted is fine (a blocked put may evict referenced chains, leaf
                        // first); a miss for a page still there is not.
                        None => assert!(
                            !s.exists(k.as_bytes()).expect("exists"),
                            "{k}: reported a miss but is present (moved while read)"
                        ),
                    }
                }
                rounds += 1;
            }
            rounds
        })
    };
    // Churn: 1 MiB chains put, then cut back to their first page, so no segment is all
    // garbage and the reclaimer must relocate (the stable chains) or evict (the cut chains).
    // Under this read pressure a put may be declined (allowed: the store is full of pages
    // just read); that changes nothing here.
    for c in 100..400 {
        put_chain(&s, &chain(c, 4), page);
        if c >= 104 {
            s.delete(chain(c - 4, 2)[1].as_bytes()).expect("delete");
        }
    }
    done.store(true, Ordering::Release);
    let rounds = reader.join().expect("reader");
    let st = s.stats();
    assert!(st.relocated_pages > 0, "nothing was relocated: {st:?}");
    assert!(rounds > 10, "reader ran {rounds} rounds");
}

/// A sequence the proptest found (2026-11-29): the log went 1.1 MiB over the bound, more than
/// one 1 MiB segment, while the background reclaimer relocated a segment holding one 5-page
/// batch of 1.26 MiB. That is the documented bound (capacity + one segment or, if larger, one
/// batch); the test used to check a bound the engine never promised. Splitting batches into
/// segment-sized frames was tried and dropped: a chain spread over several segments can then
/// only be evicted leaf-first across segments, and oldest-first reclamation relocates its
/// root again and again (`store_basic::capacity_bound_declines_what_cannot_fit` failed).
#[test]
fn regression_bound_after_reopens() {
    run_bounded_ops(
        vec![
            Op::Put(151, 4),
            Op::Put(127, 2),
            Op::Put(64, 3),
            Op::Put(158, 5),
            Op::Read(131),
            Op::Reopen,
            Op::Read(41),
            Op::Put(25, 2),
            Op::Put(79, 2),
            Op::Read(164),
            Op::Delete(40, 1),
            Op::Reopen,
            Op::Reopen,
            Op::Put(100, 4),
            Op::Read(147),
            Op::Put(167, 4),
            Op::Read(20),
            Op::Read(28),
            Op::Read(61),
            Op::Put(60, 3),
            Op::Put(132, 2),
            Op::Put(127, 1),
            Op::Read(94),
            Op::Put(80, 4),
            Op::Put(131, 5),
            Op::Read(110),
            Op::Read(182),
            Op::Put(138, 1),
            Op::Put(146, 5),
            Op::Read(81),
            Op::Put(82, 1),
            Op::Put(133, 2),
            Op::Read(70),
            Op::Put(100, 4),
            Op::Put(83, 4),
            Op::Put(168, 1),
            Op::Read(47),
            Op::Read(84),
            Op::Read(95),
            Op::Delete(92, 5),
            Op::Put(164, 4),
            Op::Delete(36, 4),
            Op::Delete(41, 5),
            Op::Put(167, 2),
            Op::Delete(18, 0),
            Op::Read(37),
            Op::Put(135, 1),
            Op::Put(159, 5),
            Op::Put(46, 4),
            Op::Read(94),
            Op::Put(137, 1),
            Op::Delete(175, 0),
            Op::Read(88),
            Op::Read(71),
            Op::Put(59, 3),
            Op::Put(7, 3),
            Op::Put(168, 5),
            Op::Read(170),
            Op::Read(169),
            Op::Read(43),
            Op::Put(93, 4),
            Op::Put(111, 1),
            Op::Put(186, 1),
            Op::Read(69),
            Op::Put(46, 1),
            Op::Read(172),
            Op::Put(29, 5),
            Op::Put(93, 4),
            Op::Read(128),
            Op::Put(167, 4),
            Op::Read(8),
            Op::Put(184, 1),
            Op::Reopen,
            Op::Put(101, 4),
            Op::Reopen,
            Op::Put(62, 5),
            Op::Put(149, 3),
            Op::Put(70, 5),
            Op::Read(136),
            Op::Put(19, 2),
            Op::Read(73),
            Op::Put(42, 3),
            Op::Read(130),
            Op::Put(171, 4),
            Op::Put(70, 4),
            Op::Put(61, 3),
            Op::Put(6, 1),
            Op::Put(48, 1),
            Op::Delete(180, 4),
            Op::Put(193, 1),
            Op::Delete(69, 2),
            Op::Read(106),
            Op::Put(161, 4),
            Op::Read(131),
            Op::Read(61),
            Op::Put(196, 3),
            Op::Read(197),
            Op::Put(74, 3),
            Op::Read(91),
            Op::Put(186, 2),
            Op::Delete(20, 4),
            Op::Read(146),
            Op::Put(121, 4),
        ],
        Eviction::Clock,
    );
}
