//! `sglang-lsm serve`: the node service, one store shared by every SGLang process on a node.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use sglang_lsm::service::peer::Access;
use sglang_lsm::{Server, ServerOptions, Store, StoreConfig};
use sglang_lsm_bench::units::{fmt_bytes, parse_bytes};

/// Options of `sglang-lsm serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Store directory (created if missing); the service holds its lock while it runs.
    #[arg(long)]
    pub dir: PathBuf,
    /// Unix socket clients connect to (SGLang's extra_config `"server"`). Put it in a volume
    /// shared with the clients' containers.
    #[arg(long)]
    pub socket: PathBuf,
    /// Store configuration: a JSON object of engine options (durability, quotas, namespaces,
    /// min_free_bytes, …), as the Python `Store` takes them.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The one capacity bound for every client, e.g. 500g; overrides the config's
    /// capacity_bytes.
    #[arg(long, value_parser = parse_bytes)]
    pub capacity: Option<u64>,
    /// Allowed client uid (repeatable). Default: the service's own uid only.
    #[arg(long = "allow-uid")]
    pub allow_uid: Vec<u32>,
    /// Allowed client primary gid (repeatable).
    #[arg(long = "allow-gid")]
    pub allow_gid: Vec<u32>,
    /// Shared arena per connection, MiB (at least 2): a page may take at most half of it.
    #[arg(long, default_value_t = 64)]
    pub arena_mib: usize,
    /// Connections served at once; touched arena memory stays under max_clients × arena.
    #[arg(long, default_value_t = 128)]
    pub max_clients: usize,
    /// A started request must arrive, and its reply be taken, within this.
    #[arg(long, default_value_t = 10_000)]
    pub request_timeout_ms: u64,
}

fn store_config(args: &ServeArgs) -> anyhow::Result<StoreConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let json = std::fs::read_to_string(path)
                .with_context(|| format!("reading --config {}", path.display()))?;
            StoreConfig::from_json(&json).with_context(|| {
                format!("--config {} is not a store configuration", path.display())
            })?
        }
        None => StoreConfig::default(),
    };
    if args.capacity.is_some() {
        config.capacity_bytes = args.capacity;
    }
    config.validate().context("store configuration")?;
    Ok(config)
}

/// Runs the service in the foreground until SIGTERM or SIGINT, then closes cleanly.
pub fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let config = store_config(args)?;
    let capacity = config.capacity_bytes;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating store directory {}", args.dir.display()))?;
    let store = Arc::new(
        Store::open(&args.dir, config)
            .with_context(|| format!("opening store {}", args.dir.display()))?,
    );
    let mut options = ServerOptions::new(&args.socket);
    if !args.allow_uid.is_empty() || !args.allow_gid.is_empty() {
        let mut access = Access {
            uids: args.allow_uid.clone(),
            gids: args.allow_gid.clone(),
        };
        // The service's own user may always reach it (operators run `stats` as that user).
        access.uids.extend(Access::own_uid().uids);
        options.access = access;
    }
    options.arena_bytes = args
        .arena_mib
        .checked_mul(1 << 20)
        .context("--arena-mib is too large")?;
    options.max_clients = args.max_clients;
    options.request_timeout_ms = args.request_timeout_ms;
    let server = Server::bind(Arc::clone(&store), options.clone())
        .with_context(|| format!("listening on {}", args.socket.display()))?;
    let stop = server.shutdown_flag();
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    tracing::info!(
        dir = %args.dir.display(),
        socket = %args.socket.display(),
        capacity = %capacity.map_or("unbounded".to_string(), fmt_bytes),
        allow_uids = ?options.access.uids,
        allow_gids = ?options.access.gids,
        arena_mib = args.arena_mib,
        max_clients = args.max_clients,
        "node service ready"
    );
    // Operators and scripts wait for this line; logs may be filtered to warnings.
    eprintln!("sglang-lsm serve: ready on {}", args.socket.display());
    server.run().context("serving")?;
    store.flush().context("flushing the store on shutdown")?;
    drop(store);
    tracing::info!("node service stopped");
    eprintln!("sglang-lsm serve: stopped");
    Ok(ExitCode::SUCCESS)
}
