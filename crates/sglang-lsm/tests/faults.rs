//! Corruption, ENOSPC and short-write behaviour.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use common::{get_pages, keys, page_bytes, put_pages, small_config};
use sglang_lsm::io::FaultInjector;
use sglang_lsm::{Error, Store};

fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("vlog"))
        .expect("vlog dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

#[test]
fn flipped_bytes_read_as_misses_never_wrong_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ks = keys("c", 8);
    let len = 3 * 4096;
    {
        let s = Store::open(dir.path(), small_config()).expect("open");
        put_pages(&s, &ks, len);
    }
    // Flip one byte inside the payload region of every page (payloads follow one header
    // block; segment header is one block).
    let seg = &segment_files(dir.path())[0];
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(seg)
        .expect("open seg");
    for i in 0..8u64 {
        let at = 4096 + 4096 + i * len as u64 + 100 + i;
        f.seek(SeekFrom::Start(at)).expect("seek");
        let mut b = [0u8; 1];
        f.read_exact(&mut b).expect("read");
        f.seek(SeekFrom::Start(at)).expect("seek");
        f.write_all(&[b[0] ^ 0xFF]).expect("write");
    }
    drop(f);
    let s = Store::open(dir.path(), small_config()).expect("reopen");
    let report = s.verify(|_, _| {}).expect("verify");
    assert_eq!((report.verified, report.corrupt), (0, 8));
    let got = get_pages(&s, &ks, len);
    assert!(
        got.iter().all(Option::is_none),
        "every corrupt page is a miss"
    );
    let st = s.stats();
    assert_eq!(st.get_corrupt, 8);
    assert_eq!(st.pages, 0, "corrupt pages are dropped");
    // Re-writing them works and reads back exactly.
    put_pages(&s, &ks, len);
    for (k, g) in ks.iter().zip(get_pages(&s, &ks, len)) {
        assert_eq!(g.as_deref(), Some(&page_bytes(k.as_bytes(), len)[..]));
    }
}

/// Regression: one rotten page in the newest frame must not take its neighbours with it
/// (an early recovery rule truncated the whole frame as a "torn tail").
#[test]
fn bit_rot_in_the_last_frame_loses_only_that_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ks = keys("rot", 5);
    {
        let s = Store::open(dir.path(), small_config()).expect("open");
        put_pages(&s, &ks, 8192);
    }
    let seg = &segment_files(dir.path())[0];
    let mut bytes = std::fs::read(seg).expect("read");
    bytes[4096 + 4096 + 3 * 8192 + 17] ^= 0x01; // page 3 of the only frame
    std::fs::write(seg, bytes).expect("write");
    let s = Store::open(dir.path(), small_config()).expect("reopen");
    let got = get_pages(&s, &ks, 8192);
    for (i, (k, g)) in ks.iter().zip(got).enumerate() {
        if i == 3 {
            assert!(g.is_none(), "rotten page is a miss");
        } else {
            assert_eq!(
                g.as_deref(),
                Some(&page_bytes(k.as_bytes(), 8192)[..]),
                "page {i}"
            );
        }
    }
}

#[test]
fn enospc_rolls_back_and_store_stays_usable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(FaultInjector::default());
    let s = Store::open_with_faults(dir.path(), small_config(), Arc::clone(&faults)).expect("open");
    let first = keys("ok", 4);
    put_pages(&s, &first, 20_000);
    let log_before = s.stats().log_bytes;
    // Fail partway through a multi-syscall write: 2 syscalls succeed, then ENOSPC.
    faults.short_writes(8192);
    faults.enospc_after(2);
    let failing = keys("fail", 4);
    let refs: Vec<&[u8]> = failing.iter().map(|k| k.as_bytes()).collect();
    let v = vec![9u8; 20_000];
    let e = s
        .put_batch(&refs, &vec![vec![&v[..]]; 4], &[])
        .expect_err("ENOSPC");
    assert!(matches!(e, Error::NoSpace { .. }), "{e}");
    assert_eq!(e.code(), "no_space");
    assert!(e.to_string().contains("no space left"), "{e}");
    assert_eq!(s.stats().log_bytes, log_before, "partial frame rolled back");
    assert_eq!(s.probe(&refs, &[]).expect("probe"), 0);
    faults.clear();
    // Still usable: earlier pages read, new pages write.
    assert!(get_pages(&s, &first, 20_000).iter().all(Option::is_some));
    assert!(put_pages(&s, &failing, 20_000).iter().all(|&b| b));
    drop(s);
    let s = Store::open(dir.path(), small_config()).expect("reopen");
    for (k, g) in failing.iter().zip(get_pages(&s, &failing, 20_000)) {
        assert_eq!(g.as_deref(), Some(&page_bytes(k.as_bytes(), 20_000)[..]));
    }
}

#[test]
fn short_writes_are_completed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(FaultInjector::default());
    let s = Store::open_with_faults(dir.path(), small_config(), Arc::clone(&faults)).expect("open");
    faults.short_writes(1000);
    let ks = keys("short", 5);
    put_pages(&s, &ks, 30_001);
    faults.clear();
    for (k, g) in ks.iter().zip(get_pages(&s, &ks, 30_001)) {
        assert_eq!(g.as_deref(), Some(&page_bytes(k.as_bytes(), 30_001)[..]));
    }
}

/// A real full filesystem: a small tmpfs. Needs root and mount(2); where the sandbox forbids
/// mounting, the injected-fault test above covers the same code path.
#[test]
fn real_enospc_on_small_tmpfs() {
    let mnt = tempfile::tempdir().expect("tempdir");
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipping real ENOSPC test: cannot mount tmpfs here");
        return;
    }
    let result = std::panic::catch_unwind(|| {
        let s = Store::open(mnt.path().join("store"), small_config()).expect("open");
        let mut stored = 0;
        let mut hit_enospc = false;
        for round in 0..40 {
            let ks = keys(&format!("r{round}"), 4);
            let refs: Vec<&[u8]> = ks.iter().map(|k| k.as_bytes()).collect();
            let v = vec![round as u8; 256 << 10];
            match s.put_batch(&refs, &vec![vec![&v[..]]; 4], &[]) {
                Ok(_) => stored += 4,
                Err(Error::NoSpace { .. }) => {
                    hit_enospc = true;
                    break;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(hit_enospc, "8 MiB tmpfs must fill");
        assert!(stored > 0);
        assert_eq!(s.stats().pages, stored as u64);
        let report = s.verify(|_, _| {}).expect("verify");
        assert_eq!(report.corrupt, 0);
        s.clear().expect("clear frees space");
        let v = vec![1u8; 4096];
        s.put_batch(&[b"after"], &[vec![&v[..]]], &[])
            .expect("usable after ENOSPC");
    });
    let _ = std::process::Command::new("umount")
        .arg(mnt.path())
        .status();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// A read that fails without a checksum verdict (here a short read: the segment file was cut
/// under the open store) is a miss but never a delete: once the bytes are back, so is the page.
#[test]
fn failed_reads_are_misses_and_keep_the_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ks = keys("r", 4);
    let len = 8192;
    let s = Store::open(dir.path(), small_config()).expect("open");
    assert!(put_pages(&s, &ks, len).iter().all(|&b| b));
    s.flush().expect("flush");
    let seg = segment_files(dir.path())
        .into_iter()
        .next()
        .expect("one segment");
    let whole = std::fs::read(&seg).expect("read segment");
    let header_bytes = 4096;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .and_then(|f| f.set_len(header_bytes))
        .expect("cut the segment");

    assert!(get_pages(&s, &ks, len).iter().all(Option::is_none));
    let st = s.stats();
    assert_eq!(st.get_read_errors, 4, "{st:?}");
    assert_eq!(
        st.get_corrupt, 0,
        "a read failure is not corruption: {st:?}"
    );

    std::fs::write(&seg, &whole).expect("restore the segment");
    for (k, got) in ks.iter().zip(get_pages(&s, &ks, len)) {
        assert_eq!(
            got.as_deref(),
            Some(&page_bytes(k.as_bytes(), len)[..]),
            "{k}"
        );
    }
}

/// A cascading delete of many Delete frames (one per step of 4,096 pages; 65,536 records at
/// most) that fails between its frames (ENOSPC here; a SIGKILL there is the same: each frame
/// is durable on its own) leaves a smaller tree, never an orphan: leaves go first, the root
/// last.
#[test]
fn a_cascade_cut_short_between_frames_leaves_no_orphan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(FaultInjector::default());
    let s = Store::open_with_faults(dir.path(), small_config(), Arc::clone(&faults)).expect("open");
    // One chain c0 -> c1 -> ... of 70,000 one-byte pages, written 1,000 at a time.
    let n = 70_000;
    let ks: Vec<String> = (0..n).map(|i| format!("c{i:06}")).collect();
    let value = [7u8];
    for (b, chunk) in ks.chunks(1_000).enumerate() {
        let refs: Vec<&[u8]> = chunk.iter().map(|k| k.as_bytes()).collect();
        let parts: Vec<Vec<&[u8]>> = chunk.iter().map(|_| vec![&value[..]]).collect();
        let prefix: Vec<&[u8]> = if b == 0 {
            vec![]
        } else {
            vec![ks[b * 1_000 - 1].as_bytes()]
        };
        assert!(s
            .put_batch(&refs, &parts, &prefix)
            .expect("put")
            .iter()
            .all(|&x| x));
    }
    // Let k write syscalls through, then fail all: while k is too few for the first frame,
    // it is rolled back and nothing changes; the first k that fits it cuts the cascade
    // between its first and second frame.
    let mut cut = false;
    for k in 1..=64 {
        faults.enospc_after(k);
        let result = s.delete(ks[0].as_bytes());
        faults.clear();
        assert!(
            result.is_err(),
            "with {k} writes allowed the whole cascade went through"
        );
        let present = ks
            .iter()
            .filter(|k| s.exists(k.as_bytes()).expect("exists"))
            .count();
        if present < n {
            cut = true;
            break;
        }
    }
    assert!(cut, "no write budget cut the cascade");
    let present: Vec<bool> = ks
        .iter()
        .map(|k| s.exists(k.as_bytes()).expect("exists"))
        .collect();
    let kept = present.iter().take_while(|&&p| p).count();
    assert!(
        kept < n,
        "the first frame deleted nothing: the test did not cut the cascade"
    );
    assert!(
        present[kept..].iter().all(|&p| !p),
        "orphans: {} pages present below missing page {kept}",
        present[kept..].iter().filter(|&&p| p).count()
    );
    let refs: Vec<&[u8]> = ks.iter().map(|k| k.as_bytes()).collect();
    assert_eq!(s.probe(&refs, &[]).expect("probe"), kept);
}
