//! The node service's listener and its connections: one thread per client, each with its
//! own arena, all sharing one [`Store`].

use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::arena::Arena;
use super::peer::{self, Access, PeerIdentity};
use super::wire::{self, FrameError, Request, Response, WireError};
use super::{MAGIC, PROTOCOL_VERSION};
use crate::{Error, Result, Store};

/// A hello is a few bytes; a peer not yet known to be a client gets no larger allocation.
const MAX_HELLO_BYTES: usize = 256;

/// Requests are keys and extents; the buffer holds a usual one whole.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// How often idle connections and the accept loop look at the shutdown flag.
const POLL_INTERVAL_MS: u16 = 200;

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
    /// this; a client that stalls longer is dropped.
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
struct ServiceCounters {
    connections_open: AtomicUsize,
    connections_total: AtomicU64,
    refused_total: AtomicU64,
    protocol_errors_total: AtomicU64,
    requests_total: AtomicU64,
}

impl ServiceCounters {
    fn text(&self) -> String {
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
        if options.arena_bytes < super::EXTENT_ALIGN_BYTES as usize || options.max_clients == 0 {
            return Err(Error::InvalidArgument(format!(
                "arena_bytes must be at least {} and max_clients at least 1",
                super::EXTENT_ALIGN_BYTES
            )));
        }
        let path = &options.socket_path;
        clear_stale_socket(path)?;
        let listener = UnixListener::bind(path).map_err(|e| Error::io(path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(options.socket_mode))
            .map_err(|e| Error::io(path, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            store,
            options,
            listener,
            shutdown: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(ServiceCounters::default()),
        })
    }

    /// The flag that stops [`Server::run`]; hand it to a signal handler.
    #[must_use]
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shutdown)
    }

    /// Serves until the shutdown flag is set, then lets every connection finish its request,
    /// closes them and removes the socket file. The store stays open (the caller closes it).
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
        for h in handlers {
            if h.join().is_err() {
                tracing::error!("a connection thread panicked");
            }
        }
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the socket file");
        }
        Ok(())
    }

    fn admit(&self, stream: UnixStream, handlers: &mut Vec<JoinHandle<()>>) {
        self.counters
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        let open = self.counters.connections_open.load(Ordering::Relaxed);
        if open >= self.options.max_clients {
            self.counters.refused_total.fetch_add(1, Ordering::Relaxed);
            let why = format!(
                "the service serves {open} connections, its --max-clients bound; raise it or \
                 use fewer connections per client"
            );
            tracing::warn!(reason = %why, "connection refused");
            refuse(&stream, why);
            return;
        }
        self.counters
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        let conn = Connection {
            stream,
            store: Arc::clone(&self.store),
            options: self.options.clone(),
            shutdown: Arc::clone(&self.shutdown),
            counters: Arc::clone(&self.counters),
        };
        let spawned = std::thread::Builder::new()
            .name("slsm-conn".into())
            .spawn(move || conn.serve());
        match spawned {
            Ok(h) => handlers.push(h),
            Err(e) => {
                // The closure (and the stream) is gone with the failed spawn; count it closed.
                self.counters
                    .connections_open
                    .fetch_sub(1, Ordering::Relaxed);
                tracing::error!(error = %e, "cannot start a connection thread");
            }
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
    if UnixStream::connect(path).is_ok() {
        return Err(Error::InvalidArgument(format!(
            "a node service already listens on {}; stop it first or choose another --socket",
            path.display()
        )));
    }
    std::fs::remove_file(path).map_err(|e| Error::io(path, e))
}

/// Best effort: tells a refused peer why, then drops it. A hello still unread is drained
/// first (briefly), so the close does not turn into ECONNRESET before the peer reads why.
fn refuse(stream: &UnixStream, why: String) {
    let mut s = stream;
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = wire::write_frame(&mut s, &Response::Error(WireError::Refused(why)));
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; MAX_HELLO_BYTES + 4];
    let _ = std::io::Read::read(&mut s, &mut sink);
}

/// One client connection, served on its own thread.
struct Connection {
    stream: UnixStream,
    store: Arc<Store>,
    options: ServerOptions,
    shutdown: Arc<AtomicBool>,
    counters: Arc<ServiceCounters>,
}

impl Connection {
    fn serve(self) {
        let peer = peer::identity(&self.stream).ok();
        match self.handshake(peer) {
            Ok(arena) => {
                tracing::debug!(?peer, "client connected");
                self.serve_requests(&arena, peer);
            }
            Err(why) => {
                tracing::warn!(?peer, reason = %why, "handshake failed; connection dropped")
            }
        }
        self.counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.options.request_timeout_ms.max(1))
    }

    fn handshake(&self, peer: Option<PeerIdentity>) -> std::result::Result<Arena, String> {
        let timeout = Some(self.timeout());
        self.stream
            .set_read_timeout(timeout)
            .map_err(|e| e.to_string())?;
        self.stream
            .set_write_timeout(timeout)
            .map_err(|e| e.to_string())?;
        let refused = |why: String| {
            self.counters.refused_total.fetch_add(1, Ordering::Relaxed);
            refuse(&self.stream, why.clone());
            why
        };
        // Read the hello before any refusal: closing a Unix socket with unread data makes
        // the peer's read fail with ECONNRESET, and it would never see why it was refused.
        let hello = wire::read_len(&mut &self.stream).and_then(|len| {
            if len > MAX_HELLO_BYTES {
                return Err(FrameError::TooLong {
                    len_bytes: len,
                    max_bytes: MAX_HELLO_BYTES,
                });
            }
            wire::read_body::<Request>(&mut &self.stream, len)
        });
        let Some(peer) = peer else {
            return Err(refused("cannot read the peer's credentials".into()));
        };
        if let Some(why) = self.options.access.refusal(peer) {
            return Err(refused(why));
        }
        match hello {
            Ok(Request::Hello { magic, version })
                if magic == MAGIC && version == PROTOCOL_VERSION => {}
            Ok(Request::Hello { magic, version }) if magic == MAGIC => {
                return Err(refused(format!(
                    "client speaks protocol v{version}, this service v{PROTOCOL_VERSION}; \
                     install the same sglang-lsm release on both sides"
                )))
            }
            Ok(_) | Err(FrameError::Decode(_) | FrameError::TooLong { .. }) => {
                self.counters
                    .protocol_errors_total
                    .fetch_add(1, Ordering::Relaxed);
                return Err(refused(
                    "the first message is not an sglang-lsm hello".into(),
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
        let arena = Arena::create(self.options.arena_bytes).map_err(|e| e.to_string())?;
        let welcome = Response::Welcome {
            version: PROTOCOL_VERSION,
            arena_bytes: arena.len_bytes() as u64,
            service_pid: std::process::id(),
        };
        let frame = wire::encode(&welcome).map_err(|e| e.to_string())?;
        peer::send_with_fd(&self.stream, &frame, arena.fd()).map_err(|e| e.to_string())?;
        Ok(arena)
    }

    fn serve_requests(&self, arena: &Arena, peer: Option<PeerIdentity>) {
        // Buffered, so a request costs one `read` however it is framed.
        let mut reader = std::io::BufReader::with_capacity(READ_BUFFER_BYTES, &self.stream);
        loop {
            // Idle clients are normal; wait in short slices so a shutdown is seen promptly.
            if reader.buffer().is_empty() {
                let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(POLL_INTERVAL_MS)) {
                    Ok(0) => {
                        if self.shutdown.load(Ordering::Relaxed) {
                            return;
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(nix::Error::EINTR) => continue,
                    Err(e) => {
                        tracing::warn!(?peer, error = %e, "poll failed; connection dropped");
                        return;
                    }
                }
            }
            let request = match wire::read_frame::<Request>(&mut reader) {
                Ok(r) => r,
                Err(FrameError::Closed) => return,
                Err(e) => {
                    if !matches!(e, FrameError::Io(_)) {
                        self.counters
                            .protocol_errors_total
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(?peer, error = %e, "bad or stalled request; connection dropped");
                    return;
                }
            };
            self.counters.requests_total.fetch_add(1, Ordering::Relaxed);
            let response = match self.handle(arena, request) {
                Ok(r) => r,
                Err(e) => Response::Error(WireError::from(&e)),
            };
            if let Err(e) = wire::write_frame(&mut &self.stream, &response) {
                tracing::warn!(?peer, error = %e, "cannot reply; connection dropped");
                return;
            }
        }
    }

    fn handle(&self, arena: &Arena, request: Request) -> Result<Response> {
        let store = &*self.store;
        Ok(match request {
            Request::Hello { .. } => {
                return Err(Error::InvalidArgument(
                    "hello sent twice on one connection".into(),
                ))
            }
            Request::Put {
                keys,
                prefix,
                pages,
            } => {
                check_count(keys.len(), pages.len())?;
                arena.check(&pages, false)?;
                // SAFETY: extents checked; the arena is only read during the call.
                let values: Vec<Vec<&[u8]>> = pages
                    .iter()
                    .map(|&e| vec![unsafe { arena.bytes(e) }])
                    .collect();
                Response::Flags(store.put_batch(&keys.slices()?, &values, &prefix.slices()?)?)
            }
            Request::Get { keys, pages } => {
                check_count(keys.len(), pages.len())?;
                arena.check(&pages, true)?;
                // SAFETY: extents checked in bounds and pairwise disjoint.
                let mut buffers: Vec<Vec<&mut [u8]>> = pages
                    .iter()
                    .map(|&e| vec![unsafe { arena.bytes_mut(e) }])
                    .collect();
                Response::Flags(store.get_batch(&keys.slices()?, &mut buffers)?)
            }
            Request::GetOne { key } => match store.get(&key)? {
                None => Response::Value(None),
                Some(v) if v.len() > arena.len_bytes() => {
                    return Err(Error::InvalidArgument(format!(
                        "page of {} bytes exceeds the service's {}-byte arena; start the \
                         service with a larger --arena-mib",
                        v.len(),
                        arena.len_bytes()
                    )))
                }
                Some(v) => {
                    let e = wire::Extent {
                        offset: 0,
                        len: v.len() as u64,
                    };
                    // SAFETY: in bounds (checked above); no other slice alive.
                    unsafe { arena.bytes_mut(e) }.copy_from_slice(&v);
                    Response::Value(Some(e.len))
                }
            },
            Request::Probe { keys, prefix } => {
                Response::Count(store.probe(&keys.slices()?, &prefix.slices()?)? as u64)
            }
            Request::Exists { key } => Response::Bool(store.exists(&key)?),
            Request::Delete { key } => Response::Bool(store.delete(&key)?),
            Request::Clear => {
                store.clear()?;
                Response::Unit
            }
            Request::Flush => {
                store.flush()?;
                Response::Unit
            }
            Request::Stats => Response::Text(
                serde_json::to_string(&store.stats())
                    .map_err(|e| Error::InvalidArgument(format!("cannot encode stats: {e}")))?,
            ),
            Request::Metrics => Response::Text(store.metrics_text() + &self.counters.text()),
        })
    }
}

fn check_count(keys: usize, pages: usize) -> Result<()> {
    if keys == pages {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "{keys} keys but {pages} page extents; pass one per key"
    )))
}
