//! A damaged file costs its own pages, never the store (issue 14, items 2 and 3): a bad
//! sealed segment is quarantined, a stray segment file too, and a damaged index is rebuilt
//! from the value log. After each, the store opens, serves every other page byte for byte,
//! leaves no orphan, accepts writes and survives another reopen.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use common::{page_bytes, small_config};
use sglang_lsm::Store;

const PAGE_BYTES: usize = 16 << 10;
const CHAINS: usize = 6;
const CHAIN_PAGES: usize = 32;
const BATCH_PAGES: usize = 4;
/// Chain 5 loses its tail from this page on to a delete before the damage.
const DELETED_FROM: usize = 20;

fn chain_keys(prefix: &str, c: usize) -> Vec<String> {
    (0..CHAIN_PAGES)
        .map(|i| format!("{prefix}{c:02}-page{i:04}"))
        .collect()
}

/// Puts `chains` interleaved a batch at a time, so each chain spans several segments and a
/// damaged middle segment holds the middle of every chain.
fn put_chains(s: &Store, chains: &[Vec<String>]) {
    for b in 0..CHAIN_PAGES / BATCH_PAGES {
        for chain in chains {
            common::put_chain_batch(s, chain, b, BATCH_PAGES, PAGE_BYTES);
        }
    }
}

fn all_chains(prefix: &str) -> Vec<Vec<String>> {
    (0..CHAINS).map(|c| chain_keys(prefix, c)).collect()
}

/// A closed store of interleaved chains over several segments, the tail of the last chain
/// deleted. Returns its chains.
fn build(dir: &Path) -> Vec<Vec<String>> {
    let chains = all_chains("c");
    let s = Store::open(dir, small_config()).expect("open");
    put_chains(&s, &chains);
    assert!(s
        .delete(chains[CHAINS - 1][DELETED_FROM].as_bytes())
        .expect("delete"));
    assert!(
        s.stats().segments >= 4,
        "want sealed segments in the middle"
    );
    chains
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("vlog"))
        .expect("vlog dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Keys whose bytes appear in `file`: every page of a segment is named in its frame header.
fn keys_in(file: &Path, chains: &[Vec<String>]) -> HashSet<String> {
    let bytes = std::fs::read(file).expect("read segment");
    chains
        .iter()
        .flatten()
        .filter(|k| bytes.windows(k.len()).any(|w| w == k.as_bytes()))
        .cloned()
        .collect()
}

/// How many leading pages of each chain must be present: up to the first page that was
/// lost with the damaged file or deleted.
fn expected_leading(chains: &[Vec<String>], lost: &HashSet<String>) -> Vec<usize> {
    chains
        .iter()
        .enumerate()
        .map(|(c, chain)| {
            let alive = chain.iter().take_while(|k| !lost.contains(*k)).count();
            if c == CHAINS - 1 {
                alive.min(DELETED_FROM)
            } else {
                alive
            }
        })
        .collect()
}

/// Every page before a chain's first missing one reads back byte for byte; from there on,
/// nothing: `probe` stops there, and no later page `exists` or reads (no orphan).
fn check(s: &Store, chains: &[Vec<String>], leading: &[usize]) {
    for (chain, &want) in chains.iter().zip(leading) {
        let refs: Vec<&[u8]> = chain.iter().map(|k| k.as_bytes()).collect();
        assert_eq!(
            s.probe(&refs, &[]).expect("probe"),
            want,
            "probe of {}",
            chain[0]
        );
        let got = common::get_pages(s, chain, PAGE_BYTES);
        for (i, (k, g)) in chain.iter().zip(got).enumerate() {
            let exists = s.exists(k.as_bytes()).expect("exists");
            if i < want {
                assert!(exists, "{k} lost");
                assert_eq!(g, Some(page_bytes(k.as_bytes(), PAGE_BYTES)), "{k} bytes");
            } else {
                assert!(!exists, "orphan or deleted page {k} exists");
                assert!(g.is_none(), "orphan or deleted page {k} reads");
            }
        }
    }
}

/// The store takes new chains after the damage, and everything survives another reopen.
fn write_and_reopen(dir: &Path, chains: &[Vec<String>], leading: &[usize], quarantined: u64) {
    let fresh = all_chains("n");
    {
        let s = Store::open(dir, small_config()).expect("reopen after damage");
        put_chains(&s, &fresh);
        check(&s, &fresh, &[CHAIN_PAGES; CHAINS]);
    }
    let s = Store::open(dir, small_config()).expect("second reopen");
    check(&s, chains, leading);
    check(&s, &fresh, &[CHAIN_PAGES; CHAINS]);
    assert_eq!(s.stats().quarantined_segments, quarantined);
    assert_eq!(s.stats().index_rebuilds, 0, "the rebuilt index was kept");
}

/// Damages one sealed segment with `damage`, then checks the store around it.
fn sealed_segment_case(damage: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let chains = build(dir.path());
    let files = segment_files(dir.path());
    let victim = files[1].clone();
    let lost = keys_in(&victim, &chains);
    assert!(!lost.is_empty(), "the victim holds pages");
    damage(&victim);
    let leading = expected_leading(&chains, &lost);
    assert!(
        leading.iter().any(|&n| n < CHAIN_PAGES && n > 0),
        "the damage cuts chains in the middle: {leading:?}"
    );
    {
        let s = Store::open(dir.path(), small_config()).expect("open with a damaged segment");
        check(&s, &chains, &leading);
        let st = s.stats();
        assert_eq!(st.quarantined_segments, 1);
        assert!(s
            .metrics_text()
            .contains("sglang_lsm_quarantined_segments 1"));
        let report = s.verify(|_, _| {}).expect("verify");
        assert_eq!(report.corrupt, 0, "no record points into the lost segment");
        assert_eq!(report.quarantined.len(), 1);
        assert!(
            report.quarantined[0].reason.contains("checksum"),
            "{report:?}"
        );
    }
    assert!(!victim.exists(), "the damaged file left vlog/");
    let aside = dir
        .path()
        .join("vlog/quarantine")
        .join(victim.file_name().expect("name"));
    assert!(
        aside.exists(),
        "the damaged file is kept in vlog/quarantine/"
    );
    write_and_reopen(dir.path(), &chains, &leading, 1);
}

#[test]
fn zeroed_header_of_a_sealed_segment_costs_only_its_pages() {
    sealed_segment_case(|seg| {
        let mut bytes = std::fs::read(seg).expect("read");
        bytes[..4096].fill(0);
        std::fs::write(seg, bytes).expect("write");
    });
}

#[test]
fn wholly_zeroed_sealed_segment_costs_only_its_pages() {
    sealed_segment_case(|seg| {
        let len = std::fs::metadata(seg).expect("stat").len();
        std::fs::write(seg, vec![0u8; len as usize]).expect("write");
    });
}

fn random_bytes(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

#[test]
fn stray_random_segment_file_is_quarantined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chains = build(dir.path());
    // A page stored without its prefix (SGLang writes suffixes whose prefix is in host
    // memory): its absent parent is normal and must not read as a loss to the quarantine.
    let suffix = "suffix-page".to_string();
    {
        let s = Store::open(dir.path(), small_config()).expect("open");
        let v = page_bytes(suffix.as_bytes(), PAGE_BYTES);
        let stored = s
            .put_batch(
                &[suffix.as_bytes()],
                &[vec![&v[..]]],
                &[b"never-stored".as_slice()],
            )
            .expect("put suffix");
        assert!(stored[0]);
    }
    let stray = dir.path().join("vlog/seg-0000099999.log");
    std::fs::write(&stray, random_bytes(3 << 20, 0x5EED)).expect("write stray");
    let leading = expected_leading(&chains, &HashSet::new());
    {
        let s = Store::open(dir.path(), small_config()).expect("open with a stray file");
        check(&s, &chains, &leading);
        let got = common::get_pages(&s, std::slice::from_ref(&suffix), PAGE_BYTES);
        assert_eq!(got[0], Some(page_bytes(suffix.as_bytes(), PAGE_BYTES)));
        assert_eq!(s.stats().quarantined_segments, 1);
        assert_eq!(s.verify(|_, _| {}).expect("verify").quarantined.len(), 1);
    }
    assert!(!stray.exists());
    assert!(dir
        .path()
        .join("vlog/quarantine/seg-0000099999.log")
        .exists());
    write_and_reopen(dir.path(), &chains, &leading, 1);
}

fn index_tables(dir: &Path) -> Vec<PathBuf> {
    let tables = dir.join("index/tables");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&tables)
        .expect("index tables dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn damaged_index_case(damage: impl Fn(Vec<u8>) -> Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let chains = build(dir.path());
    let tables = index_tables(dir.path());
    assert!(!tables.is_empty(), "the index has tables");
    for t in &tables {
        let bytes = std::fs::read(t).expect("read table");
        std::fs::write(t, damage(bytes)).expect("damage table");
    }
    // Deleted pages must stay deleted: the rebuild honours the log's Delete records.
    let leading = expected_leading(&chains, &HashSet::new());
    {
        let s = Store::open(dir.path(), small_config()).expect("open with a damaged index");
        check(&s, &chains, &leading);
        assert_eq!(s.stats().index_rebuilds, 1);
        assert_eq!(s.verify(|_, _| {}).expect("verify").corrupt, 0);
    }
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("store dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("index.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged index is kept aside");
    write_and_reopen(dir.path(), &chains, &leading, 0);
}

#[test]
fn garbage_index_tables_are_rebuilt_from_the_log() {
    damaged_index_case(|b| random_bytes(b.len(), 0xBAD));
}

#[test]
fn zeroed_index_tables_are_rebuilt_from_the_log() {
    damaged_index_case(|b| vec![0u8; b.len()]);
}

#[test]
fn truncated_index_tables_are_rebuilt_from_the_log() {
    damaged_index_case(|b| b[..b.len() / 2].to_vec());
}

#[test]
fn one_flipped_byte_in_an_index_table_is_rebuilt_from_the_log() {
    damaged_index_case(|mut b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x10;
        b
    });
}

/// With the index rebuilt as well, the lost segment's pages were never indexed: the pages
/// of later segments whose parents it held must still go (no orphan).
fn damaged_segment_and_index_case(damage_table: impl Fn(Vec<u8>) -> Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let chains = build(dir.path());
    let victim = segment_files(dir.path())[1].clone();
    let lost = keys_in(&victim, &chains);
    std::fs::write(&victim, vec![0u8; 8192]).expect("zero segment");
    for t in index_tables(dir.path()) {
        let bytes = std::fs::read(&t).expect("read table");
        std::fs::write(&t, damage_table(bytes)).expect("damage table");
    }
    let leading = expected_leading(&chains, &lost);
    {
        let s = Store::open(dir.path(), small_config()).expect("open");
        let st = s.stats();
        assert_eq!((st.quarantined_segments, st.index_rebuilds), (1, 1));
        check(&s, &chains, &leading);
        let report = s.verify(|_, _| {}).expect("verify");
        assert!(
            report.quarantined[0].reason.contains("checksum"),
            "{report:?}"
        );
    }
    write_and_reopen(dir.path(), &chains, &leading, 1);
}

/// The index fails as it is opened, before the log is scanned.
#[test]
fn damaged_segment_and_garbage_index_together_leave_no_orphan() {
    damaged_segment_and_index_case(|b| random_bytes(b.len(), 0xD0D0));
}

/// The index opens and fails only when its records are read, after the log scan has
/// quarantined the segment: the rebuild must still know the segment was lost.
#[test]
fn damaged_segment_and_a_flipped_index_bit_together_leave_no_orphan() {
    damaged_segment_and_index_case(|mut b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x10;
        b
    });
}

/// A rebuild must reproduce the index exactly after reclamation evicted and relocated pages:
/// evictions are Delete records (carried forward when their segment is reclaimed), so no
/// evicted page comes back and no relocated one is lost.
#[test]
fn rebuilt_index_matches_the_old_one_after_reclamation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = sglang_lsm::StoreConfig {
        capacity_bytes: Some(16 << 20),
        ..small_config()
    };
    let rounds: Vec<Vec<Vec<String>>> = (0..8).map(|r| all_chains(&format!("r{r}-"))).collect();
    {
        let s = Store::open(dir.path(), config.clone()).expect("open");
        for chains in &rounds {
            put_chains(&s, chains);
            // Reads mark pages referenced, so reclamation relocates some instead of evicting.
            for chain in chains.iter().step_by(2) {
                common::get_pages(&s, &chain[..8], PAGE_BYTES);
            }
        }
        let st = s.stats();
        assert!(st.evicted_pages > 0, "reclamation evicted nothing");
        assert!(st.relocated_pages > 0, "reclamation relocated nothing");
    }
    let present = |s: &Store| -> Vec<Vec<bool>> {
        rounds
            .iter()
            .flatten()
            .map(|c| {
                c.iter()
                    .map(|k| s.exists(k.as_bytes()).expect("exists"))
                    .collect()
            })
            .collect()
    };
    let before = present(&Store::open(dir.path(), config.clone()).expect("reopen"));
    assert!(before.iter().flatten().any(|&p| p), "something survived");
    for t in index_tables(dir.path()) {
        let len = std::fs::metadata(&t).expect("stat").len() as usize;
        std::fs::write(&t, random_bytes(len, 0xFACE)).expect("damage table");
    }
    let s = Store::open(dir.path(), config).expect("open with a damaged index");
    assert_eq!(s.stats().index_rebuilds, 1);
    assert_eq!(present(&s), before, "the rebuilt index holds other pages");
    let all: Vec<Vec<String>> = rounds.into_iter().flatten().collect();
    let leading: Vec<usize> = before
        .iter()
        .map(|p| p.iter().take_while(|&&x| x).count())
        .collect();
    check(&s, &all, &leading);
}
