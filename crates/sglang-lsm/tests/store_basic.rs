//! End-to-end behaviour of the public Store API.

mod common;

use common::{get_pages, keys, open, page_bytes, put_pages, small_config};
use sglang_lsm::{Error, Store, StoreConfig};

#[test]
fn round_trip_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ks = keys("a", 50);
    {
        let s = open(dir.path());
        assert!(put_pages(&s, &ks, 12_345).iter().all(|&b| b));
        for (k, got) in ks.iter().zip(get_pages(&s, &ks, 12_345)) {
            assert_eq!(got.as_deref(), Some(&page_bytes(k.as_bytes(), 12_345)[..]));
        }
    }
    let s = open(dir.path());
    assert_eq!(s.stats().pages, 50);
    for (k, got) in ks.iter().zip(get_pages(&s, &ks, 12_345)) {
        assert_eq!(got.as_deref(), Some(&page_bytes(k.as_bytes(), 12_345)[..]));
    }
}

#[test]
fn probe_counts_leading_run_and_duplicates_are_noops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let ks = keys("p", 10);
    put_pages(&s, &ks[..6], 4096);
    let refs: Vec<&[u8]> = ks.iter().map(|k| k.as_bytes()).collect();
    assert_eq!(s.probe(&refs, &[]).expect("probe"), 6);
    assert_eq!(s.probe(&refs[3..], &refs[..3]).expect("probe"), 3);
    let before = s.stats().log_bytes;
    assert!(put_pages(&s, &ks[..6], 4096).iter().all(|&b| b));
    assert_eq!(
        s.stats().log_bytes,
        before,
        "re-put of existing keys writes nothing"
    );
    assert_eq!(s.stats().put_existing_pages, 6);
    assert!(s.delete(ks[2].as_bytes()).expect("delete"));
    assert!(!s.delete(ks[2].as_bytes()).expect("delete again"));
    assert_eq!(s.probe(&refs, &[]).expect("probe"), 2);
    assert!(!s.exists(ks[2].as_bytes()).expect("exists"));
    drop(s);
    let s = open(dir.path());
    assert_eq!(
        s.probe(&refs, &[]).expect("probe"),
        2,
        "delete survives reopen"
    );
}

#[test]
fn bad_input_gets_typed_errors_and_store_stays_usable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let long = vec![b'k'; sglang_lsm::MAX_KEY_BYTES + 1];
    let v = vec![1u8; 4096];
    let e = s
        .put_batch(&[&long], &[vec![&v[..]]], &[])
        .expect_err("long key");
    assert!(matches!(e, Error::KeyTooLong { .. }), "{e}");
    let e = s
        .put_batch(&[b"k"], &[vec![&[][..]]], &[])
        .expect_err("empty value");
    assert!(matches!(e, Error::EmptyValue { .. }), "{e}");
    let e = s
        .put_batch(&[b""], &[vec![&v[..]]], &[])
        .expect_err("empty key");
    assert!(matches!(e, Error::EmptyKey), "{e}");
    let e = s
        .put_batch(&[b"a", b"b"], &[vec![&v[..]]], &[])
        .expect_err("mismatch");
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    s.put_batch(&[b"k"], &[vec![&v[..]]], &[]).expect("put");
    let mut small = [0u8; 100];
    let e = s
        .get_batch(&[b"k"], &mut [vec![&mut small[..]]])
        .expect_err("size mismatch");
    assert!(
        matches!(
            e,
            Error::LengthMismatch {
                stored_bytes: 4096,
                given_bytes: 100,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("stored 4096 bytes"));
    assert_eq!(s.get(b"k").expect("get"), Some(v));
}

#[test]
fn second_open_is_refused_by_the_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let e = Store::open(dir.path(), small_config()).expect_err("locked");
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    assert_eq!(e.code(), "locked");
    drop(s);
    open(dir.path());
}

#[test]
fn unusable_directories_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let e = Store::open(file.join("store"), StoreConfig::default()).expect_err("parent is a file");
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(
        e.to_string().contains("not-a-dir"),
        "error names the path: {e}"
    );
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    let mut perms = std::fs::metadata(&ro).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    std::fs::set_permissions(&ro, perms).expect("chmod");
    // Root ignores permission bits; only assert when the OS actually refuses.
    if std::fs::write(ro.join("probe"), b"x").is_err() {
        let e = Store::open(&ro, StoreConfig::default()).expect_err("read-only dir");
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }
}

#[test]
fn format_version_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path()));
    std::fs::write(dir.path().join("FORMAT"), "sglang-lsm\nformat_version=99\n").expect("write");
    let e = Store::open(dir.path(), small_config()).expect_err("version");
    assert!(
        matches!(
            e,
            Error::FormatVersion {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{e}"
    );
}

/// A single batch larger than the whole bound cannot be made room for: the pages that fit are
/// stored (a prefix of the batch) and the rest declined with `false`, never an error.
#[test]
fn capacity_bound_declines_what_cannot_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig {
        capacity_bytes: Some(16 << 20),
        ..small_config()
    };
    let s = Store::open(dir.path(), cfg).expect("open");
    let ks = keys("c", 40);
    let res = put_pages(&s, &ks, 1 << 20);
    let stored = res.iter().filter(|&&b| b).count();
    assert!(stored > 0 && stored < 40, "stored {stored}");
    assert!(res[..stored].iter().all(|&b| b), "declines are a suffix");
    assert!(s.stats().log_bytes <= 16 << 20);
    assert_eq!(s.stats().put_declined_pages, (40 - stored) as u64);
    // Still usable: a batch that fits is stored (reclaiming older pages as needed).
    assert!(put_pages(&s, &keys("d", 4), 1 << 20).iter().all(|&b| b));
}

#[test]
fn clear_removes_everything_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ks = keys("z", 30);
    {
        let s = open(dir.path());
        put_pages(&s, &ks, 70_000);
        s.clear().expect("clear");
        assert_eq!(s.stats().pages, 0);
        put_pages(&s, &ks[..3], 100);
    }
    let s = open(dir.path());
    assert_eq!(s.stats().pages, 3);
    assert_eq!(s.stats().segments, 1);
    let got = get_pages(&s, &ks[..3], 100);
    assert!(got.iter().all(Option::is_some));
}

#[test]
fn token_api_matches_string_keys() {
    let keys = sglang_lsm::key::token_page_keys(&(0..256).collect::<Vec<u32>>(), 64, "_m_0_1")
        .expect("keys");
    assert_eq!(keys.len(), 4);
    assert!(keys.iter().all(|k| k.len() == 64 + 6));
}
