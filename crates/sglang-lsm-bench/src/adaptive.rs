//! `sglang-lsm bench-adaptive`: the controller evaluation (issue 6). One staged, shifting
//! workload — write-heavy, read-heavy, mixed, then a write burst — replayed side by side on
//! fresh stores: the adaptive controller, the default static configuration, and static
//! configurations tuned for writes and for reads. Reports per-phase and overall throughput,
//! p99 read latency, a TTFT **model**, and the cost model's predictions against measurements.
//!
//! Two client threads issue the operations so the machine's two cores are both busy: with one
//! client, background compaction would run on an idle core and cost the workload nothing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sglang_lsm::{Store, StoreConfig};

use crate::quantile::quantile;
use crate::units::parse_bytes;

/// Options of `bench-adaptive`.
#[derive(Args, Clone, Debug)]
pub struct AdaptiveArgs {
    /// Working directory (fresh store per configuration; removed afterwards).
    #[arg(long, default_value = "bench-out/adaptive")]
    pub dir: PathBuf,
    /// Page size. Small pages make the index's share of the work visible.
    #[arg(long, default_value = "4k", value_parser = parse_bytes)]
    pub page_bytes: u64,
    /// Pages per prompt (one put_batch / get_batch).
    #[arg(long, default_value_t = 32)]
    pub pages_per_prompt: usize,
    /// Prompts written before the phases (untimed).
    #[arg(long, default_value_t = 20_000)]
    pub preload_prompts: u64,
    /// Operations (prompts written or read) per phase; the burst phase runs a quarter.
    #[arg(long, default_value_t = 20_000)]
    pub phase_ops: u64,
    /// Configurations to run, comma-separated: adaptive, default, write-tuned, read-tuned.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "adaptive,default,write-tuned,read-tuned"
    )]
    pub configs: Vec<String>,
    /// Tokens per page, for the TTFT model.
    #[arg(long, default_value_t = 16)]
    pub tokens_per_page: u64,
    /// Prefill throughput for the TTFT model, tokens/s (Llama-3-8B on an assumed H100, see
    /// the ttft module).
    #[arg(long, default_value_t = 41_000.0)]
    pub prefill_tokens_per_s: f64,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One phase of the staged workload.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Phase {
    pub name: &'static str,
    /// Share of operations that write a new prompt (the rest read an old one).
    pub write_share: f64,
    /// Operations, as a fraction of `phase_ops`.
    pub ops_fraction: f64,
}

pub const PHASES: [Phase; 4] = [
    Phase {
        name: "write-heavy",
        write_share: 0.95,
        ops_fraction: 1.0,
    },
    Phase {
        name: "read-heavy",
        write_share: 0.05,
        ops_fraction: 1.0,
    },
    Phase {
        name: "mixed",
        write_share: 0.5,
        ops_fraction: 1.0,
    },
    Phase {
        name: "burst",
        write_share: 1.0,
        ops_fraction: 0.25,
    },
];

/// The store configuration of a named variant.
pub fn config_of(name: &str) -> anyhow::Result<StoreConfig> {
    let base = StoreConfig {
        durability: sglang_lsm::Durability::None,
        ..StoreConfig::default()
    };
    Ok(match name {
        "adaptive" => StoreConfig {
            adaptive: true,
            ..base
        },
        "default" => StoreConfig {
            adaptive: false,
            ..base
        },
        "write-tuned" => StoreConfig {
            adaptive: false,
            memtable_bytes: 128 << 20,
            l0_threshold: 16,
            level_ratio: 16,
            ..base
        },
        "read-tuned" => StoreConfig {
            adaptive: false,
            memtable_bytes: 16 << 20,
            l0_threshold: 2,
            level_ratio: 4,
            ..base
        },
        other => anyhow::bail!(
            "unknown configuration {other:?}: use adaptive, default, write-tuned or read-tuned"
        ),
    })
}

/// Measured (and predicted) figures of one phase under one configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PhaseResult {
    pub config: String,
    pub phase: String,
    pub ops: u64,
    pub pages: u64,
    pub seconds: f64,
    pub ops_per_s: f64,
    pub read_p99_ms: f64,
    pub write_p99_ms: f64,
    /// Mean TTFT (model) of the phase's read requests: measured load time of the cached pages
    /// plus prefill of the last page's tokens, which a real request computes anyway.
    pub ttft_model_mean_ms: f64,
    /// Cost model vs measurement over the phase's controller windows.
    pub predicted_index_busy_frac: f64,
    pub measured_index_busy_frac: f64,
    pub predicted_lookup_us: f64,
    pub measured_lookup_us: f64,
    pub windows: usize,
    /// Knobs in force at the end of the phase.
    pub knobs: String,
}

/// All results of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AdaptiveReport {
    pub page_bytes: u64,
    pub pages_per_prompt: usize,
    pub preload_prompts: u64,
    pub phase_ops: u64,
    pub phases: Vec<PhaseResult>,
    /// Per configuration: total ops / total seconds over all phases.
    pub overall_ops_per_s: Vec<(String, f64)>,
    /// Controller decisions of the adaptive run.
    pub decisions: u64,
}

fn key(prompt: u64, page: usize) -> Vec<u8> {
    format!("prompt{prompt:010}-page{page:04}").into_bytes()
}

fn stamp(buf: &mut [u8], prompt: u64, page: usize) {
    buf[..8].copy_from_slice(&prompt.to_le_bytes());
    buf[8..16].copy_from_slice(&(page as u64).to_le_bytes());
}

fn put_prompt(store: &Store, prompt: u64, pages: usize, buf: &mut [u8]) -> anyhow::Result<()> {
    let keys: Vec<Vec<u8>> = (0..pages).map(|p| key(prompt, p)).collect();
    let mut bodies = Vec::with_capacity(pages);
    for p in 0..pages {
        stamp(buf, prompt, p);
        bodies.push(buf.to_vec());
    }
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let values: Vec<Vec<&[u8]>> = bodies.iter().map(|b| vec![b.as_slice()]).collect();
    let ok = store.put_batch(&key_refs, &values, &[])?;
    anyhow::ensure!(ok.iter().all(|&b| b), "an unbounded store declined a page");
    Ok(())
}

fn get_prompt(store: &Store, prompt: u64, pages: usize, page_bytes: usize) -> anyhow::Result<()> {
    let keys: Vec<Vec<u8>> = (0..pages).map(|p| key(prompt, p)).collect();
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let mut bufs = vec![vec![0u8; page_bytes]; pages];
    let mut parts: Vec<Vec<&mut [u8]>> = bufs.iter_mut().map(|b| vec![b.as_mut_slice()]).collect();
    let hits = store.get_batch(&key_refs, &mut parts)?;
    for (p, (hit, b)) in hits.iter().zip(&bufs).enumerate() {
        anyhow::ensure!(*hit, "prompt {prompt} page {p} missed");
        let mut want = vec![0u8; 16];
        stamp(&mut want, prompt, p);
        anyhow::ensure!(b[..16] == want[..], "prompt {prompt} page {p}: wrong bytes");
    }
    Ok(())
}

/// Prompt ids handed out and the ones still being written, so readers only pick prompts whose
/// `put_batch` returned (a miss is then a bug, and the run fails on it).
#[derive(Default)]
struct Prompts {
    next: u64,
    in_flight: std::collections::BTreeSet<u64>,
}

impl Prompts {
    fn begin_write(m: &Mutex<Self>) -> u64 {
        let mut p = m.lock();
        let id = p.next;
        p.next += 1;
        p.in_flight.insert(id);
        id
    }

    fn end_write(m: &Mutex<Self>, id: u64) {
        m.lock().in_flight.remove(&id);
    }

    /// A written prompt drawn from `r`, or `None` before any write finished.
    fn pick(m: &Mutex<Self>, mut r: u64) -> Option<u64> {
        let p = m.lock();
        for _ in 0..8 {
            let id = r % p.next.max(1);
            if p.next > 0 && !p.in_flight.contains(&id) {
                return Some(id);
            }
            r = r.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        }
        None
    }
}

/// A tiny deterministic generator (xorshift) so every configuration sees the same sequence.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Latencies {
    read_ms: Vec<f64>,
    write_ms: Vec<f64>,
}

/// Runs `ops` operations of `phase` on two client threads; returns the latencies.
fn run_phase(
    store: &Arc<Store>,
    args: &AdaptiveArgs,
    phase: &Phase,
    ops: u64,
    prompts: &Arc<Mutex<Prompts>>,
    seed: u64,
    pb: &ProgressBar,
) -> anyhow::Result<Latencies> {
    const CLIENTS: u64 = 2;
    let page_bytes = usize::try_from(args.page_bytes)?;
    let pages = args.pages_per_prompt;
    let results: Vec<anyhow::Result<Latencies>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let store = Arc::clone(store);
                let prompts = Arc::clone(prompts);
                s.spawn(move || -> anyhow::Result<Latencies> {
                    let mut rng = Rng(seed ^ (c + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let mut buf = vec![0u8; page_bytes];
                    let mut lat = Latencies {
                        read_ms: Vec::new(),
                        write_ms: Vec::new(),
                    };
                    for _ in 0..ops / CLIENTS {
                        let started = Instant::now();
                        let read = (rng.unit() >= phase.write_share)
                            .then(|| Prompts::pick(&prompts, rng.next()))
                            .flatten();
                        if let Some(prompt) = read {
                            get_prompt(&store, prompt, pages, page_bytes)?;
                            lat.read_ms.push(started.elapsed().as_secs_f64() * 1e3);
                        } else {
                            let prompt = Prompts::begin_write(&prompts);
                            put_prompt(&store, prompt, pages, &mut buf)?;
                            Prompts::end_write(&prompts, prompt);
                            lat.write_ms.push(started.elapsed().as_secs_f64() * 1e3);
                        }
                        pb.inc(1);
                    }
                    Ok(lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("client panicked")))
            })
            .collect()
    });
    let mut all = Latencies {
        read_ms: Vec::new(),
        write_ms: Vec::new(),
    };
    for r in results {
        let r = r?;
        all.read_ms.extend(r.read_ms);
        all.write_ms.extend(r.write_ms);
    }
    Ok(all)
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (n, s) = v.fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    if n == 0 {
        0.0
    } else {
        s / n as f64
    }
}

fn run_config(
    args: &AdaptiveArgs,
    name: &str,
    dir: &Path,
) -> anyhow::Result<(Vec<PhaseResult>, u64)> {
    let _ = std::fs::remove_dir_all(dir);
    let store = Arc::new(
        Store::open(dir, config_of(name)?).with_context(|| format!("open {}", dir.display()))?,
    );
    let prompts = Arc::new(Mutex::new(Prompts::default()));
    let page_bytes = usize::try_from(args.page_bytes)?;
    let style = ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} ops {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let pb = ProgressBar::new(args.preload_prompts).with_style(style.clone());
    pb.set_prefix(format!("{name}: preload"));
    let mut buf = vec![0u8; page_bytes];
    for _ in 0..args.preload_prompts {
        let prompt = Prompts::begin_write(&prompts);
        put_prompt(&store, prompt, args.pages_per_prompt, &mut buf)?;
        Prompts::end_write(&prompts, prompt);
        pb.inc(1);
    }
    pb.finish_and_clear();
    store.flush()?;
    let mut out = Vec::new();
    for (i, phase) in PHASES.iter().enumerate() {
        let ops = ((args.phase_ops as f64 * phase.ops_fraction) as u64).max(2);
        let pb = ProgressBar::new(ops).with_style(style.clone());
        pb.set_prefix(format!("{name}: {}", phase.name));
        let windows_before = store.stats().controller.ticks;
        let started = Instant::now();
        let mut lat = run_phase(&store, args, phase, ops, &prompts, 0xC0FFEE + i as u64, &pb)?;
        let seconds = started.elapsed().as_secs_f64();
        pb.finish_and_clear();
        let ticks_in_phase = store
            .stats()
            .controller
            .ticks
            .saturating_sub(windows_before);
        let history = store.controller_history();
        let recent: Vec<_> = history
            .iter()
            .rev()
            .take(usize::try_from(ticks_in_phase).unwrap_or(0))
            .collect();
        let prefill_ms = args.tokens_per_page as f64 / args.prefill_tokens_per_s * 1e3;
        let ttft = mean(lat.read_ms.iter().map(|l| l + prefill_ms));
        out.push(PhaseResult {
            config: name.to_string(),
            phase: phase.name.to_string(),
            ops,
            pages: ops * args.pages_per_prompt as u64,
            seconds,
            ops_per_s: ops as f64 / seconds,
            read_p99_ms: quantile(&mut lat.read_ms, 0.99),
            write_p99_ms: quantile(&mut lat.write_ms, 0.99),
            ttft_model_mean_ms: ttft,
            predicted_index_busy_frac: mean(recent.iter().map(|r| r.predicted.index_busy_frac)),
            measured_index_busy_frac: mean(recent.iter().map(|r| r.window.index_busy_frac)),
            predicted_lookup_us: mean(
                recent
                    .iter()
                    .filter(|r| r.window.lookup_us.is_some())
                    .map(|r| r.predicted.lookup_us),
            ),
            measured_lookup_us: mean(recent.iter().filter_map(|r| r.window.lookup_us)),
            windows: recent.len(),
            knobs: {
                let k = store.knobs();
                format!(
                    "memtable {} MiB, L0 {}, ratio {}",
                    k.memtable_bytes >> 20,
                    k.l0_threshold,
                    k.level_ratio
                )
            },
        });
    }
    let decisions = store.stats().controller.decisions_total;
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
    Ok((out, decisions))
}

fn table(r: &AdaptiveReport) -> String {
    let mut s = String::from(
        "| config | phase | ops/s | vs default | read p99 ms | TTFT model ms | index busy pred/meas | lookup us pred/meas | knobs at end |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in &r.phases {
        let base = r
            .phases
            .iter()
            .find(|q| q.config == "default" && q.phase == p.phase)
            .map_or(f64::NAN, |q| p.ops_per_s / q.ops_per_s);
        // A phase without reads (the burst) has no read latency or TTFT to show.
        let reads = |v: f64| {
            if p.phase == "burst" {
                "-".to_string()
            } else {
                format!("{v:.2}")
            }
        };
        s += &format!(
            "| {} | {} | {:.0} | {:.2}x | {} | {} | {:.2} / {:.2} | {:.1} / {:.1} | {} |\n",
            p.config,
            p.phase,
            p.ops_per_s,
            base,
            reads(p.read_p99_ms),
            reads(p.ttft_model_mean_ms),
            p.predicted_index_busy_frac,
            p.measured_index_busy_frac,
            p.predicted_lookup_us,
            p.measured_lookup_us,
            p.knobs
        );
    }
    s += "\n| config | overall ops/s | vs default |\n|---|---|---|\n";
    let base = r
        .overall_ops_per_s
        .iter()
        .find(|(c, _)| c == "default")
        .map_or(f64::NAN, |x| x.1);
    for (c, v) in &r.overall_ops_per_s {
        s += &format!("| {c} | {v:.0} | {:.2}x |\n", v / base);
    }
    s
}

/// Runs every configuration of `args` on the staged workload.
///
/// # Errors
/// A bad configuration name, an I/O error, or a page that missed or read back wrong.
pub fn evaluate(args: &AdaptiveArgs) -> anyhow::Result<AdaptiveReport> {
    anyhow::ensure!(args.page_bytes >= 16, "--page-bytes must be at least 16");
    anyhow::ensure!(
        args.pages_per_prompt >= 1,
        "--pages-per-prompt must be at least 1"
    );
    let mut report = AdaptiveReport {
        page_bytes: args.page_bytes,
        pages_per_prompt: args.pages_per_prompt,
        preload_prompts: args.preload_prompts,
        phase_ops: args.phase_ops,
        ..AdaptiveReport::default()
    };
    for name in &args.configs {
        config_of(name)?;
    }
    for name in &args.configs {
        let (phases, decisions) = run_config(args, name, &args.dir.join(name))?;
        let ops: u64 = phases.iter().map(|p| p.ops).sum();
        let secs: f64 = phases.iter().map(|p| p.seconds).sum();
        report
            .overall_ops_per_s
            .push((name.clone(), ops as f64 / secs));
        if name == "adaptive" {
            report.decisions = decisions;
        }
        report.phases.extend(phases);
    }
    Ok(report)
}

/// Runs the evaluation and prints the tables.
pub fn run(args: &AdaptiveArgs) -> anyhow::Result<ExitCode> {
    let report = evaluate(args)?;
    println!("{}", table(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
