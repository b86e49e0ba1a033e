//! `sglang-lsm`: benchmark, replay traces, verify and inspect a store.

mod cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sglang_lsm_bench::{bench, capacity, gen, scale, ReplayArgs};

#[derive(Parser)]
#[command(
    name = "sglang-lsm",
    version,
    about = "KV-cache disk tier for SGLang HiCache: benchmark, replay, verify, inspect"
)]
struct Cli {
    /// Emit logs as JSON lines (level via RUST_LOG, default "warn").
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main benchmark: every store side by side (ours, file-per-page baselines,
    /// lsm-inline, RocksDB if built) against the device limit measured in the same run — page
    /// sizes, object-count sweep, ablations, compression — on small defaults (a few minutes);
    /// --report DIR writes markdown and PNG plots. --ours-only: our store alone, medians of
    /// --repeat.
    #[command(visible_alias = "compare")]
    Bench(bench::BenchArgs),
    /// Controller evaluation: a shifting staged workload on adaptive vs static configurations.
    BenchAdaptive(sglang_lsm_bench::adaptive::AdaptiveArgs),
    /// Node service vs the embedded store in one run: put and cold get at 128 KiB and 1 MiB
    /// pages, probe round trips, N client processes against the device, and prefix sharing
    /// of two replicas (one shared store vs two private halves).
    BenchService(sglang_lsm_bench::service::ServiceBenchArgs),
    /// One client process of `bench-service` (started by it).
    #[command(hide = true)]
    BenchServiceWorker(sglang_lsm_bench::service::WorkerArgs),
    /// Scale sweep: per-operation cost and RSS from 100k to 10M records.
    BenchScale(scale::ScaleArgs),
    /// Capacity bound: writes 10x the capacity in prefix chains with a hot set, restarts
    /// halfway, checks the disk never exceeds the bound, contents survive, no orphans; exit 1
    /// if a check fails. --report DIR draws disk bytes vs bytes written.
    BenchCapacity(capacity::CapacityArgs),
    /// Generate a workload trace (staged phases, multi-turn conversations or tool-using agent
    /// sessions) for `replay`.
    Gen(gen::GenArgs),
    /// Replay a Mooncake-format trace against a real store: by default under the store's own
    /// capacity bound and eviction (--policy store), or a simulated policy the replayer
    /// enforces (--policy lru|belady|leaf-lru|prefix); LRU and Belady as references.
    Replay(ReplayArgs),
    /// Read every live page, check its checksum, print `verified=N corrupt=M` and every
    /// quarantined segment (exit 1 if M > 0 or a segment is quarantined).
    Verify {
        /// Store directory.
        dir: PathBuf,
    },
    /// The node service: owns one store and serves every SGLang process on the node over a
    /// Unix socket (clients: `sglang_lsm.Client`, HiCacheLSM's `"server"` option). Runs in
    /// the foreground; SIGTERM or SIGINT closes it cleanly.
    Serve(cmd::serve::ServeArgs),
    /// Print store statistics, of a store directory or of a running node service.
    Stats {
        /// Store directory (opens the store: it must not be in use).
        #[arg(required_unless_present = "socket")]
        dir: Option<PathBuf>,
        /// A running node service's socket instead of a directory.
        #[arg(long, conflicts_with = "dir")]
        socket: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Print Prometheus text exposition (for a textfile collector).
        #[arg(long)]
        prometheus: bool,
    },
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour codes only for a terminal: a service's stderr usually goes to a file or journald.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::BenchScale(args) => scale::run(&args),
        Command::BenchService(args) => sglang_lsm_bench::service::run(&args),
        Command::BenchServiceWorker(args) => sglang_lsm_bench::service::worker(&args),
        Command::BenchAdaptive(args) => sglang_lsm_bench::adaptive::run(&args),
        Command::BenchCapacity(args) => capacity::run(&args),
        Command::Gen(args) => gen::run(&args),
        Command::Replay(args) => cmd::replay(&args),
        Command::Verify { dir } => cmd::verify(&dir),
        Command::Serve(args) => cmd::serve::serve(&args),
        Command::Stats {
            dir,
            socket,
            json,
            prometheus,
        } => match (dir, socket) {
            (_, Some(socket)) => cmd::service_stats(&socket, json, prometheus),
            (Some(dir), None) => cmd::stats(&dir, json, prometheus),
            (None, None) => Err(anyhow::anyhow!("give a store DIR or --socket PATH")),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
