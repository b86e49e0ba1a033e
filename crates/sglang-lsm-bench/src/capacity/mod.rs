//! `sglang-lsm bench-capacity` (issue 5): the disk never exceeds the store's bound in a long
//! write-heavy run, and a restart in the middle keeps the bound and the contents.
//!
//! The run writes `--write-multiple` x `--capacity` bytes as prefix chains of
//! `--chain-pages` pages, `--batch-pages` per `put_batch`; every batch after a chain's first
//! passes the chain so far as `prefix_keys`, as SGLang does. The first `--hot-chains` chains
//! are the hot set: every `--hot-read-every` bytes written they are probed and read back (a
//! returning prompt), and pages that missed are written again (SGLang's write-back). Halfway
//! (`--restart-at`) the store is closed and reopened.
//!
//! Checked, each a failure (exit 1) when violated:
//! - **bound**: at every sample, bytes on disk <= capacity + one segment + the index and
//!   metadata bytes of that sample. The value log is what the capacity bounds; the active
//!   segment may be partly written past it while reclamation catches up, and the index is
//!   small and not part of the bound. Samples come from a timer thread ([`disk`]) beside the
//!   writer and from the writer after every batch.
//! - **restart keeps the contents**: the resident pages of every chain before the close equal
//!   those after the reopen, and after the reopen every resident page reads back with its exact
//!   bytes (each page is a seeded pattern stamped with its index).
//! - **no orphans**: in every chain the resident pages are a prefix of it (a page is only
//!   present with its parent), checked with `exists` (no I/O, no effect on eviction) before
//!   the restart and at the end, and against `probe`.
//!
//! Reported, not checked: the hot set's hit rate (the leading run of hits per read, as SGLang
//! counts), write amplification, pages declined.
//!
//! Reading everything after the reopen marks every page as recently read, which gives each a
//! second chance in the next reclamation pass; that costs some relocation right after the
//! restart, and is part of what the bound must survive.

pub mod disk;
mod plot;
mod summary;
mod writer;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sglang_lsm::{Store, StoreConfig};

use crate::bound::engine_segment_bytes;
use crate::pages::PageSlots;
use crate::quantile::quantile;
use crate::units::{fmt_bytes, parse_bytes};
use disk::{DiskSample, Sampler, Samples};
pub use summary::{summary, write_report};
use writer::{restart_store, Run, PATTERN_SEED};

/// Options of `sglang-lsm bench-capacity`.
#[derive(Args, Clone, Debug)]
pub struct CapacityArgs {
    /// Working directory on the disk under test (a fresh subdirectory is created and removed
    /// unless --keep).
    #[arg(long, default_value = "bench-out")]
    pub dir: PathBuf,
    /// The store's capacity bound (`capacity_bytes`).
    #[arg(long, default_value = "1g", value_parser = parse_bytes)]
    pub capacity: u64,
    /// Bytes to write, as a multiple of the capacity.
    #[arg(long, default_value_t = 10.0)]
    pub write_multiple: f64,
    /// Page size.
    #[arg(long, default_value = "256k", value_parser = parse_bytes)]
    pub page_bytes: u64,
    /// Pages per prefix chain (a multiple of --batch-pages).
    #[arg(long, default_value_t = 32)]
    pub chain_pages: usize,
    /// Pages per put_batch.
    #[arg(long, default_value_t = 16)]
    pub batch_pages: usize,
    /// Chains in the hot set (written first, read back repeatedly).
    #[arg(long, default_value_t = 4)]
    pub hot_chains: usize,
    /// Bytes written between two reads of the hot set.
    #[arg(long, default_value = "64m", value_parser = parse_bytes)]
    pub hot_read_every: u64,
    /// Milliseconds between two samples of the bytes on disk by the timer thread.
    #[arg(long, default_value_t = 20)]
    pub sample_ms: u64,
    /// Fraction of the bytes to write after which the store is closed and reopened.
    #[arg(long, default_value_t = 0.5)]
    pub restart_at: f64,
    /// Write `capacity_bound.png`, `capacity.md` and `capacity.json` into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the results (with every sample) as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the store directory after the run.
    #[arg(long)]
    pub keep: bool,
}

/// The store's own view after a batch.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct StoreSample {
    pub written: u64,
    /// `stats().log_bytes`: the value-log bytes the capacity bounds.
    pub log_bytes: u64,
    pub index_disk_bytes: u64,
    pub pages: u64,
}

/// A look at every chain written so far, at a quiet moment.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChainCheck {
    pub chains: usize,
    pub resident_pages: u64,
    /// `stats().pages`: must equal `resident_pages` (every page is one of the chains').
    pub store_pages: u64,
    /// Pages present while their parent is absent.
    pub orphans: u64,
    /// Chains whose `probe` disagrees with the leading run of `exists`.
    pub probe_mismatches: u64,
    /// Pages read back and compared byte for byte (0 where only residency was checked).
    pub verified_pages: u64,
    /// Pages that read back with other bytes, or missed although resident.
    pub wrong_pages: u64,
}

/// Everything the run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CapacityReport {
    pub command: String,
    pub capacity_bytes: u64,
    /// The segment size the engine uses for this capacity (capacity / 32, at most the
    /// configured 256 MiB, at least 1 MiB).
    pub segment_bytes: u64,
    pub page_bytes: u64,
    pub chain_pages: usize,
    pub batch_pages: usize,
    pub hot_chains: usize,
    pub bytes_written: u64,
    pub pages_declined: u64,
    pub restart_written: u64,
    pub reopen_s: f64,
    pub wall_s: f64,
    pub max_disk_bytes: u64,
    pub max_vlog_disk_bytes: u64,
    pub max_other_disk_bytes: u64,
    pub max_log_bytes: u64,
    pub largest_segment_file: u64,
    /// Samples where the disk exceeded capacity + segment + index.
    pub bound_violations: u64,
    /// Largest (disk - bound) over all samples; negative = always under.
    pub worst_margin_bytes: i64,
    /// Largest (value log on disk - capacity): how far past the capacity the log went while
    /// reclamation caught up.
    pub max_vlog_over_capacity_bytes: i64,
    /// put_batch latency percentiles (p50, p99, max) in ms: a put that has to wait for
    /// inline reclamation is the cost of the bound.
    pub put_batch_ms: (f64, f64, f64),
    pub hot_hits_before_restart: (u64, u64),
    pub hot_hits_after_restart: (u64, u64),
    pub before_restart: ChainCheck,
    pub after_reopen: ChainCheck,
    /// Chains whose resident pages differ across the restart, and the pages lost or gained.
    pub restart_changed_chains: u64,
    pub restart_lost_pages: u64,
    pub restart_gained_pages: u64,
    pub end: ChainCheck,
    /// Hot-set pages that read back with wrong bytes.
    pub hot_wrong_pages: u64,
    /// (put bytes + relocated bytes) / put bytes, over both halves of the run.
    pub write_amplification: f64,
    pub evicted_pages: u64,
    pub relocated_bytes: u64,
    /// Of `relocated_bytes`, before the restart (after it, the full read-back has given every
    /// page a second chance, so more is relocated).
    pub relocated_bytes_before_restart: u64,
    pub segments_reclaimed: u64,
    pub passed: bool,
    pub disk_samples: Vec<DiskSample>,
    pub store_samples: Vec<StoreSample>,
}

fn validate(a: &CapacityArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.capacity >= 16 << 20, "--capacity must be at least 16 MiB");
    anyhow::ensure!(
        a.write_multiple.is_finite() && a.write_multiple > 0.0,
        "--write-multiple must be positive"
    );
    anyhow::ensure!(
        a.page_bytes >= 4096 && a.page_bytes.is_multiple_of(4096),
        "--page-bytes must be a multiple of 4 KiB"
    );
    anyhow::ensure!(
        a.batch_pages >= 1
            && a.chain_pages >= a.batch_pages
            && a.chain_pages.is_multiple_of(a.batch_pages),
        "--chain-pages must be a positive multiple of --batch-pages"
    );
    anyhow::ensure!(
        (0.0..1.0).contains(&a.restart_at),
        "--restart-at must be in [0, 1)"
    );
    anyhow::ensure!(a.sample_ms >= 1, "--sample-ms must be at least 1");
    let hot = a.hot_chains as u64 * a.chain_pages as u64 * a.page_bytes;
    anyhow::ensure!(
        hot <= a.capacity / 4,
        "the hot set ({}) must fit in a quarter of the capacity",
        fmt_bytes(hot)
    );
    Ok(())
}

/// Runs the benchmark, prints the summary, writes the report and JSON as asked. Exit 1 when a
/// check failed.
///
/// # Errors
/// Bad arguments or I/O errors.
pub fn run(args: &CapacityArgs) -> anyhow::Result<ExitCode> {
    validate(args)?;
    let dir = args.dir.join(format!("capacity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = collect(args, &dir);
    if !args.keep {
        std::fs::remove_dir_all(&dir).ok();
    }
    let report = result?;
    print!("{}", summary(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(out) = &args.report {
        write_report(out, &report)?;
        println!("report written to {}", out.display());
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn collect(args: &CapacityArgs, dir: &Path) -> anyhow::Result<CapacityReport> {
    let config = StoreConfig {
        capacity_bytes: Some(args.capacity),
        ..StoreConfig::default()
    };
    let segment_bytes = engine_segment_bytes(&config);
    let page = usize::try_from(args.page_bytes)?;
    let chain_bytes = args.chain_pages as u64 * args.page_bytes;
    let target = (args.capacity as f64 * args.write_multiple) as u64;
    let chains = target.div_ceil(chain_bytes).max(args.hot_chains as u64 + 1) as usize;
    let restart_chain = ((chains as f64 * args.restart_at) as usize).max(args.hot_chains);
    let start = Instant::now();
    let samples = Samples::default();
    let written = Arc::new(AtomicU64::new(0));
    let store = Store::open(dir, config.clone())
        .with_context(|| format!("opening store at {}", dir.display()))?;
    let sampler = Sampler::spawn(
        dir.to_path_buf(),
        samples.clone(),
        start,
        Arc::clone(&written),
        Duration::from_millis(args.sample_ms),
    )?;
    let mut run = Run {
        args,
        dir: dir.to_path_buf(),
        config,
        store: Some(store),
        slots: PageSlots::new(args.batch_pages, page, PATTERN_SEED),
        reference: PageSlots::new(args.batch_pages, page, PATTERN_SEED),
        read: PageSlots::new(args.chain_pages, page, 1),
        written: Arc::clone(&written),
        declined: 0,
        samples: samples.clone(),
        store_samples: Vec::new(),
        start,
        put_ms: Vec::new(),
        wrong_hot_pages: 0,
        before_counters: [0; 4],
    };
    let pb = ProgressBar::new(chains as u64 * chain_bytes).with_style(
        ProgressStyle::with_template(
            "{msg:>18} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message("writing");
    let mut hot = [(0u64, 0u64); 2];
    let mut last_hot = 0u64;
    let mut restart = None;
    for chain in 0..chains {
        if chain == restart_chain {
            pb.set_message("restarting");
            restart = Some(restart_store(&mut run, chain)?);
            pb.set_message("writing");
        }
        run.put_chain(chain, 0)?;
        pb.set_position(((chain + 1) as u64 * chain_bytes).min(chains as u64 * chain_bytes));
        let w = written.load(Relaxed);
        if chain + 1 >= args.hot_chains && w - last_hot >= args.hot_read_every {
            let (h, n) = run.read_hot()?;
            let half = usize::from(restart.is_some());
            hot[half].0 += h;
            hot[half].1 += n;
            last_hot = written.load(Relaxed);
        }
    }
    pb.set_message("final check");
    run.quiesce()?;
    let (end, _) = run.check_chains(chains, false)?;
    pb.finish_and_clear();
    let st = run.store()?.stats();
    drop(run.store.take());
    sampler.finish()?;
    let (before, after, lost, gained, changed, restart_written, reopen_s) =
        restart.context("the run ended before its restart")?;
    let disk = samples.sorted();
    let max_of = |f: &dyn Fn(&DiskSample) -> u64| disk.iter().map(f).max().unwrap_or(0);
    let bound = |s: &DiskSample| args.capacity + segment_bytes + s.other_bytes;
    let bound_violations = disk.iter().filter(|s| s.total() > bound(s)).count() as u64;
    let worst_margin_bytes = disk
        .iter()
        .map(|s| s.total() as i64 - bound(s) as i64)
        .max()
        .unwrap_or(0);
    let [put0, reloc0, evicted0, reclaimed0] = run.before_counters;
    let (put, relocated) = (put0 + st.put_bytes, reloc0 + st.relocated_bytes);
    let passed = bound_violations == 0
        && changed == 0
        && run.wrong_hot_pages == 0
        && [&before, &after, &end].iter().all(|c| {
            c.orphans == 0
                && c.probe_mismatches == 0
                && c.wrong_pages == 0
                && c.resident_pages == c.store_pages
        });
    Ok(CapacityReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        capacity_bytes: args.capacity,
        segment_bytes,
        page_bytes: args.page_bytes,
        chain_pages: args.chain_pages,
        batch_pages: args.batch_pages,
        hot_chains: args.hot_chains,
        bytes_written: written.load(Relaxed),
        pages_declined: run.declined,
        restart_written,
        reopen_s,
        wall_s: start.elapsed().as_secs_f64(),
        max_disk_bytes: max_of(&|s| s.total()),
        max_vlog_disk_bytes: max_of(&|s| s.vlog_bytes),
        max_other_disk_bytes: max_of(&|s| s.other_bytes),
        max_log_bytes: run
            .store_samples
            .iter()
            .map(|s| s.log_bytes)
            .max()
            .unwrap_or(0),
        largest_segment_file: max_of(&|s| s.largest_segment),
        bound_violations,
        worst_margin_bytes,
        max_vlog_over_capacity_bytes: disk
            .iter()
            .map(|s| s.vlog_bytes as i64 - args.capacity as i64)
            .max()
            .unwrap_or(0),
        relocated_bytes_before_restart: reloc0,
        put_batch_ms: (
            quantile(&mut run.put_ms.clone(), 0.5),
            quantile(&mut run.put_ms.clone(), 0.99),
            run.put_ms.iter().copied().fold(0.0, f64::max),
        ),
        hot_hits_before_restart: hot[0],
        hot_hits_after_restart: hot[1],
        before_restart: before,
        after_reopen: after,
        restart_changed_chains: changed,
        restart_lost_pages: lost,
        restart_gained_pages: gained,
        end,
        hot_wrong_pages: run.wrong_hot_pages,
        write_amplification: (put + relocated) as f64 / put.max(1) as f64,
        evicted_pages: evicted0 + st.evicted_pages,
        relocated_bytes: relocated,
        segments_reclaimed: reclaimed0 + st.segments_reclaimed,
        passed,
        disk_samples: disk,
        store_samples: std::mem::take(&mut run.store_samples),
    })
}
