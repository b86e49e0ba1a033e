//! Workload generators that write Mooncake-format JSONL traces for `sglang-lsm replay`.
//!
//! - [`staged`]: the SGLANG-LSM paper's staged phases. Each phase has a target prefix-hit
//!   ratio (default 0.1 → 0.9 → 0.1) and prompts drawn from 4k/8k/16k/32k/64k tokens. A
//!   request reuses the first `round(target x blocks)` blocks of an earlier prompt (so with
//!   unlimited capacity exactly those are prefix hits) and fills the rest with fresh blocks.
//!   Low-target phases are write-heavy (most blocks are new and get written back),
//!   high-target phases read-heavy (most blocks are loaded).
//! - [`multiturn`]: conversations like SGLang's `benchmark/hicache/bench_multiturn.py`:
//!   `clients` clients each run `rounds` rounds; round r's prompt is round r-1's prompt plus
//!   its answer plus a new question, so the history grows and every block that was full in
//!   the previous round is a prefix hit.
//! - [`toolagent`]: tool-using agent sessions: a few shared long system prompts and tool
//!   definitions, then each turn's tool call and tool output extend the session's prefix
//!   (the model is in [`toolagent`]'s module documentation).
//!
//! Hash ids are prefix-chained as the trace loader requires: a reused block keeps its id and
//! parent; every other block gets a new id. Each line also carries a `phase` (staged) or
//! `client`/`round` (multi-turn: conversation and round; tool agent: session and turn) field,
//! which the loader ignores.

mod toolagent;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::trace::MOONCAKE_BLOCK_TOKENS;
pub use toolagent::{toolagent, ToolagentArgs};

/// One generated request (a Mooncake trace line plus labels).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenRequest {
    pub timestamp: u64,
    pub input_length: u64,
    pub output_length: u64,
    pub hash_ids: Vec<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
}

/// `sglang-lsm gen`.
#[derive(Args, Debug)]
pub struct GenArgs {
    #[command(subcommand)]
    pub kind: GenKind,
}

#[derive(Subcommand, Debug)]
pub enum GenKind {
    /// Staged phases with target prefix-hit ratios (the paper's synthetic workload).
    Staged(StagedArgs),
    /// Multi-turn conversations whose history grows each round (bench_multiturn-like).
    Multiturn(MultiturnArgs),
    /// Tool-using agent sessions: shared system prompts and tool definitions, tool outputs
    /// between turns, each turn extending the session's prefix.
    Toolagent(ToolagentArgs),
}

/// Options of [`staged`].
#[derive(Args, Clone, Debug)]
pub struct StagedArgs {
    /// Output JSONL file.
    #[arg(long)]
    pub out: PathBuf,
    /// Target prefix-hit ratio of each phase, in order.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.9,0.1")]
    pub phases: Vec<f64>,
    /// Requests per phase.
    #[arg(long, default_value_t = 200)]
    pub requests_per_phase: usize,
    /// Prompt lengths drawn uniformly, in tokens.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "4096,8192,16384,32768,65536"
    )]
    pub prompt_tokens: Vec<u64>,
    /// Output tokens per request.
    #[arg(long, default_value_t = 256)]
    pub output_tokens: u64,
    /// Tokens per block.
    #[arg(long, default_value_t = MOONCAKE_BLOCK_TOKENS)]
    pub block_tokens: u32,
    /// Mean arrivals per second.
    #[arg(long, default_value_t = 2.0)]
    pub rate_per_s: f64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Options of [`multiturn`].
#[derive(Args, Clone, Debug)]
pub struct MultiturnArgs {
    /// Output JSONL file.
    #[arg(long)]
    pub out: PathBuf,
    /// Concurrent clients (bench_multiturn `--num-clients`).
    #[arg(long, default_value_t = 32)]
    pub clients: u32,
    /// Rounds per client (`--num-rounds`).
    #[arg(long, default_value_t = 8)]
    pub rounds: u32,
    /// First-round prompt length (`--request-length`).
    #[arg(long, default_value_t = 8000)]
    pub request_tokens: u64,
    /// New question per later round (`--sub-question-input-length`).
    #[arg(long, default_value_t = 128)]
    pub sub_question_tokens: u64,
    /// Answer length, appended to the history (`--output-length`).
    #[arg(long, default_value_t = 200)]
    pub output_tokens: u64,
    /// Tokens per block.
    #[arg(long, default_value_t = MOONCAKE_BLOCK_TOKENS)]
    pub block_tokens: u32,
    /// Mean time between a client's rounds.
    #[arg(long, default_value_t = 5000)]
    pub think_time_ms: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// xorshift64: deterministic per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Exponential inter-arrival with the given mean (Poisson arrivals).
    fn exp_ms(&mut self, mean_ms: f64) -> u64 {
        let u = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        (-u.ln() * mean_ms) as u64
    }
}

fn blocks_for(tokens: u64, block_tokens: u32) -> usize {
    tokens.div_ceil(u64::from(block_tokens)) as usize
}

/// Generates the staged-phase workload.
///
/// # Errors
/// Targets outside 0..=1, no prompt lengths, or a zero rate.
pub fn staged(a: &StagedArgs) -> anyhow::Result<Vec<GenRequest>> {
    anyhow::ensure!(
        a.phases.iter().all(|h| (0.0..=1.0).contains(h)),
        "phase targets must be within 0..=1"
    );
    anyhow::ensure!(
        !a.prompt_tokens.is_empty() && a.prompt_tokens.iter().all(|&t| t > 0),
        "give at least one positive prompt length"
    );
    anyhow::ensure!(a.block_tokens > 0, "--block-tokens must be positive");
    anyhow::ensure!(
        a.rate_per_s.is_finite() && a.rate_per_s > 0.0,
        "--rate-per-s must be positive"
    );
    let mut rng = Rng(a.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut next_id = 1u64;
    let mut out: Vec<GenRequest> = Vec::new();
    let mut t = 0u64;
    for (phase, &h) in a.phases.iter().enumerate() {
        for _ in 0..a.requests_per_phase {
            let tokens = a.prompt_tokens[rng.below(a.prompt_tokens.len() as u64) as usize];
            let n = blocks_for(tokens, a.block_tokens);
            let want = ((h * n as f64).round() as usize).min(n);
            // Sources long enough to lend `want` blocks; else the longest earlier prompt.
            let long: Vec<usize> = (0..out.len())
                .filter(|&i| out[i].hash_ids.len() >= want)
                .collect();
            let prefix: Vec<u64> = if want == 0 || out.is_empty() {
                Vec::new()
            } else if long.is_empty() {
                out.iter()
                    .max_by_key(|r| r.hash_ids.len())
                    .map(|r| r.hash_ids.clone())
                    .unwrap_or_default()
            } else {
                let src = long[rng.below(long.len() as u64) as usize];
                out[src].hash_ids[..want].to_vec()
            };
            let mut ids = prefix;
            while ids.len() < n {
                ids.push(next_id);
                next_id += 1;
            }
            t += rng.exp_ms(1000.0 / a.rate_per_s);
            out.push(GenRequest {
                timestamp: t,
                input_length: tokens,
                output_length: a.output_tokens,
                hash_ids: ids,
                phase: Some(phase as u32),
                client: None,
                round: None,
            });
        }
    }
    Ok(out)
}

/// Generates the multi-turn workload.
///
/// # Errors
/// Zero clients, rounds, block size or first prompt.
pub fn multiturn(a: &MultiturnArgs) -> anyhow::Result<Vec<GenRequest>> {
    anyhow::ensure!(a.clients > 0 && a.rounds > 0, "need clients and rounds");
    anyhow::ensure!(
        a.block_tokens > 0 && a.request_tokens > 0,
        "block and prompt sizes must be positive"
    );
    let bt = u64::from(a.block_tokens);
    let mut rng = Rng(a.seed.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) | 1);
    let mut next_id = 1u64;
    let mut out = Vec::new();
    for c in 0..a.clients {
        // Clients start spread over one think time, as bench_multiturn's ready queue does.
        let mut t = rng.below(a.think_time_ms.max(1));
        let mut prev_tokens = 0u64;
        let mut prev_ids: Vec<u64> = Vec::new();
        for r in 0..a.rounds {
            let tokens = if r == 0 {
                a.request_tokens
            } else {
                prev_tokens + a.output_tokens + a.sub_question_tokens
            };
            // Blocks that were full last round hold the same tokens now: same ids.
            let keep = ((prev_tokens / bt) as usize).min(prev_ids.len());
            let mut ids = prev_ids[..keep].to_vec();
            while ids.len() < blocks_for(tokens, a.block_tokens) {
                ids.push(next_id);
                next_id += 1;
            }
            out.push(GenRequest {
                timestamp: t,
                input_length: tokens,
                output_length: a.output_tokens,
                hash_ids: ids.clone(),
                phase: None,
                client: Some(c),
                round: Some(r),
            });
            prev_tokens = tokens;
            prev_ids = ids;
            t += a.think_time_ms / 2 + rng.below(a.think_time_ms.max(1));
        }
    }
    // Arrival order; the sort is stable, so a client's rounds stay in order.
    out.sort_by_key(|r| r.timestamp);
    Ok(out)
}

/// Unlimited-capacity prefix hit ratio per label (phase, or round for multi-turn): hits are
/// the leading blocks seen in any earlier request.
pub fn hit_ratio_by<F: Fn(&GenRequest) -> u32>(reqs: &[GenRequest], label: F) -> Vec<(u32, f64)> {
    let mut seen = std::collections::HashSet::new();
    let mut acc: std::collections::BTreeMap<u32, (u64, u64)> = Default::default();
    for r in reqs {
        let hits = r.hash_ids.iter().take_while(|b| seen.contains(*b)).count() as u64;
        let e = acc.entry(label(r)).or_default();
        e.0 += hits;
        e.1 += r.hash_ids.len() as u64;
        seen.extend(r.hash_ids.iter().copied());
    }
    acc.into_iter()
        .map(|(k, (h, n))| (k, if n == 0 { 0.0 } else { h as f64 / n as f64 }))
        .collect()
}

/// Writes requests as JSONL.
///
/// # Errors
/// The file cannot be written.
pub fn write_jsonl(path: &Path, reqs: &[GenRequest]) -> anyhow::Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    for r in reqs {
        serde_json::to_writer(&mut w, r)?;
        w.write_all(b"\n")?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `sglang-lsm gen ...`: writes the trace and prints the hit ratio it was built for.
///
/// # Errors
/// Bad options or an unwritable output file.
pub fn run(args: &GenArgs) -> anyhow::Result<ExitCode> {
    match &args.kind {
        GenKind::Staged(a) => {
            let reqs = staged(a)?;
            write_jsonl(&a.out, &reqs)?;
            println!("{} requests -> {}", reqs.len(), a.out.display());
            println!("| phase | target | prefix hit ratio (unlimited capacity) |");
            println!("|---|---|---|");
            for (p, h) in hit_ratio_by(&reqs, |r| r.phase.unwrap_or(0)) {
                let target = a.phases.get(p as usize).copied().unwrap_or(f64::NAN);
                println!("| {p} | {target:.2} | {h:.3} |");
            }
        }
        GenKind::Multiturn(a) => {
            let reqs = multiturn(a)?;
            write_jsonl(&a.out, &reqs)?;
            println!("{} requests -> {}", reqs.len(), a.out.display());
            println!("| round | prefix hit ratio (unlimited capacity) |");
            println!("|---|---|");
            for (r, h) in hit_ratio_by(&reqs, |r| r.round.unwrap_or(0)) {
                println!("| {r} | {h:.3} |");
            }
        }
        GenKind::Toolagent(a) => {
            let reqs = toolagent(a)?;
            write_jsonl(&a.out, &reqs)?;
            let blocks: usize = reqs.iter().map(|r| r.hash_ids.len()).sum();
            let distinct: std::collections::HashSet<u64> = reqs
                .iter()
                .flat_map(|r| r.hash_ids.iter().copied())
                .collect();
            println!(
                "{} requests ({} sessions, {blocks} block refs, {} distinct) -> {}",
                reqs.len(),
                a.sessions,
                distinct.len(),
                a.out.display()
            );
            println!("| turn | prefix hit ratio (unlimited capacity) |");
            println!("|---|---|");
            for (r, h) in hit_ratio_by(&reqs, |r| r.round.unwrap_or(0)) {
                println!("| {r} | {h:.3} |");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Trace;

    fn staged_args(phases: Vec<f64>) -> StagedArgs {
        StagedArgs {
            out: PathBuf::new(),
            phases,
            requests_per_phase: 200,
            prompt_tokens: vec![4096, 8192, 16384, 32768, 65536],
            output_tokens: 256,
            block_tokens: 512,
            rate_per_s: 2.0,
            seed: 7,
        }
    }

    fn to_text(reqs: &[GenRequest]) -> String {
        reqs.iter()
            .map(|r| serde_json::to_string(r).expect("serialises") + "\n")
            .collect()
    }

    #[test]
    fn staged_phases_hit_their_targets() {
        let targets = vec![0.1, 0.9, 0.1, 0.5];
        let reqs = staged(&staged_args(targets.clone())).expect("generates");
        let by_phase = hit_ratio_by(&reqs, |r| r.phase.unwrap_or(99));
        assert_eq!(by_phase.len(), targets.len());
        for ((p, h), t) in by_phase.iter().zip(&targets) {
            assert!((h - t).abs() < 0.02, "phase {p}: {h:.3} vs target {t}");
        }
        // The trace loader accepts it (prefix chaining, block counts, time order).
        let trace = Trace::parse(to_text(&reqs).as_bytes(), "staged", 512).expect("valid");
        assert_eq!(trace.requests.len(), 800);
        let lens: std::collections::HashSet<u64> =
            trace.requests.iter().map(|r| r.input_tokens).collect();
        assert_eq!(lens.len(), 5, "every prompt length appears");
    }

    #[test]
    fn staged_rejects_bad_targets() {
        assert!(staged(&staged_args(vec![1.5])).is_err());
    }

    #[test]
    fn multiturn_hits_are_the_previous_rounds_full_blocks() {
        let a = MultiturnArgs {
            out: PathBuf::new(),
            clients: 5,
            rounds: 6,
            request_tokens: 1000,
            sub_question_tokens: 100,
            output_tokens: 200,
            block_tokens: 512,
            think_time_ms: 1000,
            seed: 3,
        };
        let reqs = multiturn(&a).expect("generates");
        assert_eq!(reqs.len(), 30);
        // Prompt r = 1000 + 300 r tokens; hits = full blocks of prompt r-1.
        let mut hits = 0u64;
        let mut blocks = 0u64;
        for r in 0..6u64 {
            let tokens = 1000 + 300 * r;
            blocks += 5 * tokens.div_ceil(512);
            if r > 0 {
                hits += 5 * ((tokens - 300) / 512);
            }
        }
        let all = hit_ratio_by(&reqs, |_| 0);
        let expected = hits as f64 / blocks as f64;
        assert!(
            (all[0].1 - expected).abs() < 1e-12,
            "{} vs {expected}",
            all[0].1
        );
        // Rounds later in a conversation hit more.
        let rounds = hit_ratio_by(&reqs, |r| r.round.unwrap_or(0));
        assert_eq!(rounds[0].1, 0.0);
        assert!(rounds[5].1 > rounds[1].1);
        let trace = Trace::parse(to_text(&reqs).as_bytes(), "mt", 512).expect("valid");
        assert_eq!(trace.stats().unlimited_prefix_hits, hits);
    }
}
