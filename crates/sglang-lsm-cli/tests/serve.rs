//! `sglang-lsm serve` as a process: ready line, SIGTERM, SIGKILL and restart.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sglang_lsm::{Client, ClientOptions, Error, Store, StoreConfig};

fn start(dir: &Path, socket: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sglang-lsm"))
        .arg("serve")
        .arg("--dir")
        .arg(dir)
        .arg("--socket")
        .arg(socket)
        .args(["--capacity", "1g"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("ready on"));
    assert!(ready, "serve printed no ready line");
    // Keep draining stderr so the service never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
}

fn page(i: usize) -> Vec<u8> {
    (0..40_000).map(|j| (i * 7 + j) as u8).collect()
}

#[test]
fn sigterm_closes_cleanly_and_sigkill_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, socket) = (tmp.path().join("store"), tmp.path().join("kv.sock"));
    let mut service = start(&dir, &socket);
    let client = Client::new(
        &socket,
        ClientOptions {
            timeout_ms: 2_000,
            max_connections: 1,
        },
    );
    let keys: Vec<String> = (0..30).map(|i| format!("page-{i}")).collect();
    let pages: Vec<Vec<u8>> = (0..30).map(page).collect();
    for (k, p) in keys.iter().zip(&pages).take(20) {
        assert_eq!(
            client
                .put_batch(&[k.as_bytes()], &[vec![&p[..]]], &[])
                .expect("put"),
            vec![true]
        );
    }
    signal(&service, "KILL");
    service.wait().expect("wait");
    let started = Instant::now();
    let err = client.exists(b"page-0").expect_err("down");
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // A restart recovers every acknowledged page; the same client reconnects by itself.
    let mut service = start(&dir, &socket);
    for (k, p) in keys.iter().zip(&pages).take(20) {
        assert_eq!(
            client.get(k.as_bytes()).expect("get").as_deref(),
            Some(&p[..]),
            "{k}"
        );
    }
    for (k, p) in keys.iter().zip(&pages).skip(20) {
        assert_eq!(
            client
                .put_batch(&[k.as_bytes()], &[vec![&p[..]]], &[])
                .expect("put"),
            vec![true]
        );
    }
    // Operators read a running service's stats through its socket (the directory is locked).
    let out = Command::new(env!("CARGO_BIN_EXE_sglang-lsm"))
        .args(["stats", "--json", "--socket"])
        .arg(&socket)
        .output()
        .expect("stats --socket");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["stats"]["pages"], 30, "{v}");
    let out = Command::new(env!("CARGO_BIN_EXE_sglang-lsm"))
        .args(["stats", "--prometheus", "--socket"])
        .arg(&socket)
        .output()
        .expect("stats --prometheus");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sglang_lsm_service_connections"), "{text}");

    signal(&service, "TERM");
    let status = service.wait().expect("wait");
    assert!(status.success(), "SIGTERM exits 0: {status}");
    assert!(!socket.exists(), "a clean stop removes the socket");

    // The lock is released: the directory opens as a plain store with everything in it.
    let store = Store::open(&dir, StoreConfig::default()).expect("lock released");
    for (k, p) in keys.iter().zip(&pages) {
        assert_eq!(
            store.get(k.as_bytes()).expect("get").as_deref(),
            Some(&p[..]),
            "{k}"
        );
    }
}

#[test]
fn a_bad_config_fails_with_a_message_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("store.json");
    std::fs::write(&config, r#"{"no_such_option": 1}"#).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_sglang-lsm"))
        .arg("serve")
        .arg("--dir")
        .arg(tmp.path().join("store"))
        .arg("--socket")
        .arg(tmp.path().join("kv.sock"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("store.json") && stderr.contains("no_such_option"),
        "{stderr}"
    );
}
