//! The node service in one process: a `Server` on a thread, `Client`s and raw sockets
//! against it. Process kills live in the CLI's and the Python package's tests.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sglang_lsm::service::peer::Access;
use sglang_lsm::service::wire::{self, Request, Response, WireError};
use sglang_lsm::service::{MAGIC, PROTOCOL_VERSION};
use sglang_lsm::{Client, ClientOptions, Error, Server, ServerOptions, Store, StoreConfig};

struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    store: Arc<Store>,
}

impl Running {
    fn start(dir: &Path, socket: &Path, tune: impl FnOnce(&mut ServerOptions)) -> Self {
        let store = Arc::new(Store::open(dir, StoreConfig::default()).expect("open store"));
        let mut options = ServerOptions::new(socket);
        options.arena_bytes = 64 << 10;
        options.request_timeout_ms = 500;
        tune(&mut options);
        let server = Server::bind(Arc::clone(&store), options).expect("bind");
        let stop = server.shutdown_flag();
        let thread = std::thread::spawn(move || server.run().expect("serve"));
        Self {
            stop,
            thread: Some(thread),
            store,
        }
    }

    fn stop(mut self) -> Arc<Store> {
        self.halt();
        Arc::clone(&self.store)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.halt();
    }
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let socket = tmp.path().join("slsm.sock");
    (tmp, dir, socket)
}

fn client(socket: &Path) -> Client {
    Client::new(
        socket,
        ClientOptions {
            timeout_ms: 2_000,
            max_connections: 2,
        },
    )
}

fn page(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 131 + j * 7) as u8).collect()
}

#[test]
fn every_call_matches_the_embedded_store_and_batches_larger_than_the_arena_split() {
    let (_tmp, dir, socket) = setup();
    let _service = Running::start(&dir, &socket, |_| {});
    let c = client(&socket);
    // 10 pages of 24 KiB in two parts each: 240 KiB through a 64 KiB arena.
    let keys: Vec<Vec<u8>> = (0..10).map(|i| format!("chain-{i}").into_bytes()).collect();
    let pages: Vec<Vec<u8>> = (0..10).map(|i| page(i, 24 << 10)).collect();
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let values: Vec<Vec<&[u8]>> = pages
        .iter()
        .map(|p| vec![&p[..8 << 10], &p[8 << 10..]])
        .collect();
    assert_eq!(
        c.put_batch(&key_refs, &values, &[]).expect("put"),
        vec![true; 10]
    );
    assert_eq!(c.probe(&key_refs, &[]).expect("probe"), 10);
    let mut out: Vec<Vec<u8>> = (0..10).map(|_| vec![0u8; 24 << 10]).collect();
    let mut probe_keys = key_refs.clone();
    probe_keys.push(b"absent");
    assert_eq!(c.probe(&probe_keys, &[]).expect("probe"), 10);
    {
        let mut bufs: Vec<Vec<&mut [u8]>> = out
            .iter_mut()
            .map(|o| {
                let (a, b) = o.split_at_mut(1000);
                vec![a, b]
            })
            .collect();
        assert_eq!(
            c.get_batch(&key_refs, &mut bufs).expect("get"),
            vec![true; 10]
        );
    }
    assert_eq!(out, pages, "every page byte for byte");
    assert_eq!(c.get(b"chain-3").expect("get one"), Some(pages[3].clone()));
    assert_eq!(c.get(b"absent").expect("get one"), None);
    assert!(c.exists(b"chain-9").expect("exists"));
    assert!(c.delete(b"chain-9").expect("delete"));
    assert!(!c.exists(b"chain-9").expect("exists"));
    let stats = c.stats().expect("stats");
    assert_eq!(stats.pages, 9, "{stats:?}");
    let metrics = c.metrics_text().expect("metrics");
    assert!(
        metrics.contains("sglang_lsm_service_requests_total"),
        "{metrics}"
    );
    c.flush().expect("flush");
    c.clear().expect("clear");
    assert!(!c.exists(b"chain-0").expect("exists"));
}

#[test]
fn engine_errors_arrive_as_the_same_typed_error() {
    let (_tmp, dir, socket) = setup();
    let _service = Running::start(&dir, &socket, |_| {});
    let c = client(&socket);
    let v = vec![1u8; 4096];
    c.put_batch(&[b"k"], &[vec![&v[..]]], &[]).expect("put");
    let mut small = [0u8; 100];
    let err = c
        .get_batch(&[b"k"], &mut [vec![&mut small[..]]])
        .expect_err("length mismatch");
    assert!(
        matches!(
            err,
            Error::LengthMismatch {
                stored_bytes: 4096,
                given_bytes: 100,
                ..
            }
        ),
        "{err}"
    );
    let long = vec![b'x'; 5000];
    let err = c.exists(&long).expect_err("key too long");
    assert_eq!(err.code(), "key_too_long", "{err}");
    let big = vec![0u8; (64 << 10) + 1];
    let err = c
        .put_batch(&[b"big"], &[vec![&big[..]]], &[])
        .expect_err("larger than the arena");
    assert!(err.to_string().contains("--arena-mib"), "{err}");
    // The connection survives every one of these.
    assert!(c.exists(b"k").expect("still served"));
}

fn raw_hello(socket: &Path) -> UnixStream {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let hello = Request::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
    };
    wire::write_frame(&mut s, &hello).expect("hello");
    let mut buf = [0u8; 256];
    let (n, fd) = sglang_lsm::service::peer::recv_with_fd(&s, &mut buf).expect("welcome");
    assert!(n > 4 && fd.is_some(), "a welcome with the arena");
    s
}

#[test]
fn garbage_truncated_and_oversized_messages_drop_only_that_connection() {
    let (_tmp, dir, socket) = setup();
    let service = Running::start(&dir, &socket, |_| {});
    let c = client(&socket);
    let v = vec![9u8; 4096];
    c.put_batch(&[b"k"], &[vec![&v[..]]], &[]).expect("put");
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff; 64],                                      // a garbage hello
        u32::MAX.to_le_bytes().to_vec(),                     // a huge length
        [10u32.to_le_bytes().to_vec(), vec![1, 2]].concat(), // a truncated body
    ];
    for bytes in &garbage {
        let mut s = UnixStream::connect(&socket).expect("connect");
        s.write_all(bytes).expect("send");
        drop(s);
    }
    // After a good handshake, garbage requests and huge lengths drop the connection.
    for bytes in [vec![0xee; 32], u32::MAX.to_le_bytes().to_vec()] {
        let mut s = raw_hello(&socket);
        s.write_all(&bytes).expect("send");
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut rest);
        assert!(rest.is_empty(), "dropped without a reply");
    }
    assert!(c.exists(b"k").expect("others still served"));
    let metrics = c.metrics_text().expect("metrics");
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sglang_lsm_service_protocol_errors_total "))
        .and_then(|v| v.parse().ok())
        .expect("counter");
    assert!(errors >= 3, "{metrics}");
    drop(service);
}

#[test]
fn a_wrong_version_is_refused_with_a_message() {
    let (_tmp, dir, socket) = setup();
    let _service = Running::start(&dir, &socket, |_| {});
    let mut s = UnixStream::connect(&socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let hello = Request::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION + 1,
    };
    wire::write_frame(&mut s, &hello).expect("hello");
    match wire::read_frame::<Response>(&mut s).expect("reply") {
        Response::Error(WireError::Refused(why)) => {
            let named = format!("protocol v{}", PROTOCOL_VERSION + 1);
            assert!(why.contains(&named), "{why}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_uid_that_is_not_allowed_is_refused_with_the_fix() {
    let (_tmp, dir, socket) = setup();
    let me = nix::unistd::geteuid().as_raw();
    let _service = Running::start(&dir, &socket, |o| {
        o.access = Access {
            uids: vec![me.wrapping_add(1)],
            gids: vec![],
        }
    });
    let err = client(&socket).connect().expect_err("refused");
    assert!(matches!(err, Error::Refused(_)), "{err}");
    assert!(err.to_string().contains("--allow-uid"), "{err}");
}

#[test]
fn the_client_bound_refuses_the_next_connection() {
    let (_tmp, dir, socket) = setup();
    let _service = Running::start(&dir, &socket, |o| o.max_clients = 1);
    let first = client(&socket);
    first.connect().expect("first");
    let err = client(&socket).connect().expect_err("over the bound");
    assert!(err.to_string().contains("--max-clients"), "{err}");
    drop(first);
}

#[test]
fn a_stalled_client_does_not_stall_others_and_is_dropped() {
    let (_tmp, dir, socket) = setup();
    let _service = Running::start(&dir, &socket, |_| {});
    let mut stalled = raw_hello(&socket);
    // Half a frame, then silence: the service must not wait on it forever.
    stalled.write_all(&100u32.to_le_bytes()).expect("prefix");
    stalled.write_all(&[0u8; 10]).expect("part");
    let c = client(&socket);
    let v = vec![3u8; 8192];
    let started = Instant::now();
    for i in 0..20 {
        let k = format!("k{i}");
        c.put_batch(&[k.as_bytes()], &[vec![&v[..]]], &[])
            .expect("put");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "others were served meanwhile"
    );
    // The request timeout (500 ms here) drops the stalled one.
    let mut rest = Vec::new();
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let n = std::io::Read::read_to_end(&mut stalled, &mut rest).expect("closed by the service");
    assert_eq!(n, 0);
}

#[test]
fn a_client_survives_a_service_restart_and_reconnects_by_itself() {
    let (_tmp, dir, socket) = setup();
    let service = Running::start(&dir, &socket, |_| {});
    let c = client(&socket);
    let v = page(1, 16 << 10);
    c.put_batch(&[b"kept"], &[vec![&v[..]]], &[]).expect("put");
    let store = service.stop();
    drop(store);
    let started = Instant::now();
    let err = c.exists(b"kept").expect_err("service down");
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("sglang-lsm serve"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no hang: {:?}",
        started.elapsed()
    );
    let _again = Running::start(&dir, &socket, |_| {});
    assert_eq!(c.get(b"kept").expect("reconnected"), Some(v));
}

#[test]
fn a_live_socket_is_not_taken_over_and_a_stale_one_is_replaced() {
    let (_tmp, dir, socket) = setup();
    let service = Running::start(&dir, &socket, |_| {});
    let other =
        Store::open(dir.with_extension("second"), StoreConfig::default()).expect("second store");
    let err = Server::bind(Arc::new(other), ServerOptions::new(&socket))
        .err()
        .expect("live socket refused");
    assert!(err.to_string().contains("already listens"), "{err}");
    drop(service);
    assert!(!socket.exists(), "a clean stop removes the socket");
    // A socket file left by a killed service is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&socket).expect("stale socket");
    drop(stale);
    let _again = Running::start(&dir, &socket, |_| {});
    client(&socket)
        .connect()
        .expect("serves on the replaced socket");
}

#[test]
fn many_threads_share_one_client_and_every_page_reads_back() {
    let (_tmp, dir, socket) = setup();
    let _service = Running::start(&dir, &socket, |_| {});
    let c = Arc::new(client(&socket));
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                for i in 0..40 {
                    let k = format!("t{t}-{i}");
                    let v = page(t * 1000 + i, 12 << 10);
                    assert_eq!(
                        c.put_batch(&[k.as_bytes()], &[vec![&v[..]]], &[])
                            .expect("put"),
                        vec![true]
                    );
                    assert_eq!(c.get(k.as_bytes()).expect("get"), Some(v));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(c.stats().expect("stats").pages, 240);
}
