//! Operator commands: `verify`, `stats`, `replay`, `serve`.

pub mod serve;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use sglang_lsm::{Store, StoreConfig};

use sglang_lsm_bench::units::fmt_bytes;

fn open(dir: &Path) -> anyhow::Result<Store> {
    if !dir.join("FORMAT").exists() {
        anyhow::bail!(
            "{} is not an sglang-lsm store (no FORMAT file)",
            dir.display()
        );
    }
    Store::open(dir, StoreConfig::default())
        .with_context(|| format!("opening store {}", dir.display()))
}

/// `sglang-lsm verify DIR`.
pub fn verify(dir: &Path) -> anyhow::Result<ExitCode> {
    let store = open(dir)?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("verify {bar:40} {pos}/{len} pages {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = store.verify(|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    println!(
        "verified={} corrupt={} bytes={}",
        report.verified,
        report.corrupt,
        fmt_bytes(report.bytes)
    );
    for k in &report.corrupt_keys {
        println!("corrupt key: {k}");
    }
    for q in &report.quarantined {
        println!(
            "quarantined segment {}: {} ({}); its pages are misses, delete the file once inspected",
            q.id,
            q.path.display(),
            q.reason
        );
    }
    Ok(if report.corrupt == 0 && report.quarantined.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `sglang-lsm stats DIR [--json | --prometheus]`.
pub fn stats(dir: &Path, json: bool, prometheus: bool) -> anyhow::Result<ExitCode> {
    let store = open(dir)?;
    if prometheus {
        print!("{}", store.metrics_text());
        return Ok(ExitCode::SUCCESS);
    }
    let stats = store.stats();
    let segments = store.segment_usage();
    if json {
        let v = serde_json::json!({ "stats": stats, "segments": segments });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("store          {}", dir.display());
    print_summary(&stats);
    println!("segment live fractions:");
    for s in &segments {
        let frac = if s.bytes == 0 {
            0.0
        } else {
            s.live_bytes as f64 / s.bytes as f64
        };
        println!(
            "  seg {:>10}  {:>10}  live {:5.1}%",
            s.id,
            fmt_bytes(s.bytes),
            100.0 * frac
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `sglang-lsm stats --socket PATH`: the store of a running node service, which holds its
/// directory's lock (so `stats DIR` cannot open it meanwhile).
pub fn service_stats(socket: &Path, json: bool, prometheus: bool) -> anyhow::Result<ExitCode> {
    let client = sglang_lsm::Client::new(socket, sglang_lsm::ClientOptions::default());
    if prometheus {
        print!("{}", client.metrics_text()?);
        return Ok(ExitCode::SUCCESS);
    }
    let stats = client.stats()?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "stats": stats }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("service        {}", socket.display());
    print_summary(&stats);
    Ok(ExitCode::SUCCESS)
}

fn print_summary(stats: &sglang_lsm::StoreStats) {
    println!("pages          {}", stats.pages);
    println!("live bytes     {}", fmt_bytes(stats.live_bytes));
    println!(
        "log bytes      {} in {} segments",
        fmt_bytes(stats.log_bytes),
        stats.segments
    );
    match stats.capacity_bytes {
        Some(c) => println!("capacity       {}", fmt_bytes(c)),
        None => println!("capacity       unbounded"),
    }
    println!(
        "index          {} on disk, {} tables, persisted seqno {:?}",
        fmt_bytes(stats.index_disk_bytes),
        stats.index_tables,
        stats.persisted_seqno
    );
}

/// `sglang-lsm replay`: runs the replay and prints the headline figures.
pub fn replay(args: &sglang_lsm_bench::ReplayArgs) -> anyhow::Result<ExitCode> {
    let r = sglang_lsm_bench::run(args)?;
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    println!(
        "trace {} ({} requests, {} block refs, {} distinct)",
        r.trace, r.requests, r.blocks, r.distinct_blocks
    );
    let bounded_by = match r.store_capacity_bytes {
        Some(_) => format!(
            "the store's own bound and eviction ({} segments)",
            fmt_bytes(r.segment_bytes)
        ),
        None => format!("the replayer enforcing {}", r.policy),
    };
    println!(
        "capacity {} blocks ({} at the replay's {} blocks), bounded by {bounded_by}",
        r.capacity_blocks,
        fmt_bytes(r.capacity_bytes_replay),
        fmt_bytes(r.block_bytes),
    );
    println!(
        "| hit rate ({}) | write amp | LRU | best online ({}) | Belady | unlimited | timely |",
        r.policy, r.best_online_policy
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.2} | {} | {} | {} | {} | {} |",
        pct(r.hit_rate),
        r.write_amplification,
        pct(r.lru_hit_rate),
        pct(r.best_online_hit_rate),
        pct(r.belady_hit_rate),
        pct(r.unlimited_hit_rate),
        pct(r.timely_hit_rate)
    );
    println!(
        "written {} ({} pages declined, {} evicted by the store, {} deleted by the replayer) \
         read {} in {:.1} s; TTFT MODEL ({}): mean {:.3} s, p99 {:.3} s",
        fmt_bytes(r.bytes_written),
        r.blocks_declined,
        r.evicted_pages,
        r.blocks_deleted,
        fmt_bytes(r.bytes_read),
        r.wall_s,
        r.model,
        r.ttft_model_mean_s,
        r.ttft_model_p99_s
    );
    Ok(ExitCode::SUCCESS)
}
