//! Mooncake-format request traces.
//!
//! One JSON object per line:
//! `{"timestamp": ms, "input_length": tokens, "output_length": tokens, "hash_ids": [...]}`.
//! `hash_ids[i]` names the i-th block of `block_tokens` prompt tokens, and ids are
//! prefix-chained: an id names the whole prefix up to and including its block, so it always
//! follows the same parent id. The loader checks that, because every simulator and the replayer
//! rely on it to know a block's parent.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A block id from the trace's `hash_ids`.
pub type BlockId = u64;

/// Block size of the published Mooncake traces, in tokens.
pub const MOONCAKE_BLOCK_TOKENS: u32 = 512;

/// The Mooncake trace shipped with the repository (zstd-compressed, Apache-2.0, its LICENSE
/// beside it), relative to the repository root. Commands run from the root default to it.
pub const BUNDLED_TRACE: &str = "data/traces/mooncake_synthetic_trace.jsonl.zst";

/// [`BUNDLED_TRACE`] as an absolute path in this source tree, for tests and examples that may
/// run from any working directory.
pub fn bundled_trace_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(BUNDLED_TRACE)
}

/// One request of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Arrival time since the start of the trace.
    pub timestamp_ms: u64,
    /// Prompt length.
    pub input_tokens: u64,
    /// Generated length (not used by the cache, kept for reports).
    pub output_tokens: u64,
    /// The prompt's blocks in order; `blocks[i - 1]` is the parent of `blocks[i]`.
    pub blocks: Vec<BlockId>,
}

impl Request {
    /// Tokens held by block `i` of this request: full blocks, except a partial last block.
    pub fn block_tokens_at(&self, i: usize, block_tokens: u32) -> u64 {
        let start = i as u64 * u64::from(block_tokens);
        self.input_tokens
            .saturating_sub(start)
            .min(u64::from(block_tokens))
    }

    /// Tokens held by the first `n` blocks.
    pub fn prefix_tokens(&self, n: usize, block_tokens: u32) -> u64 {
        (n as u64 * u64::from(block_tokens)).min(self.input_tokens)
    }
}

/// A parsed trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// Requests in file order (arrival order).
    pub requests: Vec<Request>,
    /// Tokens per block the trace was validated against.
    pub block_tokens: u32,
}

/// Counts that characterise a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStats {
    pub requests: u64,
    /// Block references: the sum of `hash_ids` lengths.
    pub block_refs: u64,
    pub distinct_blocks: u64,
    pub input_tokens: u64,
    /// Block references that are prefix hits with unlimited capacity (every block seen before).
    pub unlimited_prefix_hits: u64,
    /// Span between the first and last arrival.
    pub duration_ms: u64,
}

impl TraceStats {
    /// Prefix hit rate with unlimited capacity: the ceiling for any capacity-bounded policy.
    pub fn unlimited_hit_rate(&self) -> f64 {
        ratio(self.unlimited_prefix_hits, self.block_refs)
    }
}

pub(crate) fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// What is wrong with a trace, with the 1-based line number where it was found.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{source_name}:{line}: read failed: {err}")]
    Read {
        source_name: String,
        line: usize,
        err: std::io::Error,
    },
    #[error("{source_name}:{line}: not a Mooncake request object: {msg}")]
    Json {
        source_name: String,
        line: usize,
        msg: String,
    },
    #[error("{source_name}:{line}: {msg}")]
    Invalid {
        source_name: String,
        line: usize,
        msg: String,
    },
    #[error("{source_name}: the trace holds no requests")]
    Empty { source_name: String },
    #[error("block_tokens must be at least 1")]
    BadBlockTokens,
}

/// The raw line; unknown fields are ignored so traces with extra annotations still load.
#[derive(Deserialize)]
struct RawRequest {
    timestamp: u64,
    input_length: u64,
    #[serde(default)]
    output_length: u64,
    hash_ids: Vec<BlockId>,
}

impl Trace {
    /// Loads a trace file; a name ending in `.zst` is decompressed as it is read.
    ///
    /// # Errors
    /// [`TraceError`] naming the file and line of the first problem.
    pub fn load(path: impl AsRef<Path>, block_tokens: u32) -> Result<Self, TraceError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| TraceError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let name = path.display().to_string();
        if path.extension().is_some_and(|e| e == "zst") {
            let decoder =
                zstd::stream::read::Decoder::new(file).map_err(|source| TraceError::Open {
                    path: name.clone(),
                    source,
                })?;
            return Self::parse(BufReader::new(decoder), &name, block_tokens);
        }
        Self::parse(BufReader::new(file), &name, block_tokens)
    }

    /// Parses a trace from any reader; `source_name` prefixes error messages. Blank lines are
    /// skipped (a trailing newline is common), everything else must be a valid request.
    ///
    /// # Errors
    /// [`TraceError`] with the 1-based line number and what is wrong.
    pub fn parse(
        reader: impl BufRead,
        source_name: &str,
        block_tokens: u32,
    ) -> Result<Self, TraceError> {
        if block_tokens == 0 {
            return Err(TraceError::BadBlockTokens);
        }
        let invalid = |line: usize, msg: String| TraceError::Invalid {
            source_name: source_name.to_string(),
            line,
            msg,
        };
        let mut requests = Vec::new();
        // Parent of every block seen so far (None for a first block): the prefix-chain check.
        let mut parent_of: HashMap<BlockId, Option<BlockId>> = HashMap::new();
        let mut last_ts = 0u64;
        for (idx, line) in reader.lines().enumerate() {
            let line_no = idx + 1;
            let line = line.map_err(|err| TraceError::Read {
                source_name: source_name.to_string(),
                line: line_no,
                err,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let raw: RawRequest = serde_json::from_str(&line).map_err(|e| TraceError::Json {
                source_name: source_name.to_string(),
                line: line_no,
                msg: e.to_string(),
            })?;
            let want = raw.input_length.div_ceil(u64::from(block_tokens));
            if raw.hash_ids.len() as u64 != want {
                return Err(invalid(
                    line_no,
                    format!(
                        "input_length {} needs {want} blocks of {block_tokens} tokens but hash_ids has {}",
                        raw.input_length,
                        raw.hash_ids.len()
                    ),
                ));
            }
            if raw.timestamp < last_ts {
                return Err(invalid(
                    line_no,
                    format!(
                        "timestamp {} is earlier than the previous request's {last_ts}; requests must be in arrival order",
                        raw.timestamp
                    ),
                ));
            }
            last_ts = raw.timestamp;
            let mut seen_here = HashSet::with_capacity(raw.hash_ids.len());
            for (i, &b) in raw.hash_ids.iter().enumerate() {
                if !seen_here.insert(b) {
                    return Err(invalid(
                        line_no,
                        format!("hash id {b} appears twice; ids must name distinct prefixes"),
                    ));
                }
                let parent = i.checked_sub(1).map(|p| raw.hash_ids[p]);
                match parent_of.get(&b) {
                    Some(&known) if known != parent => {
                        return Err(invalid(
                            line_no,
                            format!(
                                "hash id {b} follows {} here but {} earlier; ids are not prefix-chained",
                                show_parent(parent),
                                show_parent(known)
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        parent_of.insert(b, parent);
                    }
                }
            }
            requests.push(Request {
                timestamp_ms: raw.timestamp,
                input_tokens: raw.input_length,
                output_tokens: raw.output_length,
                blocks: raw.hash_ids,
            });
        }
        if requests.is_empty() {
            return Err(TraceError::Empty {
                source_name: source_name.to_string(),
            });
        }
        Ok(Self {
            requests,
            block_tokens,
        })
    }

    /// Summary counts, in one pass.
    pub fn stats(&self) -> TraceStats {
        let mut seen: HashSet<BlockId> = HashSet::new();
        let mut refs = 0u64;
        let mut hits = 0u64;
        let mut tokens = 0u64;
        for r in &self.requests {
            refs += r.blocks.len() as u64;
            tokens += r.input_tokens;
            hits += r.blocks.iter().take_while(|b| seen.contains(b)).count() as u64;
            seen.extend(r.blocks.iter().copied());
        }
        let first = self.requests.first().map_or(0, |r| r.timestamp_ms);
        let last = self.requests.last().map_or(0, |r| r.timestamp_ms);
        TraceStats {
            requests: self.requests.len() as u64,
            block_refs: refs,
            distinct_blocks: seen.len() as u64,
            input_tokens: tokens,
            unlimited_prefix_hits: hits,
            duration_ms: last - first,
        }
    }

    /// Cache capacity in blocks for a fraction of the distinct blocks, rounded to nearest (the
    /// convention that reproduces REFERENCE.md §6), at least one block.
    pub fn capacity_blocks(&self, capacity_frac: f64) -> usize {
        let distinct = self.stats().distinct_blocks as f64;
        ((capacity_frac * distinct).round() as usize).max(1)
    }
}

fn show_parent(p: Option<BlockId>) -> String {
    p.map_or_else(|| "nothing (first block)".to_string(), |p| p.to_string())
}

#[cfg(test)]
pub(crate) mod fixture {
    use super::Trace;

    /// A small hand-made trace with shared prefixes, a conversation that grows, and one-off
    /// requests; 4-token blocks keep the lines short.
    pub const SMALL: &str = r#"{"timestamp": 0, "input_length": 12, "output_length": 3, "hash_ids": [1, 2, 3]}
{"timestamp": 5, "input_length": 8, "output_length": 1, "hash_ids": [10, 11]}
{"timestamp": 9, "input_length": 16, "output_length": 2, "hash_ids": [1, 2, 3, 4]}
{"timestamp": 12, "input_length": 7, "output_length": 4, "hash_ids": [20, 21]}
{"timestamp": 20, "input_length": 6, "output_length": 1, "hash_ids": [1, 5]}
{"timestamp": 21, "input_length": 20, "output_length": 2, "hash_ids": [1, 2, 3, 4, 6]}

{"timestamp": 30, "input_length": 8, "output_length": 1, "hash_ids": [10, 11]}
"#;

    pub const SMALL_BLOCK_TOKENS: u32 = 4;

    pub fn small() -> Trace {
        Trace::parse(SMALL.as_bytes(), "fixture", SMALL_BLOCK_TOKENS).expect("fixture parses")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        Trace::parse(text.as_bytes(), "t.jsonl", 4)
            .expect_err("must be rejected")
            .to_string()
    }

    #[test]
    fn fixture_stats_are_hand_counted() {
        let t = fixture::small();
        let s = t.stats();
        assert_eq!(s.requests, 7);
        assert_eq!(s.block_refs, 3 + 2 + 4 + 2 + 2 + 5 + 2);
        // 1,2,3,10,11,4,20,21,5,6
        assert_eq!(s.distinct_blocks, 10);
        // req3: 1,2,3 ; req5: 1 ; req6: 1,2,3,4 ; req7: 10,11
        assert_eq!(s.unlimited_prefix_hits, 3 + 1 + 4 + 2);
        assert_eq!(s.duration_ms, 30);
        assert_eq!(s.input_tokens, 12 + 8 + 16 + 7 + 6 + 20 + 8);
    }

    #[test]
    fn partial_last_block_tokens() {
        let t = fixture::small();
        let r = &t.requests[3]; // 7 tokens in 2 blocks of 4
        assert_eq!(r.block_tokens_at(0, 4), 4);
        assert_eq!(r.block_tokens_at(1, 4), 3);
        assert_eq!(r.prefix_tokens(2, 4), 7);
        assert_eq!(r.prefix_tokens(1, 4), 4);
    }

    #[test]
    fn bad_json_names_the_line() {
        let e = parse_err("{\"timestamp\": 0, \"input_length\": 4, \"hash_ids\": [1]}\n{oops}\n");
        assert!(
            e.starts_with("t.jsonl:2: not a Mooncake request object"),
            "{e}"
        );
    }

    #[test]
    fn missing_field_names_the_line_and_field() {
        let e = parse_err("{\"timestamp\": 0, \"input_length\": 4}\n");
        assert!(e.contains("t.jsonl:1:") && e.contains("hash_ids"), "{e}");
    }

    #[test]
    fn negative_or_fractional_ids_are_rejected() {
        let e = parse_err("{\"timestamp\": 0, \"input_length\": 4, \"hash_ids\": [-1]}\n");
        assert!(e.contains("t.jsonl:1:"), "{e}");
    }

    #[test]
    fn block_count_must_match_input_length() {
        let e = parse_err("{\"timestamp\": 0, \"input_length\": 9, \"hash_ids\": [1, 2]}\n");
        assert!(
            e.contains("t.jsonl:1: input_length 9 needs 3 blocks of 4 tokens but hash_ids has 2"),
            "{e}"
        );
    }

    #[test]
    fn timestamps_must_not_go_back() {
        let e = parse_err(
            "{\"timestamp\": 5, \"input_length\": 4, \"hash_ids\": [1]}\n{\"timestamp\": 4, \"input_length\": 4, \"hash_ids\": [2]}\n",
        );
        assert!(e.contains("t.jsonl:2: timestamp 4 is earlier"), "{e}");
    }

    #[test]
    fn ids_must_be_prefix_chained() {
        let e = parse_err(
            "{\"timestamp\": 0, \"input_length\": 8, \"hash_ids\": [1, 2]}\n{\"timestamp\": 1, \"input_length\": 8, \"hash_ids\": [3, 2]}\n",
        );
        assert!(
            e.contains("t.jsonl:2: hash id 2 follows 3 here but 1 earlier"),
            "{e}"
        );
        let e = parse_err("{\"timestamp\": 0, \"input_length\": 8, \"hash_ids\": [1, 1]}\n");
        assert!(e.contains("hash id 1 appears twice"), "{e}");
    }

    #[test]
    fn empty_trace_is_an_error() {
        assert!(parse_err("\n\n").contains("holds no requests"));
    }

    #[test]
    fn missing_file_is_an_error_with_the_path() {
        let e = Trace::load("/nonexistent/trace.jsonl", 512).expect_err("no such file");
        assert!(e.to_string().contains("/nonexistent/trace.jsonl"));
    }

    #[test]
    fn zst_file_loads_like_the_plain_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.jsonl.zst");
        let packed = zstd::encode_all(fixture::SMALL.as_bytes(), 3).expect("compress");
        std::fs::write(&path, packed).expect("write");
        let t = Trace::load(&path, fixture::SMALL_BLOCK_TOKENS).expect("loads");
        assert_eq!(t.requests, fixture::small().requests);
    }

    #[test]
    fn damaged_zst_file_is_an_error_with_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.jsonl.zst");
        let mut packed = zstd::encode_all(fixture::SMALL.as_bytes(), 3).expect("compress");
        packed.truncate(packed.len() / 2);
        std::fs::write(&path, packed).expect("write");
        let e = Trace::load(&path, fixture::SMALL_BLOCK_TOKENS).expect_err("truncated");
        assert!(e.to_string().contains("bad.jsonl.zst"), "{e}");
    }

    #[test]
    fn capacity_rounds_to_nearest_and_is_at_least_one() {
        let t = fixture::small(); // 10 distinct blocks
        assert_eq!(t.capacity_blocks(0.25), 3); // 2.5 rounds away from zero
        assert_eq!(t.capacity_blocks(0.24), 2);
        assert_eq!(t.capacity_blocks(0.0), 1);
    }
}
