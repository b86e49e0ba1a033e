//! # sglang-lsm-bench
//!
//! Benchmark tooling for the sglang-lsm storage engine (issue 4's trace replay, issue 5's
//! eviction baselines). The modules form three layers, and each imports only from its own
//! layer's helpers or from layers below it (issue 12 broke an import cycle here):
//!
//! 1. **Helpers** (import nothing above them):
//!    [`units`] (byte sizes), `quantile`, [`bound`] (the store's own capacity bound: its
//!    segment size), [`device`] (the O_DIRECT device limit), [`backend`]
//!    (the stores compared), `pages` (page keys, fills, stamped page buffers), [`args`]
//!    (options every `bench` mode shares), `plot` (the embedded font), [`trace`] (Mooncake
//!    JSONL traces), [`policy`] (prefix hit-rate simulators: LRU, Belady, leaf-only),
//!    [`ttft`] (a TTFT **model**), [`gen`] (synthetic traces).
//! 2. **Benchmarks**, one module each, built on the helpers only and never on each other:
//!    [`compare`] (every store side by side: page sizes, object count), [`ablation`],
//!    [`compression`], [`micro`] (our store alone), [`scale`] (cost and memory from 100k to
//!    10M pages), [`capacity`] (the disk bound and a restart), [`adaptive`] (the controller),
//!    [`replay`] (a trace against a real [`sglang_lsm::Store`] under its own capacity
//!    bound, or a simulated policy the replayer enforces),
//!    [`service`] (the node service against the embedded store).
//! 3. **Top**: [`report`] (the whole run's results, markdown and plots; may use everything
//!    below), then [`bench`](mod@bench), the command that runs the suite and writes the report.

pub mod ablation;
pub mod adaptive;
pub mod args;
pub mod backend;
pub mod bench;
pub mod bound;
pub mod capacity;
pub mod compare;
pub mod compression;
pub mod device;
pub mod gen;
pub mod micro;
mod pages;
mod plot;
pub mod policy;
mod quantile;
pub mod replay;
pub mod report;
pub mod scale;
pub mod service;
pub mod trace;
pub mod ttft;
pub mod units;

pub use replay::{run, ReplayArgs, ReplayReport};
