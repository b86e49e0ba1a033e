//! [`Client`]: the calls of [`crate::Store`], served by a node service over its socket.

use std::io::Read;
use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::arena::Arena;
use super::peer;
use super::wire::{self, Extent, FrameError, Keys, Request, Response};
use super::{EXTENT_ALIGN_BYTES, MAGIC, MAX_MESSAGE_BYTES, PROTOCOL_VERSION};
use crate::{Error, Result, StoreStats};

/// Connects without blocking: a service that is stopped or wedged, its backlog full, would
/// otherwise hold a blocking `connect` with no timeout at all.
fn connect_nonblocking(path: &Path) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    match connect(fd.as_raw_fd(), &addr) {
        Ok(()) => {}
        Err(nix::Error::EAGAIN) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "its backlog is full (stopped or overloaded)",
            ))
        }
        Err(e) => return Err(e.into()),
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Replies are small (flags, counts, stats text); the buffer holds any usual one whole.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// How a client talks to the service.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Every wait of a call (the connect, each send, each reply; a large batch is several
    /// chunks) ends within this or the call fails with [`Error::Unavailable`]: a call never
    /// hangs on a dead or stopped service. A timed-out call is not retried.
    pub timeout_ms: u64,
    /// Connections (each with its own arena) kept for concurrent calls from several threads.
    pub max_connections: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            max_connections: 4,
        }
    }
}

/// One handshaken connection and its arena.
struct Connection {
    /// The socket, read through a buffer so a reply costs one `read` however it is framed.
    reader: std::io::BufReader<UnixStream>,
    arena: Arena,
}

/// Why a call over a connection failed: the connection is broken, or the engine said no (the
/// connection is still good).
enum CallError {
    Broken(Error),
    Engine(Error),
    /// The engine's error, on a connection whose state is no longer known: drop it, and do
    /// not retry (the engine answered).
    EngineDropped(Error),
    /// No reply within the timeout: drop the connection, and do not retry.
    TimedOut(Error),
}

impl From<FrameError> for CallError {
    fn from(e: FrameError) -> Self {
        let what = match e {
            FrameError::Io(ref io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Not retried: a second try would double the time the caller was promised.
                return Self::TimedOut(Error::Unavailable(
                    "timed out waiting for the reply".to_string(),
                ));
            }
            FrameError::Closed => "the service closed the connection".to_string(),
            other => other.to_string(),
        };
        Self::Broken(Error::Unavailable(what))
    }
}

impl Connection {
    fn open(path: &Path, timeout: Duration) -> Result<Self> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            Error::Unavailable(format!(
                "{what} {}: {e}; is `sglang-lsm serve --socket {}` running?",
                path.display(),
                path.display()
            ))
        };
        let stream = connect_nonblocking(path).map_err(|e| unavailable("cannot connect to", &e))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| unavailable("cannot set timeouts on", &e))?;
        let hello = Request::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
        };
        // A service that refuses us may close before reading the hello; its reason is then
        // waiting to be read, so a failed send is reported only if no reply follows.
        let sent = wire::send_frame(&stream, &hello);
        let mut buf = vec![0u8; 4096];
        let (n, fd) = match (peer::recv_with_fd(&stream, &mut buf), sent) {
            (Ok(got), _) => got,
            (Err(_), Err(e)) => return Err(e),
            (Err(e), Ok(())) => return Err(unavailable("no handshake reply from", &e)),
        };
        if n < 4 {
            return Err(unavailable(
                "a truncated handshake from",
                &format!("{n} bytes"),
            ));
        }
        let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > MAX_MESSAGE_BYTES {
            return Err(unavailable("an oversized handshake from", &len));
        }
        let mut body = buf[4..n.min(4 + len)].to_vec();
        if body.len() < len {
            let have = body.len();
            body.resize(len, 0);
            (&stream)
                .read_exact(&mut body[have..])
                .map_err(|e| unavailable("a truncated handshake from", &e))?;
        }
        let reply: Response =
            wire::decode(&body).map_err(|e| unavailable("an undecodable handshake from", &e))?;
        match (reply, fd) {
            (Response::Welcome { arena_bytes, .. }, Some(fd)) => {
                let arena_bytes = usize::try_from(arena_bytes)
                    .map_err(|_| unavailable("an impossible arena size from", &arena_bytes))?;
                Ok(Self {
                    reader: std::io::BufReader::with_capacity(READ_BUFFER_BYTES, stream),
                    arena: Arena::open_received(fd, arena_bytes)?,
                })
            }
            (Response::Error(e), _) => Err(e.into()),
            (other, _) => Err(unavailable(
                "an unexpected handshake from",
                &format!("{other:?}"),
            )),
        }
    }

    fn call(&mut self, request: &Request) -> std::result::Result<Response, CallError> {
        self.send(request)?;
        self.recv()
    }

    fn send(&mut self, request: &Request) -> std::result::Result<(), CallError> {
        wire::send_frame(self.reader.get_ref(), request).map_err(|e| match e {
            // Too big to send is the caller's problem; the connection is untouched.
            Error::InvalidArgument(_) => CallError::Engine(e),
            other => CallError::Broken(other),
        })
    }

    /// A reply of `n` flags. An engine error here may leave a pipelined request's reply
    /// unread, so the connection is dropped (the error still reaches the caller as is).
    fn recv_flags(&mut self, n: usize) -> std::result::Result<Vec<bool>, CallError> {
        match self.recv() {
            Ok(Response::Flags(f)) if f.len() == n => Ok(f),
            Ok(other) => Err(unexpected(&other)),
            Err(CallError::Engine(e)) => Err(CallError::EngineDropped(e)),
            Err(e) => Err(e),
        }
    }

    fn recv(&mut self) -> std::result::Result<Response, CallError> {
        match wire::read_frame::<Response>(&mut self.reader)? {
            Response::Error(e) => Err(CallError::Engine(e.into())),
            Response::Welcome { .. } => Err(CallError::Broken(Error::Unavailable(
                "a second handshake reply".into(),
            ))),
            r => Ok(r),
        }
    }
}

struct Pool {
    idle: Vec<Connection>,
    open: usize,
    /// The process the connections belong to. A forked child (Python's multiprocessing
    /// forks by default) must not share its parent's sockets and arenas: it drops them and
    /// connects afresh.
    pid: u32,
}

/// A client of a node service, with the calls and results of [`crate::Store`]. Safe to share
/// between threads; calls from several threads use separate connections.
pub struct Client {
    socket_path: PathBuf,
    options: ClientOptions,
    pool: Mutex<Pool>,
    freed: Condvar,
}

impl Client {
    /// A client of the service at `socket_path`. It connects on first use (and again after
    /// the service restarts), so this succeeds even while the service is down.
    #[must_use]
    pub fn new(socket_path: impl Into<PathBuf>, options: ClientOptions) -> Self {
        let max_connections = options.max_connections.max(1);
        Self {
            socket_path: socket_path.into(),
            options: ClientOptions {
                max_connections,
                ..options
            },
            pool: Mutex::new(Pool {
                idle: Vec::with_capacity(max_connections),
                open: 0,
                pid: std::process::id(),
            }),
            freed: Condvar::new(),
        }
    }

    /// Connects now, so a wrong path or a refused uid shows at startup, not at first use.
    ///
    /// # Errors
    /// [`Error::Unavailable`] or [`Error::Refused`].
    pub fn connect(&self) -> Result<()> {
        self.with_connection(|_| Ok(()))
    }

    /// The service's socket.
    #[must_use]
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.options.timeout_ms.max(1))
    }

    /// Runs `op` on a pooled or new connection. A broken pooled connection (the service
    /// restarted since it was opened) is retried once on a fresh one.
    fn with_connection<T>(
        &self,
        mut op: impl FnMut(&mut Connection) -> std::result::Result<T, CallError>,
    ) -> Result<T> {
        for attempt in 0..2 {
            let (mut conn, pooled) = self.take()?;
            match op(&mut conn) {
                Ok(v) => {
                    self.give_back(conn);
                    return Ok(v);
                }
                Err(CallError::Engine(e)) => {
                    self.give_back(conn);
                    return Err(e);
                }
                Err(CallError::EngineDropped(e) | CallError::TimedOut(e)) => {
                    drop(conn);
                    self.forget_one();
                    return Err(e);
                }
                Err(CallError::Broken(e)) => {
                    drop(conn);
                    self.forget_one();
                    if !pooled || attempt == 1 {
                        return Err(e);
                    }
                    // The service restarted: every idle connection is as stale as this one,
                    // so the retry opens a fresh one.
                    self.forget_idle();
                    tracing::debug!(error = %e, "stale connection to the node service; retrying");
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    fn take(&self) -> Result<(Connection, bool)> {
        let deadline = std::time::Instant::now() + self.timeout();
        let mut pool = self.pool.lock();
        let pid = std::process::id();
        if pool.pid != pid {
            // Closing our copies of the parent's descriptors leaves the parent's untouched.
            pool.idle.clear();
            pool.open = 0;
            pool.pid = pid;
        }
        loop {
            if let Some(c) = pool.idle.pop() {
                return Ok((c, true));
            }
            if pool.open < self.options.max_connections {
                pool.open += 1;
                drop(pool);
                return match Connection::open(&self.socket_path, self.timeout()) {
                    Ok(c) => Ok((c, false)),
                    Err(e) => {
                        self.forget_one();
                        Err(e)
                    }
                };
            }
            if self.freed.wait_until(&mut pool, deadline).timed_out() {
                return Err(Error::Unavailable(format!(
                    "all {} connections to {} stayed busy for {} ms",
                    self.options.max_connections,
                    self.socket_path.display(),
                    self.options.timeout_ms
                )));
            }
        }
    }

    fn give_back(&self, conn: Connection) {
        self.pool.lock().idle.push(conn);
        self.freed.notify_one();
    }

    fn forget_idle(&self) {
        let mut pool = self.pool.lock();
        let dropped = pool.idle.len();
        pool.idle.clear();
        pool.open = pool.open.saturating_sub(dropped);
        drop(pool);
        self.freed.notify_all();
    }

    fn forget_one(&self) {
        let mut pool = self.pool.lock();
        debug_assert!(pool.open > 0);
        pool.open = pool.open.saturating_sub(1);
        drop(pool);
        self.freed.notify_one();
    }

    fn simple(&self, request: &Request) -> Result<Response> {
        self.with_connection(|c| c.call(request))
    }

    /// As [`crate::Store::put_batch`]. The batch goes in chunks of up to
    /// [`PIPELINE_CHUNK_BYTES`], alternating between the arena's halves, so the copy of one
    /// chunk overlaps the service's write of the one before; each chunk continues the chain
    /// of the one before.
    ///
    /// # Errors
    /// As the store's, plus [`Error::Unavailable`] (nothing is known about what was stored)
    /// and [`Error::InvalidArgument`] for one page larger than half the arena.
    pub fn put_batch(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        prefix_keys: &[&[u8]],
    ) -> Result<Vec<bool>> {
        self.put_pages(keys, values, PutLinks::Chain(prefix_keys))
    }

    /// As [`crate::Store::put_batch_with_parents`], in chunks like [`Client::put_batch`].
    ///
    /// # Errors
    /// As [`Client::put_batch`], plus a `parent_keys` of the wrong length.
    pub fn put_batch_with_parents(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        parent_keys: &[&[u8]],
    ) -> Result<Vec<bool>> {
        check_count(keys.len(), parent_keys.len(), "parent keys")?;
        self.put_pages(keys, values, PutLinks::Parents(parent_keys))
    }

    fn put_pages(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        links: PutLinks<'_>,
    ) -> Result<Vec<bool>> {
        check_count(keys.len(), values.len(), "values")?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sizes: Vec<u64> = values.iter().map(|p| parts_len(p)).collect();
        self.with_connection(|c| {
            let plan = Plan::new(&sizes, c.arena.len_bytes(), PIPELINE_CHUNK_BYTES)
                .map_err(CallError::Engine)?;
            let mut flags = Vec::with_capacity(keys.len());
            let mut in_flight: Option<usize> = None;
            for (n, (range, extents)) in plan.chunks.iter().enumerate() {
                // The half this chunk fills last held chunk n-2, whose reply came in round n-1.
                for (e, page) in extents.iter().zip(&values[range.clone()]) {
                    let mut at = e.offset;
                    for part in page {
                        let dst = Extent {
                            offset: at,
                            len: part.len() as u64,
                        };
                        // SAFETY: the plan fits the arena; the service is not using this half.
                        unsafe { c.arena.bytes_mut(dst) }.copy_from_slice(part);
                        at += dst.len;
                    }
                }
                if let Some(prev) = in_flight.take() {
                    flags.extend(c.recv_flags(plan.chunks[prev].0.len())?);
                }
                let chunk_keys = Keys::pack(&keys[range.clone()]).map_err(CallError::Engine)?;
                let request = match links {
                    // Later chunks continue the chain: their parent is the page before them,
                    // and the service declines them whole if that page was declined.
                    PutLinks::Chain(prefix_keys) => {
                        let prefix: Vec<&[u8]> = match range.start {
                            0 => prefix_keys.to_vec(),
                            start => vec![keys[start - 1]],
                        };
                        Request::Put {
                            continuing: n > 0,
                            keys: chunk_keys,
                            prefix: Keys::pack(&prefix).map_err(CallError::Engine)?,
                            pages: extents.clone(),
                        }
                    }
                    PutLinks::Parents(parent_keys) => Request::PutUnder {
                        keys: chunk_keys,
                        parents: Keys::pack(&parent_keys[range.clone()])
                            .map_err(CallError::Engine)?,
                        pages: extents.clone(),
                    },
                };
                c.send(&request)?;
                in_flight = Some(n);
            }
            if let Some(prev) = in_flight {
                flags.extend(c.recv_flags(plan.chunks[prev].0.len())?);
            }
            Ok(flags)
        })
    }

    /// As [`crate::Store::get_batch`], pipelined like [`Client::put_batch`]: the service reads
    /// the next chunk while this copies the last one out.
    ///
    /// # Errors
    /// As the store's, plus [`Error::Unavailable`].
    pub fn get_batch(&self, keys: &[&[u8]], buffers: &mut [Vec<&mut [u8]>]) -> Result<Vec<bool>> {
        check_count(keys.len(), buffers.len(), "buffers")?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sizes: Vec<u64> = buffers.iter().map(|p| parts_len(p)).collect();
        self.with_connection(|c| {
            let plan = Plan::new(&sizes, c.arena.len_bytes(), GET_CHUNK_BYTES)
                .map_err(CallError::Engine)?;
            let request = |n: usize| -> std::result::Result<Request, CallError> {
                let (range, extents) = &plan.chunks[n];
                Ok(Request::Get {
                    keys: Keys::pack(&keys[range.clone()]).map_err(CallError::Engine)?,
                    pages: extents.clone(),
                })
            };
            let mut hits = Vec::with_capacity(keys.len());
            c.send(&request(0)?)?;
            for n in 0..plan.chunks.len() {
                let (range, extents) = &plan.chunks[n];
                let got = match c.recv_flags(range.len()) {
                    Ok(g) => g,
                    Err(e) => return Err(e),
                };
                // The other half held chunk n-1, copied out last round: the service may fill it.
                if n + 1 < plan.chunks.len() {
                    c.send(&request(n + 1)?)?;
                }
                for ((hit, e), page) in got.iter().zip(extents).zip(&mut buffers[range.clone()]) {
                    if !hit {
                        continue;
                    }
                    let mut at = e.offset;
                    for part in page.iter_mut() {
                        let src = Extent {
                            offset: at,
                            len: part.len() as u64,
                        };
                        // SAFETY: the plan fits the arena; the service wrote this half and is
                        // now working in the other.
                        part.copy_from_slice(unsafe { c.arena.bytes(src) });
                        at += src.len;
                    }
                }
                hits.extend(got);
            }
            Ok(hits)
        })
    }

    /// As [`crate::Store::get`].
    ///
    /// # Errors
    /// As the store's, plus [`Error::Unavailable`].
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let request = Request::GetOne { key: key.to_vec() };
        self.with_connection(|c| match c.call(&request)? {
            Response::Value(None) => Ok(None),
            Response::Value(Some(len)) if len <= c.arena.len_bytes() as u64 => {
                // SAFETY: in bounds (checked); the service wrote it and is done.
                Ok(Some(
                    unsafe { c.arena.bytes(Extent { offset: 0, len }) }.to_vec(),
                ))
            }
            other => Err(unexpected(&other)),
        })
    }

    /// As [`crate::Store::probe`].
    ///
    /// # Errors
    /// As the store's, plus [`Error::Unavailable`].
    pub fn probe(&self, keys: &[&[u8]], prefix_keys: &[&[u8]]) -> Result<usize> {
        let request = Request::Probe {
            keys: Keys::pack(keys)?,
            prefix: Keys::pack(prefix_keys)?,
        };
        match self.simple(&request)? {
            Response::Count(n) if n <= keys.len() as u64 => Ok(n as usize),
            other => Err(unexpected_reply(&other)),
        }
    }

    /// As [`crate::Store::exists_batch`].
    ///
    /// # Errors
    /// As the store's, plus [`Error::Unavailable`].
    pub fn exists_batch(&self, keys: &[&[u8]]) -> Result<Vec<bool>> {
        let request = Request::ExistsBatch {
            keys: Keys::pack(keys)?,
        };
        match self.simple(&request)? {
            Response::Flags(f) if f.len() == keys.len() => Ok(f),
            other => Err(unexpected_reply(&other)),
        }
    }

    /// As [`crate::Store::exists`].
    ///
    /// # Errors
    /// As the store's, plus [`Error::Unavailable`].
    pub fn exists(&self, key: &[u8]) -> Result<bool> {
        self.flag(&Request::Exists { key: key.to_vec() })
    }

    /// As [`crate::Store::delete`].
    ///
    /// # Errors
    /// As the store's, plus [`Error::Unavailable`].
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.flag(&Request::Delete { key: key.to_vec() })
    }

    fn flag(&self, request: &Request) -> Result<bool> {
        match self.simple(request)? {
            Response::Bool(b) => Ok(b),
            other => Err(unexpected_reply(&other)),
        }
    }

    /// As [`crate::Store::clear`].
    ///
    /// # Errors
    /// As the store's, plus [`Error::Unavailable`].
    pub fn clear(&self) -> Result<()> {
        self.unit(&Request::Clear)
    }

    /// As [`crate::Store::flush`].
    ///
    /// # Errors
    /// As the store's, plus [`Error::Unavailable`].
    pub fn flush(&self) -> Result<()> {
        self.unit(&Request::Flush)
    }

    fn unit(&self, request: &Request) -> Result<()> {
        match self.simple(request)? {
            Response::Unit => Ok(()),
            other => Err(unexpected_reply(&other)),
        }
    }

    /// The service's store statistics.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub fn stats(&self) -> Result<StoreStats> {
        let json = self.text(&Request::Stats)?;
        serde_json::from_str(&json)
            .map_err(|e| Error::Unavailable(format!("undecodable stats from the service: {e}")))
    }

    /// The service's store metrics and its own (`sglang_lsm_service_*`), Prometheus text.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub fn metrics_text(&self) -> Result<String> {
        self.text(&Request::Metrics)
    }

    fn text(&self, request: &Request) -> Result<String> {
        match self.simple(request)? {
            Response::Text(t) => Ok(t),
            other => Err(unexpected_reply(&other)),
        }
    }
}

fn parts_len<T: AsRef<[u8]>>(parts: &[T]) -> u64 {
    parts.iter().map(|p| p.as_ref().len() as u64).sum()
}

fn check_count(keys: usize, pages: usize, what: &str) -> Result<()> {
    if keys == pages {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "{keys} keys but {pages} {what}; pass one per key"
    )))
}

fn unexpected_reply(r: &Response) -> Error {
    Error::Unavailable(format!("unexpected reply from the node service: {r:?}"))
}

fn unexpected(r: &Response) -> CallError {
    CallError::Broken(unexpected_reply(r))
}

/// Chunks of at most this many bytes alternate between the arena's halves. Small enough
/// that a 16 MiB SGLang batch is four chunks (the copy of all but the first overlaps the
/// service's I/O), large enough that each is one big vectored write.
pub const PIPELINE_CHUNK_BYTES: u64 = 4 << 20;

/// Gets go in larger chunks: the store reads a chunk's pages in parallel, and this disk
/// needs a deep queue for its bandwidth; the copy out (~10 GB/s) still overlaps the next read.
pub const GET_CHUNK_BYTES: u64 = 16 << 20;

/// How the pages of one put relate to their parents ([`Client::put_batch`] or
/// [`Client::put_batch_with_parents`]).
#[derive(Clone, Copy)]
enum PutLinks<'a> {
    /// A chain after these prefix keys.
    Chain(&'a [&'a [u8]]),
    /// One parent key per page.
    Parents(&'a [&'a [u8]]),
}

/// How a batch goes through the arena: runs of pages, chunk `n` in half `n % 2`.
struct Plan {
    chunks: Vec<(Range<usize>, Vec<Extent>)>,
}

impl Plan {
    fn new(sizes: &[u64], arena_bytes: usize, chunk_bytes: u64) -> Result<Self> {
        let half = (arena_bytes as u64 / 2) / EXTENT_ALIGN_BYTES * EXTENT_ALIGN_BYTES;
        let cap = half.min(chunk_bytes);
        let mut chunks = Vec::new();
        for (n, (range, extents)) in runs(sizes, cap, half)?.into_iter().enumerate() {
            let base = if n % 2 == 1 { half } else { 0 };
            let extents = extents
                .into_iter()
                .map(|e| Extent {
                    offset: e.offset + base,
                    len: e.len,
                })
                .collect();
            chunks.push((range, extents));
        }
        Ok(Self { chunks })
    }
}

/// Splits pages of `sizes` into runs of at most `cap` bytes (a larger page alone, up to
/// `max_page`), each page starting on [`EXTENT_ALIGN_BYTES`].
fn runs(sizes: &[u64], cap: u64, max_page: u64) -> Result<Vec<(Range<usize>, Vec<Extent>)>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut extents = Vec::new();
    let mut used = 0u64;
    for (i, &len) in sizes.iter().enumerate() {
        if len > max_page {
            return Err(Error::InvalidArgument(format!(
                "page {i} holds {len} bytes, more than half the node service's arena \
                 ({max_page} bytes); start the service with a larger --arena-mib"
            )));
        }
        let offset = used.next_multiple_of(EXTENT_ALIGN_BYTES);
        if i > start && offset + len > cap {
            out.push((start..i, std::mem::take(&mut extents)));
            start = i;
            used = 0;
        }
        let offset = used.next_multiple_of(EXTENT_ALIGN_BYTES);
        extents.push(Extent { offset, len });
        used = offset + len;
    }
    if start < sizes.len() || sizes.is_empty() {
        out.push((start..sizes.len(), extents));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_fit_their_cap_and_keep_order() {
        let sizes = [3000, 5000, 4096, 100, 8192];
        let c = runs(&sizes, 8192, 8192).expect("fits");
        let ranges: Vec<Range<usize>> = c.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(ranges, vec![0..1, 1..2, 2..4, 4..5]);
        for (range, extents) in &c {
            assert_eq!(range.len(), extents.len());
            for e in extents {
                assert_eq!(e.offset % EXTENT_ALIGN_BYTES, 0);
                assert!(e.offset + e.len <= 8192);
            }
        }
        assert!(runs(&[8193], 8192, 8192).is_err());
        let empty = runs(&[], 8192, 8192).expect("empty");
        assert_eq!(
            empty.len(),
            1,
            "an empty batch still makes one call, for the engine's checks"
        );
    }

    #[test]
    fn a_plan_alternates_halves_that_never_overlap() {
        let arena = 64 << 20;
        let sizes = vec![1u64 << 20; 40];
        let plan = Plan::new(&sizes, arena, PIPELINE_CHUNK_BYTES).expect("fits");
        assert_eq!(plan.chunks.len(), 10, "4 MiB chunks of 1 MiB pages");
        let half = (arena / 2) as u64;
        for (n, (_, extents)) in plan.chunks.iter().enumerate() {
            let (lo, hi) = if n % 2 == 0 {
                (0, half)
            } else {
                (half, 2 * half)
            };
            assert!(
                extents
                    .iter()
                    .all(|e| e.offset >= lo && e.offset + e.len <= hi),
                "chunk {n}"
            );
        }
        // A page bigger than a chunk but within half the arena goes alone.
        let plan = Plan::new(&[3000, 10 << 20, 3000], arena, PIPELINE_CHUNK_BYTES).expect("fits");
        assert_eq!(plan.chunks.len(), 3);
        assert!(Plan::new(&[(32 << 20) + 1], arena, PIPELINE_CHUNK_BYTES).is_err());
    }
}
