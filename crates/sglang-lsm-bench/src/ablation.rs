//! Ablations, run side by side on one workload: `prefixes` prompts of `prefix_pages` pages
//! each are written, the page cache is dropped, and every prefix is read back with one
//! `get_batch` in a shuffled prefix order (what SGLang's prefetch does for a returning prompt).
//!
//! Variants:
//! - **ours, prefix order**: each prefix is one `put_batch`, so its pages are one contiguous
//!   extent of the value log and a read coalesces into a few large I/Os (the default design).
//! - **ours, scattered**: the same pages written one per call, round-robin across prefixes, so
//!   consecutive pages of a prefix sit `prefixes` pages apart in the log — what hashed
//!   placement (or a store without prefix-ordered batches) does to a prefix.
//! - **ours, no read coalescing**: prefix order with `coalesce_reads = false`, so a prefix read
//!   is one I/O per page (still spread over the read threads) instead of a few merged ones.
//! - **ours, buffered writes**: prefix order with `direct_write = false` (page-cache writes).
//! - **lsm-inline, prefix order**: values inline in the LSM tree instead of a value log.
//! - **file-fast, prefix order**: the strong file-per-page store, for scale.
//!
//! Each row reports put throughput (including `sync`), cold read throughput, the per-prefix
//! read latency percentiles, and for our store the read I/Os per prefix.
//!
//! Compression is measured apart ([`crate::compression`]): the engine has no compression to
//! switch off, so the question there is whether adding it would help.

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sglang_lsm::StoreConfig;

use crate::backend::fast_file::{FastFile, FastFileOptions};
use crate::backend::lsm_inline::LsmInline;
use crate::backend::ours::Ours;
use crate::backend::KvBackend;
use crate::device;
use crate::pages::{page_key, PageSlots};
use crate::quantile::quantile;
use crate::units::fmt_bytes;

/// One ablation variant's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AblationResult {
    pub variant: String,
    /// What the variant switches, in one line.
    pub measures: String,
    pub prefixes: usize,
    pub prefix_pages: usize,
    pub page_bytes: u64,
    pub put_bytes_per_s: f64,
    pub cold_read_bytes_per_s: f64,
    pub prefix_read_p50_ms: f64,
    pub prefix_read_p99_ms: f64,
    pub cold: bool,
    /// Read I/Os per prefix read, for stores that count them.
    #[serde(default)]
    pub read_ios_per_prefix: Option<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    Prefix,
    Scattered,
}

/// Runs every variant in a fresh directory under `root`.
///
/// # Errors
/// Bad sizes, I/O errors, or a store returning wrong bytes.
pub fn run_all(
    root: &Path,
    prefixes: usize,
    prefix_pages: usize,
    page_bytes: u64,
) -> anyhow::Result<Vec<AblationResult>> {
    anyhow::ensure!(
        prefixes >= 1 && (1..=128).contains(&prefix_pages),
        "ablation needs at least one prefix and 1..=128 pages per prefix"
    );
    anyhow::ensure!(
        page_bytes >= 4096 && page_bytes.is_multiple_of(4096),
        "ablation page size must be a multiple of 4 KiB"
    );
    let buffered = StoreConfig {
        direct_write: false,
        ..StoreConfig::default()
    };
    let uncoalesced = StoreConfig {
        coalesce_reads: false,
        ..StoreConfig::default()
    };
    type Open = Box<dyn Fn(&Path) -> anyhow::Result<Box<dyn KvBackend>>>;
    let variants: Vec<(&str, &str, Order, Open)> = vec![
        (
            "ours, prefix order",
            "default design: a prefix is one contiguous log extent",
            Order::Prefix,
            Box::new(|d: &Path| Ok(Box::new(Ours::open(d, StoreConfig::default())?) as _)),
        ),
        (
            "ours, scattered",
            "placement: one page per call, prefixes interleaved (hashed-placement proxy)",
            Order::Scattered,
            Box::new(|d: &Path| Ok(Box::new(Ours::open(d, StoreConfig::default())?) as _)),
        ),
        (
            "ours, no read coalescing",
            "coalesce_reads = false: one read I/O per page instead of merged extents",
            Order::Prefix,
            Box::new(move |d: &Path| Ok(Box::new(Ours::open(d, uncoalesced.clone())?) as _)),
        ),
        (
            "ours, buffered writes",
            "direct_write = false: appends through the page cache",
            Order::Prefix,
            Box::new(move |d: &Path| Ok(Box::new(Ours::open(d, buffered.clone())?) as _)),
        ),
        (
            "lsm-inline, prefix order",
            "value log vs values inline in the LSM tree",
            Order::Prefix,
            Box::new(|d: &Path| Ok(Box::new(LsmInline::open(d)?) as _)),
        ),
        (
            "file-fast, prefix order",
            "one file per page (strong file backend) on the same workload",
            Order::Prefix,
            Box::new(|d: &Path| Ok(Box::new(FastFile::open(d, FastFileOptions::default())?) as _)),
        ),
    ];
    let mut out = Vec::new();
    for (i, (variant, measures, order, open)) in variants.into_iter().enumerate() {
        let dir = root.join(format!("ablation-{i}"));
        let backend = open(&dir)?;
        let r = run_one(backend.as_ref(), order, prefixes, prefix_pages, page_bytes);
        drop(backend);
        std::fs::remove_dir_all(&dir).ok();
        let (put, read, p50, p99, cold, ios) = r?;
        out.push(AblationResult {
            variant: variant.to_string(),
            measures: measures.to_string(),
            prefixes,
            prefix_pages,
            page_bytes,
            put_bytes_per_s: put,
            cold_read_bytes_per_s: read,
            prefix_read_p50_ms: p50,
            prefix_read_p99_ms: p99,
            cold,
            read_ios_per_prefix: ios,
        });
    }
    Ok(out)
}

fn run_one(
    backend: &dyn KvBackend,
    order: Order,
    prefixes: usize,
    prefix_pages: usize,
    page_bytes: u64,
) -> anyhow::Result<(f64, f64, f64, f64, bool, Option<f64>)> {
    let page = usize::try_from(page_bytes)?;
    let key = |p: usize, j: usize| page_key("abl", (p * prefix_pages + j) as u64);
    let keys: Vec<Vec<String>> = (0..prefixes)
        .map(|p| (0..prefix_pages).map(|j| key(p, j)).collect())
        .collect();
    let total = (prefixes * prefix_pages * page) as f64;
    let mut slots = PageSlots::new(prefix_pages, page, 11);
    let pb = ProgressBar::new((prefixes * prefix_pages) as u64).with_style(
        ProgressStyle::with_template(&format!(
            "{:>28} {{bar:30}} {{pos}}/{{len}} pages",
            backend.name()
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    match order {
        Order::Prefix => {
            for (p, ks) in keys.iter().enumerate() {
                for j in 0..prefix_pages {
                    slots.stamp(j, (p * prefix_pages + j) as u64);
                }
                let refs: Vec<&[u8]> = ks.iter().map(|k| k.as_bytes()).collect();
                let ok = backend.put_batch(&refs, &slots.parts(prefix_pages), &[])?;
                anyhow::ensure!(ok.iter().all(|&b| b), "declined write");
                pb.inc(prefix_pages as u64);
            }
        }
        Order::Scattered => {
            for j in 0..prefix_pages {
                for (p, ks) in keys.iter().enumerate() {
                    slots.stamp(0, (p * prefix_pages + j) as u64);
                    let parents: Vec<&[u8]> = ks[..j].iter().map(|k| k.as_bytes()).collect();
                    let ok = backend.put_batch(&[ks[j].as_bytes()], &slots.parts(1), &parents)?;
                    anyhow::ensure!(ok.iter().all(|&b| b), "declined write");
                    pb.inc(1);
                }
            }
        }
    }
    backend.sync()?;
    let put_s = start.elapsed().as_secs_f64();
    pb.finish_and_clear();

    let cold = device::drop_caches();
    // A fixed shuffle of prefix order, so no variant benefits from reading in write order.
    let mut idx: Vec<usize> = (0..prefixes).collect();
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..idx.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        idx.swap(i, (s % (i as u64 + 1)) as usize);
    }
    let mut ms = Vec::with_capacity(prefixes);
    let ios_before = backend.read_ios();
    let start = Instant::now();
    for &p in &idx {
        let refs: Vec<&[u8]> = keys[p].iter().map(|k| k.as_bytes()).collect();
        let mut outs = slots.parts_mut(prefix_pages);
        let t = Instant::now();
        let hits = backend.get_batch(&refs, &mut outs)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        drop(outs);
        for (j, h) in hits.iter().enumerate() {
            let want = (p * prefix_pages + j) as u64;
            anyhow::ensure!(
                *h && slots.stamp_of(j) == want,
                "page {want} read back wrong"
            );
        }
    }
    let read_s = start.elapsed().as_secs_f64();
    let ios = backend
        .read_ios()
        .zip(ios_before)
        .map(|(after, before)| (after - before) as f64 / prefixes as f64);
    Ok((
        total / put_s,
        total / read_s,
        quantile(&mut ms.clone(), 0.5),
        quantile(&mut ms, 0.99),
        cold,
        ios,
    ))
}

/// The ablation table as markdown.
pub fn table(rows: &[AblationResult]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let Some(first) = rows.first() else {
        return s;
    };
    let _ = writeln!(
        s,
        "\n**Ablations** ({} prefixes x {} pages of {}; cold reads of whole prefixes in shuffled order)\n",
        first.prefixes,
        first.prefix_pages,
        fmt_bytes(first.page_bytes)
    );
    let _ = writeln!(
        s,
        "| variant | what it switches | put GB/s | cold prefix read GB/s | vs ours prefix order | prefix read p50 / p99 ms | read I/Os per prefix |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    let base = first.cold_read_bytes_per_s;
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} | {:.2}{} | {:.2}x | {:.1} / {:.1} | {} |",
            r.variant,
            r.measures,
            r.put_bytes_per_s / 1e9,
            r.cold_read_bytes_per_s / 1e9,
            if r.cold { "" } else { " (warm!)" },
            r.cold_read_bytes_per_s / base,
            r.prefix_read_p50_ms,
            r.prefix_read_p99_ms,
            r.read_ios_per_prefix
                .map_or("-".to_string(), |n| format!("{n:.1}"))
        );
    }
    s
}
