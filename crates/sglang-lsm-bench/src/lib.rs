//! # sglang-lsm-bench
//!
//! Benchmark tooling for the sglang-lsm storage engine (issue 4's trace replay, issue 5's
//! eviction baselines):
//!
//! - [`trace`]: a loader for Mooncake-format JSONL request traces, with per-line errors and
//!   summary statistics.
//! - [`policy`]: capacity-bounded cache simulators over block ids that measure the *prefix* hit
//!   rate SGLang sees (a block only counts if every block before it in the request hit): plain
//!   LRU, offline Belady, and prefix-aware leaf-only policies.
//! - [`ttft`]: a TTFT **model** (load time of hit pages + prefill time of missed tokens) with
//!   documented model profiles, and SGLang's prefetch-timeout rule for "timely" hits.
//! - [`replay`]: replays a trace against a real [`sglang_lsm::Store`], enforcing the capacity
//!   with a chosen policy, and reports measured I/O next to the simulated baselines.
//! - [`bench`]: the `bench` command: [`compare`] (every store side by side, [`ablation`]s,
//!   [`compression`]) or, with `--ours-only`, [`micro`] (our store alone) — each against the
//!   device limit ([`device`]) measured in the same run; [`scale`]: cost and memory from 100k
//!   to 10M pages; [`capacity`]: the disk bound and a restart in a 10x-capacity write run.

pub mod ablation;
pub mod adaptive;
pub mod backend;
pub mod bench;
pub mod capacity;
pub mod compare;
pub mod compression;
pub mod device;
pub mod gen;
pub mod micro;
pub mod policy;
mod quantile;
pub mod replay;
pub mod report;
pub mod scale;
pub mod trace;
pub mod ttft;
pub mod units;

pub use replay::{run, ReplayArgs, ReplayReport};
