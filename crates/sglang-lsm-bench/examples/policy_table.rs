//! Prints the prefix hit rate of every simulated policy at 1/5/10/25% capacity.
//!
//! `cargo run --release -p sglang-lsm-bench --example policy_table -- [TRACE]`
//! (default: the bundled `data/traces/mooncake_synthetic_trace.jsonl.zst`).

use std::path::PathBuf;

use sglang_lsm_bench::policy::{simulate_kind, PolicyKind};
use sglang_lsm_bench::trace::{bundled_trace_path, Trace, MOONCAKE_BLOCK_TOKENS};

fn main() -> anyhow::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(bundled_trace_path, PathBuf::from);
    let trace = Trace::load(&path, MOONCAKE_BLOCK_TOKENS)?;
    let s = trace.stats();
    println!(
        "{}: {} requests, {} block refs, {} distinct blocks, unlimited-capacity hit rate {:.2}%",
        path.display(),
        s.requests,
        s.block_refs,
        s.distinct_blocks,
        100.0 * s.unlimited_hit_rate()
    );
    let fracs = [0.01, 0.05, 0.10, 0.25];
    print!("{:<10}", "policy");
    for f in fracs {
        print!("{:>10}", format!("{:.0}%", f * 100.0));
    }
    println!();
    for kind in PolicyKind::ALL {
        print!("{:<10}", kind.name());
        for f in fracs {
            let r = simulate_kind(&trace, kind, trace.capacity_blocks(f));
            print!("{:>10}", format!("{:.2}%", 100.0 * r.hit_rate));
        }
        println!();
    }
    Ok(())
}
