//! SIGKILL, then bit rot in the newest frame (issue 14.4): the killed writer's last frame was
//! never indexed, so open replays it, and a rotten page in the middle of it must take its
//! in-frame descendants with it. Otherwise `exists` counts pages that `probe` can never reach.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{page_bytes, put_pages, small_config};
use sglang_lsm::Store;

const DIR_ENV: &str = "SGLANG_LSM_ROT_DIR";
const PAGE_BYTES: usize = 8 << 10;
const CHAIN_PAGES: usize = 8;
/// The page of the last chain whose payload rots; it and every later page must go.
const ROTTEN: usize = 3;

fn chain(name: &str) -> Vec<String> {
    (0..CHAIN_PAGES).map(|i| format!("{name}-p{i}")).collect()
}

/// The child: writes two chains as two frames, says so, and waits to be killed.
#[test]
#[ignore = "run by a_rotten_page_in_the_killed_writers_last_frame_leaves_no_orphan"]
fn rot_child_writer() {
    common::child_writer(DIR_ENV, |store| {
        for name in ["kept", "rots"] {
            let ok = put_pages(store, &chain(name), PAGE_BYTES);
            assert!(ok.iter().all(|&b| b));
        }
    });
}

fn newest_segment(dir: &Path) -> PathBuf {
    common::segment_files(dir).pop().expect("a segment")
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// File offset of `key`'s payload in the segment's last frame (FORMAT.md, "Frame").
fn payload_offset_in_last_frame(seg: &Path, key: &str) -> u64 {
    let bytes = std::fs::read(seg).expect("read segment");
    let mut at = 4096usize;
    let mut last = None;
    while at + 48 <= bytes.len() && &bytes[at..at + 4] == b"FRM1" {
        last = Some(at);
        at += usize::try_from(u64_at(&bytes, at + 32)).expect("frame_len");
    }
    let frame = last.expect("a frame");
    let records = u32_at(&bytes, frame + 12) as usize;
    let mut entry = frame + 48;
    for _ in 0..records {
        let key_len = usize::from(u16::from_le_bytes([bytes[entry], bytes[entry + 1]]));
        if &bytes[entry + 32..entry + 32 + key_len] == key.as_bytes() {
            return (frame as u64) + u64_at(&bytes, entry + 8);
        }
        entry += 32 + key_len;
    }
    panic!("{key} is not in the last frame of {}", seg.display());
}

#[test]
fn a_rotten_page_in_the_killed_writers_last_frame_leaves_no_orphan() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    common::run_child_until_ready_then_kill("rot_child_writer", DIR_ENV, &dir);

    let rotten_key = format!("rots-p{ROTTEN}");
    let seg = newest_segment(&dir);
    let at = payload_offset_in_last_frame(&seg, &rotten_key) + (PAGE_BYTES as u64 / 2);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .expect("open");
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, at).expect("read");
    byte[0] ^= 0x5a;
    file.write_all_at(&byte, at).expect("rot");
    drop(file);

    let store = Store::open(&dir, small_config()).expect("reopen after kill and rot");
    for (name, whole) in [("kept", CHAIN_PAGES), ("rots", ROTTEN)] {
        let keys = chain(name);
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        assert_eq!(store.probe(&refs, &[]).expect("probe"), whole, "{name}");
        for (i, k) in keys.iter().enumerate() {
            let got = store.get(k.as_bytes()).expect("get");
            if i < whole {
                assert!(
                    got == Some(page_bytes(k.as_bytes(), PAGE_BYTES)),
                    "{k} is not exact"
                );
            } else {
                // The rotten page and everything after it: gone, not counted by exists.
                assert!(got.is_none(), "{k} reads back");
                assert!(
                    !store.exists(k.as_bytes()).expect("exists"),
                    "{k} is an orphan"
                );
            }
        }
    }
    // The store takes the chain again and keeps it across a clean reopen.
    let ok = put_pages(&store, &chain("rots"), PAGE_BYTES);
    assert!(ok.iter().all(|&b| b));
    drop(store);
    let store = Store::open(&dir, small_config()).expect("reopen");
    let keys = chain("rots");
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    assert_eq!(store.probe(&refs, &[]).expect("probe"), CHAIN_PAGES);
}
