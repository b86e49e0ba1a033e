//! Trace replay against a real [`sglang_lsm::Store`].
//!
//! The store has no eviction of its own yet (issue 5), so the replayer enforces the capacity
//! with a [`crate::policy::Policy`]: for each request it probes the store, loads the prefix hit with
//! `get_batch` (timed), lets the policy record the access, deletes what the policy evicted and
//! writes the missed blocks the policy keeps. The store is the source of truth for hits; after
//! every request the replayer checks that the store's probe agrees with the policy, so the
//! reported hit rate is both measured and equal to the simulator's.
//!
//! Blocks are written at `--block-bytes` (default 64 KiB) instead of the model's real block
//! size (64 MiB for Llama-3-8B at 512 tokens) so the replay fits on disk and finishes in
//! minutes. The TTFT model rescales: load time of a request's hits = real hit bytes / the read
//! bandwidth measured in this replay.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use sglang_lsm::{Store, StoreConfig};
use sha2::{Digest, Sha256};

use crate::policy::{simulate_kind, PolicyKind};
use crate::trace::{ratio, BlockId, Trace, MOONCAKE_BLOCK_TOKENS};
use crate::ttft::{model_request, quantile, ModelKind};
use crate::units::parse_bytes;

/// Pages per store call, as SGLang batches them (`STORAGE_BATCH_SIZE`).
pub const STORAGE_BATCH_PAGES: usize = 128;

/// Bytes stamped at each end of a block so reads can be checked against the key.
const STAMP_BYTES: usize = 8;

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
    /// Keep the configured knobs: switch the adaptive controller off.
    #[arg(long)]
    pub no_adaptive: bool,
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
    /// Eviction policy the replayer enforces on the store.
    #[arg(long, value_enum, default_value_t = PolicyKind::Prefix)]
    pub policy: PolicyKind,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Store directory (created; must be empty). Default: a temporary directory, removed after.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl ReplayArgs {
    /// Arguments with every default, for callers that do not go through clap.
    pub fn new(trace: impl Into<PathBuf>, capacity_frac: f64) -> Self {
        Self {
            trace: trace.into(),
            capacity_frac: Some(capacity_frac),
            capacity_bytes: None,
            no_adaptive: false,
            block_tokens: MOONCAKE_BLOCK_TOKENS,
            model: ModelKind::Llama3_8b,
            block_bytes: 64 << 10,
            speedup: None,
            load_bytes_per_s: None,
            policy: PolicyKind::Prefix,
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

/// The replay's results. Fields named `*_model_*` come from the TTFT **model**, not from a
/// serving engine; everything else is counted or measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    pub trace: String,
    pub policy: String,
    pub model: String,
    /// Where the model profile's numbers come from.
    pub model_source: String,
    pub capacity_frac: Option<f64>,
    pub capacity_blocks: u64,
    /// Capacity at the model's real block size.
    pub capacity_bytes_model: u64,
    /// Capacity at the replay's scaled-down block size.
    pub capacity_bytes_replay: u64,
    pub block_tokens: u32,
    /// Bytes written per block in this replay.
    pub block_bytes: u64,
    /// Real bytes per block for the model (`block_tokens x kv bytes per token`).
    pub model_block_bytes: u64,
    pub requests: u64,
    /// Block references in the trace.
    pub blocks: u64,
    pub distinct_blocks: u64,
    /// Prefix-hit blocks as probed and read back from the store.
    pub hit_blocks: u64,
    /// `hit_blocks / blocks`, measured on the store.
    pub hit_rate: f64,
    /// The same policy run by the simulator alone (equal to `hit_rate` by construction; a
    /// mismatch would be a replayer bug).
    pub policy_sim_hit_rate: f64,
    pub lru_hit_rate: f64,
    pub belady_hit_rate: f64,
    /// Prefix hit rate with unlimited capacity.
    pub unlimited_hit_rate: f64,
    /// Hit blocks whose modelled load finished within SGLang's prefetch timeout.
    pub timely_hit_blocks: u64,
    pub timely_hit_rate: f64,
    pub blocks_written: u64,
    pub bytes_written: u64,
    pub blocks_read: u64,
    pub bytes_read: u64,
    pub blocks_deleted: u64,
    /// Pages resident in the store at the end (equals the policy's cached blocks).
    pub store_pages: u64,
    /// Value-log bytes on disk at the end (the store's own capacity bound is off in replay:
    /// the replayer's policy decides what stays).
    pub store_log_bytes: u64,
    pub wall_s: f64,
    /// Time inside `get_batch` for hits, summed over requests.
    pub load_s: f64,
    /// Time inside `put_batch`, summed.
    pub put_s: f64,
    /// Time inside `delete`, summed.
    pub delete_s: f64,
    /// `bytes_read / load_s`, measured in this replay at the scaled-down block size.
    pub read_bandwidth_bytes_per_s: f64,
    /// Bandwidth the TTFT model loads hits at: `--load-bytes-per-s` if given, else the
    /// measured `read_bandwidth_bytes_per_s`.
    pub ttft_model_load_bytes_per_s: f64,
    /// Per-request `get_batch` latency over requests with at least one hit.
    pub load_latency_us_p50: f64,
    pub load_latency_us_p99: f64,
    pub ttft_model_mean_s: f64,
    pub ttft_model_p50_s: f64,
    pub ttft_model_p99_s: f64,
    /// The TTFT model with no disk tier at all (every token prefilled), for ratios.
    pub ttft_model_no_cache_mean_s: f64,
    pub speedup: Option<f64>,
    /// Requests that started later than their paced arrival time (only with `speedup`).
    pub requests_behind_schedule: u64,
}

/// The store key for a trace block: the hex SHA-256 of the id, shaped like SGLang's 64-char
/// page keys so the index sees realistic (uniformly spread) keys rather than small integers.
pub fn block_key(block: BlockId) -> String {
    hex::encode(Sha256::digest(block.to_le_bytes()))
}

fn stamp(buf: &mut [u8], block: BlockId) {
    let id = block.to_le_bytes();
    let n = buf.len();
    buf[..STAMP_BYTES].copy_from_slice(&id);
    buf[n - STAMP_BYTES..].copy_from_slice(&id);
}

fn stamp_ok(buf: &[u8], block: BlockId) -> bool {
    let id = block.to_le_bytes();
    let n = buf.len();
    buf[..STAMP_BYTES] == id && buf[n - STAMP_BYTES..] == id
}

/// Where the store lives: a caller's empty directory, or a temporary one removed on drop.
enum StoreDir {
    Given(PathBuf),
    Temp(tempfile::TempDir),
}

impl StoreDir {
    fn prepare(dir: Option<&Path>) -> anyhow::Result<Self> {
        match dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("creating store directory {}", d.display()))?;
                let mut entries = std::fs::read_dir(d)
                    .with_context(|| format!("reading store directory {}", d.display()))?;
                // A replay must start empty: pages already there would disagree with the policy.
                ensure!(
                    entries.next().is_none(),
                    "store directory {} is not empty; the replay needs a fresh store",
                    d.display()
                );
                Ok(Self::Given(d.to_path_buf()))
            }
            None => Ok(Self::Temp(
                tempfile::Builder::new()
                    .prefix("sglang-lsm-replay-")
                    .tempdir()
                    .context("creating a temporary store directory")?,
            )),
        }
    }

    fn path(&self) -> &Path {
        match self {
            Self::Given(p) => p,
            Self::Temp(t) => t.path(),
        }
    }
}

/// Per-request measurements kept for the TTFT model, which needs the whole-run bandwidth.
struct RequestSample {
    input_tokens: u64,
    hit_block_tokens: Vec<u64>,
    load_s: f64,
}

/// Replays the trace and returns the report (also written to `--json` if given).
///
/// # Errors
/// Bad arguments, an unreadable or malformed trace, any store I/O error, or an internal
/// disagreement between the store and the policy (which would make the figures wrong).
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
    let stats = trace.stats();
    let profile = args.model.profile();
    let model_block_bytes = u64::from(args.block_tokens) * profile.kv_bytes_per_token;
    let capacity_blocks = match (args.capacity_frac, args.capacity_bytes) {
        (Some(f), _) => trace.capacity_blocks(f),
        (None, Some(b)) => usize::try_from(b / model_block_bytes)
            .context("capacity in blocks overflows")?
            .max(1),
        (None, None) => bail!("give exactly one of --capacity-frac and --capacity-bytes"),
    };

    // Baselines first: they are cheap and independent of the store.
    let lru = simulate_kind(&trace, PolicyKind::Lru, capacity_blocks);
    let belady = simulate_kind(&trace, PolicyKind::Belady, capacity_blocks);
    let own = simulate_kind(&trace, args.policy, capacity_blocks);

    let dir = StoreDir::prepare(args.dir.as_deref())?;
    let config = StoreConfig {
        adaptive: !args.no_adaptive,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), config)
        .with_context(|| format!("opening store at {}", dir.path().display()))?;
    let mut policy = args.policy.build(&trace, capacity_blocks);

    let keys: HashMap<BlockId, String> = trace
        .requests
        .iter()
        .flat_map(|r| r.blocks.iter().copied())
        .map(|b| (b, block_key(b)))
        .collect();

    let bar = if args.quiet {
        ProgressBar::with_draw_target(Some(stats.requests), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(stats.requests)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "replay {bar:40} {pos}/{len} requests  {elapsed_precise}  eta {eta}  {msg}",
        )
        .context("progress bar template")?,
    );

    let block_len = usize::try_from(args.block_bytes).context("block size overflows")?;
    let mut read_bufs: Vec<Vec<u8>> = (0..STORAGE_BATCH_PAGES)
        .map(|_| vec![0u8; block_len])
        .collect();
    let mut write_bufs: Vec<Vec<u8>> = (0..STORAGE_BATCH_PAGES)
        .map(|_| vec![0xA5u8; block_len])
        .collect();

    let mut in_store: HashSet<BlockId> = HashSet::new();
    let mut evicted: Vec<BlockId> = Vec::new();
    let mut samples: Vec<RequestSample> = Vec::with_capacity(trace.requests.len());
    let (mut hit_blocks, mut blocks_written, mut blocks_read, mut blocks_deleted) =
        (0u64, 0u64, 0u64, 0u64);
    let (mut load_total, mut put_total, mut delete_total) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut behind = 0u64;
    let mut refs_done = 0u64;
    let put_bytes_before = store.stats().put_bytes;
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
        let req_keys: Vec<&[u8]> = req
            .blocks
            .iter()
            .map(|b| keys.get(b).map(|k| k.as_bytes()).unwrap_or_default())
            .collect();

        // 1. Probe: the store decides the hit.
        let n_hit = store
            .probe(&req_keys, &[])
            .with_context(|| format!("probe of request {ri}"))?;
        let n_policy = policy.prefix_hits(&req.blocks);
        ensure!(
            n_hit == n_policy,
            "request {ri}: the store holds {n_hit} leading blocks but the {} policy {n_policy}",
            policy.name()
        );

        // 2. Load the hit prefix in SGLang-sized batches and check every page's stamps.
        let t_load = Instant::now();
        for chunk_start in (0..n_hit).step_by(STORAGE_BATCH_PAGES) {
            let chunk_end = (chunk_start + STORAGE_BATCH_PAGES).min(n_hit);
            let n = chunk_end - chunk_start;
            let mut outs: Vec<Vec<&mut [u8]>> = read_bufs[..n]
                .iter_mut()
                .map(|b| vec![b.as_mut_slice()])
                .collect();
            let found = store
                .get_batch(&req_keys[chunk_start..chunk_end], &mut outs)
                .with_context(|| format!("get_batch of request {ri}"))?;
            for (j, ok) in found.iter().enumerate() {
                let block = req.blocks[chunk_start + j];
                ensure!(*ok, "request {ri}: probed block {block} did not read back");
                ensure!(
                    stamp_ok(&read_bufs[j], block),
                    "request {ri}: block {block} read back another block's bytes"
                );
            }
        }
        let load = t_load.elapsed();
        load_total += load;
        hit_blocks += n_hit as u64;
        blocks_read += n_hit as u64;

        // 3. The policy records the access; evicted blocks that reached the store are deleted.
        evicted.clear();
        policy.access(ri, &req.blocks, &mut evicted);
        let t_del = Instant::now();
        for b in &evicted {
            // A block evicted and re-admitted within the same access stays in the store.
            if !policy.contains(*b) && in_store.remove(b) {
                let key = keys.get(b).map(|k| k.as_bytes()).unwrap_or_default();
                // Exactly this block: the simulated policies may leave orphans, and the store
                // must mirror them (`delete` would also drop the block's descendants).
                let existed = store
                    .remove_exact(&[key])
                    .with_context(|| format!("delete of block {b} (request {ri})"))?
                    == 1;
                ensure!(
                    existed,
                    "request {ri}: evicted block {b} was not in the store"
                );
                blocks_deleted += 1;
            }
        }
        delete_total += t_del.elapsed();

        // 4. Write the blocks the policy keeps and the store lacks, as contiguous prefix runs.
        let t_put = Instant::now();
        let mut i = 0;
        while i < req.blocks.len() {
            let wanted = |b: &BlockId| policy.contains(*b) && !in_store.contains(b);
            if !wanted(&req.blocks[i]) {
                i += 1;
                continue;
            }
            let run_start = i;
            while i < req.blocks.len()
                && wanted(&req.blocks[i])
                && i - run_start < STORAGE_BATCH_PAGES
            {
                i += 1;
            }
            let run = &req.blocks[run_start..i];
            for (buf, &b) in write_bufs.iter_mut().zip(run) {
                stamp(buf, b);
            }
            let values: Vec<Vec<&[u8]>> = write_bufs[..run.len()]
                .iter()
                .map(|b| vec![b.as_slice()])
                .collect();
            let stored = store
                .put_batch(&req_keys[run_start..i], &values, &req_keys[..run_start])
                .with_context(|| format!("put_batch of request {ri}"))?;
            ensure!(
                stored.iter().all(|&s| s),
                "request {ri}: the store declined a write although it has no capacity bound"
            );
            in_store.extend(run.iter().copied());
            blocks_written += run.len() as u64;
        }
        put_total += t_put.elapsed();

        samples.push(RequestSample {
            input_tokens: req.input_tokens,
            hit_block_tokens: (0..n_hit)
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
    let st = store.stats();
    ensure!(
        in_store.len() as u64 == st.pages,
        "the store holds {} pages but the replay wrote {} that are still live",
        st.pages,
        in_store.len()
    );
    let bytes_written = st.put_bytes - put_bytes_before;
    let bytes_read = blocks_read * args.block_bytes;

    // TTFT model: real hit bytes at the bandwidth this replay measured.
    let measured_bandwidth = if load_total.is_zero() {
        0.0
    } else {
        bytes_read as f64 / load_total.as_secs_f64()
    };
    let bandwidth = args.load_bytes_per_s.unwrap_or(measured_bandwidth);
    let mut ttft = Vec::with_capacity(samples.len());
    let mut no_cache = 0.0;
    let mut timely = 0u64;
    let mut load_lat_us = Vec::new();
    for s in &samples {
        let hit_tokens: u64 = s.hit_block_tokens.iter().sum();
        let load_model_s = if hit_tokens == 0 || bandwidth == 0.0 {
            0.0
        } else {
            (hit_tokens * profile.kv_bytes_per_token) as f64 / bandwidth
        };
        let o = model_request(&profile, s.input_tokens, &s.hit_block_tokens, load_model_s);
        timely += o.timely_hit_blocks as u64;
        ttft.push(o.ttft_s);
        no_cache += s.input_tokens as f64 / profile.prefill_tokens_per_s;
        if !s.hit_block_tokens.is_empty() {
            load_lat_us.push(s.load_s * 1e6);
        }
    }
    let n_req = samples.len().max(1) as f64;

    let report = ReplayReport {
        trace: args.trace.display().to_string(),
        policy: args.policy.name().to_string(),
        model: profile.name.to_string(),
        model_source: profile.source.to_string(),
        capacity_frac: args.capacity_frac,
        capacity_blocks: capacity_blocks as u64,
        capacity_bytes_model: capacity_blocks as u64 * model_block_bytes,
        capacity_bytes_replay: capacity_blocks as u64 * args.block_bytes,
        block_tokens: args.block_tokens,
        block_bytes: args.block_bytes,
        model_block_bytes,
        requests: stats.requests,
        blocks: stats.block_refs,
        distinct_blocks: stats.distinct_blocks,
        hit_blocks,
        hit_rate: ratio(hit_blocks, stats.block_refs),
        policy_sim_hit_rate: own.hit_rate,
        lru_hit_rate: lru.hit_rate,
        belady_hit_rate: belady.hit_rate,
        unlimited_hit_rate: stats.unlimited_hit_rate(),
        timely_hit_blocks: timely,
        timely_hit_rate: ratio(timely, stats.block_refs),
        blocks_written,
        bytes_written,
        blocks_read,
        bytes_read,
        blocks_deleted,
        store_pages: st.pages,
        store_log_bytes: st.log_bytes,
        wall_s: wall.as_secs_f64(),
        load_s: load_total.as_secs_f64(),
        put_s: put_total.as_secs_f64(),
        delete_s: delete_total.as_secs_f64(),
        read_bandwidth_bytes_per_s: measured_bandwidth,
        ttft_model_load_bytes_per_s: bandwidth,
        load_latency_us_p50: quantile(&load_lat_us, 0.5),
        load_latency_us_p99: quantile(&load_lat_us, 0.99),
        ttft_model_mean_s: ttft.iter().sum::<f64>() / n_req,
        ttft_model_p50_s: quantile(&ttft, 0.5),
        ttft_model_p99_s: quantile(&ttft, 0.99),
        ttft_model_no_cache_mean_s: no_cache / n_req,
        speedup: args.speedup,
        requests_behind_schedule: behind,
    };
    drop(store);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("serialising the report")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    Ok((report, ttft))
}
