//! Hit rate of the store's OWN capacity bound (segment reclamation + prefix-aware eviction)
//! on a Mooncake trace, next to LRU and offline Belady simulated on the same trace with the
//! same byte budget, for engine variants (admission, victim, protection). Each capacity is one
//! `sglang-lsm replay --policy store` (the replay module does the work; this only sweeps the
//! engine's options, which `replay` has no flags for).
//!
//! `cargo run --release -p sglang-lsm-bench --example engine_eviction -- TRACE [OPTION...] [FRAC...]`
//!
//! Options, in any order: an admission (`all`, default, or `second_sighting`), a victim
//! policy (`oldest`, default, `greedy` or `cost_benefit`), and `protect=F` for
//! `protect_frequent_fraction` (default 0, off), `ghost=N` for `admission_ghost_pages` (the
//! second-sighting ghost list and the frequent-page put history). Numbers are capacities as fractions of the
//! trace's distinct blocks (default 0.01 0.05 0.10 0.25).

use anyhow::Context;
use sglang_lsm::{Admission, ReclaimVictim, StoreConfig};
use sglang_lsm_bench::replay::{run, ReplayArgs, ReplayPolicy};

fn main() -> anyhow::Result<()> {
    const USAGE: &str = "usage: engine_eviction TRACE [all|second_sighting] \
                         [oldest|greedy|cost_benefit] [protect=F] [ghost=N] [FRAC...]";
    let mut args = std::env::args().skip(1);
    let path = args.next().context(USAGE)?;
    let mut config = StoreConfig::default();
    let mut fracs: Vec<f64> = Vec::new();
    for a in args {
        match a.as_str() {
            "all" => config.admission = Admission::All,
            "second_sighting" => config.admission = Admission::SecondSighting,
            "oldest" => config.reclaim_victim = ReclaimVictim::Oldest,
            "greedy" => config.reclaim_victim = ReclaimVictim::Greedy,
            "cost_benefit" => config.reclaim_victim = ReclaimVictim::CostBenefit,
            _ => {
                if let Some(n) = a.strip_prefix("ghost=") {
                    config.admission_ghost_pages =
                        n.parse().with_context(|| format!("{a:?}: {USAGE}"))?;
                } else if let Some(f) = a.strip_prefix("protect=") {
                    config.protect_frequent_fraction =
                        f.parse().with_context(|| format!("{a:?}: {USAGE}"))?;
                } else {
                    fracs.push(a.parse().with_context(|| format!("{a:?}: {USAGE}"))?);
                }
            }
        }
    }
    if fracs.is_empty() {
        fracs = vec![0.01, 0.05, 0.10, 0.25];
    }
    println!(
        "admission: {:?}, reclaim_victim: {:?}, protect_frequent_fraction: {}, \
         admission_ghost_pages: {}",
        config.admission,
        config.reclaim_victim,
        config.protect_frequent_fraction,
        config.admission_ghost_pages
    );
    println!(
        "| capacity | store (engine eviction) | LRU | Belady | gap closed | write amp | wall s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for frac in fracs {
        // The store in the working directory, as before this example used `replay`.
        let dir = tempfile::tempdir_in(".")?;
        let mut replay = ReplayArgs::new(&path, frac);
        replay.policy = ReplayPolicy::Store;
        replay.store_options = Some(config.clone());
        replay.dir = Some(dir.path().join("store"));
        let r = run(&replay)?;
        println!(
            "| {:.0}% ({} blocks) | {:.2}% | {:.2}% | {:.2}% | {:.0}% | {:.2} | {:.1} |",
            frac * 100.0,
            r.capacity_blocks,
            r.hit_rate * 100.0,
            r.lru_hit_rate * 100.0,
            r.belady_hit_rate * 100.0,
            100.0 * (r.hit_rate - r.lru_hit_rate) / (r.belady_hit_rate - r.lru_hit_rate),
            r.write_amplification,
            r.wall_s
        );
    }
    Ok(())
}
