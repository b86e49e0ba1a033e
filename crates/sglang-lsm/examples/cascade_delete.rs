//! Times a delete of one page with about a million descendants, and what it costs others.
//!
//!     cargo run --release -p sglang-lsm --example cascade_delete -- [DIR] [CHAIN_PAGES] [STEP_PAGES]
//!
//! The tree is a chain of CHAIN_PAGES one-byte pages (default 2^20) under a root, plus a
//! side page under every 64th chain page: the deepest shape, so the walk's stack is as large
//! as it gets. A thread puts unrelated 4 KiB pages throughout the delete and reports the
//! slowest. Peak memory is the rise of VmHWM over VmRSS just before the delete, after
//! resetting VmHWM (`/proc/self/clear_refs`), so building the tree does not count.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sglang_lsm::{Durability, Store, StoreConfig};

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let given = args.next();
    let dir = match &given {
        Some(d) => std::path::PathBuf::from(d),
        None => tempfile_dir()?,
    };
    let chain_pages: usize = args.next().map_or(Ok(1 << 20), |n| n.parse())?;
    let config = StoreConfig {
        durability: Durability::None,
        ..StoreConfig::default()
    };
    let store = Store::open(&dir, config)?;
    if let Some(step_pages) = args.next() {
        store.set_cascade_step_pages(step_pages.parse()?);
    }
    let value = [7u8];
    let key = |i: usize| format!("c{i:08}");
    let started = Instant::now();
    store.put_batch(&[b"root".as_slice()], &[vec![&value[..]]], &[])?;
    let mut prev = "root".to_string();
    let mut pages = 1usize;
    for start in (0..chain_pages).step_by(4_096) {
        let ks: Vec<String> = (start..(start + 4_096).min(chain_pages)).map(key).collect();
        let refs: Vec<&[u8]> = ks.iter().map(|k| k.as_bytes()).collect();
        let parts: Vec<Vec<&[u8]>> = ks.iter().map(|_| vec![&value[..]]).collect();
        store.put_batch(&refs, &parts, &[prev.as_bytes()])?;
        for (j, k) in ks.iter().enumerate() {
            if (start + j) % 64 == 0 {
                let side = format!("s{:08}", start + j);
                store.put_batch(&[side.as_bytes()], &[vec![&value[..]]], &[k.as_bytes()])?;
                pages += 1;
            }
        }
        pages += ks.len();
        prev = ks.last().cloned().unwrap_or(prev);
    }
    store.flush()?;
    println!(
        "built {pages} pages ({chain_pages}-page chain) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Reset the peak so VmHWM measures the delete alone.
    std::fs::write("/proc/self/clear_refs", "5")?;
    let rss_before_kib = status_kib("VmRSS:");
    let running = AtomicBool::new(true);
    let put_max_us = AtomicU64::new(0);
    let puts = AtomicU64::new(0);
    let took = std::thread::scope(|scope| -> sglang_lsm::Result<Duration> {
        scope.spawn(|| {
            let page = vec![3u8; 4096];
            let mut i = 0u64;
            while running.load(Ordering::Acquire) {
                let k = format!("bystander-{i:08}");
                let t = Instant::now();
                if store
                    .put_batch(&[k.as_bytes()], &[vec![&page[..]]], &[])
                    .is_err()
                {
                    break;
                }
                put_max_us.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                puts.fetch_add(1, Ordering::Relaxed);
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let t = Instant::now();
        let existed = store.delete(b"root");
        let took = t.elapsed();
        running.store(false, Ordering::Release);
        existed?;
        Ok(took)
    })?;
    let peak_kib = status_kib("VmHWM:");
    let left = (0..chain_pages)
        .step_by(997)
        .filter(|&i| store.exists(key(i).as_bytes()).unwrap_or(true))
        .count();
    println!(
        "delete of {pages} pages: {:.2} s ({:.0} pages/s); peak RSS +{:.1} MiB over {:.1} MiB; \
         {} bystander puts, slowest {:.1} ms; sampled pages left: {left}",
        took.as_secs_f64(),
        pages as f64 / took.as_secs_f64(),
        peak_kib.saturating_sub(rss_before_kib) as f64 / 1024.0,
        rss_before_kib as f64 / 1024.0,
        puts.load(Ordering::Relaxed),
        put_max_us.load(Ordering::Relaxed) as f64 / 1000.0,
    );
    drop(store);
    if given.is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("cascade-delete-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
