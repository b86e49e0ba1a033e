//! Crash test: a child process writes (and sometimes deletes) in a loop and is killed with
//! SIGKILL at random moments. Each reopen checks every key: every acknowledged batch is present
//! with exact bytes, acknowledged deletes are absent, and the one unacknowledged batch is either
//! exact or absent — never wrong bytes.
//!
//! Each batch is one prefix chain p0 → p1 → … → p5. Deleting p3 cascades to its descendants
//! p4 and p5, so deletes exercise the logged cascade too.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{page_bytes, small_config};
use sglang_lsm::{Durability, Follower, Store, StoreConfig};

const DIR_ENV: &str = "SGLANG_LSM_CRASH_DIR";
const ROUND_ENV: &str = "SGLANG_LSM_CRASH_ROUND";
const PAGES_PER_BATCH: usize = 6;
/// The page the child deletes in an older batch; it and every later page of that chain go.
const DELETED_FROM: usize = 3;

fn batch_keys(round: u32, batch: u32) -> Vec<String> {
    (0..PAGES_PER_BATCH)
        .map(|i| format!("r{round:02}-b{batch:05}-p{i}"))
        .collect()
}

fn page_len(key: &str) -> usize {
    // 1 byte .. ~100 KiB, deterministic per key so the checker knows the length.
    let h = key
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    1 + (h % 100_000) as usize
}

/// Rounds from this one on run with a capacity bound ~2x smaller than what the child writes,
/// so reclamation (relocation of pages the child re-reads, eviction of the rest) runs while
/// the child is killed.
const BOUNDED_FROM_ROUND: u32 = 4;
const BOUNDED_CAPACITY_BYTES: u64 = 16 << 20;

/// Rounds from this one on also run with namespace quotas: the separator is '-', so a key's
/// namespace is its round ("r08"); every quota round but the last has a quota, so kills land
/// during quota evictions too, and the last round's namespace shares the capacity.
const QUOTA_FROM_ROUND: u32 = 8;
const QUOTA_ROUNDS: u32 = 4;
const QUOTA_BYTES: u64 = 2 << 20;

fn config_for(round: u32) -> StoreConfig {
    let quotas = (round >= QUOTA_FROM_ROUND).then(|| {
        (QUOTA_FROM_ROUND..QUOTA_FROM_ROUND + QUOTA_ROUNDS - 1)
            .map(|r| (format!("r{r:02}"), QUOTA_BYTES))
            .collect()
    });
    StoreConfig {
        namespace_separator: if quotas.is_some() { "-" } else { ":" }.to_string(),
        namespace_quotas: quotas.unwrap_or_default(),
        durability: match round % 3 {
            0 => Durability::None,
            1 => Durability::Batch,
            _ => Durability::Periodic,
        },
        sync_interval_ms: 5,
        capacity_bytes: (round >= BOUNDED_FROM_ROUND).then_some(BOUNDED_CAPACITY_BYTES),
        ..small_config()
    }
}

/// The child's body: runs only when the parent sets the env vars.
#[test]
#[ignore = "run by crash_kill9_rounds as a child process"]
fn crash_child_writer() {
    let (Ok(dir), Ok(round)) = (std::env::var(DIR_ENV), std::env::var(ROUND_ENV)) else {
        return;
    };
    let round: u32 = round.parse().expect("round");
    let store = Store::open(&dir, config_for(round)).expect("child open");
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY").expect("stdout");
    out.flush().expect("flush");
    for batch in 0..100_000u32 {
        let ks = batch_keys(round, batch);
        let vals: Vec<Vec<u8>> = ks
            .iter()
            .map(|k| page_bytes(k.as_bytes(), page_len(k)))
            .collect();
        let refs: Vec<&[u8]> = ks.iter().map(|k| k.as_bytes()).collect();
        let parts: Vec<Vec<&[u8]>> = vals
            .iter()
            .map(|v| {
                let (a, b) = v.split_at(v.len() / 2);
                vec![a, b]
            })
            .collect();
        let res = store.put_batch(&refs, &parts, &[]).expect("child put");
        assert!(res.iter().all(|&b| b));
        writeln!(out, "ACK {batch}").expect("stdout");
        out.flush().expect("flush");
        if round >= BOUNDED_FROM_ROUND && batch >= 3 {
            // Re-read an older batch so it is worth keeping: reclamation relocates it.
            let older = batch_keys(round, batch / 2);
            for k in &older {
                if let Some(bytes) = store.get(k.as_bytes()).expect("child get") {
                    assert_eq!(
                        bytes,
                        page_bytes(k.as_bytes(), page_len(k)),
                        "child read wrong bytes"
                    );
                }
            }
        }
        if batch % 5 == 4 {
            let victim = batch_keys(round, batch - 2)[DELETED_FROM].clone();
            assert!(store.delete(victim.as_bytes()).expect("child delete"));
            writeln!(out, "DEL {}", batch - 2).expect("stdout");
            out.flush().expect("flush");
        }
    }
}

#[derive(Default)]
struct RoundLog {
    acked: u32,
    deleted: BTreeSet<u32>,
    acks_seen: bool,
}

fn run_child(dir: &std::path::Path, round: u32, kill_after: Duration) -> RoundLog {
    let exe = std::env::current_exe().expect("test exe");
    let mut child = Command::new(exe)
        .args([
            "crash_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut log = RoundLog::default();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(b) = line.strip_prefix("ACK ") {
                log.acked = b.trim().parse::<u32>().expect("ack") + 1;
                log.acks_seen = true;
            } else if let Some(b) = line.strip_prefix("DEL ") {
                log.deleted.insert(b.trim().parse().expect("del"));
            }
        }
        log
    });
    let start = Instant::now();
    while start.elapsed() < kill_after {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL child");
    let _ = child.wait();
    reader.join().expect("reader")
}

fn run_rounds(rounds: std::ops::Range<u32>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos() as u64);
    eprintln!("crash test seed {seed}");
    let mut rng = seed | 1;
    let mut logs: BTreeMap<u32, RoundLog> = BTreeMap::new();
    let follower = Follower::open(dir.path(), 0).expect("follower");
    let count = rounds.len();
    for round in rounds {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let kill_after = Duration::from_millis(150 + (rng >> 33) % 600);
        // A follower (another MLA rank) reads the child's store while it is written and killed:
        // whatever it returns must be exact.
        let stop = std::sync::atomic::AtomicBool::new(false);
        let log = std::thread::scope(|s| {
            s.spawn(|| follow_while_written(&follower, round, &stop));
            let log = run_child(dir.path(), round, kill_after);
            stop.store(true, std::sync::atomic::Ordering::Release);
            log
        });
        eprintln!(
            "round {round}: killed after {kill_after:?}, {} batches acked",
            log.acked
        );
        logs.insert(round, log);
        let missing = check_all(dir.path(), &logs, &follower);
        let acked_bytes: u64 = logs
            .iter()
            .flat_map(|(&r, l)| (0..l.acked).flat_map(move |b| batch_keys(r, b)))
            .map(|k| page_len(&k) as u64)
            .sum();
        if round >= BOUNDED_FROM_ROUND && acked_bytes > 2 * BOUNDED_CAPACITY_BYTES {
            assert!(missing > 0, "{acked_bytes} bytes acked into a {BOUNDED_CAPACITY_BYTES}-byte store, none evicted");
        }
    }
    assert!(
        logs.values().filter(|l| l.acks_seen).count() >= count / 2,
        "children must have made progress before being killed"
    );
}

/// Unbounded store, all three durability modes.
#[test]
fn crash_kill9_rounds() {
    run_rounds(0..BOUNDED_FROM_ROUND);
}

/// Bounded store (its own directory): kills land during relocation and eviction too.
#[test]
fn crash_kill9_bounded_rounds() {
    run_rounds(BOUNDED_FROM_ROUND..BOUNDED_FROM_ROUND + 4);
}

/// Bounded store with namespace quotas: kills land during quota evictions, and each quota
/// holds after every reopen.
#[test]
fn crash_kill9_quota_rounds() {
    run_rounds(QUOTA_FROM_ROUND..QUOTA_FROM_ROUND + QUOTA_ROUNDS);
}

/// Reads the round's keys through `follower` until `stop`: every hit must be exact.
fn follow_while_written(follower: &Follower, round: u32, stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        for batch in 0..2000 {
            for k in batch_keys(round, batch) {
                if let Some(bytes) = follower.get(k.as_bytes()).expect("follower get") {
                    assert_eq!(
                        bytes,
                        page_bytes(k.as_bytes(), page_len(&k)),
                        "follower read wrong bytes for {k}"
                    );
                }
            }
        }
    }
}

/// Checks every key; returns how many pages of bounded rounds were absent (evicted). Without
/// a bound (nothing moves while checking), the follower must then agree with the reopened store
/// on every key.
fn check_all(dir: &std::path::Path, logs: &BTreeMap<u32, RoundLog>, follower: &Follower) -> usize {
    let last_round = logs.keys().copied().max().unwrap_or(0);
    let store = Store::open(dir, config_for(last_round)).expect("reopen after SIGKILL");
    let bounded = last_round >= BOUNDED_FROM_ROUND;
    if bounded {
        let st = store.stats();
        assert!(
            st.log_bytes <= BOUNDED_CAPACITY_BYTES + (1 << 20) + small_config().segment_bytes,
            "bound broken across a crash: {} bytes",
            st.log_bytes
        );
    }
    for ns in store.stats().namespaces {
        assert!(
            ns.live_bytes <= ns.quota_bytes,
            "quota broken across a crash: {ns:?}"
        );
    }
    let mut missing = 0;
    for (&round, log) in logs {
        if bounded {
            missing += check_bounded_round(&store, round, log);
            continue;
        }
        // Acked batches, plus the one in flight when killed.
        for batch in 0..=log.acked {
            let in_flight = batch == log.acked;
            for (i, k) in batch_keys(round, batch).iter().enumerate() {
                let got = store.get(k.as_bytes()).expect("get");
                let in_deleted_part = i >= DELETED_FROM;
                let deleted_acked = in_deleted_part && log.deleted.contains(&batch);
                // The delete issued right after ACK (acked-1) targets batch (acked-1)-2 when
                // (acked-1) % 5 == 4; killed before its DEL line, it may or may not have landed.
                let delete_maybe = in_deleted_part && batch + 3 == log.acked && log.acked % 5 == 0;
                match got {
                    Some(bytes) => {
                        assert_eq!(
                            bytes,
                            page_bytes(k.as_bytes(), page_len(k)),
                            "wrong bytes for {k}"
                        );
                        assert!(
                            !deleted_acked,
                            "{k} was deleted (acknowledged) but is present"
                        );
                    }
                    None => assert!(
                        in_flight || deleted_acked || delete_maybe,
                        "acknowledged page {k} lost after SIGKILL (round {round}, acked {})",
                        log.acked
                    ),
                }
            }
        }
    }
    let report = store.verify(|_, _| {}).expect("verify");
    assert_eq!(
        report.corrupt, 0,
        "no torn bytes remain indexed: {:?}",
        report.corrupt_keys
    );
    if !bounded {
        follower.refresh().expect("follower refresh");
        for (&round, log) in logs {
            for batch in 0..=log.acked {
                for k in batch_keys(round, batch) {
                    assert_eq!(
                        follower.get(k.as_bytes()).expect("follower get"),
                        store.get(k.as_bytes()).expect("get"),
                        "follower and reopened store disagree on {k}"
                    );
                }
            }
        }
    }
    missing
}

/// Under a capacity bound pages may be evicted, so each page is exact or absent, and within a
/// batch's chain the present pages are a prefix (eviction and relocation never orphan).
fn check_bounded_round(store: &Store, round: u32, log: &RoundLog) -> usize {
    let mut absent = 0;
    for batch in 0..=log.acked {
        let mut missing_from = None;
        for (i, k) in batch_keys(round, batch).iter().enumerate() {
            match store.get(k.as_bytes()).expect("get") {
                Some(bytes) => {
                    assert_eq!(
                        bytes,
                        page_bytes(k.as_bytes(), page_len(k)),
                        "wrong bytes for {k}"
                    );
                    assert!(
                        missing_from.is_none(),
                        "{k} present after a missing ancestor: orphan"
                    );
                }
                None => {
                    missing_from = missing_from.or(Some(i));
                    absent += 1;
                }
            }
        }
    }
    absent
}
