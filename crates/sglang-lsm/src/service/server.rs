//! The node service's listener and its connections: one thread per client, each with its
//! own arena, all sharing one [`Store`].

use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::connection::{refuse, Connection};
use super::peer::{self, Access};
use crate::{Error, Result, Store};

/// How often idle connections and the accept loop look at the shutdown flag.
pub(super) const POLL_INTERVAL_MS: u16 = 200;

/// The smallest arena: a page may take half of it, and pages of 1 MiB must fit.
pub const MIN_ARENA_BYTES: usize = 2 << 20;

/// How the service runs.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The Unix socket to listen on. A stale socket file (nobody listening) is replaced.
    pub socket_path: PathBuf,
    /// Who may connect.
    pub access: Access,
    /// Size of each connection's shared arena, which bounds the bytes of one call's chunk.
    pub arena_bytes: usize,
    /// The most connections served at once; the next one is refused with a clear message.
    /// Touched arena memory is bounded by `max_clients * arena_bytes`.
    pub max_clients: usize,
    /// A request that has started must arrive whole, and its reply must be taken, within
    /// this (a deadline per request, not per read); a client that stalls longer is dropped.
    pub request_timeout_ms: u64,
    /// Mode of the socket file.
    pub socket_mode: u32,
}

impl ServerOptions {
    /// Defaults for `socket_path`: own uid only, 64 MiB arenas, 128 clients, 10 s, mode 0660.
    #[must_use]
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        Self {
            socket_path: socket_path.into(),
            access: Access::own_uid(),
            arena_bytes: 64 << 20,
            max_clients: 128,
            request_timeout_ms: 10_000,
            socket_mode: 0o660,
        }
    }
}

/// Counters of the service itself, exported next to the store's metrics.
#[derive(Default)]
pub(super) struct ServiceCounters {
    pub(super) connections_open: AtomicUsize,
    pub(super) connections_total: AtomicU64,
    pub(super) refused_total: AtomicU64,
    pub(super) protocol_errors_total: AtomicU64,
    pub(super) requests_total: AtomicU64,
}

impl ServiceCounters {
    pub(super) fn text(&self) -> String {
        let line = |name: &str, kind: &str, help: &str, v: u64| {
            format!("# HELP sglang_lsm_service_{name} {help}\n# TYPE sglang_lsm_service_{name} {kind}\nsglang_lsm_service_{name} {v}\n")
        };
        [
            line(
                "connections",
                "gauge",
                "Client connections open now.",
                self.connections_open.load(Ordering::Relaxed) as u64,
            ),
            line(
                "connections_total",
                "counter",
                "Client connections accepted.",
                self.connections_total.load(Ordering::Relaxed),
            ),
            line(
                "refused_total",
                "counter",
                "Connections refused (uid/gid, version, client bound).",
                self.refused_total.load(Ordering::Relaxed),
            ),
            line(
                "protocol_errors_total",
                "counter",
                "Connections dropped for garbage, truncated or oversized messages.",
                self.protocol_errors_total.load(Ordering::Relaxed),
            ),
            line(
                "requests_total",
                "counter",
                "Requests served.",
                self.requests_total.load(Ordering::Relaxed),
            ),
        ]
        .concat()
    }
}

/// A bound node service. [`Server::run`] serves until the shutdown flag is set.
pub struct Server {
    store: Arc<Store>,
    options: ServerOptions,
    listener: UnixListener,
    /// The bound socket file's inode, so a stop removes our socket and not a successor's.
    socket_ino: u64,
    shutdown: Arc<AtomicBool>,
    counters: Arc<ServiceCounters>,
}

impl Server {
    /// Binds the socket for `store`.
    ///
    /// # Errors
    /// Another service listens on the socket, the path holds something that is not a socket,
    /// or binding fails.
    pub fn bind(store: Arc<Store>, options: ServerOptions) -> Result<Self> {
        if options.arena_bytes < MIN_ARENA_BYTES || options.max_clients == 0 {
            return Err(Error::InvalidArgument(format!(
                "arena_bytes must be at least {MIN_ARENA_BYTES} and max_clients at least 1"
            )));
        }
        let path = &options.socket_path;
        clear_stale_socket(path)?;
        let listener = UnixListener::bind(path).map_err(|e| Error::io(path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(options.socket_mode))
            .map_err(|e| Error::io(path, e))?;
        let socket_ino = std::fs::symlink_metadata(path)
            .map_err(|e| Error::io(path, e))?
            .ino();
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            store,
            options,
            listener,
            socket_ino,
            shutdown: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(ServiceCounters::default()),
        })
    }

    /// The flag that stops [`Server::run`]; hand it to a signal handler.
    #[must_use]
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shutdown)
    }

    /// Serves until the shutdown flag is set. Then it stops listening, lets every connection
    /// finish the request it is on (each connection looks at the flag between requests, and
    /// a request has `request_timeout_ms` to arrive), closes them and removes the socket
    /// file. The store stays open (the caller closes it).
    ///
    /// # Errors
    /// The listener failed in a way that is not one client's problem.
    pub fn run(self) -> Result<()> {
        let mut handlers: Vec<JoinHandle<()>> = Vec::new();
        let path = self.options.socket_path.clone();
        while !self.shutdown.load(Ordering::Relaxed) {
            let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(POLL_INTERVAL_MS)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(Error::io(&path, e.into())),
            }
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                // EMFILE and kin are the node's problem, not a reason to stop serving others.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(u64::from(POLL_INTERVAL_MS)));
                    continue;
                }
            };
            handlers.retain(|h| !h.is_finished());
            self.admit(stream, &mut handlers);
        }
        tracing::info!(connections = handlers.len(), "node service stopping");
        // New clients get "connection refused" (they fail fast and retry) instead of waiting
        // in the backlog of a listener nobody accepts on.
        let Self {
            listener,
            socket_ino,
            ..
        } = self;
        drop(listener);
        let ours = std::fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == socket_ino);
        if ours {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove the socket file");
            }
        }
        for h in handlers {
            if h.join().is_err() {
                tracing::error!("a connection thread panicked");
            }
        }
        Ok(())
    }

    fn admit(&self, stream: UnixStream, handlers: &mut Vec<JoinHandle<()>>) {
        self.counters
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        // Refused peers never take a slot or a thread.
        let peer = peer::identity(&stream).ok();
        let refusal = match peer {
            None => Some("cannot read the peer's credentials".to_string()),
            Some(p) => self.options.access.refusal(p),
        };
        let open = self.counters.connections_open.load(Ordering::Relaxed);
        let refusal = refusal.or_else(|| {
            (open >= self.options.max_clients).then(|| {
                format!(
                    "the service serves {open} connections, its --max-clients bound; raise it \
                     or use fewer connections per client"
                )
            })
        });
        if let Some(why) = refusal {
            self.counters.refused_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(?peer, reason = %why, "connection refused");
            refuse(&stream, why);
            return;
        }
        self.counters
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        let conn = Connection::new(
            stream,
            peer,
            Arc::clone(&self.store),
            self.options.clone(),
            Arc::clone(&self.shutdown),
            Arc::clone(&self.counters),
        );
        let spawned = std::thread::Builder::new()
            .name("slsm-conn".into())
            .spawn(move || conn.serve());
        match spawned {
            Ok(h) => handlers.push(h),
            // The closure, and with it the connection's slot guard, went with the failed spawn.
            Err(e) => tracing::error!(error = %e, "cannot start a connection thread"),
        }
    }
}

/// Removes a socket file nobody listens on; refuses a live socket or a non-socket.
fn clear_stale_socket(path: &Path) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(Error::InvalidArgument(format!(
            "{} exists and is not a socket; choose another --socket path",
            path.display()
        )));
    }
    match UnixStream::connect(path) {
        // Only "nobody listens" makes it stale; EACCES and kin mean someone else's socket.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(|e| Error::io(path, e))
        }
        Ok(_) => Err(Error::InvalidArgument(format!(
            "a node service already listens on {}; stop it first or choose another --socket",
            path.display()
        ))),
        Err(e) => Err(Error::io(path, e)),
    }
}
