//! [`Client`]: the calls of [`crate::Store`], served by a node service over its socket.

use std::io::Read;
use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::arena::Arena;
use super::peer;
use super::wire::{self, Extent, FrameError, Request, Response};
use super::{EXTENT_ALIGN_BYTES, MAGIC, MAX_MESSAGE_BYTES, PROTOCOL_VERSION};
use crate::{Error, Result, StoreStats};

/// How a client talks to the service.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Every call (connect, send, reply) finishes within this or fails with
    /// [`Error::Unavailable`]; a call never hangs on a dead or stopped service.
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
    stream: UnixStream,
    arena: Arena,
}

/// Why a call over a connection failed: the connection is broken, or the engine said no (the
/// connection is still good).
enum CallError {
    Broken(Error),
    Engine(Error),
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
                "timed out waiting for the reply".to_string()
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
        let stream = UnixStream::connect(path).map_err(|e| unavailable("cannot connect to", &e))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| unavailable("cannot set timeouts on", &e))?;
        let hello = Request::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
        };
        wire::write_frame(&mut &stream, &hello)?;
        let mut buf = vec![0u8; 4096];
        let (n, fd) = peer::recv_with_fd(&stream, &mut buf)
            .map_err(|e| unavailable("no handshake reply from", &e))?;
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
                    stream,
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
        wire::write_frame(&mut &self.stream, request).map_err(|e| match e {
            // Too big to send is the caller's problem; the connection is untouched.
            Error::InvalidArgument(_) => CallError::Engine(e),
            other => CallError::Broken(other),
        })?;
        match wire::read_frame::<Response>(&mut &self.stream)? {
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
                Err(CallError::Broken(e)) => {
                    drop(conn);
                    self.forget_one();
                    if !pooled || attempt == 1 {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "stale connection to the node service; retrying");
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    fn take(&self) -> Result<(Connection, bool)> {
        let deadline = std::time::Instant::now() + self.timeout();
        let mut pool = self.pool.lock();
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

    /// As [`crate::Store::put_batch`]. A batch larger than the arena goes as several calls,
    /// each continuing the chain of the one before.
    ///
    /// # Errors
    /// As the store's, plus [`Error::Unavailable`] (nothing is known about what was stored)
    /// and [`Error::InvalidArgument`] for one page larger than the arena.
    pub fn put_batch(
        &self,
        keys: &[&[u8]],
        values: &[Vec<&[u8]>],
        prefix_keys: &[&[u8]],
    ) -> Result<Vec<bool>> {
        check_count(keys.len(), values.len(), "values")?;
        let sizes: Vec<u64> = values.iter().map(|p| parts_len(p)).collect();
        let mut flags = Vec::with_capacity(keys.len());
        let mut prefix: Vec<Vec<u8>> = prefix_keys.iter().map(|k| k.to_vec()).collect();
        self.with_connection(|c| {
            flags.clear();
            prefix.truncate(prefix_keys.len());
            for (range, extents) in
                chunks(&sizes, c.arena.len_bytes()).map_err(CallError::Engine)?
            {
                for (e, page) in extents.iter().zip(&values[range.clone()]) {
                    let mut at = e.offset;
                    for part in page {
                        let dst = Extent {
                            offset: at,
                            len: part.len() as u64,
                        };
                        // SAFETY: the layout fits the arena; the service reads it only
                        // during the call below.
                        unsafe { c.arena.bytes_mut(dst) }.copy_from_slice(part);
                        at += dst.len;
                    }
                }
                let request = Request::Put {
                    keys: keys[range.clone()].iter().map(|k| k.to_vec()).collect(),
                    prefix: prefix.clone(),
                    pages: extents,
                };
                match c.call(&request)? {
                    Response::Flags(f) if f.len() == range.len() => flags.extend(f),
                    other => return Err(unexpected(&other)),
                }
                prefix.extend(keys[range].iter().map(|k| k.to_vec()));
            }
            Ok(std::mem::take(&mut flags))
        })
    }

    /// As [`crate::Store::get_batch`].
    ///
    /// # Errors
    /// As the store's, plus [`Error::Unavailable`].
    pub fn get_batch(&self, keys: &[&[u8]], buffers: &mut [Vec<&mut [u8]>]) -> Result<Vec<bool>> {
        check_count(keys.len(), buffers.len(), "buffers")?;
        let sizes: Vec<u64> = buffers.iter().map(|p| parts_len(p)).collect();
        let mut hits = Vec::with_capacity(keys.len());
        self.with_connection(|c| {
            hits.clear();
            for (range, extents) in
                chunks(&sizes, c.arena.len_bytes()).map_err(CallError::Engine)?
            {
                let request = Request::Get {
                    keys: keys[range.clone()].iter().map(|k| k.to_vec()).collect(),
                    pages: extents.clone(),
                };
                let got = match c.call(&request)? {
                    Response::Flags(f) if f.len() == range.len() => f,
                    other => return Err(unexpected(&other)),
                };
                for ((hit, e), page) in got.iter().zip(&extents).zip(&mut buffers[range]) {
                    if !hit {
                        continue;
                    }
                    let mut at = e.offset;
                    for part in page.iter_mut() {
                        let src = Extent {
                            offset: at,
                            len: part.len() as u64,
                        };
                        // SAFETY: the layout fits the arena; the service wrote it and is done.
                        part.copy_from_slice(unsafe { c.arena.bytes(src) });
                        at += src.len;
                    }
                }
                hits.extend(got);
            }
            Ok(std::mem::take(&mut hits))
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
            keys: keys.iter().map(|k| k.to_vec()).collect(),
            prefix: prefix_keys.iter().map(|k| k.to_vec()).collect(),
        };
        match self.simple(&request)? {
            Response::Count(n) if n <= keys.len() as u64 => Ok(n as usize),
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

/// Splits pages of `sizes` into runs that fit an arena of `arena_bytes`, each page starting
/// on [`EXTENT_ALIGN_BYTES`].
fn chunks(sizes: &[u64], arena_bytes: usize) -> Result<Vec<(Range<usize>, Vec<Extent>)>> {
    let arena_bytes = arena_bytes as u64;
    let mut out = Vec::new();
    let mut start = 0;
    let mut extents = Vec::new();
    let mut used = 0u64;
    for (i, &len) in sizes.iter().enumerate() {
        if len > arena_bytes {
            return Err(Error::InvalidArgument(format!(
                "page {i} holds {len} bytes, more than the node service's {arena_bytes}-byte \
                 arena; start the service with a larger --arena-mib"
            )));
        }
        let offset = used.next_multiple_of(EXTENT_ALIGN_BYTES);
        if offset + len > arena_bytes {
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
    fn chunks_fit_the_arena_and_keep_order() {
        let sizes = [3000, 5000, 4096, 100, 8192];
        let c = chunks(&sizes, 8192).expect("fits");
        let ranges: Vec<Range<usize>> = c.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(ranges, vec![0..1, 1..2, 2..4, 4..5]);
        for (range, extents) in &c {
            assert_eq!(range.len(), extents.len());
            for e in extents {
                assert_eq!(e.offset % EXTENT_ALIGN_BYTES, 0);
                assert!(e.offset + e.len <= 8192);
            }
        }
        assert!(chunks(&[8193], 8192).is_err());
        let empty = chunks(&[], 8192).expect("empty");
        assert_eq!(
            empty.len(),
            1,
            "an empty batch still makes one call, for the engine's checks"
        );
    }
}
