//! `sglang-lsm bench-service`: the node service against the in-process store, in one run.
//!
//! - put and cold get through the service vs the embedded [`Store`], same bytes, same
//!   configuration, order alternated between repetitions (ABBA), both held against the
//!   device limit measured in the same run;
//! - `probe` of 128 keys: the round trip through the socket vs the in-process call;
//! - N client **processes** at once (this binary re-run as `bench-service-worker`), their
//!   aggregate put and cold get against the device;
//! - prefix sharing: two DP replicas behind a round-robin router on a `gen multiturn`
//!   workload, one shared store (the service) vs two private stores of half the capacity.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};
use sglang_lsm::{Client, ClientOptions, Server, ServerOptions, Store, StoreConfig, WritePages};

use crate::device::{self, DeviceLimit};
use crate::gen::{self, MultiturnArgs};
use crate::quantile::quantile;
use crate::units::{fmt_bytes, parse_bytes};

/// Pages per call, as SGLang's backup and prefetch batches, capped at 32 MiB per call.
const BATCH_PAGES: usize = 128;
const MAX_BATCH_BYTES: usize = 32 << 20;

/// Options of `sglang-lsm bench-service`.
#[derive(Args, Clone, Debug)]
pub struct ServiceBenchArgs {
    /// Working directory on the disk under test (a fresh subdirectory is created, removed).
    #[arg(long, default_value = "bench-out")]
    pub dir: PathBuf,
    /// Page sizes of the service-vs-embedded comparison.
    #[arg(long, value_delimiter = ',', default_value = "128k,1m", value_parser = parse_bytes)]
    pub page_sizes: Vec<u64>,
    /// Bytes written per store and page size (and by the device-limit measurement).
    #[arg(long, default_value = "512m", value_parser = parse_bytes)]
    pub bytes: u64,
    /// Repetitions; odd ones run the service first (ABBA), the table shows medians.
    #[arg(long, default_value_t = 2)]
    pub repeat: usize,
    /// Client processes of the concurrency case (1 MiB pages, --bytes in all).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// probe() calls timed per side.
    #[arg(long, default_value_t = 20_000)]
    pub probe_iters: usize,
    /// Conversations of the prefix-sharing case (`gen multiturn --clients`).
    #[arg(long, default_value_t = 128)]
    pub conversations: u32,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Options of the hidden `bench-service-worker` (one client process of the concurrency case).
#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    #[arg(long)]
    pub socket: PathBuf,
    /// `put` or `get`.
    #[arg(long)]
    pub op: String,
    /// Key prefix, distinct per worker.
    #[arg(long)]
    pub prefix: String,
    #[arg(long)]
    pub pages: usize,
    #[arg(long)]
    pub page_bytes: usize,
}

/// What a worker prints: wall-clock start and end, so the parent can take the span of all.
#[derive(Serialize, Deserialize)]
struct WorkerReport {
    start_us: u128,
    end_us: u128,
}

/// A node service on a thread of this process, for the in-run comparisons.
struct Service {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<sglang_lsm::Result<()>>>,
    socket: PathBuf,
}

impl Service {
    fn start(store: Arc<Store>, socket: &Path) -> anyhow::Result<Self> {
        let server = Server::bind(store, ServerOptions::new(socket))?;
        let stop = server.shutdown_flag();
        let thread = std::thread::spawn(move || server.run());
        Ok(Self {
            stop,
            thread: Some(thread),
            socket: socket.to_path_buf(),
        })
    }

    fn client(&self, connections: usize) -> Client {
        Client::new(
            &self.socket,
            ClientOptions {
                timeout_ms: 120_000,
                max_connections: connections,
            },
        )
    }

    fn stop(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => Ok(r?),
            Some(Err(_)) => anyhow::bail!("the service thread panicked"),
            None => Ok(()),
        }
    }
}

fn page_key(prefix: &str, i: usize) -> String {
    format!(
        "{prefix}{:064x}",
        (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

fn batch_pages(page: usize) -> usize {
    BATCH_PAGES.min((MAX_BATCH_BYTES / page).max(1))
}

/// Puts `pages` pages (K and V halves, like SGLang's pool), then flushes; returns seconds.
fn put_all(
    target: &impl WritePages,
    prefix: &str,
    pages: usize,
    page: usize,
) -> anyhow::Result<f64> {
    let per = batch_pages(page);
    let src: Vec<Vec<u8>> = (0..per)
        .map(|i| (0..page).map(|j| (i * 31 + j) as u8).collect())
        .collect();
    let keys: Vec<String> = (0..pages).map(|i| page_key(prefix, i)).collect();
    let start = Instant::now();
    for chunk in keys.chunks(per) {
        let refs: Vec<&[u8]> = chunk.iter().map(|k| k.as_bytes()).collect();
        let parts: Vec<Vec<&[u8]>> = src[..chunk.len()]
            .iter()
            .map(|b| {
                let (k, v) = b.split_at(page / 2);
                vec![k, v]
            })
            .collect();
        let ok = target.write_pages(&refs, &parts, &[])?;
        anyhow::ensure!(
            ok.iter().all(|&b| b),
            "a put was declined without a capacity bound"
        );
    }
    target.flush_pages()?;
    Ok(start.elapsed().as_secs_f64())
}

/// Reads every page back and checks a sample of bytes; returns seconds.
fn get_all(
    target: &impl WritePages,
    prefix: &str,
    pages: usize,
    page: usize,
) -> anyhow::Result<f64> {
    let per = batch_pages(page);
    let keys: Vec<String> = (0..pages).map(|i| page_key(prefix, i)).collect();
    let mut dst: Vec<Vec<u8>> = (0..per).map(|_| vec![0u8; page]).collect();
    let start = Instant::now();
    for chunk in keys.chunks(per) {
        let refs: Vec<&[u8]> = chunk.iter().map(|k| k.as_bytes()).collect();
        let mut parts: Vec<Vec<&mut [u8]>> = dst[..chunk.len()]
            .iter_mut()
            .map(|b| {
                let (k, v) = b.split_at_mut(page / 2);
                vec![k, v]
            })
            .collect();
        let hits = target.read_pages(&refs, &mut parts)?;
        anyhow::ensure!(hits.iter().all(|&h| h), "a read missed a page it wrote");
    }
    let elapsed = start.elapsed().as_secs_f64();
    for (i, b) in dst.iter().enumerate().take(pages.min(per)) {
        anyhow::ensure!(
            b[page - 1] == ((i * 31 + page - 1) as u8),
            "wrong bytes read back"
        );
    }
    Ok(elapsed)
}

fn probe_us(target: &impl WritePages, prefix: &str, iters: usize) -> anyhow::Result<(f64, f64)> {
    let keys: Vec<String> = (0..128).map(|i| page_key(prefix, i)).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let mut us = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let n = target.probe_pages(&refs, &[])?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(n == 128, "probe found {n} of 128");
    }
    Ok((quantile(&mut us, 0.5), quantile(&mut us, 0.99)))
}

#[derive(Serialize, Clone)]
struct Side {
    put_bytes_per_s: f64,
    cold_get_bytes_per_s: f64,
    probe128_p50_us: f64,
    probe128_p99_us: f64,
}

#[derive(Serialize, Clone)]
struct CaseRun {
    page_bytes: u64,
    device: DeviceLimit,
    embedded: Side,
    service: Side,
    cold: bool,
}

fn run_side(
    target: &impl WritePages,
    pages: usize,
    page: usize,
    probe_iters: usize,
) -> anyhow::Result<(Side, bool)> {
    let total = (pages * page) as f64;
    let put_s = put_all(target, "", pages, page)?;
    let cold = device::drop_caches();
    let get_s = get_all(target, "", pages, page)?;
    let (p50, p99) = probe_us(target, "", probe_iters)?;
    Ok((
        Side {
            put_bytes_per_s: total / put_s,
            cold_get_bytes_per_s: total / get_s,
            probe128_p50_us: p50,
            probe128_p99_us: p99,
        },
        cold,
    ))
}

fn embedded_side(
    dir: &Path,
    pages: usize,
    page: usize,
    iters: usize,
) -> anyhow::Result<(Side, bool)> {
    let store = Store::open(dir, StoreConfig::default())?;
    let r = run_side(&store, pages, page, iters);
    drop(store);
    std::fs::remove_dir_all(dir).ok();
    r
}

fn service_side(
    dir: &Path,
    pages: usize,
    page: usize,
    iters: usize,
) -> anyhow::Result<(Side, bool)> {
    let store = Arc::new(Store::open(dir, StoreConfig::default())?);
    let service = Service::start(Arc::clone(&store), &dir.with_extension("sock"))?;
    let client = service.client(1);
    let r = run_side(&client, pages, page, iters);
    drop(client);
    service.stop()?;
    drop(store);
    std::fs::remove_dir_all(dir).ok();
    r
}

#[derive(Serialize)]
struct Concurrency {
    clients: usize,
    page_bytes: u64,
    device: DeviceLimit,
    put_bytes_per_s: f64,
    cold_get_bytes_per_s: f64,
    cold: bool,
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// The hidden worker: one client process putting or reading its share.
///
/// # Errors
/// The service is unreachable or a page misses.
pub fn worker(args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(
        &args.socket,
        ClientOptions {
            timeout_ms: 120_000,
            max_connections: 1,
        },
    );
    client.connect()?;
    let start_us = now_us();
    match args.op.as_str() {
        "put" => {
            put_all(&client, &args.prefix, args.pages, args.page_bytes)?;
        }
        "get" => {
            get_all(&client, &args.prefix, args.pages, args.page_bytes)?;
        }
        other => anyhow::bail!("--op must be put or get, not {other:?}"),
    }
    let report = WorkerReport {
        start_us,
        end_us: now_us(),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

fn spawn_workers(
    socket: &Path,
    op: &str,
    clients: usize,
    pages: usize,
    page: usize,
) -> anyhow::Result<f64> {
    let exe = std::env::current_exe().context("locating this binary for the worker processes")?;
    let children: Vec<_> = (0..clients)
        .map(|w| {
            Command::new(&exe)
                .args([
                    "bench-service-worker",
                    "--op",
                    op,
                    "--prefix",
                    &format!("w{w}-"),
                ])
                .arg("--socket")
                .arg(socket)
                .args([
                    "--pages",
                    &pages.to_string(),
                    "--page-bytes",
                    &page.to_string(),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting worker {w} ({})", exe.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut spans = Vec::new();
    for child in children {
        let out = child.wait_with_output()?;
        anyhow::ensure!(out.status.success(), "a worker failed: {}", out.status);
        let r: WorkerReport = serde_json::from_slice(&out.stdout).context("a worker's report")?;
        spans.push(r);
    }
    let start = spans.iter().map(|r| r.start_us).min().unwrap_or(0);
    let end = spans.iter().map(|r| r.end_us).max().unwrap_or(0);
    let total = (clients * pages * page) as f64;
    Ok(total / ((end.saturating_sub(start)) as f64 / 1e6).max(1e-9))
}

fn concurrency(root: &Path, args: &ServiceBenchArgs) -> anyhow::Result<Concurrency> {
    let page = 1usize << 20;
    let pages = (args.bytes as usize / page / args.clients.max(1)).max(1);
    let device = device::measure(root, args.bytes)?;
    let dir = root.join("concurrency");
    let store = Arc::new(Store::open(&dir, StoreConfig::default())?);
    let service = Service::start(Arc::clone(&store), &root.join("concurrency.sock"))?;
    let put = spawn_workers(&service.socket, "put", args.clients, pages, page)?;
    store.flush()?;
    let cold = device::drop_caches();
    let get = spawn_workers(&service.socket, "get", args.clients, pages, page)?;
    service.stop()?;
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
    Ok(Concurrency {
        clients: args.clients,
        page_bytes: page as u64,
        device,
        put_bytes_per_s: put,
        cold_get_bytes_per_s: get,
        cold,
    })
}

#[derive(Serialize)]
struct SharingRow {
    capacity_frac: f64,
    capacity_bytes: u64,
    shared_hit_rate: f64,
    private_hit_rate: f64,
}

#[derive(Serialize)]
struct Sharing {
    conversations: u32,
    requests: usize,
    unique_blocks: usize,
    page_bytes: u64,
    rows: Vec<SharingRow>,
}

const SHARING_PAGE_BYTES: usize = 64 << 10;

/// Replays `reqs`, request `i` on replica `i % 2` (a round-robin router), and returns the
/// fraction of blocks found: each request probes its chain, then stores what it missed.
fn replay_replicas(
    reqs: &[gen::GenRequest],
    replicas: [&dyn WritePages; 2],
) -> anyhow::Result<f64> {
    let page = vec![7u8; SHARING_PAGE_BYTES];
    let (mut hit, mut total) = (0usize, 0usize);
    for (i, r) in reqs.iter().enumerate() {
        let target = replicas[i % 2];
        let keys: Vec<String> = r.hash_ids.iter().map(|id| format!("{id:016x}")).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let found = target.probe_pages(&refs, &[])?;
        hit += found;
        total += refs.len();
        for chunk_start in (found..refs.len()).step_by(BATCH_PAGES) {
            let end = (chunk_start + BATCH_PAGES).min(refs.len());
            let values: Vec<Vec<&[u8]>> = (chunk_start..end).map(|_| vec![&page[..]]).collect();
            target.write_pages(&refs[chunk_start..end], &values, &refs[..chunk_start])?;
        }
    }
    Ok(hit as f64 / total.max(1) as f64)
}

fn sharing_store(dir: &Path, capacity_bytes: u64) -> anyhow::Result<Store> {
    Ok(Store::open(
        dir,
        StoreConfig {
            capacity_bytes: Some(capacity_bytes),
            segment_bytes: 4 << 20,
            ..StoreConfig::default()
        },
    )?)
}

fn sharing(root: &Path, args: &ServiceBenchArgs) -> anyhow::Result<Sharing> {
    let reqs = gen::multiturn(&MultiturnArgs {
        out: PathBuf::new(),
        clients: args.conversations,
        rounds: 8,
        request_tokens: 8000,
        sub_question_tokens: 128,
        output_tokens: 200,
        block_tokens: crate::trace::MOONCAKE_BLOCK_TOKENS,
        think_time_ms: 5000,
        seed: 1,
    })?;
    let unique: std::collections::HashSet<u64> = reqs
        .iter()
        .flat_map(|r| r.hash_ids.iter().copied())
        .collect();
    let footprint = (unique.len() * SHARING_PAGE_BYTES) as u64;
    let mut rows = Vec::new();
    for frac in [0.25, 0.5, 1.0] {
        // The store's floor is 16 MiB, so each private half gets at least that; at 100% add
        // headroom for the segment being filled.
        let capacity = ((footprint as f64 * frac) as u64).max(32 << 20)
            + if frac >= 1.0 { 16 << 20 } else { 0 };
        let dir = root.join(format!("share-{frac}"));
        let shared = {
            let store = Arc::new(sharing_store(&dir.join("shared"), capacity)?);
            let service = Service::start(Arc::clone(&store), &dir.join("shared.sock"))?;
            let (a, b) = (service.client(1), service.client(1));
            let rate = replay_replicas(&reqs, [&a, &b])?;
            drop((a, b));
            service.stop()?;
            rate
        };
        let private = {
            let a = sharing_store(&dir.join("private-a"), capacity / 2)?;
            let b = sharing_store(&dir.join("private-b"), capacity / 2)?;
            replay_replicas(&reqs, [&a, &b])?
        };
        std::fs::remove_dir_all(&dir).ok();
        rows.push(SharingRow {
            capacity_frac: frac,
            capacity_bytes: capacity,
            shared_hit_rate: shared,
            private_hit_rate: private,
        });
    }
    Ok(Sharing {
        conversations: args.conversations,
        requests: reqs.len(),
        unique_blocks: unique.len(),
        page_bytes: SHARING_PAGE_BYTES as u64,
        rows,
    })
}

#[derive(Serialize)]
struct Summary {
    page_bytes: u64,
    put_service_vs_embedded: f64,
    cold_get_service_vs_embedded: f64,
    service_put_vs_device_write: f64,
    service_cold_get_vs_device_read: f64,
    embedded_put_vs_device_write: f64,
    embedded_cold_get_vs_device_read: f64,
    service_probe128_p50_us: f64,
    embedded_probe128_p50_us: f64,
}

/// The data-path candidates' extra work, measured: the arena's one copy (memcpy) against
/// the service pulling from the client with `process_vm_readv`. Client-side I/O has no copy;
/// its bound is the embedded store's own figure.
#[derive(Serialize)]
struct CopyCost {
    bytes: u64,
    memcpy_bytes_per_s: f64,
    process_vm_readv_bytes_per_s: f64,
}

fn copy_cost() -> anyhow::Result<CopyCost> {
    const BYTES: usize = 256 << 20;
    const CHUNK: usize = 4 << 20;
    let src: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
    let mut dst = vec![0u8; BYTES];
    dst.copy_from_slice(&src); // fault the pages in before timing
    let start = Instant::now();
    for (d, s) in dst.chunks_mut(CHUNK).zip(src.chunks(CHUNK)) {
        d.copy_from_slice(s);
    }
    let memcpy_s = start.elapsed().as_secs_f64();
    let pid = libc::pid_t::try_from(std::process::id())?;
    let start = Instant::now();
    for (d, s) in dst.chunks_mut(CHUNK).zip(src.chunks(CHUNK)) {
        let local = libc::iovec {
            iov_base: d.as_mut_ptr().cast(),
            iov_len: d.len(),
        };
        let remote = libc::iovec {
            iov_base: s.as_ptr() as *mut libc::c_void,
            iov_len: s.len(),
        };
        // SAFETY: both iovecs describe live buffers of this process of the stated lengths.
        let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
        anyhow::ensure!(
            n == d.len() as isize,
            "process_vm_readv moved {n} of {} bytes",
            d.len()
        );
    }
    let vm_s = start.elapsed().as_secs_f64();
    anyhow::ensure!(dst == src, "a copy moved the wrong bytes");
    Ok(CopyCost {
        bytes: BYTES as u64,
        memcpy_bytes_per_s: BYTES as f64 / memcpy_s,
        process_vm_readv_bytes_per_s: BYTES as f64 / vm_s,
    })
}

/// The machine's floor for any socket round trip: one byte bounced between two threads over
/// a Unix socket pair, the same two wakeups a service call costs. Measured in the same run,
/// because on this shared VM it moves between runs from ~10 to ~45 us.
fn socket_floor_us(iters: usize) -> anyhow::Result<f64> {
    use std::io::{Read, Write};
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let mut byte = [0u8; 1];
        while b.read(&mut byte)? == 1 {
            b.write_all(&byte)?;
        }
        Ok(())
    });
    let mut us = Vec::with_capacity(iters);
    let mut byte = [7u8; 1];
    for _ in 0..iters {
        let t = Instant::now();
        a.write_all(&byte)?;
        a.read_exact(&mut byte)?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(a);
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok(quantile(&mut us, 0.5))
}

#[derive(Serialize)]
struct Report {
    socket_round_trip_floor_us: f64,
    copy: CopyCost,
    runs: Vec<CaseRun>,
    summary: Vec<Summary>,
    concurrency: Concurrency,
    sharing: Sharing,
}

fn median(mut v: Vec<f64>) -> f64 {
    quantile(&mut v, 0.5)
}

fn summarize(page_bytes: u64, runs: &[&CaseRun]) -> Summary {
    let of = |f: &dyn Fn(&CaseRun) -> f64| median(runs.iter().map(|r| f(r)).collect());
    Summary {
        page_bytes,
        put_service_vs_embedded: of(&|r| r.service.put_bytes_per_s / r.embedded.put_bytes_per_s),
        cold_get_service_vs_embedded: of(&|r| {
            r.service.cold_get_bytes_per_s / r.embedded.cold_get_bytes_per_s
        }),
        service_put_vs_device_write: of(&|r| {
            r.service.put_bytes_per_s / r.device.write_bytes_per_s
        }),
        service_cold_get_vs_device_read: of(&|r| {
            r.service.cold_get_bytes_per_s / r.device.read_bytes_per_s
        }),
        embedded_put_vs_device_write: of(&|r| {
            r.embedded.put_bytes_per_s / r.device.write_bytes_per_s
        }),
        embedded_cold_get_vs_device_read: of(&|r| {
            r.embedded.cold_get_bytes_per_s / r.device.read_bytes_per_s
        }),
        service_probe128_p50_us: of(&|r| r.service.probe128_p50_us),
        embedded_probe128_p50_us: of(&|r| r.embedded.probe128_p50_us),
    }
}

/// Runs every case and prints the tables.
///
/// # Errors
/// Bad options, I/O errors, or a page that reads back wrong or not at all.
pub fn run(args: &ServiceBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.repeat >= 1 && args.clients >= 1,
        "--repeat and --clients must be at least 1"
    );
    let root = args.dir.join(format!("service-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let result = run_in(args, &root);
    std::fs::remove_dir_all(&root).ok();
    let report = result?;
    print_tables(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_in(args: &ServiceBenchArgs, root: &Path) -> anyhow::Result<Report> {
    let mut runs = Vec::new();
    for rep in 0..args.repeat {
        for &page in &args.page_sizes {
            anyhow::ensure!(page >= 4096, "page sizes must be at least 4 KiB");
            let page_usize = usize::try_from(page)?;
            let pages = (args.bytes / page).max(1) as usize;
            eprintln!(
                "{} pages, repetition {}/{}: device, embedded and service",
                fmt_bytes(page),
                rep + 1,
                args.repeat
            );
            let device = device::measure(root, args.bytes)?;
            let dir = root.join(format!("case-{page}-{rep}"));
            let (emb_dir, svc_dir) = (dir.join("embedded"), dir.join("service"));
            let ((embedded, cold_e), (service, cold_s)) = if rep % 2 == 0 {
                let e = embedded_side(&emb_dir, pages, page_usize, args.probe_iters)?;
                (
                    e,
                    service_side(&svc_dir, pages, page_usize, args.probe_iters)?,
                )
            } else {
                let s = service_side(&svc_dir, pages, page_usize, args.probe_iters)?;
                (
                    embedded_side(&emb_dir, pages, page_usize, args.probe_iters)?,
                    s,
                )
            };
            std::fs::remove_dir_all(&dir).ok();
            runs.push(CaseRun {
                page_bytes: page,
                device,
                embedded,
                service,
                cold: cold_e && cold_s,
            });
        }
    }
    let summary = args
        .page_sizes
        .iter()
        .map(|&p| {
            summarize(
                p,
                &runs
                    .iter()
                    .filter(|r| r.page_bytes == p)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    eprintln!("{} client processes at once", args.clients);
    let concurrency = concurrency(root, args)?;
    eprintln!("prefix sharing across two replicas");
    let sharing = sharing(root, args)?;
    let copy = copy_cost()?;
    let socket_round_trip_floor_us = socket_floor_us(args.probe_iters)?;
    Ok(Report {
        socket_round_trip_floor_us,
        copy,
        runs,
        summary,
        concurrency,
        sharing,
    })
}

fn gbps(b: f64) -> String {
    format!("{:.2}", b / 1e9)
}

fn print_tables(r: &Report) {
    println!(
        "service vs embedded (medians of ABBA repetitions; device = O_DIRECT sequential, same run)"
    );
    println!("| page | put service/embedded | cold get service/embedded | service put/device | service cold get/device | embedded put/device | embedded cold get/device | probe128 p50 us service | probe128 p50 us embedded |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in &r.summary {
        println!(
            "| {} | {:.2} | {:.2} | {:.0}% | {:.0}% | {:.0}% | {:.0}% | {:.1} | {:.1} |",
            fmt_bytes(s.page_bytes),
            s.put_service_vs_embedded,
            s.cold_get_service_vs_embedded,
            100.0 * s.service_put_vs_device_write,
            100.0 * s.service_cold_get_vs_device_read,
            100.0 * s.embedded_put_vs_device_write,
            100.0 * s.embedded_cold_get_vs_device_read,
            s.service_probe128_p50_us,
            s.embedded_probe128_p50_us,
        );
    }
    for run in &r.runs {
        println!(
            "  run {}: device write {} read {} GB/s; embedded put {} cold get {}; service put {} cold get {}{}",
            fmt_bytes(run.page_bytes),
            gbps(run.device.write_bytes_per_s),
            gbps(run.device.read_bytes_per_s),
            gbps(run.embedded.put_bytes_per_s),
            gbps(run.embedded.cold_get_bytes_per_s),
            gbps(run.service.put_bytes_per_s),
            gbps(run.service.cold_get_bytes_per_s),
            if run.cold { "" } else { " (page cache not dropped: warm!)" },
        );
    }
    println!(
        "\nsocket round-trip floor (1 byte between two threads, p50): {:.1} us",
        r.socket_round_trip_floor_us
    );
    println!(
        "\ndata-path copy cost ({} in 4 MiB pieces): memcpy {} GB/s, process_vm_readv {} GB/s",
        fmt_bytes(r.copy.bytes),
        gbps(r.copy.memcpy_bytes_per_s),
        gbps(r.copy.process_vm_readv_bytes_per_s)
    );
    let c = &r.concurrency;
    println!(
        "\n{} client processes, {} pages: put {} GB/s = {:.0}% of device write {}; cold get {} GB/s = {:.0}% of device read {}{}",
        c.clients,
        fmt_bytes(c.page_bytes),
        gbps(c.put_bytes_per_s),
        100.0 * c.put_bytes_per_s / c.device.write_bytes_per_s,
        gbps(c.device.write_bytes_per_s),
        gbps(c.cold_get_bytes_per_s),
        100.0 * c.cold_get_bytes_per_s / c.device.read_bytes_per_s,
        gbps(c.device.read_bytes_per_s),
        if c.cold { "" } else { " (warm!)" },
    );
    let s = &r.sharing;
    println!(
        "\nprefix sharing: gen multiturn, {} conversations x 8 rounds ({} requests, {} unique {} blocks), two replicas behind a round-robin router",
        s.conversations,
        s.requests,
        s.unique_blocks,
        fmt_bytes(s.page_bytes)
    );
    println!(
        "| capacity (of footprint) | one shared store (service) | two private stores, half each |"
    );
    println!("|---|---|---|");
    for row in &s.rows {
        println!(
            "| {} ({:.0}%) | {:.1}% | {:.1}% |",
            fmt_bytes(row.capacity_bytes),
            100.0 * row.capacity_frac,
            100.0 * row.shared_hit_rate,
            100.0 * row.private_hit_rate
        );
    }
}
