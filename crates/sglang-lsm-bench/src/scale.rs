//! `sglang-lsm bench-scale`: how per-operation cost and memory grow with the object count.
//!
//! Inserts small pages in SGLang-sized batches and, at each checkpoint (100k, 1M, ... records),
//! measures put, get (random resident keys) and probe cost per page, plus the process RSS.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sglang_lsm::io::AlignedBuf;
use sglang_lsm::{Store, StoreConfig};

use crate::quantile::quantile;
use crate::units::parse_bytes;

const BATCH_PAGES: usize = 128;
/// Operations sampled at each checkpoint.
const SAMPLE_BATCHES: usize = 200;

#[derive(Args)]
pub struct ScaleArgs {
    /// Working directory (a fresh subdirectory is created and removed).
    #[arg(long, default_value = "bench-out")]
    dir: PathBuf,
    /// Let the adaptive controller retune the knobs (the store's default is off).
    #[arg(long)]
    adaptive: bool,
    /// Checkpoints (record counts), ascending.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000,10000000")]
    checkpoints: Vec<u64>,
    /// Payload bytes per record.
    #[arg(long, default_value = "4k", value_parser = parse_bytes)]
    page_bytes: u64,
    /// Write results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Read with O_DIRECT (no page cache, no readahead): isolates the engine's per-op cost
    /// from the kernel's caching of a data set that grows past memory.
    #[arg(long)]
    direct_read: bool,
}

#[derive(Serialize)]
struct Checkpoint {
    records: u64,
    put_us_per_page: f64,
    get_us_per_page_p50: f64,
    probe128_us_p50: f64,
    rss_bytes: u64,
    index_disk_bytes: u64,
    index_tables: u64,
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn key(i: u64) -> String {
    format!(
        "{:064x}_scale_0_1",
        (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

/// A small xorshift so sampling needs no extra dependency.
fn next_rand(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

pub fn run(args: &ScaleArgs) -> anyhow::Result<ExitCode> {
    let root = args.dir.join(format!("scale-{}", std::process::id()));
    let result = run_in(args, &root);
    std::fs::remove_dir_all(&root).ok();
    let points = result?;
    println!("| records | put us/page | get us/page p50 | probe128 us p50 | RSS MiB | index MiB |");
    println!("|---|---|---|---|---|---|");
    for p in &points {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} |",
            p.records,
            p.put_us_per_page,
            p.get_us_per_page_p50,
            p.probe128_us_p50,
            p.rss_bytes as f64 / 1048576.0,
            p.index_disk_bytes as f64 / 1048576.0
        );
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        println!(
            "growth {}x records: put {:.2}x, get {:.2}x, probe {:.2}x",
            last.records / first.records.max(1),
            last.put_us_per_page / first.put_us_per_page,
            last.get_us_per_page_p50 / first.get_us_per_page_p50,
            last.probe128_us_p50 / first.probe128_us_p50
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&points)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_in(args: &ScaleArgs, root: &std::path::Path) -> anyhow::Result<Vec<Checkpoint>> {
    let page = usize::try_from(args.page_bytes)?;
    let store = Store::open(
        root,
        StoreConfig {
            direct_read: args.direct_read,
            adaptive: args.adaptive,
            ..StoreConfig::default()
        },
    )?;
    let src = AlignedBuf::zeroed(page);
    let mut dst: Vec<AlignedBuf> = (0..BATCH_PAGES).map(|_| AlignedBuf::zeroed(page)).collect();
    let total = args.checkpoints.iter().copied().max().unwrap_or(0);
    let pb = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("insert {bar:40} {pos}/{len} records {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut written = 0u64;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut points = Vec::new();
    for &target in &args.checkpoints {
        let mut window_start = Instant::now();
        let mut window_pages = 0u64;
        while written < target {
            if target - written == (SAMPLE_BATCHES * BATCH_PAGES) as u64 {
                // Time only the last stretch before the checkpoint: cost *at* this size.
                window_start = Instant::now();
                window_pages = 0;
            }
            let n = (target - written).min(BATCH_PAGES as u64);
            let keys: Vec<String> = (written..written + n).map(key).collect();
            let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
            let parts: Vec<Vec<&[u8]>> = (0..n).map(|_| vec![&src[..]]).collect();
            store.put_batch(&refs, &parts, &[])?;
            written += n;
            window_pages += n;
            pb.set_position(written);
        }
        let put_us = window_start.elapsed().as_secs_f64() * 1e6 / window_pages.max(1) as f64;
        let mut get_us = Vec::with_capacity(SAMPLE_BATCHES);
        let mut probe_us = Vec::with_capacity(SAMPLE_BATCHES);
        for _ in 0..SAMPLE_BATCHES {
            let keys: Vec<String> = (0..BATCH_PAGES)
                .map(|_| key(next_rand(&mut rng) % written))
                .collect();
            let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
            let mut parts: Vec<Vec<&mut [u8]>> = dst.iter_mut().map(|b| vec![&mut b[..]]).collect();
            let t = Instant::now();
            let hits = store.get_batch(&refs, &mut parts)?;
            get_us.push(t.elapsed().as_secs_f64() * 1e6 / BATCH_PAGES as f64);
            anyhow::ensure!(hits.iter().all(|&h| h), "scale read missed");
            let t = Instant::now();
            store.probe(&refs, &[])?;
            probe_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let st = store.stats();
        points.push(Checkpoint {
            records: written,
            put_us_per_page: put_us,
            get_us_per_page_p50: quantile(&mut get_us, 0.5),
            probe128_us_p50: quantile(&mut probe_us, 0.5),
            rss_bytes: rss_bytes(),
            index_disk_bytes: st.index_disk_bytes,
            index_tables: st.index_tables,
        });
    }
    pb.finish_and_clear();
    Ok(points)
}
