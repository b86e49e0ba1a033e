//! The free-space floor (`min_free_bytes`) on a real filesystem.

mod common;

use common::page_bytes;
use sglang_lsm::{Store, StoreConfig};

const PAGE: usize = 256 << 10;
const MIB: u64 = 1 << 20;

fn chain(c: u32, len: usize) -> Vec<String> {
    (0..len).map(|i| format!("chain-{c:05}/{i:03}")).collect()
}

fn put(s: &Store, keys: &[String]) -> Vec<bool> {
    let vals: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| page_bytes(k.as_bytes(), PAGE))
        .collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let parts: Vec<Vec<&[u8]>> = vals.iter().map(|v| vec![&v[..]]).collect();
    s.put_batch(&refs, &parts, &[]).expect("put")
}

/// The free-space floor on a real, small filesystem (a 64 MiB tmpfs; needs root and
/// mount(2), like the ENOSPC test in faults.rs — skipped where the sandbox forbids it).
#[test]
fn min_free_bytes_keeps_a_small_filesystem_from_filling() {
    let mnt = tempfile::tempdir().expect("tempdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping min_free_bytes test: cannot mount tmpfs here");
        return;
    }
    let result = std::panic::catch_unwind(|| floor_on(mnt.path()));
    let _ = std::process::Command::new("umount")
        .arg(mnt.path())
        .status();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

fn free(dir: &std::path::Path) -> u64 {
    sglang_lsm::io::free_bytes(dir).expect("statvfs")
}

fn floor_on(mnt: &std::path::Path) {
    let floor = 24 * MIB;
    // Index tables and the sample's age let free space dip a little under the floor.
    let slack = 4 * MIB;
    let cfg = StoreConfig {
        min_free_bytes: Some(floor),
        memtable_bytes: 256 << 10,
        ..StoreConfig::default()
    };
    let s = Store::open(mnt.join("store"), cfg).expect("open");
    // 160 MiB through a 64 MiB filesystem: never an error, never below the floor, and the
    // writes keep being accepted (reclamation makes room).
    for c in 0..160 {
        let ok = put(&s, &chain(c, 4));
        assert!(
            ok.iter().all(|&b| b),
            "declined at chain {c}: {:?}",
            s.stats()
        );
        assert!(
            free(mnt) + slack >= floor,
            "free {} at chain {c}",
            free(mnt)
        );
    }
    let st = s.stats();
    assert_eq!(st.min_free_bytes, Some(floor));
    assert!(st.free_bytes.is_some_and(|f| f + slack >= floor), "{st:?}");
    assert!(st.log_bound_bytes.is_some_and(|b| b < 64 * MIB), "{st:?}");
    assert!(st.evicted_pages > 0, "{st:?}");
    let text = s.metrics_text();
    assert!(
        text.contains(&format!("sglang_lsm_min_free_bytes {floor}")),
        "{text}"
    );
    // Another writer takes 16 MiB of the disk: the store gives space back until the floor
    // holds again (the next put reclaims inline; background reclamation also would).
    std::fs::write(mnt.join("filler"), vec![7u8; 16 << 20]).expect("filler");
    std::thread::sleep(std::time::Duration::from_millis(150));
    for c in 1000..1004 {
        put(&s, &chain(c, 1));
    }
    assert!(
        free(mnt) + slack >= floor,
        "free {} after filler",
        free(mnt)
    );
    let report = s.verify(|_, _| {}).expect("verify");
    assert_eq!(report.corrupt, 0);
}
