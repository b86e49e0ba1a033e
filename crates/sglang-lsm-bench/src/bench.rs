//! `sglang-lsm bench` (alias `compare`), the main-job command: the top of the crate, the one
//! module that runs several benchmarks and writes the report.
//!
//! With no arguments it runs the whole suite on embedded defaults small enough to finish in a
//! few minutes on a 2-core VM: the side-by-side comparison ([`crate::compare`]: ours, the
//! file-per-page stores, lsm-inline and RocksDB when built; page sizes, then the object-count
//! sweep), the ablations ([`crate::ablation`]: placement, read coalescing, direct vs buffered
//! writes; "value log vs inline" is `ours` vs `lsm-inline`), then the compression measurement
//! ([`crate::compression`]). With `--report DIR` it writes a markdown report and PNG plots
//! ([`crate::report`]), including hit rate vs capacity from the policy simulators and a TTFT
//! **model** CDF from a replay. Every size is a flag, so the documented full-size runs use the
//! same command.
//!
//! `--ours-only` runs our store alone ([`crate::micro`]), medians of `--repeat`: the mode the
//! README's "our store vs the device" figures come from.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::ablation;
use crate::args::CommonArgs;
use crate::backend::BackendKind;
use crate::compare;
use crate::compression;
use crate::device;
use crate::micro::{self, OursOnlyOptions};
use crate::report::{self, CompareReport, TraceFigures};
use crate::units::parse_bytes;

/// Options of `sglang-lsm bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Our store alone: put / cold get / warm get / probe per page size against the device,
    /// medians of --repeat. Takes the store switches below; refuses the comparison's options.
    #[arg(long, conflicts_with = "CompareOptions")]
    pub ours_only: bool,
    #[command(flatten)]
    pub compare: CompareArgs,
    #[command(flatten)]
    pub ours: OursOnlyOptions,
}

/// Runs the mode asked for.
///
/// # Errors
/// As [`collect`] (plus writing the JSON and the report) or [`micro::run`].
pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if args.ours_only {
        micro::run(&args.compare.common, &args.ours)
    } else {
        run_suite(&args.compare)
    }
}

/// What the suite needs: the options every `bench` mode shares, and the suite's own.
#[derive(Args, Clone, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub options: CompareOptions,
}

/// Options of the side-by-side comparison only (refused with `--ours-only`). The defaults are
/// sized so the whole run takes a few minutes on a 2-core VM; the documented full-size runs
/// pass larger values (docs/BENCHMARKS.md).
#[derive(Args, Clone, Debug)]
pub struct CompareOptions {
    /// Backends to compare (default: every one compiled in).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub backends: Vec<BackendKind>,
    /// Probe calls timed per backend and page size.
    #[arg(long, default_value_t = 2000)]
    pub probe_iters: usize,
    /// Object-count checkpoints for the scale sweep (ascending).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    pub scale_counts: Vec<u64>,
    /// Page size in the scale sweep.
    #[arg(long, default_value = "4k", value_parser = parse_bytes)]
    pub scale_page_bytes: u64,
    /// Seconds each backend may spend inserting in the scale sweep; the sweep stops at the
    /// first checkpoint past it (the table says where each backend stopped).
    #[arg(long, default_value_t = 30.0)]
    pub scale_budget_s: f64,
    /// Skip the page-size comparison (to rerun only the sweep or the ablations).
    #[arg(long)]
    pub skip_page_sizes: bool,
    /// Skip the object-count sweep.
    #[arg(long)]
    pub skip_scale: bool,
    /// Skip the ablations (and the compression measurement).
    #[arg(long)]
    pub skip_ablations: bool,
    /// Skip the compression measurement only.
    #[arg(long)]
    pub skip_compression: bool,
    /// Pages per prefix in the placement ablation.
    #[arg(long, default_value_t = 64)]
    pub ablation_prefix_pages: usize,
    /// Prefixes in the placement ablation.
    #[arg(long, default_value_t = 32)]
    pub ablation_prefixes: usize,
    /// Page size in the placement ablation and the compression unit of the compression
    /// measurement.
    #[arg(long, default_value = "128k", value_parser = parse_bytes)]
    pub ablation_page_bytes: u64,
    /// Bytes of each synthetic data kind the compression measurement compresses.
    #[arg(long, default_value = "64m", value_parser = parse_bytes)]
    pub compression_bytes: u64,
    /// Mooncake trace for the report's hit-rate and TTFT-model figures.
    #[arg(long, default_value = crate::trace::BUNDLED_TRACE)]
    pub trace: PathBuf,
    /// Block bytes written by the report's replay (scaled down from the model's real size).
    #[arg(long, default_value = "16k", value_parser = parse_bytes)]
    pub replay_block_bytes: u64,
    /// Write a markdown report and PNG plots into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// The backends asked for, or every one compiled in when none was named.
fn backends_of(args: &CompareOptions) -> Vec<BackendKind> {
    if args.backends.is_empty() {
        BackendKind::available()
    } else {
        args.backends.clone()
    }
}

/// Runs the suite, prints the tables, writes JSON and the report as asked.
///
/// # Errors
/// Bad arguments, I/O errors, or a store that returns wrong bytes or misses a page it wrote.
fn run_suite(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let report = collect(args)?;
    print_tables(&report);
    if let Some(path) = &args.common.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let opts = &args.options;
    if let Some(dir) = &opts.report {
        let figures = if opts.trace.is_file() {
            // The TTFT model loads hits at our store's cold-read bandwidth on the largest page
            // size measured (closest to a model's real multi-megabyte blocks).
            let load = report
                .page_sizes
                .iter()
                .max_by_key(|p| p.page_bytes)
                .and_then(|p| p.cases.iter().find(|c| c.backend == "ours"))
                .map(|c| c.cold_get_bytes_per_s);
            Some(TraceFigures::compute(
                &opts.trace,
                opts.replay_block_bytes,
                load,
            )?)
        } else {
            eprintln!(
                "trace {} not found: the report omits hit rate and TTFT figures",
                opts.trace.display()
            );
            None
        };
        report::write(dir, &report, figures.as_ref())?;
        println!("report written to {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs every measurement and returns the results (no printing beyond progress).
///
/// # Errors
/// As [`run`].
pub fn collect(args: &CompareArgs) -> anyhow::Result<CompareReport> {
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let root = args
        .common
        .dir
        .join(format!("compare-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let result = collect_in(args, &root, started_unix_s);
    std::fs::remove_dir_all(&root).ok();
    result
}

fn collect_in(
    args: &CompareArgs,
    root: &Path,
    started_unix_s: u64,
) -> anyhow::Result<CompareReport> {
    let wall = Instant::now();
    let (common, opts) = (&args.common, &args.options);
    let kinds = backends_of(opts);
    anyhow::ensure!(!kinds.is_empty(), "no backends to compare");
    anyhow::ensure!(
        opts.skip_scale
            || (!opts.scale_counts.is_empty() && opts.scale_counts.windows(2).all(|w| w[0] < w[1])),
        "--scale-counts must be ascending"
    );
    let mut page_sizes = Vec::new();
    let sizes: &[u64] = if opts.skip_page_sizes {
        &[]
    } else {
        &common.page_sizes
    };
    for &page in sizes {
        page_sizes.push(compare::measure_page_size(
            root,
            &kinds,
            common.bytes,
            opts.probe_iters,
            page,
        )?);
    }
    let scale = if opts.skip_scale {
        Vec::new()
    } else {
        compare::scale_sweep(
            root,
            &kinds,
            &opts.scale_counts,
            opts.scale_page_bytes,
            opts.scale_budget_s,
        )?
    };
    let (ablations, compression) = if opts.skip_ablations {
        (Vec::new(), None)
    } else {
        let ablations = ablation::run_all(
            root,
            opts.ablation_prefixes,
            opts.ablation_prefix_pages,
            opts.ablation_page_bytes,
        )?;
        let compression = if opts.skip_compression {
            None
        } else {
            // The device right before the codecs, so "would it help" compares like with like.
            eprintln!("compression: device limit, then the codecs");
            let device = device::measure(root, common.bytes)?;
            Some(compression::run(
                opts.compression_bytes,
                opts.ablation_page_bytes,
                device,
            )?)
        };
        (ablations, compression)
    };
    Ok(CompareReport {
        started_unix_s,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        page_sizes,
        scale_page_bytes: opts.scale_page_bytes,
        scale,
        ablations,
        compression,
        wall_s: wall.elapsed().as_secs_f64(),
    })
}

fn print_tables(r: &CompareReport) {
    println!("{}", compare::page_size_table(&r.page_sizes));
    println!("{}", compare::scale_table(r.scale_page_bytes, &r.scale));
    println!("{}", ablation::table(&r.ablations));
    if let Some(c) = &r.compression {
        println!("{}", compression::table(c));
    }
    println!(
        "wall time {:.0} s. Ratios are within this run; on a shared or virtual disk repeat it \
         before trusting a difference under ~30%.",
        r.wall_s
    );
}
