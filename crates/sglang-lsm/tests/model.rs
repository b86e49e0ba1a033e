//! Model-based property test: random put/get/probe/delete/reopen/clear sequences against an
//! in-memory map.

mod common;

use std::collections::HashMap;

use common::{page_bytes, small_config};
use proptest::prelude::*;
use sglang_lsm::Store;

#[derive(Clone, Debug)]
enum Op {
    /// Put a chain of keys (indices into a small key space) with one length.
    Put(Vec<u8>, usize),
    Get(Vec<u8>),
    Probe(Vec<u8>),
    Delete(u8),
    Reopen,
    Flush,
    Clear,
}

fn key(i: u8) -> String {
    format!("k{i:03}")
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec(0u8..40, 1..8), 1usize..20_000).prop_map(|(k, l)| Op::Put(k, l)),
        4 => prop::collection::vec(0u8..40, 1..8).prop_map(Op::Get),
        3 => prop::collection::vec(0u8..40, 1..8).prop_map(Op::Probe),
        2 => (0u8..40).prop_map(Op::Delete),
        1 => Just(Op::Reopen),
        1 => Just(Op::Flush),
        1 => Just(Op::Clear),
    ]
}

fn value(k: &str, len: usize) -> Vec<u8> {
    let mut seed = k.as_bytes().to_vec();
    seed.extend_from_slice(&len.to_le_bytes());
    page_bytes(&seed, len)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = small_config();
        cfg.segment_bytes = 1 << 20;
        let mut store = Some(Store::open(dir.path(), cfg.clone()).expect("open"));
        let mut model: HashMap<String, Vec<u8>> = HashMap::new();
        // Parent of each resident key, as put_batch defines it: the previous key in its batch.
        let mut parent: HashMap<String, Option<String>> = HashMap::new();
        for op in ops {
            let s = store.as_ref().expect("open store");
            match op {
                Op::Put(ids, len) => {
                    let ks: Vec<String> = ids.iter().map(|&i| key(i)).collect();
                    let vals: Vec<Vec<u8>> = ks.iter().map(|k| value(k, len)).collect();
                    let refs: Vec<&[u8]> = ks.iter().map(|k| k.as_bytes()).collect();
                    let parts: Vec<Vec<&[u8]>> = vals.iter().map(|v| vec![&v[..]]).collect();
                    let res = s.put_batch(&refs, &parts, &[]).expect("put");
                    prop_assert!(res.iter().all(|&b| b));
                    let mut prev: Option<String> = None;
                    for (k, v) in ks.into_iter().zip(vals) {
                        if !model.contains_key(&k) {
                            model.insert(k.clone(), v);
                            parent.insert(k.clone(), prev.clone());
                        }
                        prev = Some(k);
                    }
                }
                Op::Get(ids) => {
                    for i in ids {
                        let k = key(i);
                        let got = s.get(k.as_bytes()).expect("get");
                        prop_assert_eq!(got.as_ref(), model.get(&k), "key {}", k);
                    }
                }
                Op::Probe(ids) => {
                    let ks: Vec<String> = ids.iter().map(|&i| key(i)).collect();
                    let refs: Vec<&[u8]> = ks.iter().map(|k| k.as_bytes()).collect();
                    let want = ks.iter().take_while(|k| model.contains_key(*k)).count();
                    prop_assert_eq!(s.probe(&refs, &[]).expect("probe"), want);
                }
                Op::Delete(i) => {
                    let k = key(i);
                    let existed = s.delete(k.as_bytes()).expect("delete");
                    prop_assert_eq!(existed, model.contains_key(&k));
                    // Deleting a page deletes its resident descendants.
                    let mut doomed = vec![k];
                    let mut next = 0;
                    while next < doomed.len() {
                        let p = doomed[next].clone();
                        next += 1;
                        if model.remove(&p).is_none() {
                            continue;
                        }
                        parent.remove(&p);
                        doomed.extend(
                            parent.iter().filter(|(_, par)| par.as_deref() == Some(p.as_str())).map(|(c, _)| c.clone()),
                        );
                    }
                }
                Op::Reopen => {
                    drop(store.take()); // release the directory lock before reopening
                    store = Some(Store::open(dir.path(), cfg.clone()).expect("reopen"));
                }
                Op::Flush => s.flush().expect("flush"),
                Op::Clear => {
                    s.clear().expect("clear");
                    model.clear();
                    parent.clear();
                }
            }
        }
        let s = store.as_ref().expect("open store");
        prop_assert_eq!(s.stats().pages, model.len() as u64);
        let report = s.verify(|_, _| {}).expect("verify");
        prop_assert_eq!(report.corrupt, 0);
        prop_assert_eq!(report.verified, model.len() as u64);
    }
}
