//! The side-by-side store comparison of `sglang-lsm bench`: every backend held against the
//! device limit measured in the same run.
//!
//! 1. **Page sizes** (128 KiB, 1 MiB, 8 MiB by default): for each, the device limit
//!    ([`crate::device`]), then per backend: put throughput (including the final `sync`),
//!    cold get (page cache dropped) and warm get throughput, per-batch latency percentiles,
//!    and probe latency for 128 present keys.
//! 2. **Object count**: small pages inserted up to each checkpoint; at each, the cost per
//!    put, warm get and cold get, and the probe latency, per backend, within a time budget.
//!
//! The `bench` command ([`crate::bench`]) runs both, then the ablations and the compression
//! measurement, and hands everything to the report.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::backend::{BackendKind, KvBackend};
use crate::device::{self, DeviceLimit};
use crate::pages::{page_key, PageSlots};
use crate::quantile::quantile;
use crate::units::fmt_bytes;

/// Pages per call (SGLang's `STORAGE_BATCH_SIZE`), capped so one batch is at most 32 MiB.
const SGLANG_BATCH_PAGES: usize = 128;
const MAX_BATCH_BYTES: usize = 32 << 20;

/// One backend at one page size.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseResult {
    pub backend: String,
    pub page_bytes: u64,
    pub pages: u64,
    pub batch_pages: usize,
    pub put_bytes_per_s: f64,
    pub cold_get_bytes_per_s: f64,
    pub warm_get_bytes_per_s: f64,
    pub put_batch_p50_ms: f64,
    pub put_batch_p99_ms: f64,
    pub cold_get_batch_p50_ms: f64,
    pub cold_get_batch_p99_ms: f64,
    pub probe128_p50_us: f64,
    pub probe128_p99_us: f64,
    pub disk_bytes: u64,
    /// Whether the page cache could be dropped before the cold read (needs root).
    pub cold: bool,
}

/// One page size: the device limit and every backend.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PageSizeResult {
    pub page_bytes: u64,
    pub device: DeviceLimit,
    pub cases: Vec<CaseResult>,
}

/// One backend at one object count.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScalePoint {
    pub backend: String,
    pub objects: u64,
    pub put_us_per_page: f64,
    pub warm_get_us_per_page_p50: f64,
    pub cold_get_us_per_page_p50: f64,
    pub probe128_us_p50: f64,
    pub disk_bytes: u64,
    /// Seconds spent inserting so far.
    pub insert_s: f64,
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(&format!(
        "{what:>28} {{bar:30}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len).with_style(style)
}

fn next_rand(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Measures one page size: the device limit, then every backend in a fresh directory under
/// `root`, each writing `bytes`.
///
/// # Errors
/// A page size that is not a multiple of 4 KiB, I/O errors, or a store that returns wrong
/// bytes or misses a page it wrote.
pub fn measure_page_size(
    root: &Path,
    kinds: &[BackendKind],
    bytes: u64,
    probe_iters: usize,
    page: u64,
) -> anyhow::Result<PageSizeResult> {
    anyhow::ensure!(
        page >= 4096 && page.is_multiple_of(4096),
        "page sizes must be multiples of 4 KiB"
    );
    eprintln!("{}: device limit", fmt_bytes(page));
    let device = device::measure(root, bytes)?;
    let mut cases = Vec::new();
    for &kind in kinds {
        let dir = root.join(format!("{}-{page}", kind.name()));
        let backend = kind.open(&dir)?;
        let r = bench_case(bytes, probe_iters, backend.as_ref(), page);
        drop(backend);
        std::fs::remove_dir_all(&dir).ok();
        cases.push(r.with_context(|| format!("{} at {}", kind.name(), fmt_bytes(page)))?);
    }
    Ok(PageSizeResult {
        page_bytes: page,
        device,
        cases,
    })
}

/// The object-count sweep over every backend, each in a fresh directory under `root`:
/// `page_bytes` pages inserted up to each of the ascending `counts`, stopping at the first
/// checkpoint past `budget_s` seconds of inserting.
///
/// # Errors
/// I/O errors, or a store that misses a page it wrote.
pub fn scale_sweep(
    root: &Path,
    kinds: &[BackendKind],
    counts: &[u64],
    page_bytes: u64,
    budget_s: f64,
) -> anyhow::Result<Vec<ScalePoint>> {
    let mut scale = Vec::new();
    for &kind in kinds {
        let dir = root.join(format!("scale-{}", kind.name()));
        let backend = kind.open(&dir)?;
        let r = sweep_backend(backend.as_ref(), counts, page_bytes, budget_s);
        drop(backend);
        std::fs::remove_dir_all(&dir).ok();
        scale.extend(r.with_context(|| format!("scale sweep of {}", kind.name()))?);
    }
    Ok(scale)
}

fn key_refs(keys: &[String]) -> Vec<&[u8]> {
    keys.iter().map(|k| k.as_bytes()).collect()
}

/// Writes every page then reads it back (cold, warm) and probes; see the module docs.
fn bench_case(
    bytes: u64,
    probe_iters: usize,
    backend: &dyn KvBackend,
    page: u64,
) -> anyhow::Result<CaseResult> {
    let page_len = usize::try_from(page)?;
    let pages = (bytes / page).max(1);
    let batch_pages = SGLANG_BATCH_PAGES.min((MAX_BATCH_BYTES / page_len).max(1));
    let tag = format!("cmp{page}");
    let keys: Vec<String> = (0..pages).map(|i| page_key(&tag, i)).collect();
    let mut slots = PageSlots::new(batch_pages, page_len, page);
    let name = backend.name();

    // Put: every batch is a prefix chain (keys[i-1] is the parent of keys[i]).
    let pb = bar(pages * page, &format!("{name} put {}", fmt_bytes(page)));
    let mut put_ms = Vec::new();
    let start = Instant::now();
    for (c, chunk) in keys.chunks(batch_pages).enumerate() {
        for i in 0..chunk.len() {
            slots.stamp(i, (c * batch_pages + i) as u64);
        }
        let refs = key_refs(chunk);
        let values = slots.parts(chunk.len());
        let t = Instant::now();
        let ok = backend.put_batch(&refs, &values, &[])?;
        put_ms.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(ok.iter().all(|&b| b), "{name} declined a write");
        pb.inc((chunk.len() * page_len) as u64);
    }
    backend.sync()?;
    let put_s = start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let disk_bytes = backend.disk_bytes()?;

    let cold = device::drop_caches();
    let (cold_s, cold_ms) = read_all(
        backend,
        &keys,
        &mut slots,
        batch_pages,
        page_len,
        "cold get",
    )?;
    let (warm_s, _) = read_all(
        backend,
        &keys,
        &mut slots,
        batch_pages,
        page_len,
        "warm get",
    )?;

    // Probe: windows of 128 consecutive present keys, like SGLang's batch_exists.
    let window = SGLANG_BATCH_PAGES.min(keys.len());
    let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ page;
    let mut probe_us = Vec::with_capacity(probe_iters);
    for _ in 0..probe_iters {
        let s = (next_rand(&mut rng) % (keys.len() - window + 1) as u64) as usize;
        let refs = key_refs(&keys[s..s + window]);
        let t = Instant::now();
        let n = backend.probe(&refs)?;
        probe_us.push(t.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(
            n == window,
            "{name} probe found {n} of {window} present keys"
        );
    }
    let total = (pages * page) as f64;
    Ok(CaseResult {
        backend: name.to_string(),
        page_bytes: page,
        pages,
        batch_pages,
        put_bytes_per_s: total / put_s,
        cold_get_bytes_per_s: total / cold_s,
        warm_get_bytes_per_s: total / warm_s,
        put_batch_p50_ms: quantile(&mut put_ms.clone(), 0.5),
        put_batch_p99_ms: quantile(&mut put_ms, 0.99),
        cold_get_batch_p50_ms: quantile(&mut cold_ms.clone(), 0.5),
        cold_get_batch_p99_ms: quantile(&mut cold_ms.clone(), 0.99),
        probe128_p50_us: quantile(&mut probe_us.clone(), 0.5),
        probe128_p99_us: quantile(&mut probe_us, 0.99),
        disk_bytes,
        cold,
    })
}

/// Reads every page in write order and checks each page's stamp. Returns (seconds, per-batch ms).
fn read_all(
    backend: &dyn KvBackend,
    keys: &[String],
    slots: &mut PageSlots,
    batch_pages: usize,
    page_len: usize,
    what: &str,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let name = backend.name();
    let pb = bar(
        (keys.len() * page_len) as u64,
        &format!("{name} {what} {}", fmt_bytes(page_len as u64)),
    );
    let mut ms = Vec::new();
    let start = Instant::now();
    for (c, chunk) in keys.chunks(batch_pages).enumerate() {
        let refs = key_refs(chunk);
        let mut outs = slots.parts_mut(chunk.len());
        let t = Instant::now();
        let hits = backend.get_batch(&refs, &mut outs)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        drop(outs);
        for (i, h) in hits.iter().enumerate() {
            let idx = (c * batch_pages + i) as u64;
            anyhow::ensure!(*h, "{name} missed page {idx} it wrote");
            anyhow::ensure!(
                slots.stamp_of(i) == idx,
                "{name} returned another page's bytes for page {idx}"
            );
        }
        pb.inc((chunk.len() * page_len) as u64);
    }
    pb.finish_and_clear();
    Ok((start.elapsed().as_secs_f64(), ms))
}

/// Batches timed at each checkpoint for put, warm get and probe; cold get uses fewer, since
/// each cold batch pays real device latency.
const SCALE_SAMPLE_BATCHES: usize = 100;
const SCALE_COLD_BATCHES: usize = 20;

fn sweep_backend(
    backend: &dyn KvBackend,
    counts: &[u64],
    page_bytes: u64,
    budget_s: f64,
) -> anyhow::Result<Vec<ScalePoint>> {
    let page = usize::try_from(page_bytes)?;
    let name = backend.name();
    let total = counts.iter().copied().max().unwrap_or(0);
    let pb = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(&format!(
            "{name:>12} insert {{bar:30}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut slots = PageSlots::new(SGLANG_BATCH_PAGES, page, 7);
    let tag = "scale";
    let mut written = 0u64;
    let mut insert_s = 0.0f64;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut points = Vec::new();
    for &target in counts {
        if insert_s > budget_s {
            eprintln!(
                "{name}: scale sweep stopped at {written} objects (budget {} s spent)",
                budget_s
            );
            break;
        }
        let window_pages = (SCALE_SAMPLE_BATCHES * SGLANG_BATCH_PAGES) as u64;
        let mut window_s = 0.0;
        let mut window_n = 0u64;
        while written < target {
            let n = (target - written).min(SGLANG_BATCH_PAGES as u64);
            let keys: Vec<String> = (written..written + n).map(|i| page_key(tag, i)).collect();
            for i in 0..n as usize {
                slots.stamp(i, written + i as u64);
            }
            let refs = key_refs(&keys);
            let values = slots.parts(n as usize);
            let t = Instant::now();
            backend.put_batch(&refs, &values, &[])?;
            let dt = t.elapsed().as_secs_f64();
            insert_s += dt;
            if target - written <= window_pages {
                // Time only the stretch right before the checkpoint: cost *at* this size.
                window_s += dt;
                window_n += n;
            }
            written += n;
            pb.set_position(written);
        }
        // The sync belongs to the timed window: stores that write through the page cache
        // pay for their deferred writes here, as direct writers paid inside put_batch.
        let t = Instant::now();
        backend.sync()?;
        let sync_s = t.elapsed().as_secs_f64();
        insert_s += sync_s;
        window_s += sync_s;
        let sample = |rng: &mut u64| -> Vec<String> {
            (0..SGLANG_BATCH_PAGES)
                .map(|_| page_key(tag, next_rand(rng) % written))
                .collect()
        };
        let mut warm = Vec::new();
        let mut probe = Vec::new();
        for _ in 0..SCALE_SAMPLE_BATCHES {
            let keys = sample(&mut rng);
            let refs = key_refs(&keys);
            let mut outs = slots.parts_mut(refs.len());
            // Read the batch once untimed so "warm" means cached for every store: O_DIRECT
            // writers (ours, file-fast) leave nothing in the page cache, buffered ones do.
            backend.get_batch(&refs, &mut outs)?;
            let t = Instant::now();
            let hits = backend.get_batch(&refs, &mut outs)?;
            warm.push(t.elapsed().as_secs_f64() * 1e6 / refs.len() as f64);
            anyhow::ensure!(hits.iter().all(|&h| h), "{name}: scale read missed");
            let t = Instant::now();
            let n = backend.probe(&refs)?;
            probe.push(t.elapsed().as_secs_f64() * 1e6);
            anyhow::ensure!(n == refs.len(), "{name}: scale probe missed");
        }
        device::drop_caches();
        let mut cold = Vec::new();
        for _ in 0..SCALE_COLD_BATCHES {
            let keys = sample(&mut rng);
            let refs = key_refs(&keys);
            let mut outs = slots.parts_mut(refs.len());
            let t = Instant::now();
            let hits = backend.get_batch(&refs, &mut outs)?;
            cold.push(t.elapsed().as_secs_f64() * 1e6 / refs.len() as f64);
            anyhow::ensure!(hits.iter().all(|&h| h), "{name}: scale read missed");
        }
        points.push(ScalePoint {
            backend: name.to_string(),
            objects: written,
            put_us_per_page: window_s * 1e6 / window_n.max(1) as f64,
            warm_get_us_per_page_p50: quantile(&mut warm, 0.5),
            cold_get_us_per_page_p50: quantile(&mut cold, 0.5),
            probe128_us_p50: quantile(&mut probe, 0.5),
            disk_bytes: backend.disk_bytes()?,
            insert_s,
        });
    }
    pb.finish_and_clear();
    Ok(points)
}

fn gbps(b: f64) -> String {
    format!("{:.2}", b / 1e9)
}

/// The page-size table as markdown (also used by the report).
pub fn page_size_table(page_sizes: &[PageSizeResult]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for ps in page_sizes {
        let ours = ps.cases.iter().find(|c| c.backend == "ours");
        let _ = writeln!(
            s,
            "\n**{} pages** ({} per backend); device: write {} GB/s, read {} GB/s (O_DIRECT, same run)\n",
            fmt_bytes(ps.page_bytes),
            fmt_bytes(ps.cases.first().map_or(0, |c| c.pages * c.page_bytes)),
            gbps(ps.device.write_bytes_per_s),
            gbps(ps.device.read_bytes_per_s)
        );
        let _ = writeln!(
            s,
            "| backend | put GB/s | put/device | ours put / this | cold get GB/s | cold/device | ours cold / this | warm get GB/s | put p99 ms | cold get p50 / p99 ms | probe128 p50 / p99 us | disk |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for c in &ps.cases {
            let vs =
                |o: Option<f64>, x: f64| o.map_or("-".to_string(), |o| format!("{:.2}x", o / x));
            let _ = writeln!(
                s,
                "| {} | {} | {:.0}% | {} | {}{} | {:.0}% | {} | {} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {} |",
                c.backend,
                gbps(c.put_bytes_per_s),
                100.0 * c.put_bytes_per_s / ps.device.write_bytes_per_s,
                vs(ours.map(|o| o.put_bytes_per_s), c.put_bytes_per_s),
                gbps(c.cold_get_bytes_per_s),
                if c.cold { "" } else { " (warm!)" },
                100.0 * c.cold_get_bytes_per_s / ps.device.read_bytes_per_s,
                vs(ours.map(|o| o.cold_get_bytes_per_s), c.cold_get_bytes_per_s),
                gbps(c.warm_get_bytes_per_s),
                c.put_batch_p99_ms,
                c.cold_get_batch_p50_ms,
                c.cold_get_batch_p99_ms,
                c.probe128_p50_us,
                c.probe128_p99_us,
                fmt_bytes(c.disk_bytes),
            );
        }
    }
    s
}

/// The object-count table as markdown (also used by the report).
pub fn scale_table(scale_page_bytes: u64, scale: &[ScalePoint]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if scale.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\n**Object count** ({} pages; put cost per page over the last 12,800 pages before each checkpoint plus the sync there)\n",
        fmt_bytes(scale_page_bytes)
    );
    let _ = writeln!(
        s,
        "| backend | objects | put us/page | warm get us/page | cold get us/page | probe128 us | disk | insert s |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for p in scale {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.0} |",
            p.backend,
            p.objects,
            p.put_us_per_page,
            p.warm_get_us_per_page_p50,
            p.cold_get_us_per_page_p50,
            p.probe128_us_p50,
            fmt_bytes(p.disk_bytes),
            p.insert_s
        );
    }
    let mut names: Vec<&str> = scale.iter().map(|p| p.backend.as_str()).collect();
    names.dedup();
    let _ = writeln!(
        s,
        "\nGrowth from the first to the last checkpoint each backend reached:\n"
    );
    for n in names {
        let pts: Vec<&ScalePoint> = scale.iter().filter(|p| p.backend == n).collect();
        if let (Some(a), Some(b)) = (pts.first(), pts.last()) {
            if pts.len() > 1 {
                let _ = writeln!(
                    s,
                    "- {n}: {}x objects -> put {:.2}x, warm get {:.2}x, cold get {:.2}x, probe {:.2}x",
                    b.objects / a.objects.max(1),
                    b.put_us_per_page / a.put_us_per_page,
                    b.warm_get_us_per_page_p50 / a.warm_get_us_per_page_p50,
                    b.cold_get_us_per_page_p50 / a.cold_get_us_per_page_p50,
                    b.probe128_us_p50 / a.probe128_us_p50
                );
            }
        }
    }
    s
}
