//! A damaged file costs its own pages, never the store (issue 14, item 2): a bad sealed
//! segment is quarantined, a stray segment file too. After each, the store opens, serves every other page byte for byte,
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
            let batch = &chain[b * BATCH_PAGES..(b + 1) * BATCH_PAGES];
            let vals: Vec<Vec<u8>> = batch
                .iter()
                .map(|k| page_bytes(k.as_bytes(), PAGE_BYTES))
                .collect();
            let refs: Vec<&[u8]> = batch.iter().map(|k| k.as_bytes()).collect();
            let parts: Vec<Vec<&[u8]>> = vals.iter().map(|v| vec![&v[..]]).collect();
            let prefix: Vec<&[u8]> = chain[..b * BATCH_PAGES]
                .iter()
                .map(|k| k.as_bytes())
                .collect();
            let stored = s.put_batch(&refs, &parts, &prefix).expect("put_batch");
            assert!(stored.iter().all(|&x| x), "put declined");
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
