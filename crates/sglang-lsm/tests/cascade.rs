//! Cascading deletes in bounded steps (issues 15.3, 16.2, 16.3): no page-count limit, other
//! writers wait for one step rather than the whole cascade, and no orphan after a crash or
//! with puts racing the cascade.
//!
//! Pages are one byte (each still takes a 4 KiB block on disk), so trees of many thousands of
//! pages build quickly; `set_cascade_step_pages` makes small trees take many steps.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::small_config;
use sglang_lsm::{Durability, Store, StoreConfig};

const VALUE: [u8; 1] = [7];
const BATCH_PAGES: usize = 1_000;

/// A tree: a chain from `root`, with a side chain hanging off every few chain pages.
struct Tree {
    /// Every page, each after its parent.
    keys: Vec<String>,
    /// Parent of each page but the root.
    parent: HashMap<String, String>,
}

impl Tree {
    fn new(tag: &str, chain_pages: usize, side_every: usize, side_pages: usize) -> Self {
        let mut keys = vec![format!("{tag}-root")];
        let mut parent = HashMap::new();
        for i in 0..chain_pages {
            let k = format!("{tag}-c{i:07}");
            parent.insert(k.clone(), keys[keys.len() - 1].clone());
            keys.push(k);
        }
        for i in (0..chain_pages).step_by(side_every.max(1)) {
            let mut up = format!("{tag}-c{i:07}");
            for j in 0..side_pages {
                let k = format!("{tag}-s{i:07}-{j}");
                parent.insert(k.clone(), up);
                keys.push(k.clone());
                up = k;
            }
        }
        Self { keys, parent }
    }

    fn root(&self) -> &str {
        &self.keys[0]
    }

    /// Puts every page, in batches whose pages each follow their parent.
    fn put(&self, store: &Store) {
        let mut i = 0;
        while i < self.keys.len() {
            // A run of pages, each the child of the one before, starting at `i`.
            let mut end = i + 1;
            while end < self.keys.len()
                && end - i < BATCH_PAGES
                && self.parent.get(&self.keys[end]) == Some(&self.keys[end - 1])
            {
                end += 1;
            }
            let run: Vec<&[u8]> = self.keys[i..end].iter().map(|k| k.as_bytes()).collect();
            let parts: Vec<Vec<&[u8]>> = run.iter().map(|_| vec![&VALUE[..]]).collect();
            let prefix: Vec<&[u8]> = self
                .parent
                .get(&self.keys[i])
                .map(|p| vec![p.as_bytes()])
                .unwrap_or_default();
            let stored = store.put_batch(&run, &parts, &prefix).expect("put tree");
            assert!(stored.iter().all(|&s| s), "the tree did not fit");
            i = end;
        }
    }

    fn present(&self, store: &Store) -> Vec<bool> {
        self.keys
            .iter()
            .map(|k| store.exists(k.as_bytes()).expect("exists"))
            .collect()
    }

    /// Panics naming the first resident page whose parent is gone.
    fn assert_no_orphan(&self, store: &Store, parent: &HashMap<String, String>, when: &str) {
        let mut orphans = 0;
        let mut first = None;
        for (k, p) in parent {
            if store.exists(k.as_bytes()).expect("exists")
                && !store.exists(p.as_bytes()).expect("exists")
            {
                orphans += 1;
                first.get_or_insert_with(|| k.clone());
            }
        }
        assert_eq!(orphans, 0, "{when}: {orphans} orphans, e.g. {first:?}");
        // Chains read back through probe exactly as far as they exist.
        let chain: Vec<&[u8]> = self
            .keys
            .iter()
            .filter(|k| !k.contains("-s"))
            .map(|k| k.as_bytes())
            .collect();
        let in_chain = chain
            .iter()
            .filter(|k| store.exists(k).expect("exists"))
            .count();
        assert_eq!(
            store.probe(&chain, &[]).expect("probe"),
            in_chain,
            "{when}: chain has a gap"
        );
    }
}

fn fast_config() -> StoreConfig {
    StoreConfig {
        durability: Durability::None,
        ..small_config()
    }
}

fn delete_all_and_check(tree: &Tree, step_pages: Option<usize>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bystander = Tree::new("other", 50, 10, 2);
    {
        let s = Store::open(dir.path(), fast_config()).expect("open");
        if let Some(n) = step_pages {
            s.set_cascade_step_pages(n);
        }
        tree.put(&s);
        bystander.put(&s);
        assert!(tree.present(&s).iter().all(|&p| p));
        assert!(s.delete(tree.root().as_bytes()).expect("delete"));
        let left = tree.present(&s).iter().filter(|&&p| p).count();
        assert_eq!(
            left,
            0,
            "{left} of {} pages survived the delete",
            tree.keys.len()
        );
        assert!(
            bystander.present(&s).iter().all(|&p| p),
            "an unrelated tree lost pages"
        );
    }
    let s = Store::open(dir.path(), fast_config()).expect("reopen");
    let left = tree.present(&s).iter().filter(|&&p| p).count();
    assert_eq!(left, 0, "{left} pages came back after reopen");
    assert!(
        bystander.present(&s).iter().all(|&p| p),
        "an unrelated tree lost pages on reopen"
    );
}

/// Many small steps: a chain of 6,000 pages with side chains, 64 pages a step.
#[test]
fn a_cascade_of_many_steps_removes_the_whole_tree() {
    delete_all_and_check(&Tree::new("t", 6_000, 7, 3), Some(64));
}

/// A single-page step, and a tree whose root has many direct children.
#[test]
fn one_page_steps_and_a_wide_root() {
    delete_all_and_check(&Tree::new("w", 40, 1, 1), Some(1));
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path(), fast_config()).expect("open");
    s.set_cascade_step_pages(100);
    let root = b"wide-root".as_slice();
    s.put_batch(&[root], &[vec![&VALUE[..]]], &[])
        .expect("put root");
    let children: Vec<String> = (0..5_000).map(|i| format!("wide-{i:05}")).collect();
    for c in &children {
        s.put_batch(&[c.as_bytes()], &[vec![&VALUE[..]]], &[root])
            .expect("put child");
    }
    assert!(s.delete(root).expect("delete"));
    let left = children
        .iter()
        .filter(|c| s.exists(c.as_bytes()).expect("exists"))
        .count();
    assert_eq!(left, 0);
}

/// Issues 15.3 and 16.2: a page with more than 2^20 descendants. The old cascade stopped
/// collecting at 2^20 pages and left the rest as orphans that survived reopen.
#[test]
#[ignore = "writes 1M pages (4 GiB of 4 KiB blocks) and takes minutes in the dev profile; run \
            with --release -- --ignored"]
fn a_cascade_over_more_than_2_pow_20_descendants_leaves_nothing() {
    delete_all_and_check(&Tree::new("big", (1 << 20) + 1_000, 1_000, 2), None);
}

/// Issue 16.2: a long cascade no longer holds the writer lock throughout. Puts of unrelated
/// 4 KiB pages on another thread each wait for at most one step; under the old cascade the
/// first of them waited for nearly all of it.
#[test]
fn unrelated_puts_wait_for_one_step_not_the_whole_cascade() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path(), fast_config()).expect("open");
    let tree = Tree::new("long", 40_000, 1_000, 1);
    tree.put(&s);
    s.set_cascade_step_pages(256);
    let running = AtomicBool::new(true);
    let started = AtomicBool::new(false);
    let in_cascade = AtomicBool::new(false);
    let put_max_us = AtomicU64::new(0);
    let puts = AtomicU64::new(0);
    let cascade = std::thread::scope(|scope| {
        scope.spawn(|| {
            let page = vec![3u8; 4096];
            let mut i = 0u64;
            while running.load(Ordering::Acquire) {
                let k = format!("bystander-{i:06}");
                // A put counts if it started during the cascade, however late it ends: under
                // a cascade that holds the writer lock throughout, one such put waits for
                // nearly all of it and no other starts.
                let during = in_cascade.load(Ordering::Acquire);
                let t = Instant::now();
                let stored = s
                    .put_batch(&[k.as_bytes()], &[vec![&page[..]]], &[])
                    .expect("put");
                let us = t.elapsed().as_micros() as u64;
                assert!(stored[0]);
                if during {
                    put_max_us.fetch_max(us, Ordering::Relaxed);
                    puts.fetch_add(1, Ordering::Relaxed);
                }
                started.store(true, Ordering::Release);
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        while !started.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let t = Instant::now();
        in_cascade.store(true, Ordering::Release);
        assert!(s.delete(tree.root().as_bytes()).expect("delete"));
        in_cascade.store(false, Ordering::Release);
        let took = t.elapsed();
        running.store(false, Ordering::Release);
        took
    });
    let put_max = Duration::from_micros(put_max_us.load(Ordering::Relaxed));
    let n = puts.load(Ordering::Relaxed);
    eprintln!(
        "cascade of {} pages took {cascade:?}; {n} puts started meanwhile, slowest {put_max:?}",
        tree.keys.len()
    );
    assert!(n >= 3, "only {n} puts started during a {cascade:?} cascade");
    assert!(
        put_max * 4 < cascade,
        "a put waited {put_max:?}, more than a quarter of the {cascade:?} cascade"
    );
    assert!(tree.present(&s).iter().all(|&p| !p));
}

const CRASH_DIR_ENV: &str = "SGLANG_LSM_CASCADE_CRASH_DIR";
const CRASH_TREE: (usize, usize, usize) = (30_000, 5, 2);

fn crash_tree() -> Tree {
    Tree::new("crash", CRASH_TREE.0, CRASH_TREE.1, CRASH_TREE.2)
}

fn crash_config() -> StoreConfig {
    // Every Delete frame is synced: a slow, many-step cascade for the kill to land in.
    StoreConfig {
        durability: Durability::Batch,
        ..small_config()
    }
}

/// The child's body: deletes the tree's root in steps of 32 pages until killed.
#[test]
#[ignore = "run by a_cascade_killed_midway_leaves_no_orphan as a child process"]
fn cascade_crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let s = Store::open(&dir, crash_config()).expect("child open");
    s.set_cascade_step_pages(32);
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY").expect("stdout");
    out.flush().expect("flush");
    s.delete(crash_tree().root().as_bytes())
        .expect("child delete");
    writeln!(out, "DONE").expect("stdout");
    out.flush().expect("flush");
}

/// Runs the child and SIGKILLs it `kill_after` after it is ready; returns whether it
/// finished first.
fn run_crash_child(dir: &std::path::Path, kill_after: Duration) -> bool {
    let exe = std::env::current_exe().expect("test exe");
    let mut child = Command::new(exe)
        .args([
            "cascade_crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = lines
        .by_ref()
        .any(|l| l.is_ok_and(|l| l.trim_end().ends_with("READY")));
    assert!(ready, "the child did not start");
    std::thread::sleep(kill_after);
    child.kill().expect("SIGKILL child");
    let _ = child.wait();
    lines.any(|l| l.is_ok_and(|l| l.trim_end().ends_with("DONE")))
}

/// Issue 16.3: SIGKILL in the middle of a multi-step cascade leaves a smaller tree, never an
/// orphan, on reopen; a second delete finishes the job.
#[test]
fn a_cascade_killed_midway_leaves_no_orphan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = crash_tree();
    {
        let s = Store::open(dir.path(), fast_config()).expect("open");
        tree.put(&s);
    }
    let mut kill_after = Duration::from_millis(150);
    let mut midway = 0;
    for attempt in 0..8 {
        let finished = run_crash_child(dir.path(), kill_after);
        let s = Store::open(dir.path(), crash_config()).expect("reopen");
        let present = tree.present(&s).iter().filter(|&&p| p).count();
        eprintln!(
            "attempt {attempt}: killed after {kill_after:?}, {present} of {} pages left",
            tree.keys.len()
        );
        tree.assert_no_orphan(&s, &tree.parent, &format!("after kill {attempt}"));
        if present == 0 || finished {
            // Too late: put the tree back and kill sooner.
            drop(s);
            let s = Store::open(dir.path(), fast_config()).expect("reopen");
            tree.put(&s);
            kill_after /= 2;
            continue;
        }
        if present < tree.keys.len() {
            midway += 1;
            if midway == 2 {
                break;
            }
        } else {
            kill_after *= 2;
        }
    }
    assert!(midway > 0, "no kill landed in the middle of the cascade");
    let s = Store::open(dir.path(), crash_config()).expect("reopen");
    assert!(s.delete(tree.root().as_bytes()).expect("second delete"));
    assert!(
        tree.present(&s).iter().all(|&p| !p),
        "the second delete left pages"
    );
}

/// Puts racing the cascade publish new children under pages of the doomed subtree (each put
/// carries its whole path from the root, so it publishes a child only while its parent is
/// resident, and may put back pages already deleted). Whatever interleaving happens, every
/// resident page's parent is resident afterwards, and a delete with no puts running removes
/// everything. Writers do a fixed number of puts, so the cascade always catches up.
#[test]
fn puts_racing_a_cascade_leave_no_orphan() {
    const PUTS_PER_WRITER: u64 = 300;
    let mut puts_during_cascades = 0;
    for seed in 1..=4u64 {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path(), fast_config()).expect("open");
        // Shallow (paths of at most 81 pages) but long to delete: 1,641 pages.
        let tree = Tree::new(&format!("race{seed}"), 40, 1, 40);
        tree.put(&s);
        // Large steps: the longer the walk before a step takes the lock, the more puts land
        // under pages it already passed.
        s.set_cascade_step_pages(64 << seed);
        let path_of = |k: &str| {
            let mut path = vec![k.to_string()];
            while let Some(p) = path.last().and_then(|k| tree.parent.get(k)) {
                path.push(p.clone());
            }
            path.reverse();
            path
        };
        let started = AtomicBool::new(false);
        let running = AtomicBool::new(true);
        let during = AtomicU64::new(0);
        let added: Vec<HashMap<String, String>> = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..2u64)
                .map(|w| {
                    let (tree, started, running, during, path_of, s) =
                        (&tree, &started, &running, &during, &path_of, &s);
                    scope.spawn(move || {
                        while !started.load(Ordering::Acquire) {
                            std::thread::yield_now();
                        }
                        let mut rng = seed * 1_000 + w + 1;
                        let mut added = HashMap::new();
                        for n in 0..PUTS_PER_WRITER {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            let under = &tree.keys[(rng % tree.keys.len() as u64) as usize];
                            let child = format!("race{seed}-n{w}-{n}");
                            let mut path = path_of(under);
                            path.push(child.clone());
                            let refs: Vec<&[u8]> = path.iter().map(|k| k.as_bytes()).collect();
                            let parts: Vec<Vec<&[u8]>> =
                                refs.iter().map(|_| vec![&VALUE[..]]).collect();
                            s.put_batch(&refs, &parts, &[]).expect("racing put");
                            if running.load(Ordering::Acquire) {
                                during.fetch_add(1, Ordering::Relaxed);
                            }
                            added.insert(child, under.clone());
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        added
                    })
                })
                .collect();
            started.store(true, Ordering::Release);
            // A cascade that meets puts it cannot outrun stops with a typed error and leaves a
            // smaller tree; retrying finishes it once the writers are done.
            let mut tries = 0;
            loop {
                tries += 1;
                match s.delete(tree.root().as_bytes()) {
                    Ok(_) => break,
                    Err(e) if e.code() == "cascade_unfinished" && tries < 100 => {
                        tree.assert_no_orphan(&s, &tree.parent, "after an unfinished cascade");
                    }
                    Err(e) => panic!("delete: {e}"),
                }
            }
            running.store(false, Ordering::Release);
            writers
                .into_iter()
                .map(|h| h.join().expect("writer"))
                .collect()
        });
        puts_during_cascades += during.load(Ordering::Relaxed);
        let mut parent = tree.parent.clone();
        for a in added {
            parent.extend(a);
        }
        tree.assert_no_orphan(
            &s,
            &parent,
            &format!("seed {seed}, after the racing cascade"),
        );
        s.delete(tree.root().as_bytes()).expect("delete again");
        let left: Vec<&String> = parent
            .keys()
            .filter(|k| s.exists(k.as_bytes()).expect("exists"))
            .collect();
        assert!(
            left.is_empty(),
            "seed {seed}: {} pages left, e.g. {:?}",
            left.len(),
            left.first()
        );
    }
    eprintln!("{puts_during_cascades} puts ran during cascades");
    assert!(
        puts_during_cascades > 0,
        "no put ran during a cascade: nothing raced"
    );
}

/// Parent links can loop when a suffix is stored before its prefix (B under absent A, then A
/// under B). A walk down from A meets A again; that is a typed error naming the page, not an
/// endless walk, and it deletes nothing.
#[test]
fn a_parent_link_cycle_is_a_typed_error_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path(), fast_config()).expect("open");
    let (a, b) = (b"cycle-a".as_slice(), b"cycle-b".as_slice());
    s.put_batch(&[b], &[vec![&VALUE[..]]], &[a]).expect("put b");
    s.put_batch(&[a], &[vec![&VALUE[..]]], &[b]).expect("put a");
    let e = s.delete(a).expect_err("a cycle was deleted as a tree");
    assert_eq!(e.code(), "corrupt", "{e}");
    assert!(s.exists(a).expect("exists") && s.exists(b).expect("exists"));
}
