//! `sglang-lsm bench --ours-only`: our store alone, without the other backends.
//!
//! For each page size: put_batch throughput (including the final fdatasync), cold and warm
//! get_batch throughput, per-batch latency percentiles, and probe latency — each held against
//! the device limit measured at the start of the same run.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sglang_lsm::io::AlignedBuf;
use sglang_lsm::{Store, StoreConfig};

use crate::args::CommonArgs;
use crate::device::{self, DeviceLimit};
use crate::quantile::quantile;
use crate::units::{fmt_bytes, parse_bytes};

/// Pages per call, as SGLang's `STORAGE_BATCH_SIZE`, capped so one batch is at most 32 MiB.
const SGLANG_BATCH_PAGES: usize = 128;
const MAX_BATCH_BYTES: usize = 32 << 20;
const PROBE_ITERS: usize = 20_000;
/// Offset used by `--unaligned` (torch CPU tensors are 64-byte aligned).
const MISALIGN_BYTES: usize = 64;

/// Options of `sglang-lsm bench --ours-only` (the working directory, sizes and `--json` are
/// [`CommonArgs`], shared with the comparison). Each requires `--ours-only`: the comparison
/// runs every store with its defaults, so a store switch there would apply to ours alone and
/// silently skew the ratios.
#[derive(Args, Clone, Debug)]
pub struct OursOnlyOptions {
    /// Read with O_DIRECT in the store (writes use O_DIRECT unless --buffered-writes).
    #[arg(long, requires = "ours_only")]
    pub direct_read: bool,
    /// Write through the page cache instead of O_DIRECT.
    #[arg(long, requires = "ours_only")]
    pub buffered_writes: bool,
    /// Largest single read I/O after coalescing.
    #[arg(long, default_value = "4m", value_parser = parse_bytes, requires = "ours_only")]
    pub max_io: u64,
    /// Read threads per get_batch.
    #[arg(long, default_value_t = 8, requires = "ours_only")]
    pub read_threads: usize,
    /// Keep the store directories after the run.
    #[arg(long, requires = "ours_only")]
    pub keep: bool,
    /// Place page buffers 64 bytes past a page boundary, like torch's CPU tensors (SGLang's
    /// pinned host pool is page-aligned). Exercises the aligned-bounce write path.
    #[arg(long, requires = "ours_only")]
    pub unaligned: bool,
    /// Repetitions of each case; the table reports medians. This virtual disk varies by
    /// +-30% from minute to minute, so each repetition measures the device limit right
    /// before the store, with the same bytes, and ratios are taken within a repetition.
    #[arg(long, default_value_t = 3, requires = "ours_only")]
    pub repeat: usize,
}

#[derive(Serialize, Clone)]
struct PageResult {
    device: DeviceLimit,
    page_bytes: u64,
    pages: u64,
    batch_pages: usize,
    put_bytes_per_s: f64,
    cold_get_bytes_per_s: f64,
    warm_get_bytes_per_s: f64,
    put_batch_p50_ms: f64,
    put_batch_p99_ms: f64,
    cold_get_batch_p50_ms: f64,
    cold_get_batch_p99_ms: f64,
    probe128_p50_us: f64,
    probe128_p99_us: f64,
    cold: bool,
}

#[derive(Serialize)]
struct Report {
    direct_read: bool,
    direct_write: bool,
    repeat: usize,
    unaligned: bool,
    /// Every repetition of every case.
    runs: Vec<PageResult>,
    /// Per page size: the repetition with the median put/device-write ratio, and the median
    /// ratios.
    summary: Vec<Summary>,
}

#[derive(Serialize)]
struct Summary {
    page_bytes: u64,
    put_vs_device_write: f64,
    cold_get_vs_device_read: f64,
    put_bytes_per_s: f64,
    cold_get_bytes_per_s: f64,
    warm_get_bytes_per_s: f64,
    device_write_bytes_per_s: f64,
    device_read_bytes_per_s: f64,
    put_batch_p99_ms: f64,
    cold_get_batch_p99_ms: f64,
    probe128_p50_us: f64,
    cold: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    quantile(&mut v, 0.5)
}

fn summarize(page_bytes: u64, runs: &[PageResult]) -> Summary {
    let of = |f: &dyn Fn(&PageResult) -> f64| median(runs.iter().map(f).collect());
    Summary {
        page_bytes,
        put_vs_device_write: of(&|r| r.put_bytes_per_s / r.device.write_bytes_per_s),
        cold_get_vs_device_read: of(&|r| r.cold_get_bytes_per_s / r.device.read_bytes_per_s),
        put_bytes_per_s: of(&|r| r.put_bytes_per_s),
        cold_get_bytes_per_s: of(&|r| r.cold_get_bytes_per_s),
        warm_get_bytes_per_s: of(&|r| r.warm_get_bytes_per_s),
        device_write_bytes_per_s: of(&|r| r.device.write_bytes_per_s),
        device_read_bytes_per_s: of(&|r| r.device.read_bytes_per_s),
        put_batch_p99_ms: of(&|r| r.put_batch_p99_ms),
        cold_get_batch_p99_ms: of(&|r| r.cold_get_batch_p99_ms),
        probe128_p50_us: of(&|r| r.probe128_p50_us),
        cold: runs.iter().all(|r| r.cold),
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(&format!(
        "{what:>24} {{bar:30}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len).with_style(style)
}

/// Runs our store alone at every page size, `--repeat` times, and prints the medians.
///
/// # Errors
/// Bad sizes, I/O errors, or a store that misses a page it wrote.
pub fn run(common: &CommonArgs, args: &OursOnlyOptions) -> anyhow::Result<ExitCode> {
    let root = common.dir.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let result = run_in(common, args, &root);
    if !args.keep {
        std::fs::remove_dir_all(&root).ok();
    }
    let report = result?;
    print_table(&report);
    if let Some(path) = &common.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_in(common: &CommonArgs, args: &OursOnlyOptions, root: &Path) -> anyhow::Result<Report> {
    anyhow::ensure!(args.repeat >= 1, "--repeat must be at least 1");
    let mut runs = Vec::new();
    let mut summary = Vec::new();
    for (i, &page) in common.page_sizes.iter().enumerate() {
        anyhow::ensure!(page >= 4096, "page sizes must be at least 4 KiB");
        let mut case_runs = Vec::new();
        for rep in 0..args.repeat {
            eprintln!(
                "{} pages, repetition {}/{}: device limit, then the store",
                fmt_bytes(page),
                rep + 1,
                args.repeat
            );
            let device = device::measure(root, common.bytes)?;
            let dir = root.join(format!("case-{i}-{rep}"));
            let r = bench_page_size(args, common.bytes, &dir, page, device)?;
            if !args.keep {
                std::fs::remove_dir_all(&dir).ok();
            }
            case_runs.push(r);
        }
        summary.push(summarize(page, &case_runs));
        runs.extend(case_runs);
    }
    Ok(Report {
        direct_read: args.direct_read,
        direct_write: !args.buffered_writes,
        repeat: args.repeat,
        unaligned: args.unaligned,
        runs,
        summary,
    })
}

fn page_key(i: u64) -> String {
    // SGLang-shaped keys: 64 hex chars plus a namespace suffix.
    format!(
        "{:064x}_bench_0_1",
        (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

fn bench_page_size(
    args: &OursOnlyOptions,
    bytes: u64,
    root: &Path,
    page: u64,
    device: DeviceLimit,
) -> anyhow::Result<PageResult> {
    let page_usize = usize::try_from(page)?;
    let batch_pages = SGLANG_BATCH_PAGES.min((MAX_BATCH_BYTES / page_usize).max(1));
    let pages = (bytes / page).max(batch_pages as u64);
    let batches = pages.div_ceil(batch_pages as u64);
    let store = Store::open(
        root,
        StoreConfig {
            direct_read: args.direct_read,
            direct_write: !args.buffered_writes,
            read_threads: args.read_threads,
            max_io_bytes: args.max_io,
            ..StoreConfig::default()
        },
    )?;
    // One batch of source pages (page-aligned, like SGLang's pinned host pool), reused with
    // different keys: the store checksums every page, so content need not differ.
    let mut src: Vec<AlignedBuf> = (0..batch_pages)
        .map(|_| AlignedBuf::zeroed(page_usize + MISALIGN_BYTES))
        .collect();
    for (i, b) in src.iter_mut().enumerate() {
        b.iter_mut()
            .enumerate()
            .for_each(|(j, x)| *x = (i * 31 + j) as u8);
    }
    let keys: Vec<String> = (0..pages).map(page_key).collect();

    let pb = bar(pages * page, &format!("put {}", fmt_bytes(page)));
    let mut put_ms = Vec::with_capacity(batches as usize);
    let start = Instant::now();
    for chunk in keys.chunks(batch_pages) {
        let refs: Vec<&[u8]> = chunk.iter().map(|k| k.as_bytes()).collect();
        let skew = if args.unaligned { MISALIGN_BYTES } else { 0 };
        let parts: Vec<Vec<&[u8]>> = src[..chunk.len()]
            .iter()
            .map(|b| {
                let (k, v) = b[skew..skew + page_usize].split_at(page_usize / 2);
                vec![k, v]
            })
            .collect();
        let t = Instant::now();
        let ok = store.put_batch(&refs, &parts, &[])?;
        anyhow::ensure!(
            ok.iter().all(|&b| b),
            "put declined without a capacity bound"
        );
        put_ms.push(t.elapsed().as_secs_f64() * 1e3);
        pb.inc(chunk.len() as u64 * page);
    }
    store.flush()?;
    let put_s = start.elapsed().as_secs_f64();
    pb.finish_and_clear();

    let cold = device::drop_caches();
    if !cold {
        eprintln!("warning: cannot drop page cache (not root?): 'cold' reads are warm");
    }
    let (cold_s, mut cold_ms) = read_all(
        &store,
        &keys,
        batch_pages,
        page_usize,
        args.unaligned,
        "cold get",
    )?;
    let (warm_s, _) = read_all(
        &store,
        &keys,
        batch_pages,
        page_usize,
        args.unaligned,
        "warm get",
    )?;

    let mut probe_us = Vec::with_capacity(PROBE_ITERS);
    let probe_keys: Vec<&[u8]> = keys.iter().take(128).map(|k| k.as_bytes()).collect();
    for _ in 0..PROBE_ITERS {
        let t = Instant::now();
        let n = store.probe(&probe_keys, &[])?;
        probe_us.push(t.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(
            n == probe_keys.len(),
            "probe found {n} of {}",
            probe_keys.len()
        );
    }
    let total = (pages * page) as f64;
    Ok(PageResult {
        device,
        page_bytes: page,
        pages,
        batch_pages,
        put_bytes_per_s: total / put_s,
        cold_get_bytes_per_s: total / cold_s,
        warm_get_bytes_per_s: total / warm_s,
        put_batch_p50_ms: quantile(&mut put_ms, 0.5),
        put_batch_p99_ms: quantile(&mut put_ms, 0.99),
        cold_get_batch_p50_ms: quantile(&mut cold_ms, 0.5),
        cold_get_batch_p99_ms: quantile(&mut cold_ms, 0.99),
        probe128_p50_us: quantile(&mut probe_us, 0.5),
        probe128_p99_us: quantile(&mut probe_us, 0.99),
        cold,
    })
}

fn read_all(
    store: &Store,
    keys: &[String],
    batch_pages: usize,
    page: usize,
    unaligned: bool,
    what: &str,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let mut dst: Vec<AlignedBuf> = (0..batch_pages)
        .map(|_| AlignedBuf::zeroed(page + MISALIGN_BYTES))
        .collect();
    let skew = if unaligned { MISALIGN_BYTES } else { 0 };
    let pb = bar(
        (keys.len() * page) as u64,
        &format!("{what} {}", fmt_bytes(page as u64)),
    );
    let mut ms = Vec::new();
    let start = Instant::now();
    for chunk in keys.chunks(batch_pages) {
        let refs: Vec<&[u8]> = chunk.iter().map(|k| k.as_bytes()).collect();
        let mut parts: Vec<Vec<&mut [u8]>> = dst[..chunk.len()]
            .iter_mut()
            .map(|b| {
                let (k, v) = b[skew..skew + page].split_at_mut(page / 2);
                vec![k, v]
            })
            .collect();
        let t = Instant::now();
        let hits = store.get_batch(&refs, &mut parts)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            hits.iter().all(|&h| h),
            "benchmark read missed a page it wrote"
        );
        pb.inc((chunk.len() * page) as u64);
    }
    pb.finish_and_clear();
    Ok((start.elapsed().as_secs_f64(), ms))
}

fn gbps(b: f64) -> String {
    format!("{:.2}", b / 1e9)
}

fn print_table(r: &Report) {
    println!(
        "store: direct_write={} direct_read={} unaligned_buffers={}; medians of {} repetitions; device = O_DIRECT \
         sequential write/read of the same bytes measured right before each repetition",
        r.direct_write, r.direct_read, r.unaligned, r.repeat
    );
    println!(
        "| page | put GB/s | device write GB/s | put/device | cold get GB/s | device read GB/s | cold get/device | warm get GB/s | put p99 ms | cold get p99 ms | probe128 p50 us |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for x in &r.summary {
        println!(
            "| {} | {} | {} | {:.0}% | {}{} | {} | {:.0}% | {} | {:.1} | {:.1} | {:.1} |",
            fmt_bytes(x.page_bytes),
            gbps(x.put_bytes_per_s),
            gbps(x.device_write_bytes_per_s),
            100.0 * x.put_vs_device_write,
            gbps(x.cold_get_bytes_per_s),
            if x.cold { "" } else { " (warm!)" },
            gbps(x.device_read_bytes_per_s),
            100.0 * x.cold_get_vs_device_read,
            gbps(x.warm_get_bytes_per_s),
            x.put_batch_p99_ms,
            x.cold_get_batch_p99_ms,
            x.probe128_p50_us,
        );
    }
}
