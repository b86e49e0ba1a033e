//! `gen toolagent`: tool-using agent sessions.
//!
//! The model (docs/BENCHMARKS.md, "Workload generators", says the same):
//! - A session is one agent task. It starts with one of `--system-prompts` shared system
//!   prompts (`--system-tokens` each), then one of `--tool-sets` shared tool-definition blocks
//!   (`--tool-tokens` each), both picked with Zipf(1) popularity (the first is the most
//!   used), then its own user task (`--task-tokens`).
//! - Each turn is one request whose prompt is everything so far; the model answers with a
//!   tool call (`--call-tokens`, the line's `output_length`), the tool's output
//!   (`--tool-output-tokens`, one of the listed lengths, drawn uniformly) is inserted, and the
//!   next turn's prompt is the previous prompt + the call + the output. A session runs
//!   `--min-turns..=--max-turns` turns (uniform).
//! - Sessions arrive as a Poisson process (`--session-rate-per-s`); a session's next turn
//!   follows its previous one after an exponential delay of mean `--turn-gap-ms` (the tool
//!   runs and the model decodes).
//!
//! Block ids follow content: a block's id is determined by its parent's id and the exact
//! tokens it holds (which source, which offsets), so sessions with the same system prompt share
//! its full blocks, sessions with the same system prompt and tool set share the full blocks of
//! both, every full block of a turn is a prefix hit in the session's next turn, and a partial
//! last block gets a new id once the session extends it. Lines carry `client` (the session)
//! and `round` (the turn).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::ensure;
use clap::Args;

use super::{GenRequest, Rng};
use crate::trace::MOONCAKE_BLOCK_TOKENS;

/// Options of [`toolagent`].
#[derive(Args, Clone, Debug)]
pub struct ToolagentArgs {
    /// Output JSONL file.
    #[arg(long)]
    pub out: PathBuf,
    /// Agent sessions (tasks).
    #[arg(long, default_value_t = 500)]
    pub sessions: u32,
    /// Distinct system prompts the sessions share.
    #[arg(long, default_value_t = 4)]
    pub system_prompts: u32,
    /// Tokens per system prompt.
    #[arg(long, default_value_t = 6000)]
    pub system_tokens: u64,
    /// Distinct tool-definition sets the sessions share.
    #[arg(long, default_value_t = 6)]
    pub tool_sets: u32,
    /// Tokens per tool-definition set.
    #[arg(long, default_value_t = 3000)]
    pub tool_tokens: u64,
    /// Tokens of a session's own user task.
    #[arg(long, default_value_t = 400)]
    pub task_tokens: u64,
    /// Fewest turns per session.
    #[arg(long, default_value_t = 4)]
    pub min_turns: u32,
    /// Most turns per session.
    #[arg(long, default_value_t = 12)]
    pub max_turns: u32,
    /// Tokens of the model's tool call per turn (the request's output).
    #[arg(long, default_value_t = 120)]
    pub call_tokens: u64,
    /// Tool output lengths, drawn uniformly per turn, in tokens.
    #[arg(long, value_delimiter = ',', default_value = "256,1024,4096")]
    pub tool_output_tokens: Vec<u64>,
    /// Tokens per block.
    #[arg(long, default_value_t = MOONCAKE_BLOCK_TOKENS)]
    pub block_tokens: u32,
    /// Mean session arrivals per second.
    #[arg(long, default_value_t = 4.0)]
    pub session_rate_per_s: f64,
    /// Mean time from one turn of a session to its next.
    #[arg(long, default_value_t = 2000)]
    pub turn_gap_ms: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl ToolagentArgs {
    /// The defaults, writing to `out` (for callers that do not go through clap).
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            sessions: 500,
            system_prompts: 4,
            system_tokens: 6000,
            tool_sets: 6,
            tool_tokens: 3000,
            task_tokens: 400,
            min_turns: 4,
            max_turns: 12,
            call_tokens: 120,
            tool_output_tokens: vec![256, 1024, 4096],
            block_tokens: MOONCAKE_BLOCK_TOKENS,
            session_rate_per_s: 4.0,
            turn_gap_ms: 2000,
            seed: 1,
        }
    }
}

/// Where a run of tokens comes from: a shared system prompt, a shared tool set, or content
/// of one session only (its task, a call, a tool output), each with its own number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    System(u32),
    Tools(u32),
    Own(u64),
}

/// A run of `tokens` tokens from one source.
#[derive(Clone, Copy, Debug)]
struct Span {
    source: Source,
    tokens: u64,
}

/// The tokens one block holds: (source, first offset, end offset) per overlapped span.
type Content = Vec<(Source, u64, u64)>;

/// Gives each distinct (parent id, block content) one id, so equal prefixes get equal ids.
#[derive(Default)]
struct BlockIds {
    ids: HashMap<(u64, Content), u64>,
}

impl BlockIds {
    /// The block ids of a prompt made of `spans`, in order (0 is the first block's parent).
    fn of(&mut self, spans: &[Span], block_tokens: u64) -> Vec<u64> {
        let total: u64 = spans.iter().map(|s| s.tokens).sum();
        let mut out = Vec::with_capacity(total.div_ceil(block_tokens) as usize);
        let (mut span_i, mut span_start) = (0usize, 0u64);
        let mut parent = 0u64;
        let mut lo = 0u64;
        while lo < total {
            let hi = (lo + block_tokens).min(total);
            let mut content = Content::new();
            // Walk the spans overlapping [lo, hi); a span ending at or before `lo` is done.
            while span_start + spans[span_i].tokens <= lo {
                span_start += spans[span_i].tokens;
                span_i += 1;
            }
            let (mut j, mut j_start) = (span_i, span_start);
            while j < spans.len() && j_start < hi {
                let end = j_start + spans[j].tokens;
                if end > lo {
                    content.push((
                        spans[j].source,
                        lo.max(j_start) - j_start,
                        hi.min(end) - j_start,
                    ));
                }
                j_start = end;
                j += 1;
            }
            let next = self.ids.len() as u64 + 1;
            let id = *self.ids.entry((parent, content)).or_insert(next);
            out.push(id);
            parent = id;
            lo = hi;
        }
        out
    }
}

/// Index in `0..n` with probability proportional to 1/(i+1).
fn zipf(rng: &mut Rng, n: u32) -> u32 {
    let total: f64 = (1..=n).map(|i| 1.0 / f64::from(i)).sum();
    let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
    let mut acc = 0.0;
    for i in 0..n {
        acc += 1.0 / f64::from(i + 1);
        if u < acc {
            return i;
        }
    }
    n - 1
}

fn validate(a: &ToolagentArgs) -> anyhow::Result<()> {
    ensure!(a.sessions > 0, "--sessions must be at least 1");
    ensure!(
        a.system_prompts > 0 && a.tool_sets > 0,
        "--system-prompts and --tool-sets must be at least 1"
    );
    ensure!(a.block_tokens > 0, "--block-tokens must be positive");
    ensure!(
        a.system_tokens + a.tool_tokens + a.task_tokens > 0,
        "the first prompt must hold at least one token"
    );
    ensure!(
        a.min_turns >= 1 && a.min_turns <= a.max_turns,
        "need 1 <= --min-turns <= --max-turns"
    );
    ensure!(
        !a.tool_output_tokens.is_empty(),
        "give at least one --tool-output-tokens length"
    );
    ensure!(
        a.session_rate_per_s.is_finite() && a.session_rate_per_s > 0.0,
        "--session-rate-per-s must be positive"
    );
    Ok(())
}

/// Generates the tool-agent workload, in arrival order.
///
/// # Errors
/// Zero sessions, prompts, tool sets or block size, an empty first prompt, bad turn bounds,
/// no tool output lengths, or a non-positive rate.
pub fn toolagent(a: &ToolagentArgs) -> anyhow::Result<Vec<GenRequest>> {
    validate(a)?;
    let bt = u64::from(a.block_tokens);
    let mut rng = Rng(a.seed.wrapping_mul(0xD6E8_FEB8_6659_FD93) | 1);
    let mut ids = BlockIds::default();
    let mut own = 0u64;
    let mut fresh = |tokens: u64| {
        own += 1;
        Span {
            source: Source::Own(own),
            tokens,
        }
    };
    let mut out = Vec::new();
    let mut session_start = 0u64;
    for session in 0..a.sessions {
        session_start += rng.exp_ms(1000.0 / a.session_rate_per_s);
        let system = zipf(&mut rng, a.system_prompts);
        let tools = zipf(&mut rng, a.tool_sets);
        let mut spans: Vec<Span> = [
            Span {
                source: Source::System(system),
                tokens: a.system_tokens,
            },
            Span {
                source: Source::Tools(tools),
                tokens: a.tool_tokens,
            },
            fresh(a.task_tokens),
        ]
        .into_iter()
        .filter(|s| s.tokens > 0)
        .collect();
        let turns = a.min_turns + rng.below(u64::from(a.max_turns - a.min_turns) + 1) as u32;
        let mut t = session_start;
        for turn in 0..turns {
            out.push(GenRequest {
                timestamp: t,
                input_length: spans.iter().map(|s| s.tokens).sum(),
                output_length: a.call_tokens,
                hash_ids: ids.of(&spans, bt),
                phase: None,
                client: Some(session),
                round: Some(turn),
            });
            // The model's tool call and the tool's output extend the session's prefix.
            let output =
                a.tool_output_tokens[rng.below(a.tool_output_tokens.len() as u64) as usize];
            spans.extend(
                [fresh(a.call_tokens), fresh(output)]
                    .into_iter()
                    .filter(|s| s.tokens > 0),
            );
            t += rng.exp_ms(a.turn_gap_ms as f64);
        }
    }
    // Arrival order; the sort is stable, so a session's turns stay in order.
    out.sort_by_key(|r| r.timestamp);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::trace::Trace;

    fn small() -> ToolagentArgs {
        let mut a = ToolagentArgs::new("unused.jsonl");
        a.sessions = 80;
        a.seed = 5;
        a
    }

    #[test]
    fn same_seed_same_trace_other_seed_other_trace() {
        let a = small();
        assert_eq!(toolagent(&a).expect("gen"), toolagent(&a).expect("gen"));
        let mut b = small();
        b.seed = 6;
        assert_ne!(toolagent(&a).expect("gen"), toolagent(&b).expect("gen"));
    }

    #[test]
    fn each_turn_extends_its_session_by_the_call_and_a_tool_output() {
        let a = small();
        let reqs = toolagent(&a).expect("gen");
        let bt = u64::from(a.block_tokens);
        let header = a.system_tokens + a.tool_tokens + a.task_tokens;
        let mut last: HashMap<u32, &GenRequest> = HashMap::new();
        let mut turns: HashMap<u32, u32> = HashMap::new();
        for r in &reqs {
            let (s, turn) = (r.client.expect("session"), r.round.expect("turn"));
            assert_eq!(r.output_length, a.call_tokens);
            assert_eq!(r.hash_ids.len() as u64, r.input_length.div_ceil(bt));
            match last.get(&s) {
                None => {
                    assert_eq!(turn, 0);
                    assert_eq!(r.input_length, header);
                }
                Some(prev) => {
                    assert_eq!(turn, prev.round.expect("turn") + 1, "turns in order");
                    let added = r.input_length - prev.input_length - a.call_tokens;
                    assert!(a.tool_output_tokens.contains(&added), "{added}");
                    // Every block full in the previous turn is a prefix of this one.
                    let full = (prev.input_length / bt) as usize;
                    assert_eq!(r.hash_ids[..full], prev.hash_ids[..full]);
                    // A partial last block was extended: it has another id now.
                    if !prev.input_length.is_multiple_of(bt) {
                        assert_ne!(r.hash_ids[full], prev.hash_ids[full]);
                    }
                }
            }
            last.insert(s, r);
            *turns.entry(s).or_default() += 1;
        }
        assert_eq!(turns.len(), a.sessions as usize);
        assert!(turns
            .values()
            .all(|&t| (a.min_turns..=a.max_turns).contains(&t)));
        // The loader accepts it: ids prefix-chained, arrivals in time order.
        let text: String = reqs
            .iter()
            .map(|r| serde_json::to_string(r).expect("serialises") + "\n")
            .collect();
        let trace = Trace::parse(text.as_bytes(), "toolagent", a.block_tokens).expect("valid");
        assert_eq!(trace.requests.len(), reqs.len());
    }

    #[test]
    fn sessions_share_only_their_system_prompt_and_tool_set() {
        let a = small();
        let reqs = toolagent(&a).expect("gen");
        let bt = a.block_tokens as usize;
        let sys_blocks = a.system_tokens as usize / bt;
        let header_blocks = (a.system_tokens + a.tool_tokens) as usize / bt;
        let firsts: Vec<&GenRequest> = reqs.iter().filter(|r| r.round == Some(0)).collect();
        // Sessions group by system prompt (the first block) and by system prompt + tool set
        // (the header's last full block); there are a few of each, never more than asked.
        let systems: HashSet<&[u64]> = firsts.iter().map(|r| &r.hash_ids[..sys_blocks]).collect();
        let headers: HashSet<&[u64]> = firsts
            .iter()
            .map(|r| &r.hash_ids[..header_blocks])
            .collect();
        assert!(systems.len() > 1 && systems.len() <= a.system_prompts as usize);
        assert!(headers.len() > systems.len());
        assert!(headers.len() <= (a.system_prompts * a.tool_sets) as usize);
        // Zipf popularity: the most used system prompt serves more sessions than the least.
        let mut uses: HashMap<u64, usize> = HashMap::new();
        for r in &firsts {
            *uses.entry(r.hash_ids[0]).or_default() += 1;
        }
        let (most, least) = (
            uses.values().max().copied().unwrap_or(0),
            uses.values().min().copied().unwrap_or(0),
        );
        assert!(most > least, "{uses:?}");
        // Beyond the header's full blocks, no block is shared between sessions.
        let mut owner: HashMap<u64, u32> = HashMap::new();
        for r in &reqs {
            for &b in &r.hash_ids[header_blocks..] {
                let s = r.client.expect("session");
                assert_eq!(*owner.entry(b).or_insert(s), s, "block {b} shared");
            }
        }
    }

    #[test]
    fn bad_options_are_refused() {
        let mut a = small();
        a.min_turns = 5;
        a.max_turns = 4;
        assert!(toolagent(&a).is_err());
        let mut a = small();
        a.tool_output_tokens.clear();
        assert!(toolagent(&a).is_err());
        let mut a = small();
        a.system_prompts = 0;
        assert!(toolagent(&a).is_err());
    }
}
