//! The replay's report: counts and timings from the request loop, the store's own stats, the
//! simulated references and the TTFT **model**.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sglang_lsm::{StoreConfig, StoreStats};

use super::ReplayArgs;
use crate::bound::engine_segment_bytes;
use crate::policy::PolicyKind;
use crate::trace::{ratio, Trace};
use crate::ttft::{model_request, quantile};

/// The replay's results. Fields named `*_model_*` come from the TTFT **model**, not from a
/// serving engine; everything else is counted or measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    pub trace: String,
    /// Who bounded the store: `store` (its own capacity bound and eviction) or the simulated
    /// policy the replayer enforced.
    pub policy: String,
    pub model: String,
    /// Where the model profile's numbers come from.
    pub model_source: String,
    pub capacity_frac: Option<f64>,
    pub capacity_blocks: u64,
    /// Capacity at the model's real block size.
    pub capacity_bytes_model: u64,
    /// Capacity at the replay's scaled-down block size: the simulators' byte budget.
    pub capacity_bytes_replay: u64,
    /// The store's own bound (`StoreConfig::capacity_bytes`): `capacity_bytes_replay` with
    /// `policy = store`, `None` when the replayer enforced a policy.
    pub store_capacity_bytes: Option<u64>,
    /// The engine's segment (reclamation unit) size for that bound.
    pub segment_bytes: u64,
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
    /// `hit_blocks / blocks`, measured on the store: with `policy = store`, the store's own
    /// hit rate.
    pub hit_rate: f64,
    /// The enforced policy run by the simulator alone (equal to `hit_rate` by construction;
    /// a mismatch would be a replayer bug); `None` with `policy = store`.
    pub policy_sim_hit_rate: Option<f64>,
    /// Simulated at `capacity_blocks`, the same byte budget.
    pub lru_hit_rate: f64,
    pub belady_hit_rate: f64,
    /// Every simulated policy at `capacity_blocks`, by name (lru, belady, leaf-lru, prefix).
    pub simulated_hit_rates: BTreeMap<String, f64>,
    /// The best simulated online policy (every one but Belady; each can be enforced with
    /// `--policy`) and its hit rate.
    pub best_online_policy: String,
    pub best_online_hit_rate: f64,
    /// Prefix hit rate with unlimited capacity.
    pub unlimited_hit_rate: f64,
    /// Hit blocks whose modelled load finished within SGLang's prefetch timeout.
    pub timely_hit_blocks: u64,
    pub timely_hit_rate: f64,
    /// Pages the replay passed to `put_batch`.
    pub blocks_offered: u64,
    /// Pages the store wrote (`StoreStats::put_pages` over the replay).
    pub blocks_written: u64,
    /// Their payload bytes (`StoreStats::put_bytes` over the replay).
    pub bytes_written: u64,
    /// Pages the store declined for lack of room (`put_declined_pages`).
    pub blocks_declined: u64,
    /// Pages admission declined (`put_unadmitted_pages`; 0 unless `second_sighting`).
    pub blocks_unadmitted: u64,
    /// Pages offered that were already resident (`put_existing_pages`).
    pub blocks_existing: u64,
    pub blocks_read: u64,
    pub bytes_read: u64,
    /// Blocks the replayer deleted itself (0 with `policy = store`).
    pub blocks_deleted: u64,
    /// Leaves the store's reclaimer evicted.
    pub evicted_pages: u64,
    /// Pages and payload bytes the reclaimer relocated (kept: referenced or with children).
    pub relocated_pages: u64,
    pub relocated_bytes: u64,
    pub segments_reclaimed: u64,
    /// The store's `StoreStats::write_amplification` over this replay: (payload bytes it
    /// wrote for puts + payload bytes its reclaimer relocated) / payload bytes it wrote for
    /// puts. Frame headers, alignment and tombstones are not in it (the engine exposes no
    /// total of bytes appended to the log).
    pub write_amplification: f64,
    /// Largest `live_bytes` and `log_bytes` after any request: the bound in practice.
    pub max_live_bytes: u64,
    pub max_log_bytes: u64,
    /// Pages resident in the store at the end.
    pub store_pages: u64,
    /// Value-log bytes at the end.
    pub store_log_bytes: u64,
    pub wall_s: f64,
    /// Time inside `get_batch` for hits, summed over requests.
    pub load_s: f64,
    /// Time inside `put_batch`, summed.
    pub put_s: f64,
    /// Time inside the replayer's deletes, summed.
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

/// Per-request measurements kept for the TTFT model, which needs the whole-run bandwidth.
pub(super) struct RequestSample {
    pub input_tokens: u64,
    pub hit_block_tokens: Vec<u64>,
    pub load_s: f64,
}

/// What the request loop measured.
pub(super) struct StoreOutcome {
    pub samples: Vec<RequestSample>,
    pub hit_blocks: u64,
    pub wall: Duration,
    pub behind: u64,
    pub max_live_bytes: u64,
    pub max_log_bytes: u64,
    pub load: Duration,
    pub put: Duration,
    pub offered_blocks: u64,
    pub deleted_blocks: u64,
    pub delete_time: Duration,
    /// The store's stats before the first request and after the last.
    pub start: StoreStats,
    pub end: StoreStats,
}

/// The best online policy among the simulated ones (Belady is offline).
fn best_online(simulated: &BTreeMap<String, f64>) -> (String, f64) {
    PolicyKind::ALL
        .iter()
        .filter(|k| **k != PolicyKind::Belady)
        .filter_map(|k| simulated.get(k.name()).map(|&r| (k.name().to_string(), r)))
        .fold((String::new(), f64::NEG_INFINITY), |best, c| {
            if c.1 > best.1 {
                c
            } else {
                best
            }
        })
}

/// Builds the report and the per-request TTFT model (trace order).
pub(super) fn assemble(
    args: &ReplayArgs,
    trace: &Trace,
    capacity_blocks: usize,
    model_block_bytes: u64,
    config: &StoreConfig,
    simulated: BTreeMap<String, f64>,
    o: StoreOutcome,
) -> (ReplayReport, Vec<f64>) {
    let stats = trace.stats();
    let profile = args.model.profile();
    let (st, st0) = (&o.end, &o.start);
    let put_bytes = st.put_bytes - st0.put_bytes;
    let relocated_bytes = st.relocated_bytes - st0.relocated_bytes;
    let bytes_read = o.hit_blocks * args.block_bytes;

    // TTFT model: real hit bytes at the bandwidth this replay measured.
    let measured_bandwidth = if o.load.is_zero() {
        0.0
    } else {
        bytes_read as f64 / o.load.as_secs_f64()
    };
    let bandwidth = args.load_bytes_per_s.unwrap_or(measured_bandwidth);
    let mut ttft = Vec::with_capacity(o.samples.len());
    let mut no_cache = 0.0;
    let mut timely = 0u64;
    let mut load_lat_us = Vec::new();
    for s in &o.samples {
        let hit_tokens: u64 = s.hit_block_tokens.iter().sum();
        let load_model_s = if hit_tokens == 0 || bandwidth == 0.0 {
            0.0
        } else {
            (hit_tokens * profile.kv_bytes_per_token) as f64 / bandwidth
        };
        let m = model_request(&profile, s.input_tokens, &s.hit_block_tokens, load_model_s);
        timely += m.timely_hit_blocks as u64;
        ttft.push(m.ttft_s);
        no_cache += s.input_tokens as f64 / profile.prefill_tokens_per_s;
        if !s.hit_block_tokens.is_empty() {
            load_lat_us.push(s.load_s * 1e6);
        }
    }
    let n_req = o.samples.len().max(1) as f64;
    let (best_online_policy, best_online_hit_rate) = best_online(&simulated);

    let report = ReplayReport {
        trace: args.trace.display().to_string(),
        policy: args.policy.name().to_string(),
        model: profile.name.to_string(),
        model_source: profile.source.to_string(),
        capacity_frac: args.capacity_frac,
        capacity_blocks: capacity_blocks as u64,
        capacity_bytes_model: capacity_blocks as u64 * model_block_bytes,
        capacity_bytes_replay: capacity_blocks as u64 * args.block_bytes,
        store_capacity_bytes: config.capacity_bytes,
        segment_bytes: engine_segment_bytes(config),
        block_tokens: args.block_tokens,
        block_bytes: args.block_bytes,
        model_block_bytes,
        requests: stats.requests,
        blocks: stats.block_refs,
        distinct_blocks: stats.distinct_blocks,
        hit_blocks: o.hit_blocks,
        hit_rate: ratio(o.hit_blocks, stats.block_refs),
        policy_sim_hit_rate: args
            .policy
            .enforced()
            .and_then(|k| simulated.get(k.name()).copied()),
        lru_hit_rate: simulated
            .get(PolicyKind::Lru.name())
            .copied()
            .unwrap_or_default(),
        belady_hit_rate: simulated
            .get(PolicyKind::Belady.name())
            .copied()
            .unwrap_or_default(),
        best_online_policy,
        best_online_hit_rate,
        simulated_hit_rates: simulated,
        unlimited_hit_rate: stats.unlimited_hit_rate(),
        timely_hit_blocks: timely,
        timely_hit_rate: ratio(timely, stats.block_refs),
        blocks_offered: o.offered_blocks,
        blocks_written: st.put_pages - st0.put_pages,
        bytes_written: put_bytes,
        blocks_declined: st.put_declined_pages - st0.put_declined_pages,
        blocks_unadmitted: st.put_unadmitted_pages - st0.put_unadmitted_pages,
        blocks_existing: st.put_existing_pages - st0.put_existing_pages,
        blocks_read: o.hit_blocks,
        bytes_read,
        blocks_deleted: o.deleted_blocks,
        evicted_pages: st.evicted_pages - st0.evicted_pages,
        relocated_pages: st.relocated_pages - st0.relocated_pages,
        relocated_bytes,
        segments_reclaimed: st.segments_reclaimed - st0.segments_reclaimed,
        write_amplification: if put_bytes == 0 {
            1.0
        } else {
            (put_bytes + relocated_bytes) as f64 / put_bytes as f64
        },
        max_live_bytes: o.max_live_bytes,
        max_log_bytes: o.max_log_bytes,
        store_pages: st.pages,
        store_log_bytes: st.log_bytes,
        wall_s: o.wall.as_secs_f64(),
        load_s: o.load.as_secs_f64(),
        put_s: o.put.as_secs_f64(),
        delete_s: o.delete_time.as_secs_f64(),
        read_bandwidth_bytes_per_s: measured_bandwidth,
        ttft_model_load_bytes_per_s: bandwidth,
        load_latency_us_p50: quantile(&load_lat_us, 0.5),
        load_latency_us_p99: quantile(&load_lat_us, 0.99),
        ttft_model_mean_s: ttft.iter().sum::<f64>() / n_req,
        ttft_model_p50_s: quantile(&ttft, 0.5),
        ttft_model_p99_s: quantile(&ttft, 0.99),
        ttft_model_no_cache_mean_s: no_cache / n_req,
        speedup: args.speedup,
        requests_behind_schedule: o.behind,
    };
    (report, ttft)
}
