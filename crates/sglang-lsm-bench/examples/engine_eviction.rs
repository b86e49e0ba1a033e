//! Hit rate of the store's OWN capacity bound (segment reclamation + prefix-aware eviction)
//! on a Mooncake trace, next to LRU and offline Belady simulated on the same trace with the
//! same byte budget.
//!
//! `cargo run --release -p sglang-lsm-bench --example engine_eviction -- TRACE [OPTION...] [FRAC...]`
//!
//! Options, in any order: an admission (`all`, default, or `second_sighting`), a victim
//! policy (`oldest`, default, `greedy` or `cost_benefit`), and `protect=F` for
//! `protect_frequent_fraction` (default 0, off), `ghost=N` for `admission_ghost_pages` (the
//! second-sighting ghost list and the frequent-page put history). Numbers are capacities as fractions of the
//! trace's distinct blocks (default 0.01 0.05 0.10 0.25).

use std::time::Instant;

use anyhow::Context;
use sglang_lsm::{Admission, ReclaimVictim, Store, StoreConfig};
use sglang_lsm_bench::policy::{simulate_kind, PolicyKind};
use sglang_lsm_bench::replay::block_key;
use sglang_lsm_bench::trace::{Trace, MOONCAKE_BLOCK_TOKENS};

const BLOCK_BYTES: usize = 64 << 10;

fn main() -> anyhow::Result<()> {
    const USAGE: &str = "usage: engine_eviction TRACE [all|second_sighting] \
                         [oldest|greedy|cost_benefit] [protect=F] [ghost=N] [FRAC...]";
    let mut args = std::env::args().skip(1);
    let path = args.next().context(USAGE)?;
    let mut admission = Admission::All;
    let mut victim = ReclaimVictim::Oldest;
    let mut protect = 0.0f64;
    let mut ghost_pages = StoreConfig::default().admission_ghost_pages;
    let mut fracs: Vec<f64> = Vec::new();
    for a in args {
        match a.as_str() {
            "all" => admission = Admission::All,
            "second_sighting" => admission = Admission::SecondSighting,
            "oldest" => victim = ReclaimVictim::Oldest,
            "greedy" => victim = ReclaimVictim::Greedy,
            "cost_benefit" => victim = ReclaimVictim::CostBenefit,
            _ => {
                if let Some(n) = a.strip_prefix("ghost=") {
                    ghost_pages = n.parse().with_context(|| format!("{a:?}: {USAGE}"))?;
                } else if let Some(f) = a.strip_prefix("protect=") {
                    protect = f.parse().with_context(|| format!("{a:?}: {USAGE}"))?;
                } else {
                    fracs.push(a.parse().with_context(|| format!("{a:?}: {USAGE}"))?);
                }
            }
        }
    }
    if fracs.is_empty() {
        fracs = vec![0.01, 0.05, 0.10, 0.25];
    }
    let trace = Trace::load(&path, MOONCAKE_BLOCK_TOKENS)?;
    let value = vec![0x5Au8; BLOCK_BYTES];
    println!(
        "admission: {admission:?}, reclaim_victim: {victim:?}, protect_frequent_fraction: {protect}, \
         admission_ghost_pages: {ghost_pages}"
    );
    println!(
        "| capacity | store (engine eviction) | LRU | Belady | gap closed | write amp | wall s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for frac in fracs {
        let blocks = trace.capacity_blocks(frac);
        let lru = simulate_kind(&trace, PolicyKind::Lru, blocks).hit_rate;
        let belady = simulate_kind(&trace, PolicyKind::Belady, blocks).hit_rate;
        let dir = tempfile::tempdir_in(".")?;
        let store = Store::open(
            dir.path(),
            StoreConfig {
                capacity_bytes: Some((blocks * BLOCK_BYTES) as u64),
                admission,
                reclaim_victim: victim,
                protect_frequent_fraction: protect,
                admission_ghost_pages: ghost_pages,
                ..StoreConfig::default()
            },
        )?;
        let start = Instant::now();
        let (mut hits, mut refs) = (0u64, 0u64);
        let mut out: Vec<Vec<u8>> = Vec::new();
        for r in &trace.requests {
            let keys: Vec<String> = r.blocks.iter().map(|&b| block_key(b)).collect();
            let refs_k: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
            let n = store.probe(&refs_k, &[])?;
            let got = if n > 0 {
                out.resize_with(n, || vec![0u8; BLOCK_BYTES]);
                let mut bufs: Vec<Vec<&mut [u8]>> =
                    out[..n].iter_mut().map(|b| vec![&mut b[..]]).collect();
                store
                    .get_batch(&refs_k[..n], &mut bufs)?
                    .iter()
                    .take_while(|&&h| h)
                    .count()
            } else {
                0
            };
            hits += got as u64;
            refs += keys.len() as u64;
            if got < keys.len() {
                let vals: Vec<Vec<&[u8]>> = (got..keys.len()).map(|_| vec![&value[..]]).collect();
                store.put_batch(&refs_k[got..], &vals, &refs_k[..got])?;
            }
        }
        let st = store.stats();
        let rate = hits as f64 / refs as f64;
        println!(
            "| {:.0}% ({blocks} blocks) | {:.2}% | {:.2}% | {:.2}% | {:.0}% | {:.2} | {:.1} |",
            frac * 100.0,
            rate * 100.0,
            lru * 100.0,
            belady * 100.0,
            100.0 * (rate - lru) / (belady - lru),
            st.write_amplification,
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
