//! The same conformance suite over every backend compiled in: exact round trips, misses,
//! prefix counting, no-op re-puts, length checks, odd keys, persistence across reopen.

use sglang_lsm_bench::backend::{BackendKind, KvBackend};

fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

/// Page buffers 4 KiB-aligned (as SGLang's host pool), so O_DIRECT paths run too.
struct Aligned(sglang_lsm::io::AlignedBuf);

impl Aligned {
    fn from(v: &[u8]) -> Self {
        let mut b = sglang_lsm::io::AlignedBuf::zeroed(v.len());
        b.copy_from_slice(v);
        Self(b)
    }
}

fn put(b: &dyn KvBackend, keys: &[&str], pages: &[(Vec<u8>, Vec<u8>)]) -> Vec<bool> {
    let k: Vec<&[u8]> = keys.iter().map(|s| s.as_bytes()).collect();
    let bufs: Vec<(Aligned, Aligned)> = pages
        .iter()
        .map(|(a, v)| (Aligned::from(a), Aligned::from(v)))
        .collect();
    let vals: Vec<Vec<&[u8]>> = bufs.iter().map(|(a, v)| vec![&a.0[..], &v.0[..]]).collect();
    b.put_batch(&k, &vals, &[]).expect("put_batch")
}

fn get(b: &dyn KvBackend, keys: &[&str], half: usize) -> (Vec<bool>, Vec<Vec<u8>>) {
    let k: Vec<&[u8]> = keys.iter().map(|s| s.as_bytes()).collect();
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = keys
        .iter()
        .map(|_| (vec![0xEE; half], vec![0xEE; half]))
        .collect();
    let mut parts: Vec<Vec<&mut [u8]>> = out
        .iter_mut()
        .map(|(a, v)| vec![&mut a[..], &mut v[..]])
        .collect();
    let hits = b.get_batch(&k, &mut parts).expect("get_batch");
    let joined = out
        .into_iter()
        .map(|(mut a, v)| {
            a.extend_from_slice(&v);
            a
        })
        .collect();
    (hits, joined)
}

fn page(seed: u64, half: usize) -> (Vec<u8>, Vec<u8>) {
    (bytes(seed, half), bytes(seed ^ 0xFFFF, half))
}

fn joined(p: &(Vec<u8>, Vec<u8>)) -> Vec<u8> {
    let mut v = p.0.clone();
    v.extend_from_slice(&p.1);
    v
}

fn conformance(kind: BackendKind) {
    let name = kind.name();
    let dir = tempfile::tempdir().expect("tempdir");
    let half = 8192;
    let keys: Vec<String> = (0..40).map(|i| format!("{i:064x}_conf_0_1")).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let pages: Vec<(Vec<u8>, Vec<u8>)> = (0..40).map(|i| page(i + 1, half)).collect();
    {
        let b = kind.open(dir.path()).expect("open");
        assert_eq!(b.name(), name);
        // Round trip, big enough to split across I/O threads.
        assert!(
            put(b.as_ref(), &key_refs, &pages).iter().all(|&x| x),
            "{name}"
        );
        let (hits, got) = get(b.as_ref(), &key_refs, half);
        assert!(hits.iter().all(|&h| h), "{name}: missed a written page");
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g, &joined(&pages[i]), "{name}: page {i} bytes differ");
        }

        // Misses are false and leave the buffer untouched; hits beside them still fill.
        let (hits, got) = get(b.as_ref(), &["absent_key", key_refs[3]], half);
        assert_eq!(hits, vec![false, true], "{name}");
        assert!(
            got[0].iter().all(|&x| x == 0xEE),
            "{name}: miss wrote its buffer"
        );
        assert_eq!(got[1], joined(&pages[3]), "{name}");

        // Probe counts the leading run of present keys.
        let probe = |ks: &[&str]| {
            let k: Vec<&[u8]> = ks.iter().map(|s| s.as_bytes()).collect();
            b.probe(&k).expect("probe")
        };
        assert_eq!(probe(&key_refs), 40, "{name}");
        assert_eq!(
            probe(&[key_refs[0], key_refs[1], "nope", key_refs[2]]),
            2,
            "{name}"
        );
        assert_eq!(probe(&["nope", key_refs[0]]), 0, "{name}");
        assert_eq!(probe(&[]), 0, "{name}");

        // A re-put of a present key is a no-op success: the first bytes stay.
        let other = page(999, half);
        assert_eq!(
            put(b.as_ref(), &[key_refs[5]], &[other]),
            vec![true],
            "{name}"
        );
        let (_, got) = get(b.as_ref(), &[key_refs[5]], half);
        assert_eq!(
            got[0],
            joined(&pages[5]),
            "{name}: re-put replaced the page"
        );

        // A key that is no safe file name still round trips.
        let odd = "a/../b c\u{1}.bin";
        let odd_page = page(4242, half);
        assert_eq!(
            put(b.as_ref(), &[odd], std::slice::from_ref(&odd_page)),
            vec![true]
        );
        let (hits, got) = get(b.as_ref(), &[odd], half);
        assert_eq!((hits[0], &got[0]), (true, &joined(&odd_page)), "{name}");

        // Buffers of the wrong total length are an error, not a partial copy.
        let k: Vec<&[u8]> = vec![key_refs[0].as_bytes()];
        let mut small = vec![0u8; half];
        let mut parts: Vec<Vec<&mut [u8]>> = vec![vec![&mut small[..]]];
        assert!(
            b.get_batch(&k, &mut parts).is_err(),
            "{name}: length mismatch accepted"
        );

        // Empty values and mismatched shapes are refused.
        assert!(b.put_batch(&k, &[vec![&[][..]]], &[]).is_err(), "{name}");
        assert!(b.put_batch(&k, &[], &[]).is_err(), "{name}");

        b.sync().expect("sync");
        let disk = b.disk_bytes().expect("disk bytes");
        assert!(disk >= 40 * 2 * half as u64, "{name}: {disk} bytes on disk");
    }
    // Everything synced is there after reopening.
    let b = kind.open(dir.path()).expect("reopen");
    let (hits, got) = get(b.as_ref(), &key_refs, half);
    assert!(hits.iter().all(|&h| h), "{name}: lost pages across reopen");
    assert_eq!(got[39], joined(&pages[39]), "{name}");
    assert_eq!(
        {
            let k: Vec<&[u8]> = key_refs.iter().map(|s| s.as_bytes()).collect();
            b.probe(&k).expect("probe")
        },
        40,
        "{name}: probe after reopen"
    );
}

#[test]
fn every_backend_passes_the_conformance_suite() {
    let kinds = BackendKind::available();
    assert!(kinds.len() >= 5);
    for kind in kinds {
        conformance(kind);
    }
}

#[test]
fn rocksdb_without_the_feature_is_a_clear_error() {
    if cfg!(feature = "rocksdb") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let e = BackendKind::Rocksdb
        .open(dir.path())
        .err()
        .expect("not compiled in");
    assert!(e.to_string().contains("--features rocksdb"), "{e}");
}
