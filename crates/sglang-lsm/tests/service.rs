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
        options.arena_bytes = sglang_lsm::service::server::MIN_ARENA_BYTES;
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
    // 10 pages of 600 KiB in two parts each: 6 MiB through a 2 MiB arena (1 MiB halves).
    let keys: Vec<Vec<u8>> = (0..10).map(|i| format!("chain-{i}").into_bytes()).collect();
    let pages: Vec<Vec<u8>> = (0..10).map(|i| page(i, 600 << 10)).collect();
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
    let mut out: Vec<Vec<u8>> = (0..10).map(|_| vec![0u8; 600 << 10]).collect();
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
    let big = vec![0u8; (1 << 20) + 1];
    let err = c
        .put_batch(&[b"big"], &[vec![&big[..]]], &[])
        .expect_err("larger than the arena");
    assert!(err.to_string().contains("--arena-mib"), "{err}");
    // The client keeps working after each of these.
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

#[test]
fn empty_batches_are_answered_without_costing_a_connection() {
    let (_tmp, dir, socket) = setup();
    // Room for the client and every raw connection below even if none has closed yet; a
    // leaked slot per empty batch (the bug: a panicking connection thread) would exceed it,
    // and the wait at the end checks that all slots but the client's come back.
    let _service = Running::start(&dir, &socket, |o| o.max_clients = 8);
    let c = client(&socket);
    for _ in 0..10 {
        assert_eq!(
            c.put_batch(&[], &[], &[]).expect("empty put"),
            Vec::<bool>::new()
        );
        assert_eq!(
            c.get_batch(&[], &mut []).expect("empty get"),
            Vec::<bool>::new()
        );
        assert_eq!(c.probe(&[], &[]).expect("empty probe"), 0);
    }
    // A raw empty Put reaches the engine too: answered, and no slot leaks.
    for _ in 0..5 {
        let mut s = raw_hello(&socket);
        let put = Request::Put {
            keys: sglang_lsm::service::wire::Keys::default(),
            prefix: sglang_lsm::service::wire::Keys::default(),
            pages: vec![],
            continuing: false,
        };
        wire::write_frame(&mut s, &put).expect("send");
        match wire::read_frame::<Response>(&mut s).expect("reply") {
            Response::Flags(f) => assert!(f.is_empty()),
            other => panic!("{other:?}"),
        }
    }
    // The raw connections' threads see the close and give their slots back shortly after.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let metrics = c.metrics_text().expect("metrics");
        if metrics.contains("sglang_lsm_service_connections 1\n") {
            break;
        }
        assert!(Instant::now() < deadline, "slots leaked: {metrics}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_chunk_after_a_declined_chunk_is_declined_as_in_one_batch() {
    let (_tmp, dir, socket) = setup();
    // 16 MiB capacity, pages of 700 KiB: one chunk each through 1 MiB halves.
    let store = Arc::new(
        Store::open(
            &dir,
            StoreConfig {
                capacity_bytes: Some(16 << 20),
                segment_bytes: 1 << 20,
                ..StoreConfig::default()
            },
        )
        .expect("open"),
    );
    let mut options = ServerOptions::new(&socket);
    options.arena_bytes = sglang_lsm::service::server::MIN_ARENA_BYTES;
    let server = Server::bind(Arc::clone(&store), options).expect("bind");
    let stop = server.shutdown_flag();
    let thread = std::thread::spawn(move || server.run().expect("serve"));
    let c = client(&socket);
    let keys: Vec<String> = (0..40).map(|i| format!("long-{i:02}")).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let pages: Vec<Vec<u8>> = (0..40).map(|i| page(i, 700 << 10)).collect();
    let values: Vec<Vec<&[u8]>> = pages.iter().map(|p| vec![&p[..]]).collect();
    let flags = c.put_batch(&refs, &values, &[]).expect("put");
    let stored = flags.iter().take_while(|&&f| f).count();
    assert!(
        stored > 0 && stored < 40,
        "the bound declines the tail: {flags:?}"
    );
    assert!(
        flags[stored..].iter().all(|&f| !f),
        "nothing after the first decline: {flags:?}"
    );
    // The background reclaimer may since have evicted the chain's newest leaves, never more.
    let lead = c.probe(&refs, &[]).expect("probe");
    assert!(lead > 0 && lead <= stored, "{lead} of {stored}");
    for k in &refs[lead..] {
        assert!(!c.exists(k).expect("exists"));
    }
    stop.store(true, Ordering::Relaxed);
    thread.join().expect("server");
}

#[test]
fn an_error_in_a_later_chunk_leaves_the_client_in_step() {
    let (_tmp, dir, socket) = setup();
    let _service = Running::start(&dir, &socket, |_| {});
    let c = client(&socket);
    let keys: Vec<String> = (0..8).map(|i| format!("e-{i}")).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let pages: Vec<Vec<u8>> = (0..8).map(|i| page(i, 600 << 10)).collect();
    let values: Vec<Vec<&[u8]>> = pages.iter().map(|p| vec![&p[..]]).collect();
    assert_eq!(
        c.put_batch(&refs, &values, &[]).expect("put"),
        vec![true; 8]
    );
    // Page 6's buffer is the wrong size: its chunk fails after earlier chunks were answered.
    let mut out: Vec<Vec<u8>> = (0..8)
        .map(|i| vec![0u8; if i == 6 { 100 } else { 600 << 10 }])
        .collect();
    let mut bufs: Vec<Vec<&mut [u8]>> = out.iter_mut().map(|o| vec![&mut o[..]]).collect();
    let err = c.get_batch(&refs, &mut bufs).expect_err("length mismatch");
    assert_eq!(err.code(), "length_mismatch", "{err}");
    // The next calls get their own replies, with exact bytes.
    for (k, p) in refs.iter().zip(&pages) {
        assert_eq!(c.get(k).expect("get").as_deref(), Some(&p[..]));
    }
}

#[test]
fn shutdown_is_prompt_while_clients_keep_sending() {
    let (_tmp, dir, socket) = setup();
    let mut service = Running::start(&dir, &socket, |_| {});
    let busy = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (socket, busy) = (socket.clone(), Arc::clone(&busy));
            std::thread::spawn(move || {
                let c = client(&socket);
                let v = vec![t as u8; 4096];
                let mut i = 0u64;
                while busy.load(Ordering::Relaxed) {
                    let k = format!("busy-{t}-{i}");
                    // Errors are expected once the service stops.
                    let _ = c.put_batch(&[k.as_bytes()], &[vec![&v[..]]], &[]);
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    service.halt();
    let took = started.elapsed();
    busy.store(false, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    assert!(
        took < Duration::from_secs(3),
        "shutdown under load took {took:?}"
    );
    assert!(!socket.exists());
}

#[test]
fn a_restart_is_survived_with_several_idle_connections() {
    let (_tmp, dir, socket) = setup();
    let service = Running::start(&dir, &socket, |_| {});
    let c = Arc::new(Client::new(
        &socket,
        ClientOptions {
            timeout_ms: 2_000,
            max_connections: 4,
        },
    ));
    // Four threads at once leave four idle connections in the pool.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                let v = page(t, 8192);
                let k = format!("idle-{t}");
                for _ in 0..20 {
                    c.put_batch(&[k.as_bytes()], &[vec![&v[..]]], &[])
                        .expect("put");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    drop(service.stop());
    let _again = Running::start(&dir, &socket, |_| {});
    assert_eq!(
        c.get(b"idle-2").expect("the first call after a restart"),
        Some(page(2, 8192))
    );
}
