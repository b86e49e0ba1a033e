//! Trace replay against a real [`sglang_lsm::Store`].
//!
//! By default (`--policy store`) the replay measures what SGLang users get: the store runs
//! with its **own** capacity bound (`capacity_bytes` = the capacity in blocks x
//! `--block-bytes`) and its own eviction (segment FIFO reclamation, second chance, leaves
//! only). For each request the replayer probes, loads the prefix hit with `get_batch` (timed,
//! every page's bytes checked) and writes back every block after the hit, as SGLang's
//! write-back does; it never deletes. `hit_rate` is the store's own figure.
//!
//! `--policy lru|belady|leaf-lru|prefix` are the replayer-enforced modes: the store runs
//! unbounded and the replayer enforces a simulated [`crate::policy::Policy`], deleting what
//! it evicts and writing only what it keeps; after every request the store's probe must
//! agree with the policy, so the measured hit rate equals the simulator's.
//!
//! Every report carries the simulated policies (LRU, Belady, leaf-LRU, prefix) at the same
//! capacity in blocks as references, and the store's write amplification (see
//! [`ReplayReport::write_amplification`]).
//!
//! Blocks are written at `--block-bytes` (default 64 KiB) instead of the model's real block
//! size (64 MiB for Llama-3-8B at 512 tokens) so the replay fits on disk and finishes in
//! minutes. The TTFT model rescales: load time of a request's hits = real hit bytes / the read
//! bandwidth measured in this replay.

mod bound;
mod dir;
mod io;

mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use sglang_lsm::{Store, StoreConfig};

use crate::policy::{simulate_kind, PolicyKind};
use crate::trace::{ratio, Trace, MOONCAKE_BLOCK_TOKENS};
use crate::ttft::ModelKind;
use crate::units::parse_bytes;
use bound::{Bound, Enforced, Own, Step};
use dir::StoreDir;
pub use io::{block_key, STORAGE_BATCH_PAGES};
use io::{BlockKeys, PageIo, STAMP_BYTES};
pub use report::ReplayReport;
use report::{RequestSample, StoreOutcome};

/// Who bounds the store during a replay (`--policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ReplayPolicy {
    /// The store's own capacity bound and eviction (what SGLang users get); the replayer
    /// never deletes.
    Store,
    /// The replayer enforces simulated LRU on an unbounded store.
    Lru,
    /// The replayer enforces offline Belady (a bound, not deployable).
    Belady,
    /// The replayer enforces leaf-only LRU.
    LeafLru,
    /// The replayer enforces the leaf-only policy that protects blocks seen twice.
    Prefix,
}

impl ReplayPolicy {
    /// The simulated policy the replayer enforces; `None` for the store's own bound.
    pub fn enforced(self) -> Option<PolicyKind> {
        match self {
            Self::Store => None,
            Self::Lru => Some(PolicyKind::Lru),
            Self::Belady => Some(PolicyKind::Belady),
            Self::LeafLru => Some(PolicyKind::LeafLru),
            Self::Prefix => Some(PolicyKind::Prefix),
        }
    }

    /// The kebab-case name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        self.enforced().map_or("store", PolicyKind::name)
    }
}

impl From<PolicyKind> for ReplayPolicy {
    fn from(kind: PolicyKind) -> Self {
        match kind {
            PolicyKind::Lru => Self::Lru,
            PolicyKind::Belady => Self::Belady,
            PolicyKind::LeafLru => Self::LeafLru,
            PolicyKind::Prefix => Self::Prefix,
        }
    }
}

/// Options of `sglang-lsm replay`.
#[derive(Clone, Debug, clap::Args)]
pub struct ReplayArgs {
    /// Mooncake-format JSONL trace (`timestamp`, `input_length`, `hash_ids` per line), plain
    /// or `.zst`; the default is the trace bundled in the repository.
    #[arg(long, default_value = crate::trace::BUNDLED_TRACE)]
    pub trace: PathBuf,
    /// Capacity as a fraction of the trace's distinct blocks (rounded to the nearest block).
    #[arg(
        long,
        required_unless_present = "capacity_bytes",
        conflicts_with = "capacity_bytes"
    )]
    pub capacity_frac: Option<f64>,
    /// Capacity in real bytes of the model's KV cache (blocks = this / (block tokens x the
    /// profile's bytes per token)); accepts suffixes like 500g.
    #[arg(long, value_parser = parse_bytes)]
    pub capacity_bytes: Option<u64>,
    /// Let the adaptive controller retune the knobs (the store's default is off).
    #[arg(long)]
    pub adaptive: bool,
    /// Tokens per block; must match the trace (512 for Mooncake traces).
    #[arg(long, default_value_t = MOONCAKE_BLOCK_TOKENS)]
    pub block_tokens: u32,
    /// Model profile for real block sizes and the TTFT model.
    #[arg(long, value_enum, default_value_t = ModelKind::Llama3_8b)]
    pub model: ModelKind,
    /// Bytes actually written per block (scaled down from the real size so the replay fits).
    #[arg(long, value_parser = parse_bytes, default_value = "64KiB")]
    pub block_bytes: u64,
    /// Pace requests at trace time divided by this factor; without it, replay back to back.
    #[arg(long)]
    pub speedup: Option<f64>,
    /// Bandwidth (bytes/s) the TTFT model loads hit pages at, instead of the bandwidth this
    /// replay measured. The replay writes scaled-down blocks whose small reads understate what
    /// the store reaches on real multi-megabyte pages; `compare --report` passes the cold-read
    /// bandwidth it measured for our store at its largest page size.
    #[arg(long)]
    pub load_bytes_per_s: Option<f64>,
    /// Who bounds the store: `store` (default) runs the store's own capacity bound and
    /// eviction, the replayer deletes nothing; `lru`, `belady`, `leaf-lru`, `prefix` have the
    /// replayer enforce that simulated policy on an unbounded store.
    #[arg(long, value_enum, default_value_t = ReplayPolicy::Store)]
    pub policy: ReplayPolicy,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Store directory (created; must be empty). Default: a temporary directory, removed after.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Store options as a JSON object (the `StoreConfig` fields, e.g.
    /// '{"eviction": "s3fifo"}'); the replay then sets the capacity bound itself.
    #[arg(long, value_name = "JSON", value_parser = parse_store_options)]
    pub store_options: Option<StoreConfig>,
}

fn parse_store_options(json: &str) -> Result<StoreConfig, String> {
    StoreConfig::from_json(json).map_err(|e| e.to_string())
}

impl ReplayArgs {
    /// Arguments with every default, for callers that do not go through clap.
    pub fn new(trace: impl Into<PathBuf>, capacity_frac: f64) -> Self {
        Self {
            trace: trace.into(),
            capacity_frac: Some(capacity_frac),
            capacity_bytes: None,
            adaptive: false,
            block_tokens: MOONCAKE_BLOCK_TOKENS,
            model: ModelKind::Llama3_8b,
            block_bytes: 64 << 10,
            speedup: None,
            load_bytes_per_s: None,
            policy: ReplayPolicy::Store,
            store_options: None,
            json: None,
            dir: None,
            quiet: true,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        match (self.capacity_frac, self.capacity_bytes) {
            (Some(f), None) => ensure!(
                f.is_finite() && f > 0.0,
                "--capacity-frac must be a positive number, got {f}"
            ),
            (None, Some(b)) => ensure!(b > 0, "--capacity-bytes must be positive"),
            _ => bail!("give exactly one of --capacity-frac and --capacity-bytes"),
        }
        ensure!(self.block_tokens > 0, "--block-tokens must be at least 1");
        ensure!(
            (2 * STAMP_BYTES as u64..=64 << 20).contains(&self.block_bytes),
            "--block-bytes must be between {} bytes and 64 MiB, got {}",
            2 * STAMP_BYTES,
            self.block_bytes
        );
        if let Some(b) = self.load_bytes_per_s {
            ensure!(
                b.is_finite() && b > 0.0,
                "--load-bytes-per-s must be a positive number, got {b}"
            );
        }
        if let Some(s) = self.speedup {
            ensure!(
                s.is_finite() && s > 0.0,
                "--speedup must be a positive number, got {s}"
            );
        }
        Ok(())
    }
}

/// Replays the trace and returns the report (also written to `--json` if given).
///
/// # Errors
/// Bad arguments, an unreadable or malformed trace, any store I/O error, a page that reads
/// back another page's bytes, or (with an enforced policy) a disagreement between the store
/// and the policy, which would make the figures wrong.
pub fn run(args: &ReplayArgs) -> anyhow::Result<ReplayReport> {
    run_detailed(args).map(|(report, _)| report)
}

/// [`run`], also returning the TTFT **model** of every request in trace order (for CDF plots).
///
/// # Errors
/// As [`run`].
pub fn run_detailed(args: &ReplayArgs) -> anyhow::Result<(ReplayReport, Vec<f64>)> {
    args.validate()?;
    let trace = Trace::load(&args.trace, args.block_tokens)?;
    let model_block_bytes = u64::from(args.block_tokens) * args.model.profile().kv_bytes_per_token;
    let capacity_blocks = match (args.capacity_frac, args.capacity_bytes) {
        (Some(f), _) => trace.capacity_blocks(f),
        (None, Some(b)) => usize::try_from(b / model_block_bytes)
            .context("capacity in blocks overflows")?
            .max(1),
        (None, None) => bail!("give exactly one of --capacity-frac and --capacity-bytes"),
    };

    // References first: cheap and independent of the store.
    let simulated: BTreeMap<String, f64> = PolicyKind::ALL
        .iter()
        .map(|&k| {
            let rate = simulate_kind(&trace, k, capacity_blocks).hit_rate;
            (k.name().to_string(), rate)
        })
        .collect();

    let mut config = args.store_options.clone().unwrap_or_default();
    config.adaptive |= args.adaptive;
    // The same byte budget as the simulators' block count, at the replay's block size.
    config.capacity_bytes = match args.policy.enforced() {
        None => Some(capacity_blocks as u64 * args.block_bytes),
        // An enforced policy decides what stays; a bound of the store's own would interfere.
        Some(_) => None,
    };
    let mut bound: Box<dyn Bound> = match args.policy.enforced() {
        None => Box::new(Own),
        Some(kind) => Box::new(Enforced::new(kind, &trace, capacity_blocks)),
    };

    let dir = StoreDir::prepare(args.dir.as_deref())?;
    let store =
        Store::open(dir.path(), config.clone()).with_context(|| match config.capacity_bytes {
            // The engine has a floor on its bound; say which replay options set it.
            Some(cap) => format!(
                "opening store at {} with its own bound of {capacity_blocks} blocks x {} = {} \
             (raise --capacity-frac or --block-bytes, or pass --policy to enforce a \
             simulated policy instead)",
                dir.path().display(),
                crate::units::fmt_bytes(args.block_bytes),
                crate::units::fmt_bytes(cap)
            ),
            None => format!("opening store at {}", dir.path().display()),
        })?;
    let outcome = replay_requests(args, &trace, &store, bound.as_mut())?;
    bound.finish(outcome.end.pages)?;
    drop(store);

    let (report, ttft) = report::assemble(
        args,
        &trace,
        capacity_blocks,
        model_block_bytes,
        &config,
        simulated,
        outcome,
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("serialising the report")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    Ok((report, ttft))
}

/// The request loop: probe, load the hit, let `bound` write back; the store's stats are
/// sampled after every request for the bound's peaks.
fn replay_requests(
    args: &ReplayArgs,
    trace: &Trace,
    store: &Store,
    bound: &mut dyn Bound,
) -> anyhow::Result<StoreOutcome> {
    let all_keys = BlockKeys::of(trace);
    let mut io = PageIo::new(args.block_bytes)?;
    let n_requests = trace.requests.len() as u64;
    let bar = if args.quiet {
        ProgressBar::with_draw_target(Some(n_requests), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(n_requests)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "replay {bar:40} {pos}/{len} requests  {elapsed_precise}  eta {eta}  {msg}",
        )
        .context("progress bar template")?,
    );

    let start_stats = store.stats();
    let mut samples: Vec<RequestSample> = Vec::with_capacity(trace.requests.len());
    let (mut hit_blocks, mut refs_done, mut behind) = (0u64, 0u64, 0u64);
    let (mut max_live_bytes, mut max_log_bytes) = (0u64, 0u64);
    let first_ts = trace.requests.first().map_or(0, |r| r.timestamp_ms);
    let start = Instant::now();
    for (ri, req) in trace.requests.iter().enumerate() {
        if let Some(speedup) = args.speedup {
            let due = Duration::from_secs_f64((req.timestamp_ms - first_ts) as f64 / 1e3 / speedup);
            let now = start.elapsed();
            if now < due {
                std::thread::sleep(due - now);
            } else if now > due + Duration::from_millis(1) {
                behind += 1;
            }
        }
        let keys = all_keys.of_request(req);
        // 1. Probe: the store decides the hit.
        let probed = store
            .probe(&keys, &[])
            .with_context(|| format!("probe of request {ri}"))?;
        bound.check_probe(ri, req, probed)?;
        // 2. Load the hit prefix in SGLang-sized batches; every page's stamps are checked.
        let (hits, load) = io.load(store, ri, req, &keys, probed, bound.strict())?;
        hit_blocks += hits as u64;
        // 3. Write back what missed (and, enforced, delete what the policy evicted).
        let step = Step {
            ri,
            req,
            keys: &keys,
            hits,
        };
        bound.write_back(store, &mut io, &all_keys, &step)?;

        let st = store.stats();
        max_live_bytes = max_live_bytes.max(st.live_bytes);
        max_log_bytes = max_log_bytes.max(st.log_bytes);
        samples.push(RequestSample {
            input_tokens: req.input_tokens,
            hit_block_tokens: (0..hits)
                .map(|i| req.block_tokens_at(i, args.block_tokens))
                .collect(),
            load_s: load.as_secs_f64(),
        });
        refs_done += req.blocks.len() as u64;
        bar.inc(1);
        if ri % 64 == 0 {
            bar.set_message(format!("hit {:.1}%", 100.0 * ratio(hit_blocks, refs_done)));
        }
    }
    let wall = start.elapsed();
    bar.finish_and_clear();
    let (deleted_blocks, delete_time) = bound.deleted();
    Ok(StoreOutcome {
        samples,
        hit_blocks,
        wall,
        behind,
        max_live_bytes,
        max_log_bytes,
        load: io.load,
        put: io.put,
        offered_blocks: io.offered_blocks,
        deleted_blocks,
        delete_time,
        start: start_stats,
        end: store.stats(),
    })
}
