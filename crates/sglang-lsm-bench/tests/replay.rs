//! Replays small synthetic traces through a real store and checks the report's invariants:
//! under the store's own capacity bound (the default) and under every replayer-enforced
//! policy.

use std::fmt::Write as _;
use std::path::Path;

use clap::Parser;
use sglang_lsm_bench::gen::{toolagent, write_jsonl, ToolagentArgs};
use sglang_lsm_bench::policy::{simulate_kind, PolicyKind};
use sglang_lsm_bench::replay::ReplayPolicy;
use sglang_lsm_bench::trace::Trace;
use sglang_lsm_bench::{run, ReplayArgs, ReplayReport};

/// A Mooncake-format trace: 12 shared "documents" (prefix chains of 2-9 blocks) asked about
/// repeatedly with a fresh question block or two, plus one-off prompts. Deterministic.
fn write_trace(path: &Path) -> Trace {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut next_id = 1_000u64;
    let docs: Vec<Vec<u64>> = (0..12)
        .map(|d| (0..2 + d % 8).map(|i| d * 100 + i).collect())
        .collect();
    let mut text = String::new();
    for r in 0..300u64 {
        let mut blocks: Vec<u64> = if rnd(4) == 0 {
            Vec::new()
        } else {
            // Popular documents more often: a skewed pick.
            let d = (rnd(12) * rnd(12) / 11) as usize;
            docs[d].clone()
        };
        for _ in 0..1 + rnd(2) {
            blocks.push(next_id);
            next_id += 1;
        }
        let tokens = 512 * blocks.len() as u64 - rnd(300);
        let ids: Vec<String> = blocks.iter().map(u64::to_string).collect();
        writeln!(
            text,
            "{{\"timestamp\": {}, \"input_length\": {tokens}, \"output_length\": 8, \"hash_ids\": [{}]}}",
            r * 10,
            ids.join(", ")
        )
        .expect("string write");
    }
    std::fs::write(path, &text).expect("write trace");
    Trace::parse(text.as_bytes(), "synthetic", 512).expect("synthetic trace parses")
}

fn replay(dir: &Path, policy: PolicyKind, frac: f64) -> (Trace, ReplayReport) {
    let trace_path = dir.join("trace.jsonl");
    let trace = write_trace(&trace_path);
    let mut args = ReplayArgs::new(&trace_path, frac);
    args.policy = ReplayPolicy::from(policy);
    args.block_bytes = 8 << 10;
    args.dir = Some(dir.join(format!("store-{}-{frac}", policy.name())));
    args.json = Some(dir.join(format!("report-{}-{frac}.json", policy.name())));
    let report = run(&args).expect("replay succeeds");
    (trace, report)
}

fn check_common(trace: &Trace, r: &ReplayReport, policy: PolicyKind) {
    let stats = trace.stats();
    assert_eq!(r.requests, stats.requests);
    assert_eq!(r.blocks, stats.block_refs);
    assert_eq!(r.distinct_blocks, stats.distinct_blocks);
    // The store's measured hit rate is the simulator's for the same policy and capacity.
    let sim = simulate_kind(trace, policy, r.capacity_blocks as usize);
    assert_eq!(r.hit_blocks, sim.hit_blocks);
    assert_eq!(r.hit_rate, sim.hit_rate);
    assert_eq!(Some(r.hit_rate), r.policy_sim_hit_rate);
    // The replayer enforced the policy on an unbounded store: the store evicted nothing.
    assert_eq!(r.store_capacity_bytes, None);
    assert_eq!(r.evicted_pages, 0);
    assert_eq!(r.blocks_declined, 0);
    assert_eq!(
        r.lru_hit_rate,
        simulate_kind(trace, PolicyKind::Lru, r.capacity_blocks as usize).hit_rate
    );
    assert_eq!(
        r.belady_hit_rate,
        simulate_kind(trace, PolicyKind::Belady, r.capacity_blocks as usize).hit_rate
    );
    // Bytes follow from block counts.
    assert_eq!(r.bytes_written, r.blocks_written * r.block_bytes);
    assert_eq!(r.blocks_read, r.hit_blocks);
    assert_eq!(r.bytes_read, r.hit_blocks * r.block_bytes);
    // Only misses are written, and what is left fits the capacity.
    assert!(r.blocks_written <= r.blocks - r.hit_blocks);
    assert_eq!(r.blocks_written, r.blocks_offered);
    assert_eq!(r.store_pages, r.blocks_written - r.blocks_deleted);
    assert!(r.store_pages <= r.capacity_blocks);
    // Timely hits are a subset of hits; the model's numbers are positive and ordered.
    assert!(r.timely_hit_blocks <= r.hit_blocks);
    assert!(r.timely_hit_rate <= r.hit_rate);
    assert!(r.ttft_model_mean_s > 0.0 && r.ttft_model_p99_s >= r.ttft_model_p50_s);
    assert!(r.ttft_model_no_cache_mean_s > 0.0);
    assert_eq!(r.model_block_bytes, 512 * (128 << 10));
    assert!(r.wall_s > 0.0);
}

#[test]
fn every_policy_replays_consistently_through_a_real_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    for policy in PolicyKind::ALL {
        let (trace, r) = replay(dir.path(), policy, 0.1);
        check_common(&trace, &r, policy);
        assert_eq!(r.policy, policy.name());
        assert!(r.hit_blocks > 0, "{}: the trace has reuse", policy.name());
        // The JSON file holds the same report.
        let path = dir
            .path()
            .join(format!("report-{}-0.1.json", policy.name()));
        let text = std::fs::read_to_string(path).expect("report file");
        let parsed: ReplayReport = serde_json::from_str(&text).expect("report parses");
        // Integers exactly; floats to parsing precision (serde_json's default float parser
        // may differ from the printed value in the last bit).
        assert_eq!(
            (
                parsed.hit_blocks,
                parsed.bytes_written,
                parsed.bytes_read,
                parsed.requests
            ),
            (r.hit_blocks, r.bytes_written, r.bytes_read, r.requests)
        );
        assert!((parsed.hit_rate - r.hit_rate).abs() < 1e-12);
        assert!((parsed.ttft_model_p99_s - r.ttft_model_p99_s).abs() < 1e-9);
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        for field in [
            "hit_rate",
            "lru_hit_rate",
            "belady_hit_rate",
            "timely_hit_rate",
            "requests",
            "blocks",
            "bytes_written",
            "bytes_read",
            "wall_s",
            "ttft_model_mean_s",
            "ttft_model_p99_s",
            "policy",
            "capacity_blocks",
            "write_amplification",
            "simulated_hit_rates",
        ] {
            assert!(v.get(field).is_some(), "report lacks {field}");
        }
    }
}

#[test]
fn every_miss_is_written_when_no_block_is_declined() {
    // Leaf-LRU with room for several requests never declines a block and leaves no orphans, so
    // every miss is written exactly once: bytes_written = misses x block bytes.
    let dir = tempfile::tempdir().expect("tempdir");
    let (trace, r) = replay(dir.path(), PolicyKind::LeafLru, 0.3);
    check_common(&trace, &r, PolicyKind::LeafLru);
    assert!(
        r.blocks_deleted > 0,
        "capacity must bind for this test to mean anything"
    );
    assert_eq!(r.blocks_written, r.blocks - r.hit_blocks);
    assert_eq!(r.bytes_written, (r.blocks - r.hit_blocks) * r.block_bytes);
}

#[test]
fn unlimited_capacity_reaches_the_trace_ceiling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (trace, r) = replay(dir.path(), PolicyKind::Lru, 1.0);
    check_common(&trace, &r, PolicyKind::Lru);
    let stats = trace.stats();
    assert_eq!(r.hit_blocks, stats.unlimited_prefix_hits);
    assert_eq!(r.blocks_written, stats.distinct_blocks);
    assert_eq!(r.blocks_deleted, 0);
    assert_eq!(r.hit_rate, r.belady_hit_rate);
}

#[test]
fn non_empty_store_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace_path = dir.path().join("trace.jsonl");
    write_trace(&trace_path);
    std::fs::write(dir.path().join("stray"), b"x").expect("stray file");
    let mut args = ReplayArgs::new(&trace_path, 0.1);
    args.dir = Some(dir.path().to_path_buf());
    let e = run(&args).expect_err("must refuse");
    assert!(e.to_string().contains("is not empty"), "{e}");
}

#[test]
fn bad_trace_line_is_reported_with_its_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("bad.jsonl");
    std::fs::write(
        &p,
        "{\"timestamp\": 0, \"input_length\": 512, \"hash_ids\": [1]}\n{\"timestamp\": 1}\n",
    )
    .expect("write");
    let e = run(&ReplayArgs::new(&p, 0.5)).expect_err("must fail");
    assert!(format!("{e:#}").contains("bad.jsonl:2:"), "{e:#}");
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    replay: ReplayArgs,
}

#[test]
fn command_line_surface() {
    let c = Cli::try_parse_from([
        "replay",
        "--trace",
        "t.jsonl",
        "--capacity-frac",
        "0.05",
        "--block-bytes",
        "16k",
        "--policy",
        "lru",
        "--model",
        "qwen3-32b",
        "--speedup",
        "4",
    ])
    .expect("parses");
    assert_eq!(c.replay.capacity_frac, Some(0.05));
    assert_eq!(c.replay.block_bytes, 16 << 10);
    assert_eq!(c.replay.policy, ReplayPolicy::Lru);
    assert_eq!(c.replay.block_tokens, 512);
    assert_eq!(c.replay.speedup, Some(4.0));
    let c = Cli::try_parse_from(["replay", "--trace", "t", "--capacity-bytes", "100g"])
        .expect("parses");
    assert_eq!(c.replay.capacity_bytes, Some(100 << 30));
    // The default is the store's own bound; `store` can also be asked for by name.
    assert_eq!(c.replay.policy, ReplayPolicy::Store);
    let c = Cli::try_parse_from(["replay", "--capacity-frac", "0.1", "--policy", "store"])
        .expect("parses");
    assert_eq!(c.replay.policy, ReplayPolicy::Store);
    assert_eq!(
        c.replay.trace.to_str(),
        Some("data/traces/mooncake_synthetic_trace.jsonl.zst")
    );
    // A capacity is required, and only one kind of it.
    assert!(Cli::try_parse_from(["replay", "--trace", "t"]).is_err());
    assert!(Cli::try_parse_from([
        "replay",
        "--trace",
        "t",
        "--capacity-frac",
        "0.1",
        "--capacity-bytes",
        "1g"
    ])
    .is_err());
    assert!(Cli::try_parse_from([
        "replay",
        "--trace",
        "t",
        "--capacity-frac",
        "0.1",
        "--policy",
        "fifo"
    ])
    .is_err());
    // Store options are a StoreConfig JSON object, checked at parse time; a bad field is
    // named.
    let c = Cli::try_parse_from([
        "replay",
        "--capacity-frac",
        "0.1",
        "--store-options",
        r#"{"reclaim_victim": "greedy", "protect_frequent_fraction": 0.5}"#,
    ])
    .expect("parses");
    let options = c.replay.store_options.expect("given");
    assert_eq!(options.reclaim_victim, sglang_lsm::ReclaimVictim::Greedy);
    assert!((options.protect_frequent_fraction - 0.5).abs() < 1e-9);
    let Err(err) = Cli::try_parse_from([
        "replay",
        "--capacity-frac",
        "0.1",
        "--store-options",
        r#"{"reclaim_victimm": "greedy"}"#,
    ]) else {
        panic!("an unknown store option must be refused");
    };
    assert!(err.to_string().contains("reclaim_victimm"), "{err}");
}

#[test]
fn invalid_numbers_are_rejected_before_any_work() {
    let mut args = ReplayArgs::new("/nonexistent", -0.1);
    assert!(run(&args)
        .expect_err("negative")
        .to_string()
        .contains("--capacity-frac"));
    args.capacity_frac = Some(0.1);
    args.block_bytes = 4;
    assert!(run(&args)
        .expect_err("tiny")
        .to_string()
        .contains("--block-bytes"));
    args.block_bytes = 4096;
    args.speedup = Some(0.0);
    assert!(run(&args)
        .expect_err("speedup")
        .to_string()
        .contains("--speedup"));
}

/// A tool-agent trace big enough that a bound of a quarter of its blocks spans many 1 MiB
/// segments at 64 KiB blocks, so the store's reclaimer has to work.
fn write_agent_trace(path: &Path) -> Trace {
    let mut a = ToolagentArgs::new(path);
    a.sessions = 60;
    a.system_tokens = 2048;
    a.tool_tokens = 1024;
    a.tool_output_tokens = vec![512, 2048];
    a.session_rate_per_s = 8.0;
    let reqs = toolagent(&a).expect("generates");
    write_jsonl(path, &reqs).expect("writes");
    Trace::load(path, 512).expect("loads")
}

#[test]
fn default_replay_runs_the_stores_own_bound_and_deletes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace_path = dir.path().join("agents.jsonl");
    let trace = write_agent_trace(&trace_path);
    let mut args = ReplayArgs::new(&trace_path, 0.25);
    assert_eq!(args.policy, ReplayPolicy::Store, "the default");
    args.dir = Some(dir.path().join("store"));
    args.json = Some(dir.path().join("report.json"));
    let r = run(&args).expect("replay succeeds");
    let capacity = r.capacity_blocks * r.block_bytes;
    assert!(
        capacity >= 8 * r.segment_bytes,
        "the bound must span several segments for this test to mean anything"
    );
    assert_eq!(r.policy, "store");
    assert_eq!(r.store_capacity_bytes, Some(capacity));
    assert_eq!(r.policy_sim_hit_rate, None);
    // The store bounded itself: it evicted, and what it holds never passed the bound.
    assert!(r.evicted_pages > 0, "capacity must bind");
    assert!(
        r.max_live_bytes <= capacity,
        "{} > {capacity}",
        r.max_live_bytes
    );
    assert!(
        r.max_log_bytes <= capacity + r.segment_bytes,
        "log {} past capacity {capacity} + one segment",
        r.max_log_bytes
    );
    assert!(r.store_pages * r.block_bytes <= capacity);
    // The replayer deleted nothing: every page that left the store was evicted by it.
    assert_eq!(r.blocks_deleted, 0);
    assert_eq!(r.store_pages, r.blocks_written - r.evicted_pages);
    // Every miss was offered for write-back, and the store accounts for each offer.
    assert_eq!(r.blocks_offered, r.blocks - r.hit_blocks);
    assert_eq!(
        r.blocks_offered,
        r.blocks_written + r.blocks_declined + r.blocks_unadmitted + r.blocks_existing
    );
    assert_eq!(r.bytes_written, r.blocks_written * r.block_bytes);
    let wa = (r.bytes_written + r.relocated_bytes) as f64 / r.bytes_written as f64;
    assert!((r.write_amplification - wa).abs() < 1e-12);
    assert!(r.write_amplification >= 1.0);
    // The store's own hit rate is a real figure under the ceiling, with the references beside it.
    assert!(r.hit_blocks > 0 && r.hit_rate <= r.unlimited_hit_rate);
    assert_eq!(r.blocks_read, r.hit_blocks);
    let cap = r.capacity_blocks as usize;
    assert_eq!(
        r.lru_hit_rate,
        simulate_kind(&trace, PolicyKind::Lru, cap).hit_rate
    );
    assert_eq!(
        r.belady_hit_rate,
        simulate_kind(&trace, PolicyKind::Belady, cap).hit_rate
    );
    assert_eq!(r.simulated_hit_rates.len(), PolicyKind::ALL.len());
    assert_ne!(r.best_online_policy, "belady");
    assert_eq!(
        Some(&r.best_online_hit_rate),
        r.simulated_hit_rates.get(&r.best_online_policy)
    );
    let text = std::fs::read_to_string(dir.path().join("report.json")).expect("report file");
    let parsed: ReplayReport = serde_json::from_str(&text).expect("report parses");
    assert_eq!(parsed.hit_blocks, r.hit_blocks);
    assert_eq!(parsed.policy, "store");
}
