//! One client connection of the node service, served on its own thread.

use std::io::{BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::arena::Arena;
use super::peer::PeerIdentity;
use super::server::{ServerOptions, ServiceCounters, POLL_INTERVAL_MS};
use super::wire::{self, Extent, FrameError, Keys, Request, Response, WireError};
use super::{MAGIC, PROTOCOL_VERSION};
use crate::vlog::format::MAX_FRAME_RECORDS;
use crate::{Error, Result, Store};

/// A hello is a few bytes; a peer not yet known to be a client gets no larger allocation.
const MAX_HELLO_BYTES: usize = 256;

/// Requests are keys and extents; the buffer holds a usual one whole.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// A probe's prefix is context, not pages; bounded so a peer cannot make the service build
/// millions of slices from one message.
const MAX_PREFIX_KEYS: usize = MAX_FRAME_RECORDS;

/// Best effort: tells a refused peer why, then drops it. A hello still unread is drained
/// first (briefly), so the close does not turn into ECONNRESET before the peer reads why.
pub(super) fn refuse(stream: &UnixStream, why: String) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = wire::send_frame(stream, &Response::Error(WireError::Refused(why)));
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; MAX_HELLO_BYTES + 4];
    let _ = (&mut &*stream).read(&mut sink);
}

/// Gives the connection's slot back however the thread ends (a panic included).
struct Slot(Arc<ServiceCounters>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) struct Connection {
    stream: UnixStream,
    peer: Option<PeerIdentity>,
    store: Arc<Store>,
    options: ServerOptions,
    shutdown: Arc<AtomicBool>,
    counters: Arc<ServiceCounters>,
    _slot: Slot,
}

/// Reads the socket through `reader`, failing once `until` passes: a request has one
/// deadline however slowly its bytes trickle in.
struct DeadlineReader<'a, 'b> {
    reader: &'a mut BufReader<&'b UnixStream>,
    until: Instant,
}

impl Read for DeadlineReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.reader.buffer().is_empty() {
            let left = self.until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request did not arrive within its deadline",
                ));
            }
            self.reader.get_ref().set_read_timeout(Some(left))?;
        }
        self.reader.read(buf)
    }
}

impl Connection {
    /// Takes the slot the caller counted in `connections_open`.
    pub(super) fn new(
        stream: UnixStream,
        peer: Option<PeerIdentity>,
        store: Arc<Store>,
        options: ServerOptions,
        shutdown: Arc<AtomicBool>,
        counters: Arc<ServiceCounters>,
    ) -> Self {
        Self {
            stream,
            peer,
            store,
            options,
            shutdown,
            _slot: Slot(Arc::clone(&counters)),
            counters,
        }
    }

    pub(super) fn serve(self) {
        match self.handshake() {
            Ok(arena) => {
                tracing::debug!(peer = ?self.peer, "client connected");
                self.serve_requests(&arena);
            }
            Err(why) => {
                tracing::warn!(peer = ?self.peer, reason = %why, "handshake failed; connection dropped");
            }
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.options.request_timeout_ms.max(1))
    }

    fn handshake(&self) -> std::result::Result<Arena, String> {
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
        let hello = wire::read_len(&mut &self.stream).and_then(|len| {
            if len > MAX_HELLO_BYTES {
                return Err(FrameError::TooLong {
                    len_bytes: len,
                    max_bytes: MAX_HELLO_BYTES,
                });
            }
            wire::read_body::<Request>(&mut &self.stream, len)
        });
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
        super::peer::send_with_fd(&self.stream, &frame, arena.fd()).map_err(|e| e.to_string())?;
        Ok(arena)
    }

    fn serve_requests(&self, arena: &Arena) {
        let peer = self.peer;
        // Buffered, so a request costs one `read` however it is framed.
        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, &self.stream);
        // Looked at between requests, so a busy client does not hold a shutdown up.
        while !self.shutdown.load(Ordering::Relaxed) {
            // Idle clients are normal; wait in short slices so a shutdown is seen promptly.
            if reader.buffer().is_empty() {
                let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(POLL_INTERVAL_MS)) {
                    Ok(0) => continue,
                    Ok(_) => {}
                    Err(nix::Error::EINTR) => continue,
                    Err(e) => {
                        tracing::warn!(?peer, error = %e, "poll failed; connection dropped");
                        return;
                    }
                }
            }
            let mut deadline = DeadlineReader {
                reader: &mut reader,
                until: Instant::now() + self.timeout(),
            };
            let request = match wire::read_frame::<Request>(&mut deadline) {
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
            // A panic is a bug; it must cost this connection, not the service.
            let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.handle(arena, request)
            }));
            let (response, keep) = match handled {
                Ok(Ok(r)) => (r, true),
                Ok(Err(e)) => (Response::Error(WireError::from(&e)), true),
                Err(_) => {
                    tracing::error!(?peer, "a request panicked; connection dropped");
                    let e = Error::InvalidArgument("the service failed on this request".into());
                    (Response::Error(WireError::from(&e)), false)
                }
            };
            if let Err(e) = wire::send_frame(&self.stream, &response) {
                tracing::warn!(?peer, error = %e, "cannot reply; connection dropped");
                return;
            }
            if !keep {
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
                continuing,
            } => {
                check_counts(&keys, &prefix, &pages)?;
                arena.check(&pages, false)?;
                // SAFETY: extents checked; the arena is only read during the call.
                let values: Vec<Vec<&[u8]>> = pages
                    .iter()
                    .map(|&e| vec![unsafe { arena.bytes(e) }])
                    .collect();
                let (keys, prefix) = (keys.slices()?, prefix.slices()?);
                Response::Flags(if continuing {
                    store.put_batch_continuing(&keys, &values, &prefix)?
                } else {
                    store.put_batch(&keys, &values, &prefix)?
                })
            }
            Request::Get { keys, pages } => {
                check_counts(&keys, &Keys::default(), &pages)?;
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
                    let e = Extent {
                        offset: 0,
                        len: v.len() as u64,
                    };
                    // SAFETY: in bounds (checked above); no other slice alive.
                    unsafe { arena.bytes_mut(e) }.copy_from_slice(&v);
                    Response::Value(Some(e.len))
                }
            },
            Request::Probe { keys, prefix } => {
                check_counts(&keys, &prefix, &[])?;
                Response::Count(store.probe(&keys.slices()?, &prefix.slices()?)? as u64)
            }
            Request::Exists { key } => Response::Bool(store.exists(&key)?),
            Request::ExistsBatch { keys } => {
                check_counts(&keys, &Keys::default(), &[])?;
                Response::Flags(store.exists_batch(&keys.slices()?)?)
            }
            Request::PutUnder {
                keys,
                parents,
                pages,
            } => {
                check_counts(&keys, &Keys::default(), &pages)?;
                if parents.len() != keys.len() {
                    return Err(Error::InvalidArgument(format!(
                        "{} keys but {} parent keys; pass one per key",
                        keys.len(),
                        parents.len()
                    )));
                }
                arena.check(&pages, false)?;
                // SAFETY: extents checked; the arena is only read during the call.
                let values: Vec<Vec<&[u8]>> = pages
                    .iter()
                    .map(|&e| vec![unsafe { arena.bytes(e) }])
                    .collect();
                Response::Flags(store.put_batch_with_parents(
                    &keys.slices()?,
                    &values,
                    &parents.slices()?,
                )?)
            }
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

/// Bounds a request before anything is built from it: a 16 MiB message could otherwise
/// name millions of keys.
fn check_counts(keys: &Keys, prefix: &Keys, pages: &[Extent]) -> Result<()> {
    if keys.len() > MAX_FRAME_RECORDS || prefix.len() > MAX_PREFIX_KEYS {
        return Err(Error::InvalidArgument(format!(
            "{} keys and {} prefix keys in one request; at most {MAX_FRAME_RECORDS} of each",
            keys.len(),
            prefix.len()
        )));
    }
    if !pages.is_empty() && keys.len() != pages.len() {
        return Err(Error::InvalidArgument(format!(
            "{} keys but {} page extents; pass one per key",
            keys.len(),
            pages.len()
        )));
    }
    Ok(())
}
