//! `eviction = s3fifo`: what S3-FIFO over segments keeps that CLOCK does not, through the
//! public API. A page read once is promoted to main and outlives floods of pages nobody
//! reads; a page evicted from probation and put again goes straight to main; a fresh page
//! nobody reads leaves after probation. The same script under CLOCK loses the read page and
//! the returning one, so these checks fail on the default policy.

mod common;

use common::{get_pages, keys, page_bytes, put_pages};
use sglang_lsm::{Eviction, Store, StoreConfig};

const PAGE_BYTES: usize = 64 << 10;
const CAPACITY_BYTES: u64 = 64 << 20;
/// Pages per flood batch, and flood length in batches: 80 MiB, over the capacity (so the
/// reclaimer must work) and under the age bound of eight log bounds since a segment became
/// active (512 MiB), past which even a main segment is reclaimed.
const BATCH_PAGES: usize = 16;
const FLOOD_BATCHES: usize = 80;

fn config(eviction: Eviction) -> StoreConfig {
    StoreConfig {
        capacity_bytes: Some(CAPACITY_BYTES),
        segment_bytes: 2 << 20,
        memtable_bytes: 1 << 20,
        eviction,
        ..StoreConfig::default()
    }
}

/// Puts `FLOOD_BATCHES` batches of pages nobody reads.
fn flood(store: &Store, tag: &str) {
    for b in 0..FLOOD_BATCHES {
        let stored = put_pages(store, &keys(&format!("{tag}-{b}"), BATCH_PAGES), PAGE_BYTES);
        assert!(stored.iter().all(|&s| s), "flood batch {b} declined");
    }
}

/// Resident pages of `names`, each read back byte for byte when present.
fn resident(store: &Store, names: &[String]) -> usize {
    get_pages(store, names, PAGE_BYTES)
        .into_iter()
        .zip(names)
        .filter_map(|(got, k)| got.map(|bytes| (bytes, k)))
        .inspect(|(bytes, k)| assert_eq!(*bytes, page_bytes(k.as_bytes(), PAGE_BYTES), "{k}"))
        .count()
}

/// The script: A is read once; B is not; a flood; B comes back and C arrives, neither read;
/// another flood. Returns how many of A, B and C are resident at the end.
fn script(eviction: Eviction) -> (usize, usize, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), config(eviction)).expect("open");
    let (a, b, c) = (
        keys("read-once", BATCH_PAGES),
        keys("returning", BATCH_PAGES),
        keys("fresh", BATCH_PAGES),
    );
    assert!(put_pages(&store, &a, PAGE_BYTES).iter().all(|&s| s));
    assert!(put_pages(&store, &b, PAGE_BYTES).iter().all(|&s| s));
    assert_eq!(resident(&store, &a), BATCH_PAGES, "A read once");
    flood(&store, "flood1");
    assert_eq!(
        resident(&store, &b),
        0,
        "{eviction:?}: B, never read, is gone after a flood over the capacity"
    );
    assert!(put_pages(&store, &b, PAGE_BYTES).iter().all(|&s| s));
    assert!(put_pages(&store, &c, PAGE_BYTES).iter().all(|&s| s));
    flood(&store, "flood2");
    let stats = store.stats();
    assert!(
        stats.log_bytes <= CAPACITY_BYTES + (2 << 20),
        "{eviction:?}: log {} over the bound plus a segment",
        stats.log_bytes
    );
    // The counters say what happened: A promoted, B returned from the ghost; nothing of the
    // kind under CLOCK.
    match eviction {
        Eviction::S3Fifo => assert!(
            stats.promoted_pages >= BATCH_PAGES as u64
                && stats.ghost_returned_pages >= BATCH_PAGES as u64
                && stats.probation_bytes > 0,
            "{stats:?}"
        ),
        Eviction::Clock => assert_eq!(
            (
                stats.promoted_pages,
                stats.ghost_returned_pages,
                stats.probation_bytes
            ),
            (0, 0, 0)
        ),
    }
    let kept = (
        resident(&store, &a),
        resident(&store, &b),
        resident(&store, &c),
    );
    // Whatever stayed survives a reopen (queues are in memory only; the pages are not),
    // except what the reopened store's reclaimer has evicted since, which it counts.
    drop(store);
    let store = Store::open(dir.path(), config(eviction)).expect("reopen");
    let after = (
        resident(&store, &a),
        resident(&store, &b),
        resident(&store, &c),
    );
    let lost = (kept.0 + kept.1 + kept.2).saturating_sub(after.0 + after.1 + after.2) as u64;
    assert!(
        after.0 <= kept.0 && after.1 <= kept.1 && after.2 <= kept.2,
        "{eviction:?}: {after:?} after reopen, {kept:?} before: a page came back"
    );
    assert!(
        lost <= store.stats().evicted_pages,
        "{eviction:?}: {lost} pages lost at reopen, {} evicted since",
        store.stats().evicted_pages
    );
    // The background reclaimer may still be evicting (never adding): the pages verified lie
    // between the counts before and after.
    let pages_before = store.stats().pages;
    let report = store.verify(|_, _| {}).expect("verify");
    let pages_after = store.stats().pages;
    assert!(
        report.corrupt == 0
            && report.quarantined.is_empty()
            && (pages_after..=pages_before).contains(&report.verified),
        "{eviction:?}: {report:?}, pages {pages_before} then {pages_after}"
    );
    kept
}

#[test]
fn s3fifo_keeps_the_read_page_and_the_returning_one_through_floods() {
    let (a, b, c) = script(Eviction::S3Fifo);
    assert_eq!(
        a, BATCH_PAGES,
        "A, read once, was promoted to main and stays"
    );
    assert_eq!(
        b, BATCH_PAGES,
        "B, evicted from probation and put again, went to main"
    );
    assert_eq!(c, 0, "C, fresh and never read, left after probation");
}

#[test]
fn clock_loses_both_in_the_same_script() {
    // The contrast that makes the test above mean something: CLOCK relocates A once, then
    // evicts it on the next pass, and treats the returning B like any new page.
    let (a, b, c) = script(Eviction::Clock);
    assert_eq!((a, b, c), (0, 0, 0));
}
