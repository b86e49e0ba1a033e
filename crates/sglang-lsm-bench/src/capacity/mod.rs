//! `sglang-lsm bench-capacity` (issue 5): the disk never exceeds the store's bound in a long
//! write-heavy run, and a restart in the middle keeps the bound and the contents.
//!
//! The run writes `--write-multiple` x `--capacity` bytes as prefix chains of
//! `--chain-pages` pages, `--batch-pages` per `put_batch`; every batch after a chain's first
//! passes the chain so far as `prefix_keys`, as SGLang does. The first `--hot-chains` chains
//! are the hot set: every `--hot-read-every` bytes written they are probed and read back (a
//! returning prompt), and pages that missed are written again (SGLang's write-back). Halfway
//! (`--restart-at`) the store is closed and reopened.
//!
//! Checked, each a failure (exit 1) when violated:
//! - **bound**: at every sample, bytes on disk <= capacity + one segment + the index and
//!   metadata bytes of that sample. The value log is what the capacity bounds; the active
//!   segment may be partly written past it while reclamation catches up, and the index is
//!   small and not part of the bound. Samples come from a timer thread ([`disk`]) beside the
//!   writer and from the writer after every batch.
//! - **restart keeps the contents**: the resident pages of every chain before the close equal
//!   those after the reopen, and after the reopen every resident page reads back with its exact
//!   bytes (each page is a seeded pattern stamped with its index).
//! - **no orphans**: in every chain the resident pages are a prefix of it (a page is only
//!   present with its parent), checked with `exists` (no I/O, no effect on eviction) before
//!   the restart and at the end, and against `probe`.
//!
//! Reported, not checked: the hot set's hit rate (the leading run of hits per read, as SGLang
//! counts), write amplification, pages declined.
//!
//! Reading everything after the reopen marks every page as recently read, which gives each a
//! second chance in the next reclamation pass; that costs some relocation right after the
//! restart, and is part of what the bound must survive.

pub mod disk;
mod plot;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sglang_lsm::{Store, StoreConfig};

use crate::compare::{page_key, PageSlots};
use crate::units::{fmt_bytes, parse_bytes};
use disk::{DiskSample, Sampler, Samples};

/// Seed of the page patterns (writer slots and the reference copy are built from it).
const PATTERN_SEED: u64 = 0xCAFE;

/// Options of `sglang-lsm bench-capacity`.
#[derive(Args, Clone, Debug)]
pub struct CapacityArgs {
    /// Working directory on the disk under test (a fresh subdirectory is created and removed
    /// unless --keep).
    #[arg(long, default_value = "bench-out")]
    pub dir: PathBuf,
    /// The store's capacity bound (`capacity_bytes`).
    #[arg(long, default_value = "1g", value_parser = parse_bytes)]
    pub capacity: u64,
    /// Bytes to write, as a multiple of the capacity.
    #[arg(long, default_value_t = 10.0)]
    pub write_multiple: f64,
    /// Page size.
    #[arg(long, default_value = "256k", value_parser = parse_bytes)]
    pub page_bytes: u64,
    /// Pages per prefix chain (a multiple of --batch-pages).
    #[arg(long, default_value_t = 32)]
    pub chain_pages: usize,
    /// Pages per put_batch.
    #[arg(long, default_value_t = 16)]
    pub batch_pages: usize,
    /// Chains in the hot set (written first, read back repeatedly).
    #[arg(long, default_value_t = 4)]
    pub hot_chains: usize,
    /// Bytes written between two reads of the hot set.
    #[arg(long, default_value = "64m", value_parser = parse_bytes)]
    pub hot_read_every: u64,
    /// Milliseconds between two samples of the bytes on disk by the timer thread.
    #[arg(long, default_value_t = 20)]
    pub sample_ms: u64,
    /// Fraction of the bytes to write after which the store is closed and reopened.
    #[arg(long, default_value_t = 0.5)]
    pub restart_at: f64,
    /// Write `capacity_bound.png`, `capacity.md` and `capacity.json` into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the results (with every sample) as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the store directory after the run.
    #[arg(long)]
    pub keep: bool,
}

/// The store's own view after a batch.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct StoreSample {
    pub written: u64,
    /// `stats().log_bytes`: the value-log bytes the capacity bounds.
    pub log_bytes: u64,
    pub index_disk_bytes: u64,
    pub pages: u64,
}

/// A look at every chain written so far, at a quiet moment.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChainCheck {
    pub chains: usize,
    pub resident_pages: u64,
    /// `stats().pages`: must equal `resident_pages` (every page is one of the chains').
    pub store_pages: u64,
    /// Pages present while their parent is absent.
    pub orphans: u64,
    /// Chains whose `probe` disagrees with the leading run of `exists`.
    pub probe_mismatches: u64,
    /// Pages read back and compared byte for byte (0 where only residency was checked).
    pub verified_pages: u64,
    /// Pages that read back with other bytes, or missed although resident.
    pub wrong_pages: u64,
}

/// Everything the run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CapacityReport {
    pub command: String,
    pub capacity_bytes: u64,
    /// The segment size the engine uses for this capacity (capacity / 32, at most the
    /// configured 256 MiB, at least 1 MiB).
    pub segment_bytes: u64,
    pub page_bytes: u64,
    pub chain_pages: usize,
    pub batch_pages: usize,
    pub hot_chains: usize,
    pub bytes_written: u64,
    pub pages_declined: u64,
    pub restart_written: u64,
    pub reopen_s: f64,
    pub wall_s: f64,
    pub max_disk_bytes: u64,
    pub max_vlog_disk_bytes: u64,
    pub max_other_disk_bytes: u64,
    pub max_log_bytes: u64,
    pub largest_segment_file: u64,
    /// Samples where the disk exceeded capacity + segment + index.
    pub bound_violations: u64,
    /// Largest (disk - bound) over all samples; negative = always under.
    pub worst_margin_bytes: i64,
    /// Largest (value log on disk - capacity): how far past the capacity the log went while
    /// reclamation caught up.
    pub max_vlog_over_capacity_bytes: i64,
    pub hot_hits_before_restart: (u64, u64),
    pub hot_hits_after_restart: (u64, u64),
    pub before_restart: ChainCheck,
    pub after_reopen: ChainCheck,
    /// Chains whose resident pages differ across the restart, and the pages lost or gained.
    pub restart_changed_chains: u64,
    pub restart_lost_pages: u64,
    pub restart_gained_pages: u64,
    pub end: ChainCheck,
    /// Hot-set pages that read back with wrong bytes.
    pub hot_wrong_pages: u64,
    /// (put bytes + relocated bytes) / put bytes, over both halves of the run.
    pub write_amplification: f64,
    pub evicted_pages: u64,
    pub relocated_bytes: u64,
    /// Of `relocated_bytes`, before the restart (after it, the full read-back has given every
    /// page a second chance, so more is relocated).
    pub relocated_bytes_before_restart: u64,
    pub segments_reclaimed: u64,
    pub passed: bool,
    pub disk_samples: Vec<DiskSample>,
    pub store_samples: Vec<StoreSample>,
}

/// The writer's state: store, page buffers, progress.
struct Run<'a> {
    args: &'a CapacityArgs,
    dir: PathBuf,
    config: StoreConfig,
    store: Option<Store>,
    slots: PageSlots,
    reference: PageSlots,
    read: PageSlots,
    written: Arc<AtomicU64>,
    declined: u64,
    samples: Samples,
    store_samples: Vec<StoreSample>,
    start: Instant,
    wrong_hot_pages: u64,
    /// Counters of the store before the restart (a reopened store counts from zero):
    /// put bytes, relocated bytes, evicted pages, reclaimed segments.
    before_counters: [u64; 4],
}

impl Run<'_> {
    fn store(&self) -> anyhow::Result<&Store> {
        self.store.as_ref().context("store is closed")
    }

    fn keys(&self, chain: usize) -> Vec<String> {
        let n = self.args.chain_pages;
        (0..n)
            .map(|j| page_key("cap", (chain * n + j) as u64))
            .collect()
    }

    /// Writes batch `b` of `chain`, passing the chain before it as `prefix_keys`.
    fn put_batch(&mut self, chain: usize, b: usize) -> anyhow::Result<()> {
        let (cp, bp) = (self.args.chain_pages, self.args.batch_pages);
        let keys = self.keys(chain);
        for j in 0..bp {
            self.slots.stamp(j, (chain * cp + b * bp + j) as u64);
        }
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let (prefix, rest) = refs.split_at(b * bp);
        let ok = self
            .store()?
            .put_batch(&rest[..bp], &self.slots.parts(bp), prefix)?;
        self.declined += ok.iter().filter(|&&x| !x).count() as u64;
        self.written
            .fetch_add(bp as u64 * self.args.page_bytes, Relaxed);
        let written = self.written.load(Relaxed);
        let st = self.store()?.stats();
        self.store_samples.push(StoreSample {
            written,
            log_bytes: st.log_bytes,
            index_disk_bytes: st.index_disk_bytes,
            pages: st.pages,
        });
        self.samples.take(&self.dir, self.start, written)?;
        Ok(())
    }

    fn put_chain(&mut self, chain: usize, from_batch: usize) -> anyhow::Result<()> {
        for b in from_batch..self.args.chain_pages / self.args.batch_pages {
            self.put_batch(chain, b)?;
        }
        Ok(())
    }

    /// Reads `chain` into the read slots; returns the hit flags, counting pages whose bytes
    /// are wrong.
    fn read_chain(&mut self, chain: usize) -> anyhow::Result<(Vec<bool>, u64)> {
        let cp = self.args.chain_pages;
        let keys = self.keys(chain);
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let store = self.store.as_ref().context("store is closed")?;
        let hits = store.get_batch(&refs, &mut self.read.parts_mut(cp))?;
        let mut wrong = 0;
        for (j, _) in hits.iter().enumerate().filter(|(_, &h)| h) {
            let idx = (chain * cp + j) as u64;
            let pattern = (idx % self.args.batch_pages as u64) as usize;
            if self.read.stamp_of(j) != idx || self.read.body(j) != self.reference.body(pattern) {
                wrong += 1;
            }
        }
        Ok((hits, wrong))
    }

    /// Reads the hot set like a returning prompt: probe, get, write back what missed.
    /// Returns (leading hits, pages asked).
    fn read_hot(&mut self) -> anyhow::Result<(u64, u64)> {
        let (mut hit, mut asked) = (0, 0);
        for c in 0..self.args.hot_chains {
            let keys = self.keys(c);
            let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
            let n = self.store()?.probe(&refs, &[])?;
            let (hits, wrong) = self.read_chain(c)?;
            self.wrong_hot_pages += wrong;
            // A page relocated between lookup and read reads as a miss once; count the
            // leading run of hits, as SGLang does, and never more than the probe promised.
            let lead = hits.iter().take_while(|&&h| h).count().min(n);
            hit += lead as u64;
            asked += keys.len() as u64;
            if lead < keys.len() {
                self.put_chain(c, lead / self.args.batch_pages)?;
            }
        }
        Ok((hit, asked))
    }

    /// Waits until reclamation has settled (no change in log bytes, pages or reclaimed
    /// segments for three polls), so residency is stable while it is compared.
    fn quiesce(&self) -> anyhow::Result<()> {
        let sig = |s: &Store| {
            let st = s.stats();
            (
                st.log_bytes,
                st.pages,
                st.segments_reclaimed,
                st.evicted_pages,
            )
        };
        let store = self.store()?;
        let mut last = sig(store);
        let mut stable = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while stable < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = sig(store);
            stable = if now == last { stable + 1 } else { 0 };
            last = now;
        }
        Ok(())
    }

    /// Residency of every chain (`exists`, no I/O), checked for orphans and against `probe`;
    /// with `read`, every resident page is also read and compared byte for byte. Returns the
    /// resident-prefix length per chain.
    fn check_chains(
        &mut self,
        chains: usize,
        read: bool,
    ) -> anyhow::Result<(ChainCheck, Vec<usize>)> {
        let mut c = ChainCheck {
            chains,
            ..ChainCheck::default()
        };
        let mut lens = Vec::with_capacity(chains);
        for chain in 0..chains {
            let keys = self.keys(chain);
            let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
            let store = self.store()?;
            let present: Vec<bool> = refs
                .iter()
                .map(|k| store.exists(k))
                .collect::<Result<_, _>>()?;
            let lead = present.iter().take_while(|&&p| p).count();
            let resident = present.iter().filter(|&&p| p).count();
            c.resident_pages += resident as u64;
            c.orphans += (resident - lead) as u64;
            if store.probe(&refs, &[])? != lead {
                c.probe_mismatches += 1;
            }
            if read {
                let (hits, wrong) = self.read_chain(chain)?;
                c.verified_pages += hits.iter().filter(|&&h| h).count() as u64;
                c.wrong_pages += wrong;
                c.wrong_pages += hits
                    .iter()
                    .zip(&present)
                    .filter(|(h, p)| **p && !**h)
                    .count() as u64;
            }
            lens.push(lead);
        }
        c.store_pages = self.store()?.stats().pages;
        Ok((c, lens))
    }
}

/// The segment size the engine picks for a bounded store (`Store::open`, store/mod.rs): the
/// configured size, shrunk so the capacity holds at least 32 segments, at least 1 MiB.
fn engine_segment_bytes(config: &StoreConfig) -> u64 {
    match config.capacity_bytes {
        Some(cap) => config.segment_bytes.min(cap / 32).max(1 << 20),
        None => config.segment_bytes,
    }
}

fn validate(a: &CapacityArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.capacity >= 16 << 20, "--capacity must be at least 16 MiB");
    anyhow::ensure!(
        a.write_multiple.is_finite() && a.write_multiple > 0.0,
        "--write-multiple must be positive"
    );
    anyhow::ensure!(
        a.page_bytes >= 4096 && a.page_bytes.is_multiple_of(4096),
        "--page-bytes must be a multiple of 4 KiB"
    );
    anyhow::ensure!(
        a.batch_pages >= 1
            && a.chain_pages >= a.batch_pages
            && a.chain_pages.is_multiple_of(a.batch_pages),
        "--chain-pages must be a positive multiple of --batch-pages"
    );
    anyhow::ensure!(
        (0.0..1.0).contains(&a.restart_at),
        "--restart-at must be in [0, 1)"
    );
    anyhow::ensure!(a.sample_ms >= 1, "--sample-ms must be at least 1");
    let hot = a.hot_chains as u64 * a.chain_pages as u64 * a.page_bytes;
    anyhow::ensure!(
        hot <= a.capacity / 4,
        "the hot set ({}) must fit in a quarter of the capacity",
        fmt_bytes(hot)
    );
    Ok(())
}

/// Runs the benchmark, prints the summary, writes the report and JSON as asked. Exit 1 when a
/// check failed.
///
/// # Errors
/// Bad arguments or I/O errors.
pub fn run(args: &CapacityArgs) -> anyhow::Result<ExitCode> {
    validate(args)?;
    let dir = args.dir.join(format!("capacity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = collect(args, &dir);
    if !args.keep {
        std::fs::remove_dir_all(&dir).ok();
    }
    let report = result?;
    print!("{}", summary(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(out) = &args.report {
        write_report(out, &report)?;
        println!("report written to {}", out.display());
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Writes `capacity_bound.png`, `capacity.md` and `capacity.json` into `out`.
///
/// # Errors
/// A file cannot be written or the plot fails.
pub fn write_report(out: &Path, r: &CapacityReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    plot::draw(&out.join("capacity_bound.png"), r)?;
    let md = format!(
        "# sglang-lsm bench-capacity\n\nCommand: `{}`\n\n{}\n![disk bytes vs bytes written](capacity_bound.png)\n",
        r.command,
        summary(r)
    );
    std::fs::write(out.join("capacity.md"), md).context("writing capacity.md")?;
    std::fs::write(
        out.join("capacity.json"),
        serde_json::to_string_pretty(r)? + "\n",
    )
    .context("writing capacity.json")?;
    Ok(())
}

fn collect(args: &CapacityArgs, dir: &Path) -> anyhow::Result<CapacityReport> {
    let config = StoreConfig {
        capacity_bytes: Some(args.capacity),
        ..StoreConfig::default()
    };
    let segment_bytes = engine_segment_bytes(&config);
    let page = usize::try_from(args.page_bytes)?;
    let chain_bytes = args.chain_pages as u64 * args.page_bytes;
    let target = (args.capacity as f64 * args.write_multiple) as u64;
    let chains = target.div_ceil(chain_bytes).max(args.hot_chains as u64 + 1) as usize;
    let restart_chain = ((chains as f64 * args.restart_at) as usize).max(args.hot_chains);
    let start = Instant::now();
    let samples = Samples::default();
    let written = Arc::new(AtomicU64::new(0));
    let store = Store::open(dir, config.clone())
        .with_context(|| format!("opening store at {}", dir.display()))?;
    let sampler = Sampler::spawn(
        dir.to_path_buf(),
        samples.clone(),
        start,
        Arc::clone(&written),
        Duration::from_millis(args.sample_ms),
    )?;
    let mut run = Run {
        args,
        dir: dir.to_path_buf(),
        config,
        store: Some(store),
        slots: PageSlots::new(args.batch_pages, page, PATTERN_SEED),
        reference: PageSlots::new(args.batch_pages, page, PATTERN_SEED),
        read: PageSlots::new(args.chain_pages, page, 1),
        written: Arc::clone(&written),
        declined: 0,
        samples: samples.clone(),
        store_samples: Vec::new(),
        start,
        wrong_hot_pages: 0,
        before_counters: [0; 4],
    };
    let pb = ProgressBar::new(chains as u64 * chain_bytes).with_style(
        ProgressStyle::with_template(
            "{msg:>18} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message("writing");
    let mut hot = [(0u64, 0u64); 2];
    let mut last_hot = 0u64;
    let mut restart = None;
    for chain in 0..chains {
        if chain == restart_chain {
            pb.set_message("restarting");
            restart = Some(restart_store(&mut run, chain)?);
            pb.set_message("writing");
        }
        run.put_chain(chain, 0)?;
        pb.set_position(((chain + 1) as u64 * chain_bytes).min(chains as u64 * chain_bytes));
        let w = written.load(Relaxed);
        if chain + 1 >= args.hot_chains && w - last_hot >= args.hot_read_every {
            let (h, n) = run.read_hot()?;
            let half = usize::from(restart.is_some());
            hot[half].0 += h;
            hot[half].1 += n;
            last_hot = written.load(Relaxed);
        }
    }
    pb.set_message("final check");
    run.quiesce()?;
    let (end, _) = run.check_chains(chains, false)?;
    pb.finish_and_clear();
    let st = run.store()?.stats();
    drop(run.store.take());
    sampler.finish()?;
    let (before, after, lost, gained, changed, restart_written, reopen_s) =
        restart.context("the run ended before its restart")?;
    let disk = samples.sorted();
    let max_of = |f: &dyn Fn(&DiskSample) -> u64| disk.iter().map(f).max().unwrap_or(0);
    let bound = |s: &DiskSample| args.capacity + segment_bytes + s.other_bytes;
    let bound_violations = disk.iter().filter(|s| s.total() > bound(s)).count() as u64;
    let worst_margin_bytes = disk
        .iter()
        .map(|s| s.total() as i64 - bound(s) as i64)
        .max()
        .unwrap_or(0);
    let [put0, reloc0, evicted0, reclaimed0] = run.before_counters;
    let (put, relocated) = (put0 + st.put_bytes, reloc0 + st.relocated_bytes);
    let passed = bound_violations == 0
        && changed == 0
        && run.wrong_hot_pages == 0
        && [&before, &after, &end].iter().all(|c| {
            c.orphans == 0
                && c.probe_mismatches == 0
                && c.wrong_pages == 0
                && c.resident_pages == c.store_pages
        });
    Ok(CapacityReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        capacity_bytes: args.capacity,
        segment_bytes,
        page_bytes: args.page_bytes,
        chain_pages: args.chain_pages,
        batch_pages: args.batch_pages,
        hot_chains: args.hot_chains,
        bytes_written: written.load(Relaxed),
        pages_declined: run.declined,
        restart_written,
        reopen_s,
        wall_s: start.elapsed().as_secs_f64(),
        max_disk_bytes: max_of(&|s| s.total()),
        max_vlog_disk_bytes: max_of(&|s| s.vlog_bytes),
        max_other_disk_bytes: max_of(&|s| s.other_bytes),
        max_log_bytes: run
            .store_samples
            .iter()
            .map(|s| s.log_bytes)
            .max()
            .unwrap_or(0),
        largest_segment_file: max_of(&|s| s.largest_segment),
        bound_violations,
        worst_margin_bytes,
        max_vlog_over_capacity_bytes: disk
            .iter()
            .map(|s| s.vlog_bytes as i64 - args.capacity as i64)
            .max()
            .unwrap_or(0),
        relocated_bytes_before_restart: reloc0,
        hot_hits_before_restart: hot[0],
        hot_hits_after_restart: hot[1],
        before_restart: before,
        after_reopen: after,
        restart_changed_chains: changed,
        restart_lost_pages: lost,
        restart_gained_pages: gained,
        end,
        hot_wrong_pages: run.wrong_hot_pages,
        write_amplification: (put + relocated) as f64 / put.max(1) as f64,
        evicted_pages: evicted0 + st.evicted_pages,
        relocated_bytes: relocated,
        segments_reclaimed: reclaimed0 + st.segments_reclaimed,
        passed,
        disk_samples: disk,
        store_samples: std::mem::take(&mut run.store_samples),
    })
}

type RestartOutcome = (ChainCheck, ChainCheck, u64, u64, u64, u64, f64);

/// Closes and reopens the store once `chains` chains are written: residency before, then
/// after the reopen residency again and every resident page's bytes.
fn restart_store(run: &mut Run<'_>, chains: usize) -> anyhow::Result<RestartOutcome> {
    run.quiesce()?;
    let (before, lens_before) = run.check_chains(chains, false)?;
    let restart_written = run.written.load(Relaxed);
    let st = run.store()?.stats();
    run.before_counters = [
        st.put_bytes,
        st.relocated_bytes,
        st.evicted_pages,
        st.segments_reclaimed,
    ];
    let t = Instant::now();
    drop(run.store.take());
    run.store = Some(
        Store::open(&run.dir, run.config.clone())
            .with_context(|| format!("reopening store at {}", run.dir.display()))?,
    );
    let reopen_s = t.elapsed().as_secs_f64();
    let (after, lens_after) = run.check_chains(chains, true)?;
    let (mut lost, mut gained, mut changed) = (0u64, 0u64, 0u64);
    for (b, a) in lens_before.iter().zip(&lens_after) {
        if a != b {
            changed += 1;
            lost += b.saturating_sub(*a) as u64;
            gained += a.saturating_sub(*b) as u64;
        }
    }
    Ok((
        before,
        after,
        lost,
        gained,
        changed,
        restart_written,
        reopen_s,
    ))
}

fn mib(b: i64) -> f64 {
    b as f64 / f64::from(1u32 << 20)
}

/// The result as markdown.
pub fn summary(r: &CapacityReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let pct = |(h, n): (u64, u64)| {
        if n == 0 {
            "-".to_string()
        } else {
            format!("{:.1}% ({h}/{n} pages)", 100.0 * h as f64 / n as f64)
        }
    };
    let ok = |b: bool| if b { "ok" } else { "FAILED" };
    let _ = writeln!(
        s,
        "Capacity {} (segment {}), {} pages in chains of {} written {} per put_batch, {} hot chains; \
         wrote {} ({:.1}x capacity) in {:.0} s, restart after {}.\n",
        fmt_bytes(r.capacity_bytes),
        fmt_bytes(r.segment_bytes),
        fmt_bytes(r.page_bytes),
        r.chain_pages,
        r.batch_pages,
        r.hot_chains,
        fmt_bytes(r.bytes_written),
        r.bytes_written as f64 / r.capacity_bytes as f64,
        r.wall_s,
        fmt_bytes(r.restart_written)
    );
    let _ = writeln!(s, "| check | result |");
    let _ = writeln!(s, "|---|---|");
    let _ = writeln!(
        s,
        "| disk <= capacity + segment + index, {} samples | {}: max on disk {:.1} MiB (value log {:.1} MiB, at most {:.1} MiB past the capacity; index+meta {:.1} MiB); closest to the bound: {:.1} MiB under |",
        r.disk_samples.len(),
        ok(r.bound_violations == 0),
        mib(r.max_disk_bytes as i64),
        mib(r.max_vlog_disk_bytes as i64),
        mib(r.max_vlog_over_capacity_bytes),
        mib(r.max_other_disk_bytes as i64),
        -mib(r.worst_margin_bytes)
    );
    let _ = writeln!(
        s,
        "| store's log_bytes (max) | {} (largest segment file {}) |",
        fmt_bytes(r.max_log_bytes),
        fmt_bytes(r.largest_segment_file)
    );
    let _ = writeln!(
        s,
        "| restart keeps residency | {}: {} chains, {} pages before; {} chains changed, {} lost, {} gained; reopen {:.2} s |",
        ok(r.restart_changed_chains == 0),
        r.before_restart.chains,
        r.before_restart.resident_pages,
        r.restart_changed_chains,
        r.restart_lost_pages,
        r.restart_gained_pages,
        r.reopen_s
    );
    let _ = writeln!(
        s,
        "| contents after reopen | {}: {} pages read back byte for byte, {} wrong |",
        ok(r.after_reopen.wrong_pages == 0),
        r.after_reopen.verified_pages,
        r.after_reopen.wrong_pages
    );
    let _ = writeln!(
        s,
        "| contents of every hot-set read | {}: {} pages wrong |",
        ok(r.hot_wrong_pages == 0),
        r.hot_wrong_pages
    );
    for (name, c) in [
        ("before restart", &r.before_restart),
        ("after reopen", &r.after_reopen),
        ("end", &r.end),
    ] {
        let _ = writeln!(
            s,
            "| no orphans, probe agrees, {name} | {}: {} resident pages (store: {}), {} orphans, {} probe mismatches |",
            ok(c.orphans == 0 && c.probe_mismatches == 0 && c.resident_pages == c.store_pages),
            c.resident_pages,
            c.store_pages,
            c.orphans,
            c.probe_mismatches
        );
    }
    let _ = writeln!(
        s,
        "| hot-set hit rate before / after restart | {} / {} |",
        pct(r.hot_hits_before_restart),
        pct(r.hot_hits_after_restart)
    );
    let _ = writeln!(
        s,
        "| write amplification, evicted, relocated (before restart), declined | {:.2}, {} pages, {} ({}), {} pages |",
        r.write_amplification,
        r.evicted_pages,
        fmt_bytes(r.relocated_bytes),
        fmt_bytes(r.relocated_bytes_before_restart),
        r.pages_declined
    );
    let _ = writeln!(
        s,
        "\nResult: {}",
        if r.passed { "PASSED" } else { "FAILED" }
    );
    s
}
