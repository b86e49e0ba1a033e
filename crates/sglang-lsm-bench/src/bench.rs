//! `sglang-lsm bench`, the main-job command. With no arguments it runs the side-by-side
//! comparison ([`crate::compare`]: ours, the file-per-page stores, lsm-inline and RocksDB when
//! built, then the object-count sweep, the ablations and the compression measurement) on
//! embedded defaults small enough to finish in a few minutes on a 2-core VM. Every size is a
//! flag, so the documented full-size runs use the same command.
//!
//! `--ours-only` runs our store alone ([`crate::micro`]), medians of `--repeat`: the mode the
//! README's "our store vs the device" figures come from.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::compare::{self, CompareArgs};
use crate::micro::{self, OursOnlyOptions};
use crate::units::parse_bytes;

/// Options every `bench` mode takes.
#[derive(Args, Clone, Debug)]
pub struct CommonArgs {
    /// Working directory on the disk under test (a fresh subdirectory is created and
    /// removed). Not tmpfs: the device limit uses O_DIRECT.
    #[arg(long, default_value = "bench-out")]
    pub dir: PathBuf,
    /// Page sizes.
    #[arg(long, value_delimiter = ',', default_value = "128k,1m,8m", value_parser = parse_bytes)]
    pub page_sizes: Vec<u64>,
    /// Bytes written per store and page size (and by each device-limit measurement).
    #[arg(long, default_value = "256m", value_parser = parse_bytes)]
    pub bytes: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Options of `sglang-lsm bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Our store alone: put / cold get / warm get / probe per page size against the device,
    /// medians of --repeat. Takes the store switches below; refuses the comparison's options.
    #[arg(long, conflicts_with = "CompareOptions")]
    pub ours_only: bool,
    #[command(flatten)]
    pub compare: CompareArgs,
    #[command(flatten)]
    pub ours: OursOnlyOptions,
}

/// Runs the mode asked for.
///
/// # Errors
/// As [`compare::run`] or [`micro::run`].
pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if args.ours_only {
        micro::run(&args.compare.common, &args.ours)
    } else {
        compare::run(&args.compare)
    }
}
