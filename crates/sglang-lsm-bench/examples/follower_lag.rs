//! What a follower (a non-writer MLA rank) costs: how long it takes to catch up with a store
//! it opens late, how far behind a live writer it runs, and its read cost next to the writer's.
//!
//! `cargo run --release -p sglang-lsm-bench --example follower_lag -- [PAGES] [PAGE_BYTES]`
//! (defaults 200000 pages of 16 KiB, in a temporary directory under the current directory).
//!
//! 1. The writer puts PAGES pages in 128-page batches (one chain each); then a follower opens
//!    the store and scans the whole log (catch-up).
//! 2. The writer puts another PAGES/4 pages while a second thread probes, through the
//!    follower, the batch the writer acknowledged last (refresh interval 50 ms, SGLang's
//!    default here): the lag is how long after the put returned the follower first saw it.
//! 3. Warm reads (each batch read once untimed first) of random 128-page batches through the
//!    writer and through the follower.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use sglang_lsm::{Follower, Store, StoreConfig};

const BATCH: usize = 128;

fn key(i: usize) -> String {
    format!("page-{i:010}")
}

fn put_batch(store: &Store, first: usize, page: &[u8]) -> anyhow::Result<()> {
    let keys: Vec<String> = (first..first + BATCH).map(key).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let parts: Vec<Vec<&[u8]>> = keys.iter().map(|_| vec![page]).collect();
    let ok = store.put_batch(&refs, &parts, &[])?;
    anyhow::ensure!(ok.iter().all(|&b| b), "put declined");
    Ok(())
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Median µs per page of `rounds` random 128-page reads through `read`.
fn read_cost(
    pages: usize,
    page_bytes: usize,
    rounds: usize,
    mut read: impl FnMut(&[&[u8]], &mut [Vec<&mut [u8]>]) -> anyhow::Result<Vec<bool>>,
) -> anyhow::Result<f64> {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; page_bytes]).collect();
    let mut per_page = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let keys: Vec<String> = (0..BATCH)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                key(rng as usize % pages)
            })
            .collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let mut parts: Vec<Vec<&mut [u8]>> = bufs.iter_mut().map(|b| vec![&mut b[..]]).collect();
        // Once untimed, so "warm" means in the page cache for both readers (the writer's
        // O_DIRECT appends leave nothing there).
        read(&refs, &mut parts)?;
        let t = Instant::now();
        let hits = read(&refs, &mut parts)?;
        per_page.push(t.elapsed().as_secs_f64() * 1e6 / BATCH as f64);
        anyhow::ensure!(hits.iter().all(|&h| h), "read missed");
    }
    Ok(quantile(&mut per_page, 0.5))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let pages: usize = args
        .next()
        .map_or(Ok(200_000), |a| a.parse())
        .context("PAGES")?;
    let page_bytes: usize = args
        .next()
        .map_or(Ok(16 << 10), |a| a.parse())
        .context("PAGE_BYTES")?;
    let pages = pages.div_ceil(BATCH) * BATCH;
    let dir = tempfile::tempdir_in(".")?;
    let store = Arc::new(Store::open(dir.path(), StoreConfig::default())?);
    let page = vec![0xA5u8; page_bytes];

    let t = Instant::now();
    for first in (0..pages).step_by(BATCH) {
        put_batch(&store, first, &page)?;
    }
    let put_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let follower = Arc::new(Follower::open(dir.path(), 50)?);
    let catch_up_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        follower.stats().pages == pages as u64,
        "follower missed pages"
    );
    println!(
        "{pages} pages of {page_bytes} B written in {put_s:.2} s; a follower opened afterwards \
         caught up in {catch_up_s:.3} s ({:.0} pages/s, {} frames)",
        pages as f64 / catch_up_s,
        follower.stats().frames_applied
    );

    // Lag behind a live writer.
    let acked = Arc::new(Mutex::new((0usize, Instant::now())));
    let done = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (f, acked, done, seen) = (
            Arc::clone(&follower),
            Arc::clone(&acked),
            Arc::clone(&done),
            Arc::clone(&seen),
        );
        std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
            let mut lags_ms = Vec::new();
            let mut last = 0;
            while !done.load(Ordering::Acquire) {
                let (first, at) = *acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                if first > last {
                    let k = key(first + BATCH - 1);
                    while !f.exists(k.as_bytes())? {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    lags_ms.push(at.elapsed().as_secs_f64() * 1e3);
                    seen.fetch_add(1, Ordering::Relaxed);
                    last = first;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(lags_ms)
        })
    };
    for first in (pages..pages + pages / 4).step_by(BATCH) {
        put_batch(&store, first, &page)?;
        *acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = (first, Instant::now());
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(200));
    done.store(true, Ordering::Release);
    let mut lags = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
    println!(
        "lag behind a live writer (refresh 50 ms), {} batches sampled: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        seen.load(Ordering::Relaxed),
        quantile(&mut lags, 0.5),
        quantile(&mut lags, 0.99),
        lags.iter().copied().fold(0.0, f64::max)
    );

    let total = pages + pages / 4;
    let store_us = read_cost(total, page_bytes, 200, |k, b| Ok(store.get_batch(k, b)?))?;
    let follower_us = read_cost(total, page_bytes, 200, |k, b| Ok(follower.get_batch(k, b)?))?;
    println!(
        "warm random 128-page reads, median per page: writer {store_us:.1} us, follower {follower_us:.1} us ({:.2}x)",
        follower_us / store_us
    );
    Ok(())
}
