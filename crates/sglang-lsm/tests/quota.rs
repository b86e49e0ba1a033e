//! Namespace quotas and the free-space floor.

mod common;

use std::collections::BTreeMap;

use common::page_bytes;
use proptest::prelude::*;
use sglang_lsm::{Error, NamespaceStats, Store, StoreConfig};

const PAGE: usize = 256 << 10;
const MIB: u64 = 1 << 20;

fn config(quotas: &[(&str, u64)], capacity: Option<u64>) -> StoreConfig {
    StoreConfig {
        capacity_bytes: capacity,
        memtable_bytes: 256 << 10,
        namespace_quotas: quotas.iter().map(|&(n, q)| (n.to_string(), q)).collect(),
        ..StoreConfig::default()
    }
}

/// Chain `c` of namespace `ns`: `ns:chain-c/0` → `ns:chain-c/1` → ….
fn chain(ns: &str, c: u32, len: usize) -> Vec<String> {
    (0..len)
        .map(|i| format!("{ns}:chain-{c:05}/{i:03}"))
        .collect()
}

fn put(s: &Store, keys: &[String], prefix: &[String]) -> Vec<bool> {
    let vals: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| page_bytes(k.as_bytes(), PAGE))
        .collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let prefix: Vec<&[u8]> = prefix.iter().map(|k| k.as_bytes()).collect();
    let parts: Vec<Vec<&[u8]>> = vals.iter().map(|v| vec![&v[..]]).collect();
    s.put_batch(&refs, &parts, &prefix).expect("put")
}

fn ns_stats(s: &Store, ns: &str) -> NamespaceStats {
    s.stats()
        .namespaces
        .into_iter()
        .find(|n| n.namespace == ns)
        .unwrap_or_else(|| panic!("no stats for namespace {ns:?}"))
}

/// Reads every page of every chain: resident pages must be exact and form a prefix of their
/// chain (no orphan). Returns resident pages per namespace.
fn check_chains(s: &Store, chains: &BTreeMap<(String, u32), usize>) -> BTreeMap<String, u64> {
    let mut resident: BTreeMap<String, u64> = BTreeMap::new();
    for ((ns, c), &len) in chains {
        let keys = chain(ns, *c, len);
        let got = common::get_pages(s, &keys, PAGE);
        let mut missing_from = None;
        for (i, (k, g)) in keys.iter().zip(got).enumerate() {
            match g {
                Some(bytes) => {
                    assert!(
                        missing_from.is_none(),
                        "{k}: present after missing page {missing_from:?}: orphan"
                    );
                    assert!(bytes == page_bytes(k.as_bytes(), PAGE), "{k}: wrong bytes");
                    *resident.entry(ns.clone()).or_insert(0) += 1;
                }
                None => missing_from = missing_from.or(Some(i)),
            }
        }
    }
    resident
}

/// Quotas hold and their accounting is exact (live bytes = resident pages × page size).
fn check_quotas(s: &Store, resident: &BTreeMap<String, u64>) {
    check_quotas_of(s, resident, None);
}

/// [`check_quotas`]; with `chains`, a mismatch names the pages the store says exist but that
/// do not read back (a read bug) versus a count that matches no page (an accounting bug).
fn check_quotas_of(
    s: &Store,
    resident: &BTreeMap<String, u64>,
    chains: Option<&BTreeMap<(String, u32), usize>>,
) {
    for n in s.stats().namespaces {
        let pages = resident.get(&n.namespace).copied().unwrap_or(0);
        if let (Some(chains), true) = (chains, n.pages != pages) {
            let mut unreadable = Vec::new();
            let mut exists = 0u64;
            for ((ns, c), &len) in chains {
                if *ns != n.namespace {
                    continue;
                }
                for k in chain(ns, *c, len) {
                    if s.exists(k.as_bytes()).expect("exists") {
                        exists += 1;
                        if s.get(k.as_bytes()).expect("get").is_none() {
                            unreadable.push(k);
                        }
                    }
                }
            }
            let st = s.stats();
            panic!(
                "namespace {:?}: stats say {} pages, chains read {pages}; exists() finds {exists}; \
                 exist but do not read: {unreadable:?}; now stats {:?}; evicted {} relocated {} \
                 corrupt {}",
                n.namespace,
                n.pages,
                st.namespaces.iter().find(|m| m.namespace == n.namespace),
                st.evicted_pages,
                st.relocated_pages,
                st.get_corrupt
            );
        }
        assert!(
            n.live_bytes <= n.quota_bytes,
            "namespace {:?} over quota: {n:?}",
            n.namespace
        );
        assert_eq!(n.pages, pages, "{n:?}");
        assert_eq!(n.live_bytes, pages * PAGE as u64, "{n:?}");
    }
}

fn flood(capacity: Option<u64>, quotas: &[(&str, u64)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path(), config(quotas, capacity)).expect("open");
    let mut chains = BTreeMap::new();
    // Namespace b: 8 MiB written first, so its pages are the oldest in the log (20 MiB in all).
    for c in 0..8 {
        assert!(put(&s, &chain("b", c, 4), &[]).iter().all(|&ok| ok));
        chains.insert(("b".to_string(), c), 4);
    }
    // Namespace a floods 160 MiB through an 8 MiB quota, reading some of its pages back. b
    // adds a page now and then, so b's pages also sit in segments that a's garbage fills.
    for c in 0..160 {
        if c % 2 == 0 && c < 96 {
            assert_eq!(put(&s, &chain("b", 100 + c, 1), &[]), vec![true]);
            chains.insert(("b".to_string(), 100 + c), 1);
        }
        let keys = chain("a", c, 4);
        let ok = put(&s, &keys, &[]);
        assert!(
            ok.iter().all(|&b| b),
            "a declined at chain {c}: {:?}",
            s.stats()
        );
        chains.insert(("a".to_string(), c), 4);
        if c % 5 == 0 {
            assert!(common::get_pages(&s, &keys[..2], PAGE)
                .iter()
                .all(Option::is_some));
        }
        assert!(ns_stats(&s, "a").live_bytes <= 8 * MIB);
    }
    check_quiescent(&s, &chains);
    let resident = check_chains(&s, &chains);
    assert_eq!(
        resident.get("b"),
        Some(&(32 + 48)),
        "b lost pages: {:?}",
        s.stats()
    );
    let a = ns_stats(&s, "a");
    assert!(a.evicted_pages >= 600, "{a:?}");
    assert_eq!(a.declined_pages, 0, "{a:?}");
    if let Some(b) = s.stats().namespaces.iter().find(|n| n.namespace == "b") {
        assert_eq!(b.evicted_pages, 0, "{b:?}");
    }
    if let Some(cap) = capacity {
        assert!(s.stats().log_bytes <= cap + cap / 32, "{:?}", s.stats());
    }
}

#[test]
fn flood_in_one_namespace_never_evicts_another_unbounded() {
    flood(None, &[("a", 8 * MIB), ("b", 24 * MIB)]);
}

/// With a capacity bound too: the log fills with the flood's evicted pages, and reclaiming that
/// space must not evict b's (older, never read) pages either. b has no quota here.
#[test]
fn flood_in_one_namespace_never_evicts_another_bounded() {
    flood(Some(48 * MIB), &[("a", 8 * MIB)]);
}

#[test]
fn quota_evicts_leaves_only_and_declines_what_cannot_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path(), config(&[("a", 2 * MIB)], None)).expect("open");
    // A batch larger than the quota: its first 8 pages (2 MiB) fit, the rest is declined.
    let big = chain("a", 0, 12);
    let ok = put(&s, &big, &[]);
    assert_eq!(ok, [vec![true; 8], vec![false; 4]].concat());
    assert_eq!(ns_stats(&s, "a").declined_pages, 4);
    // Page a:…/7 gets a child in namespace b: the chain can no longer shrink from its tail,
    // and a's quota must not evict b's page.
    let b_child = vec!["b:child".to_string()];
    assert_eq!(put(&s, &b_child, &big[..8]), vec![true]);
    let more = chain("a", 1, 2);
    assert_eq!(put(&s, &more, &[]), vec![false, false], "nothing evictable");
    assert!(common::get_pages(&s, &b_child, PAGE)[0].is_some());
    assert_eq!(ns_stats(&s, "a").evicted_pages, 0);
    // Once b's page goes, a's chain is evictable again, leaf first.
    assert!(s.delete(b"b:child").expect("delete"));
    assert_eq!(put(&s, &more, &[]), vec![true, true]);
    let mut chains = BTreeMap::new();
    chains.insert(("a".to_string(), 0), 8);
    chains.insert(("a".to_string(), 1), 2);
    let resident = check_chains(&s, &chains);
    check_quotas(&s, &resident);
    assert!(ns_stats(&s, "a").evicted_pages >= 2);
}

/// A page being extended by the batch is not evicted to make room for its own child.
#[test]
fn the_parent_of_a_batch_is_not_evicted_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path(), config(&[("a", 2 * MIB)], None)).expect("open");
    let keys = chain("a", 0, 9);
    assert!(put(&s, &keys[..8], &[]).iter().all(|&b| b));
    // The full quota is one chain whose only leaf is the new page's parent: nothing to evict.
    assert_eq!(put(&s, &keys[8..], &keys[..8]), vec![false]);
    assert!(s.get(keys[7].as_bytes()).expect("get").is_some());
}

#[test]
fn quotas_are_rebuilt_on_reopen_and_a_smaller_quota_shrinks_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chains = BTreeMap::new();
    let before = {
        let s = Store::open(dir.path(), config(&[("a", 32 * MIB)], None)).expect("open");
        for c in 0..16 {
            assert!(put(&s, &chain("a", c, 4), &[]).iter().all(|&b| b));
            chains.insert(("a".to_string(), c), 4);
            assert!(put(&s, &chain("b", c, 2), &[]).iter().all(|&b| b));
            chains.insert(("b".to_string(), c), 2);
        }
        ns_stats(&s, "a")
    };
    assert_eq!(before.live_bytes, 16 * MIB);
    {
        let s = Store::open(dir.path(), config(&[("a", 32 * MIB)], None)).expect("reopen");
        let after = ns_stats(&s, "a");
        assert_eq!(
            (after.live_bytes, after.pages),
            (before.live_bytes, before.pages)
        );
    }
    let s = Store::open(dir.path(), config(&[("a", 4 * MIB), ("b", 8 * MIB)], None))
        .expect("reopen smaller");
    let a = ns_stats(&s, "a");
    assert!(a.live_bytes <= 4 * MIB && a.evicted_pages > 0, "{a:?}");
    let resident = check_chains(&s, &chains);
    check_quotas(&s, &resident);
    assert_eq!(
        resident.get("b"),
        Some(&32),
        "b is within its quota and untouched"
    );
    drop(s);
    // The evictions were logged: they survive a reopen without quotas.
    let s = Store::open(dir.path(), config(&[], None)).expect("reopen unbounded");
    assert_eq!(check_chains(&s, &chains).get("a"), resident.get("a"));
}

#[test]
fn custom_separator_and_the_empty_namespace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig {
        namespace_separator: "/".to_string(),
        ..config(&[("", MIB)], None)
    };
    let s = Store::open(dir.path(), cfg).expect("open");
    // Keys without a separator are in "": four 256 KiB pages fill its 1 MiB quota.
    let plain: Vec<String> = (0..6).map(|i| format!("plain-{i}")).collect();
    for k in &plain {
        assert_eq!(put(&s, std::slice::from_ref(k), &[]), vec![true]);
    }
    let ns = ns_stats(&s, "");
    assert_eq!((ns.pages, ns.evicted_pages), (4, 2), "{ns:?}");
    // "x/…" is another (unbounded) namespace.
    let other: Vec<String> = (0..6).map(|i| format!("x/{i}")).collect();
    assert!(put(&s, &other, &[]).iter().all(|&b| b));
    assert_eq!(s.stats().pages, 10);
    // The oldest went first.
    assert!(s.get(b"plain-0").expect("get").is_none());
    assert!(s.get(b"plain-5").expect("get").is_some());
}

#[test]
fn bad_namespace_options_are_rejected_with_the_field_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (cfg, field) in [
        (config(&[("a", 4096)], None), "namespace_quotas"),
        (config(&[("a:b", MIB)], None), "namespace_quotas"),
        (
            StoreConfig {
                namespace_separator: "->".to_string(),
                ..StoreConfig::default()
            },
            "namespace_separator",
        ),
    ] {
        let err = Store::open(dir.path(), cfg).expect_err(field);
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains(field), "{err}");
    }
    for (json, field) in [
        (r#"{"min_free_bytes":"lots"}"#, "min_free_bytes"),
        (r#"{"namespace_quotas":{"a":-5}}"#, "namespace_quotas"),
        (r#"{"namespace_quotas":[1]}"#, "namespace_quotas"),
        (r#"{"namespace_separator":7}"#, "namespace_separator"),
    ] {
        let err = StoreConfig::from_json(json).expect_err(json);
        assert!(err.to_string().contains(field), "{json}: {err}");
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(usize, u32, usize),
    Read(usize, u32),
    Delete(usize, u32, usize),
    Reopen(u64),
}

const NAMESPACES: [&str; 3] = ["a", "b", "c"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3, 0u32..40, 1usize..6).prop_map(|(n, c, len)| Op::Put(n, c, len)),
        3 => (0usize..3, 0u32..40).prop_map(|(n, c)| Op::Read(n, c)),
        1 => (0usize..3, 0u32..40, 0usize..5).prop_map(|(n, c, i)| Op::Delete(n, c, i)),
        1 => (2u64..9).prop_map(Op::Reopen),
    ]
}

/// a has a quota that changes on every reopen (2-8 MiB, so it often shrinks), b a fixed
/// 6 MiB, c none; optionally a 24 MiB capacity on top.
fn prop_config(quota_a: u64, bounded: bool) -> StoreConfig {
    config(
        &[("a", quota_a * MIB), ("b", 6 * MIB)],
        bounded.then_some(24 * MIB),
    )
}

/// Runs `ops` against a store and checks quotas, accounting, chains and bytes as it goes.
fn run_ops(ops: Vec<Op>, bounded: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Some(Store::open(dir.path(), prop_config(4, bounded)).expect("open"));
    let mut chains: BTreeMap<(String, u32), usize> = BTreeMap::new();
    for (step, op) in ops.into_iter().enumerate() {
        let s = store.as_ref().expect("open store");
        match op {
            Op::Put(n, c, len) => {
                let ns = NAMESPACES[n];
                put(s, &chain(ns, c, len), &[]);
                let e = chains.entry((ns.to_string(), c)).or_insert(0);
                *e = (*e).max(len);
            }
            Op::Read(n, c) => {
                let ns = NAMESPACES[n];
                if let Some(&len) = chains.get(&(ns.to_string(), c)) {
                    common::get_pages(s, &chain(ns, c, len), PAGE);
                }
            }
            Op::Delete(n, c, i) => {
                s.delete(chain(NAMESPACES[n], c, i + 1)[i].as_bytes())
                    .expect("delete");
            }
            Op::Reopen(quota_a) => {
                drop(store.take());
                store =
                    Some(Store::open(dir.path(), prop_config(quota_a, bounded)).expect("reopen"));
            }
        }
        let s = store.as_ref().expect("open store");
        if step % 3 == 2 || matches!(op, Op::Reopen(_)) {
            check_quiescent(s, &chains);
        } else {
            for n in s.stats().namespaces {
                assert!(n.live_bytes <= n.quota_bytes, "{n:?}");
            }
        }
    }
    let s = store.as_ref().expect("open store");
    check_quiescent(s, &chains);
}

/// Chains and quota accounting, compared while background reclamation stands still: the
/// reclaimer may evict at any moment (bounded runs), so a count read before an eviction and
/// stats taken after it would disagree without anything being wrong. Reads the chains, the
/// stats, then the chains again, and checks only a round in which both readings agree (pages
/// only disappear here, nothing is put meanwhile). Bounded: a few retries, then the check runs
/// on the last reading anyway (and fails loudly if the engine is wrong).
fn check_quiescent(s: &Store, chains: &BTreeMap<(String, u32), usize>) {
    for _ in 0..8 {
        let before = check_chains(s, chains);
        let stats = s.stats();
        if check_chains(s, chains) == before {
            check_accounting(&stats.namespaces, &before);
            return;
        }
    }
    let resident = check_chains(s, chains);
    check_quotas_of(s, &resident, Some(chains));
}

/// Quotas hold and accounting matches `resident`, for stats taken at one instant.
fn check_accounting(namespaces: &[NamespaceStats], resident: &BTreeMap<String, u64>) {
    for n in namespaces {
        assert!(n.live_bytes <= n.quota_bytes, "over quota: {n:?}");
        let pages = resident.get(&n.namespace).copied().unwrap_or(0);
        assert_eq!(n.pages, pages, "{n:?}");
        assert_eq!(n.live_bytes, pages * PAGE as u64, "{n:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Random puts, reads, deletes and reopens (with a new quota) across three namespaces:
    /// no quota is ever exceeded, accounting is exact, no orphan appears, bytes are exact.
    #[test]
    fn quotas_hold_under_random_operations(
        ops in prop::collection::vec(op(), 20..100),
        bounded in any::<bool>(),
    ) {
        run_ops(ops, bounded);
    }
}

/// A sequence the proptest found (2026-11-29): accounting said namespace a held 29 pages, the
/// chains read back 25 — reads raced background relocation and reported moved pages as misses
/// (fails about 1 run in 12 on the old read path; `reads_hit_pages_that_reclamation_moves_*`
/// is the direct test).
#[test]
fn regression_accounting_after_reopens() {
    run_ops(
        vec![
            Op::Delete(0, 15, 3),
            Op::Delete(2, 2, 3),
            Op::Put(0, 18, 3),
            Op::Put(1, 16, 4),
            Op::Put(1, 18, 5),
            Op::Read(1, 18),
            Op::Put(2, 10, 1),
            Op::Read(2, 0),
            Op::Put(1, 8, 3),
            Op::Read(2, 23),
            Op::Put(0, 20, 5),
            Op::Put(0, 24, 3),
            Op::Put(0, 17, 4),
            Op::Read(1, 23),
            Op::Read(2, 7),
            Op::Put(1, 4, 2),
            Op::Delete(2, 27, 1),
            Op::Put(2, 0, 5),
            Op::Put(2, 26, 4),
            Op::Put(2, 37, 2),
            Op::Put(1, 6, 2),
            Op::Put(1, 16, 1),
            Op::Put(0, 2, 4),
            Op::Delete(0, 18, 2),
            Op::Read(0, 27),
            Op::Read(1, 21),
            Op::Put(2, 8, 4),
            Op::Read(2, 0),
            Op::Read(1, 32),
            Op::Put(0, 0, 1),
            Op::Put(1, 19, 2),
            Op::Put(1, 23, 1),
            Op::Put(2, 6, 3),
            Op::Put(1, 7, 2),
            Op::Delete(0, 13, 0),
            Op::Delete(1, 10, 0),
            Op::Put(1, 22, 1),
            Op::Put(2, 2, 1),
            Op::Put(2, 39, 2),
            Op::Read(0, 33),
            Op::Put(0, 11, 3),
            Op::Delete(0, 2, 3),
            Op::Put(1, 13, 4),
            Op::Read(2, 6),
            Op::Put(0, 4, 5),
            Op::Put(1, 13, 4),
            Op::Put(1, 34, 1),
            Op::Read(1, 30),
            Op::Put(2, 29, 4),
            Op::Put(2, 35, 4),
            Op::Put(0, 4, 1),
            Op::Read(0, 13),
            Op::Delete(1, 35, 2),
            Op::Put(0, 12, 5),
            Op::Put(1, 7, 5),
            Op::Reopen(8),
            Op::Read(1, 5),
            Op::Put(2, 19, 5),
            Op::Put(1, 16, 4),
            Op::Put(2, 0, 2),
            Op::Put(1, 37, 3),
            Op::Put(1, 24, 3),
            Op::Put(1, 20, 4),
            Op::Put(0, 27, 5),
            Op::Read(2, 6),
            Op::Read(0, 20),
            Op::Put(2, 10, 2),
            Op::Read(0, 5),
            Op::Put(1, 28, 3),
            Op::Read(1, 15),
            Op::Delete(2, 29, 2),
            Op::Put(2, 9, 3),
            Op::Delete(0, 11, 3),
            Op::Read(0, 23),
            Op::Put(1, 18, 3),
            Op::Read(0, 25),
            Op::Delete(1, 13, 3),
            Op::Put(0, 8, 4),
            Op::Read(0, 29),
            Op::Put(1, 31, 5),
            Op::Put(0, 14, 1),
            Op::Put(2, 0, 2),
            Op::Read(2, 28),
            Op::Read(1, 25),
            Op::Put(1, 7, 4),
            Op::Put(1, 1, 1),
            Op::Read(2, 35),
            Op::Put(2, 21, 5),
            Op::Read(0, 21),
            Op::Read(1, 34),
            Op::Read(0, 8),
            Op::Put(0, 23, 4),
            Op::Put(2, 27, 1),
            Op::Put(2, 19, 5),
            Op::Put(1, 38, 3),
            Op::Read(1, 16),
            Op::Reopen(7),
            Op::Reopen(2),
            Op::Put(2, 22, 2),
        ],
        true,
    );
}
