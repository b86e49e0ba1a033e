//! `sglang-lsm bench` (alias `compare`): every store side by side in one run, held against the
//! device limit measured in the same run.
//!
//! 1. **Page sizes** (128 KiB, 1 MiB, 8 MiB by default): for each, the device limit
//!    ([`crate::device`]), then per backend: put throughput (including the final `sync`),
//!    cold get (page cache dropped) and warm get throughput, per-batch latency percentiles,
//!    and probe latency for 128 present keys.
//! 2. **Object count**: small pages inserted up to each checkpoint; at each, the cost per
//!    put, warm get and cold get, and the probe latency, per backend, within a time budget.
//! 3. **Ablations** ([`crate::ablation`]): prefix-preserving vs scattered placement, read
//!    coalescing, direct vs buffered writes; "value log vs inline" is `ours` vs `lsm-inline`;
//!    then the compression measurement ([`crate::compression`]).
//! 4. With `--report DIR`: a markdown report and PNG plots ([`crate::report`]), including
//!    hit rate vs capacity from the policy simulators and a TTFT **model** CDF from a replay.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sglang_lsm::io::AlignedBuf;

use crate::ablation::{self, AblationResult};
use crate::backend::{BackendKind, KvBackend};
use crate::bench::CommonArgs;
use crate::compression::{self, CompressionReport};
use crate::device::{self, DeviceLimit};
use crate::quantile::quantile;
use crate::report::{self, TraceFigures};
use crate::units::{fmt_bytes, parse_bytes};

/// Pages per call (SGLang's `STORAGE_BATCH_SIZE`), capped so one batch is at most 32 MiB.
const SGLANG_BATCH_PAGES: usize = 128;
const MAX_BATCH_BYTES: usize = 32 << 20;
/// Bytes at the start of each page that carry its index, checked on every read.
const STAMP_BYTES: usize = 8;

/// What the comparison needs: the options every `bench` mode shares, and the
/// comparison's own.
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

/// One backend at one page size.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseResult {
    pub backend: String,
    pub page_bytes: u64,
    pub pages: u64,
    pub batch_pages: usize,
    pub put_bytes_per_s: f64,
    pub cold_get_bytes_per_s: f64,
    pub warm_get_bytes_per_s: f64,
    pub put_batch_p50_ms: f64,
    pub put_batch_p99_ms: f64,
    pub cold_get_batch_p50_ms: f64,
    pub cold_get_batch_p99_ms: f64,
    pub probe128_p50_us: f64,
    pub probe128_p99_us: f64,
    pub disk_bytes: u64,
    /// Whether the page cache could be dropped before the cold read (needs root).
    pub cold: bool,
}

/// One page size: the device limit and every backend.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PageSizeResult {
    pub page_bytes: u64,
    pub device: DeviceLimit,
    pub cases: Vec<CaseResult>,
}

/// One backend at one object count.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScalePoint {
    pub backend: String,
    pub objects: u64,
    pub put_us_per_page: f64,
    pub warm_get_us_per_page_p50: f64,
    pub cold_get_us_per_page_p50: f64,
    pub probe128_us_p50: f64,
    pub disk_bytes: u64,
    /// Seconds spent inserting so far.
    pub insert_s: f64,
}

/// Everything `compare` measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompareReport {
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: u64,
    pub command: String,
    pub page_sizes: Vec<PageSizeResult>,
    pub scale_page_bytes: u64,
    pub scale: Vec<ScalePoint>,
    pub ablations: Vec<AblationResult>,
    /// The compression measurement (absent in reports from before it existed).
    #[serde(default)]
    pub compression: Option<CompressionReport>,
    /// Wall seconds of the whole run.
    #[serde(default)]
    pub wall_s: f64,
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(&format!(
        "{what:>28} {{bar:30}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len).with_style(style)
}

/// SGLang-shaped page keys: 64 hex digits plus a namespace suffix.
pub(crate) fn page_key(tag: &str, i: u64) -> String {
    format!(
        "{:016x}{:016x}{:016x}{:016x}_{tag}",
        (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        i,
        (i ^ 0x5555).wrapping_mul(0xC2B2_AE3D_27D4_EB4F),
        i.rotate_left(17)
    )
}

/// Fills `buf` with xorshift bytes: incompressible, so no store gains from compression or
/// deduplication it would not get in production (bf16 KV tensors compress only a little,
/// see [`crate::compression`]).
pub(crate) fn fill_random(buf: &mut [u8], seed: u64) {
    let mut s = seed | 1;
    for chunk in buf.chunks_mut(8) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let b = s.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

fn next_rand(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn backends_of(args: &CompareOptions) -> Vec<BackendKind> {
    if args.backends.is_empty() {
        BackendKind::available()
    } else {
        args.backends.clone()
    }
}

/// Runs the comparison, prints the tables, writes JSON and the report as asked.
///
/// # Errors
/// Bad arguments, I/O errors, or a store that returns wrong bytes or misses a page it wrote.
pub fn run(args: &CompareArgs) -> anyhow::Result<ExitCode> {
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
        anyhow::ensure!(
            page >= 4096 && page.is_multiple_of(4096),
            "page sizes must be multiples of 4 KiB"
        );
        eprintln!("{}: device limit", fmt_bytes(page));
        let device = device::measure(root, common.bytes)?;
        let mut cases = Vec::new();
        for &kind in &kinds {
            let dir = root.join(format!("{}-{page}", kind.name()));
            let backend = kind.open(&dir)?;
            let r = bench_case(common.bytes, opts.probe_iters, backend.as_ref(), page);
            drop(backend);
            std::fs::remove_dir_all(&dir).ok();
            cases.push(r.with_context(|| format!("{} at {}", kind.name(), fmt_bytes(page)))?);
        }
        page_sizes.push(PageSizeResult {
            page_bytes: page,
            device,
            cases,
        });
    }
    let mut scale = Vec::new();
    if !opts.skip_scale {
        for &kind in &kinds {
            let dir = root.join(format!("scale-{}", kind.name()));
            let backend = kind.open(&dir)?;
            let r = scale_sweep(opts, backend.as_ref());
            drop(backend);
            std::fs::remove_dir_all(&dir).ok();
            scale.extend(r.with_context(|| format!("scale sweep of {}", kind.name()))?);
        }
    }
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

/// Per-slot page buffers for one batch, each split into K and V halves when it can be.
pub(crate) struct PageSlots {
    bufs: Vec<AlignedBuf>,
    page: usize,
}

impl PageSlots {
    pub(crate) fn new(slots: usize, page: usize, seed: u64) -> Self {
        let bufs = (0..slots)
            .map(|i| {
                let mut b = AlignedBuf::zeroed(page);
                fill_random(&mut b, seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9));
                b
            })
            .collect();
        Self { bufs, page }
    }

    /// Stamps slot `i` with page index `idx`, as every read checks.
    pub(crate) fn stamp(&mut self, i: usize, idx: u64) {
        self.bufs[i][..STAMP_BYTES].copy_from_slice(&idx.to_le_bytes());
    }

    pub(crate) fn stamp_of(&self, i: usize) -> u64 {
        let mut a = [0u8; STAMP_BYTES];
        a.copy_from_slice(&self.bufs[i][..STAMP_BYTES]);
        u64::from_le_bytes(a)
    }

    /// Slot `i`'s bytes past the stamp: equal for two `PageSlots` built with the same seed,
    /// so a reader can check a page's exact content against a reference set.
    pub(crate) fn body(&self, i: usize) -> &[u8] {
        &self.bufs[i][STAMP_BYTES..]
    }

    fn halves(page: usize) -> usize {
        // Split K|V at a 4 KiB boundary so aligned stores keep every part aligned.
        if page >= 8192 && (page / 2).is_multiple_of(4096) {
            page / 2
        } else {
            page
        }
    }

    pub(crate) fn parts(&self, n: usize) -> Vec<Vec<&[u8]>> {
        let h = Self::halves(self.page);
        self.bufs[..n]
            .iter()
            .map(|b| {
                if h == self.page {
                    vec![&b[..]]
                } else {
                    let (k, v) = b.split_at(h);
                    vec![k, v]
                }
            })
            .collect()
    }

    pub(crate) fn parts_mut(&mut self, n: usize) -> Vec<Vec<&mut [u8]>> {
        let h = Self::halves(self.page);
        let page = self.page;
        self.bufs[..n]
            .iter_mut()
            .map(|b| {
                if h == page {
                    vec![&mut b[..]]
                } else {
                    let (k, v) = b.split_at_mut(h);
                    vec![k, v]
                }
            })
            .collect()
    }
}

fn key_refs(keys: &[String]) -> Vec<&[u8]> {
    keys.iter().map(|k| k.as_bytes()).collect()
}

/// Writes every page then reads it back (cold, warm) and probes; see the module docs.
fn bench_case(
    bytes: u64,
    probe_iters: usize,
    backend: &dyn KvBackend,
    page: u64,
) -> anyhow::Result<CaseResult> {
    let page_len = usize::try_from(page)?;
    let pages = (bytes / page).max(1);
    let batch_pages = SGLANG_BATCH_PAGES.min((MAX_BATCH_BYTES / page_len).max(1));
    let tag = format!("cmp{page}");
    let keys: Vec<String> = (0..pages).map(|i| page_key(&tag, i)).collect();
    let mut slots = PageSlots::new(batch_pages, page_len, page);
    let name = backend.name();

    // Put: every batch is a prefix chain (keys[i-1] is the parent of keys[i]).
    let pb = bar(pages * page, &format!("{name} put {}", fmt_bytes(page)));
    let mut put_ms = Vec::new();
    let start = Instant::now();
    for (c, chunk) in keys.chunks(batch_pages).enumerate() {
        for i in 0..chunk.len() {
            slots.stamp(i, (c * batch_pages + i) as u64);
        }
        let refs = key_refs(chunk);
        let values = slots.parts(chunk.len());
        let t = Instant::now();
        let ok = backend.put_batch(&refs, &values, &[])?;
        put_ms.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(ok.iter().all(|&b| b), "{name} declined a write");
        pb.inc((chunk.len() * page_len) as u64);
    }
    backend.sync()?;
    let put_s = start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let disk_bytes = backend.disk_bytes()?;

    let cold = device::drop_caches();
    let (cold_s, cold_ms) = read_all(
        backend,
        &keys,
        &mut slots,
        batch_pages,
        page_len,
        "cold get",
    )?;
    let (warm_s, _) = read_all(
        backend,
        &keys,
        &mut slots,
        batch_pages,
        page_len,
        "warm get",
    )?;

    // Probe: windows of 128 consecutive present keys, like SGLang's batch_exists.
    let window = SGLANG_BATCH_PAGES.min(keys.len());
    let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ page;
    let mut probe_us = Vec::with_capacity(probe_iters);
    for _ in 0..probe_iters {
        let s = (next_rand(&mut rng) % (keys.len() - window + 1) as u64) as usize;
        let refs = key_refs(&keys[s..s + window]);
        let t = Instant::now();
        let n = backend.probe(&refs)?;
        probe_us.push(t.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(
            n == window,
            "{name} probe found {n} of {window} present keys"
        );
    }
    let total = (pages * page) as f64;
    Ok(CaseResult {
        backend: name.to_string(),
        page_bytes: page,
        pages,
        batch_pages,
        put_bytes_per_s: total / put_s,
        cold_get_bytes_per_s: total / cold_s,
        warm_get_bytes_per_s: total / warm_s,
        put_batch_p50_ms: quantile(&mut put_ms.clone(), 0.5),
        put_batch_p99_ms: quantile(&mut put_ms, 0.99),
        cold_get_batch_p50_ms: quantile(&mut cold_ms.clone(), 0.5),
        cold_get_batch_p99_ms: quantile(&mut cold_ms.clone(), 0.99),
        probe128_p50_us: quantile(&mut probe_us.clone(), 0.5),
        probe128_p99_us: quantile(&mut probe_us, 0.99),
        disk_bytes,
        cold,
    })
}

/// Reads every page in write order and checks each page's stamp. Returns (seconds, per-batch ms).
fn read_all(
    backend: &dyn KvBackend,
    keys: &[String],
    slots: &mut PageSlots,
    batch_pages: usize,
    page_len: usize,
    what: &str,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let name = backend.name();
    let pb = bar(
        (keys.len() * page_len) as u64,
        &format!("{name} {what} {}", fmt_bytes(page_len as u64)),
    );
    let mut ms = Vec::new();
    let start = Instant::now();
    for (c, chunk) in keys.chunks(batch_pages).enumerate() {
        let refs = key_refs(chunk);
        let mut outs = slots.parts_mut(chunk.len());
        let t = Instant::now();
        let hits = backend.get_batch(&refs, &mut outs)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        drop(outs);
        for (i, h) in hits.iter().enumerate() {
            let idx = (c * batch_pages + i) as u64;
            anyhow::ensure!(*h, "{name} missed page {idx} it wrote");
            anyhow::ensure!(
                slots.stamp_of(i) == idx,
                "{name} returned another page's bytes for page {idx}"
            );
        }
        pb.inc((chunk.len() * page_len) as u64);
    }
    pb.finish_and_clear();
    Ok((start.elapsed().as_secs_f64(), ms))
}

/// Batches timed at each checkpoint for put, warm get and probe; cold get uses fewer, since
/// each cold batch pays real device latency.
const SCALE_SAMPLE_BATCHES: usize = 100;
const SCALE_COLD_BATCHES: usize = 20;

fn scale_sweep(args: &CompareOptions, backend: &dyn KvBackend) -> anyhow::Result<Vec<ScalePoint>> {
    let page = usize::try_from(args.scale_page_bytes)?;
    let name = backend.name();
    let total = args.scale_counts.iter().copied().max().unwrap_or(0);
    let pb = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(&format!(
            "{name:>12} insert {{bar:30}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut slots = PageSlots::new(SGLANG_BATCH_PAGES, page, 7);
    let tag = "scale";
    let mut written = 0u64;
    let mut insert_s = 0.0f64;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut points = Vec::new();
    for &target in &args.scale_counts {
        if insert_s > args.scale_budget_s {
            eprintln!(
                "{name}: scale sweep stopped at {written} objects (budget {} s spent)",
                args.scale_budget_s
            );
            break;
        }
        let window_pages = (SCALE_SAMPLE_BATCHES * SGLANG_BATCH_PAGES) as u64;
        let mut window_s = 0.0;
        let mut window_n = 0u64;
        while written < target {
            let n = (target - written).min(SGLANG_BATCH_PAGES as u64);
            let keys: Vec<String> = (written..written + n).map(|i| page_key(tag, i)).collect();
            for i in 0..n as usize {
                slots.stamp(i, written + i as u64);
            }
            let refs = key_refs(&keys);
            let values = slots.parts(n as usize);
            let t = Instant::now();
            backend.put_batch(&refs, &values, &[])?;
            let dt = t.elapsed().as_secs_f64();
            insert_s += dt;
            if target - written <= window_pages {
                // Time only the stretch right before the checkpoint: cost *at* this size.
                window_s += dt;
                window_n += n;
            }
            written += n;
            pb.set_position(written);
        }
        // The sync belongs to the timed window: stores that write through the page cache
        // pay for their deferred writes here, as direct writers paid inside put_batch.
        let t = Instant::now();
        backend.sync()?;
        let sync_s = t.elapsed().as_secs_f64();
        insert_s += sync_s;
        window_s += sync_s;
        let sample = |rng: &mut u64| -> Vec<String> {
            (0..SGLANG_BATCH_PAGES)
                .map(|_| page_key(tag, next_rand(rng) % written))
                .collect()
        };
        let mut warm = Vec::new();
        let mut probe = Vec::new();
        for _ in 0..SCALE_SAMPLE_BATCHES {
            let keys = sample(&mut rng);
            let refs = key_refs(&keys);
            let mut outs = slots.parts_mut(refs.len());
            // Read the batch once untimed so "warm" means cached for every store: O_DIRECT
            // writers (ours, file-fast) leave nothing in the page cache, buffered ones do.
            backend.get_batch(&refs, &mut outs)?;
            let t = Instant::now();
            let hits = backend.get_batch(&refs, &mut outs)?;
            warm.push(t.elapsed().as_secs_f64() * 1e6 / refs.len() as f64);
            anyhow::ensure!(hits.iter().all(|&h| h), "{name}: scale read missed");
            let t = Instant::now();
            let n = backend.probe(&refs)?;
            probe.push(t.elapsed().as_secs_f64() * 1e6);
            anyhow::ensure!(n == refs.len(), "{name}: scale probe missed");
        }
        device::drop_caches();
        let mut cold = Vec::new();
        for _ in 0..SCALE_COLD_BATCHES {
            let keys = sample(&mut rng);
            let refs = key_refs(&keys);
            let mut outs = slots.parts_mut(refs.len());
            let t = Instant::now();
            let hits = backend.get_batch(&refs, &mut outs)?;
            cold.push(t.elapsed().as_secs_f64() * 1e6 / refs.len() as f64);
            anyhow::ensure!(hits.iter().all(|&h| h), "{name}: scale read missed");
        }
        points.push(ScalePoint {
            backend: name.to_string(),
            objects: written,
            put_us_per_page: window_s * 1e6 / window_n.max(1) as f64,
            warm_get_us_per_page_p50: quantile(&mut warm, 0.5),
            cold_get_us_per_page_p50: quantile(&mut cold, 0.5),
            probe128_us_p50: quantile(&mut probe, 0.5),
            disk_bytes: backend.disk_bytes()?,
            insert_s,
        });
    }
    pb.finish_and_clear();
    Ok(points)
}

fn gbps(b: f64) -> String {
    format!("{:.2}", b / 1e9)
}

/// The page-size table as markdown (also used by the report).
pub fn page_size_table(r: &CompareReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for ps in &r.page_sizes {
        let ours = ps.cases.iter().find(|c| c.backend == "ours");
        let _ = writeln!(
            s,
            "\n**{} pages** ({} per backend); device: write {} GB/s, read {} GB/s (O_DIRECT, same run)\n",
            fmt_bytes(ps.page_bytes),
            fmt_bytes(ps.cases.first().map_or(0, |c| c.pages * c.page_bytes)),
            gbps(ps.device.write_bytes_per_s),
            gbps(ps.device.read_bytes_per_s)
        );
        let _ = writeln!(
            s,
            "| backend | put GB/s | put/device | ours put / this | cold get GB/s | cold/device | ours cold / this | warm get GB/s | put p99 ms | cold get p50 / p99 ms | probe128 p50 / p99 us | disk |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for c in &ps.cases {
            let vs =
                |o: Option<f64>, x: f64| o.map_or("-".to_string(), |o| format!("{:.2}x", o / x));
            let _ = writeln!(
                s,
                "| {} | {} | {:.0}% | {} | {}{} | {:.0}% | {} | {} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {} |",
                c.backend,
                gbps(c.put_bytes_per_s),
                100.0 * c.put_bytes_per_s / ps.device.write_bytes_per_s,
                vs(ours.map(|o| o.put_bytes_per_s), c.put_bytes_per_s),
                gbps(c.cold_get_bytes_per_s),
                if c.cold { "" } else { " (warm!)" },
                100.0 * c.cold_get_bytes_per_s / ps.device.read_bytes_per_s,
                vs(ours.map(|o| o.cold_get_bytes_per_s), c.cold_get_bytes_per_s),
                gbps(c.warm_get_bytes_per_s),
                c.put_batch_p99_ms,
                c.cold_get_batch_p50_ms,
                c.cold_get_batch_p99_ms,
                c.probe128_p50_us,
                c.probe128_p99_us,
                fmt_bytes(c.disk_bytes),
            );
        }
    }
    s
}

/// The object-count table as markdown.
pub fn scale_table(r: &CompareReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if r.scale.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\n**Object count** ({} pages; put cost per page over the last 12,800 pages before each checkpoint plus the sync there)\n",
        fmt_bytes(r.scale_page_bytes)
    );
    let _ = writeln!(
        s,
        "| backend | objects | put us/page | warm get us/page | cold get us/page | probe128 us | disk | insert s |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for p in &r.scale {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.0} |",
            p.backend,
            p.objects,
            p.put_us_per_page,
            p.warm_get_us_per_page_p50,
            p.cold_get_us_per_page_p50,
            p.probe128_us_p50,
            fmt_bytes(p.disk_bytes),
            p.insert_s
        );
    }
    let mut names: Vec<&str> = r.scale.iter().map(|p| p.backend.as_str()).collect();
    names.dedup();
    let _ = writeln!(
        s,
        "\nGrowth from the first to the last checkpoint each backend reached:\n"
    );
    for n in names {
        let pts: Vec<&ScalePoint> = r.scale.iter().filter(|p| p.backend == n).collect();
        if let (Some(a), Some(b)) = (pts.first(), pts.last()) {
            if pts.len() > 1 {
                let _ = writeln!(
                    s,
                    "- {n}: {}x objects -> put {:.2}x, warm get {:.2}x, cold get {:.2}x, probe {:.2}x",
                    b.objects / a.objects.max(1),
                    b.put_us_per_page / a.put_us_per_page,
                    b.warm_get_us_per_page_p50 / a.warm_get_us_per_page_p50,
                    b.cold_get_us_per_page_p50 / a.cold_get_us_per_page_p50,
                    b.probe128_us_p50 / a.probe128_us_p50
                );
            }
        }
    }
    s
}

fn print_tables(r: &CompareReport) {
    println!("{}", page_size_table(r));
    println!("{}", scale_table(r));
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
