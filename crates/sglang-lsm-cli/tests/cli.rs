//! The `sglang-lsm` binary as an operator runs it.

use std::process::Command;

use sglang_lsm::{Store, StoreConfig};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sglang-lsm"))
}

fn make_store(dir: &std::path::Path, pages: usize) {
    let s = Store::open(dir, StoreConfig::default()).expect("open");
    let keys: Vec<String> = (0..pages).map(|i| format!("key-{i}")).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let v = vec![5u8; 8192];
    let vals: Vec<Vec<&[u8]>> = (0..pages).map(|_| vec![&v[..]]).collect();
    s.put_batch(&refs, &vals, &[]).expect("put");
}

#[test]
fn verify_reports_counts_and_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_store(dir.path(), 5);
    let out = bin().arg("verify").arg(dir.path()).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("verified=5 corrupt=0"), "{stdout}");

    // Corrupt one payload byte of the first page (segment header + frame header blocks).
    let seg = dir.path().join("vlog").join("seg-0000000001.log");
    let mut bytes = std::fs::read(&seg).expect("read segment");
    bytes[8192 + 10] ^= 0xFF;
    std::fs::write(&seg, bytes).expect("write segment");
    let out = bin().arg("verify").arg(dir.path()).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("verified=4 corrupt=1"), "{stdout}");
}

#[test]
fn verify_reports_a_quarantined_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_store(dir.path(), 3);
    let stray = dir.path().join("vlog").join("seg-0000099999.log");
    std::fs::write(&stray, vec![0xA5u8; 3 * 4096]).expect("write stray segment");
    let out = bin().arg("verify").arg(dir.path()).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("verified=3 corrupt=0"), "{stdout}");
    assert!(
        stdout.contains("quarantined segment 99999") && stdout.contains("checksum mismatch"),
        "{stdout}"
    );
}

#[test]
fn stats_json_is_machine_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_store(dir.path(), 3);
    let out = bin()
        .args(["stats", "--json"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["stats"]["pages"], 3);
    assert!(v["segments"].as_array().is_some_and(|s| !s.is_empty()));
}

#[test]
fn stats_prometheus_prints_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_store(dir.path(), 2);
    let out = bin()
        .args(["stats", "--prometheus"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sglang_lsm_pages 2"), "{text}");
    assert!(
        text.contains("# TYPE sglang_lsm_get_hits_total counter"),
        "{text}"
    );
}

#[test]
fn clear_errors_for_wrong_or_locked_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bin().arg("verify").arg(dir.path()).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an sglang-lsm store"));

    make_store(dir.path(), 1);
    let _held = Store::open(dir.path(), StoreConfig::default()).expect("hold the lock");
    let out = bin().arg("stats").arg(dir.path()).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("locked"), "{err}");
}

/// A working directory on the target's disk, not /tmp: the device limit needs O_DIRECT, which
/// tmpfs refuses.
fn bench_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir")
}

#[test]
fn bench_runs_the_comparison_by_default_with_tiny_sizes() {
    let work = bench_dir();
    let json = work.path().join("bench.json");
    let out = bin()
        .arg("bench")
        .arg("--dir")
        .arg(work.path())
        .args([
            "--bytes",
            "1m",
            "--page-sizes",
            "128k",
            "--probe-iters",
            "10",
        ])
        .args(["--scale-counts", "200,400", "--scale-budget-s", "5"])
        .args(["--ablation-prefixes", "2", "--ablation-prefix-pages", "2"])
        .args(["--compression-bytes", "256k", "--json"])
        .arg(&json)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "| ours | ",
        "| file-flat | ",
        "| file-fast | ",
        "| lsm-inline | ",
        "ours put / this",
        "**Object count**",
        "ours, no read coalescing",
        "**Compression**",
        "wall time",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    assert!(v["page_sizes"][0]["cases"]
        .as_array()
        .is_some_and(|c| c.len() >= 5));
    assert_eq!(v["compression"]["rows"].as_array().map(Vec::len), Some(6));
}

#[test]
fn bench_ours_only_keeps_the_median_mode_and_refuses_comparison_options() {
    let work = bench_dir();
    let out = bin()
        .args(["bench", "--ours-only", "--repeat", "1", "--bytes", "1m"])
        .args(["--page-sizes", "128k", "--dir"])
        .arg(work.path())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("medians of 1 repetitions"), "{stdout}");
    assert!(!stdout.contains("file-flat"), "{stdout}");

    let out = bin()
        .args(["bench", "--ours-only", "--backends", "ours"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));

    // Store switches only make sense for ours alone.
    let out = bin()
        .args(["bench", "--repeat", "2"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ours-only"));
}

#[test]
fn compare_is_an_alias_of_bench() {
    let out = bin().args(["compare", "--help"]).output().expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--ours-only") && help.contains("--skip-ablations"),
        "{help}"
    );
}

#[test]
fn bench_capacity_tiny_run_keeps_the_bound_and_the_contents() {
    let work = bench_dir();
    let json = work.path().join("cap.json");
    let report = work.path().join("report");
    let out = bin()
        .arg("bench-capacity")
        .arg("--dir")
        .arg(work.path())
        .args([
            "--capacity",
            "16m",
            "--write-multiple",
            "3",
            "--page-bytes",
            "64k",
        ])
        .args([
            "--chain-pages",
            "4",
            "--batch-pages",
            "2",
            "--hot-chains",
            "2",
        ])
        .args(["--hot-read-every", "2m", "--sample-ms", "5", "--json"])
        .arg(&json)
        .arg("--report")
        .arg(&report)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Result: PASSED"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    assert_eq!(v["bound_violations"], 0);
    assert_eq!(v["restart_changed_chains"], 0);
    assert!(v["bytes_written"].as_u64().is_some_and(|b| b >= 48 << 20));
    assert!(v["after_reopen"]["verified_pages"]
        .as_u64()
        .is_some_and(|n| n > 0));
    let png = std::fs::read(report.join("capacity_bound.png")).expect("png");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));

    let out = bin()
        .args(["bench-capacity", "--chain-pages", "3", "--batch-pages", "2"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("multiple of --batch-pages"));
}
