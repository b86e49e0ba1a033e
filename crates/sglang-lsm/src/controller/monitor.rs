//! The workload monitor: cumulative observations of the store, diffed into windows, kept in a
//! bounded ring and smoothed for the controller.

use std::collections::VecDeque;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::latency::window_quantile_us;

/// Windows kept for `stats` and the predicted-vs-measured report (one per controller tick).
pub const WINDOWS_KEPT: usize = 120;

/// A cumulative snapshot of the store, taken once per controller tick.
#[derive(Clone, Debug)]
pub struct Observation {
    pub at: Instant,
    pub put_pages: u64,
    pub put_bytes: u64,
    pub get_pages: u64,
    pub get_hits: u64,
    pub get_bytes: u64,
    pub probe_keys: u64,
    pub read_ios: u64,
    pub relocated_bytes: u64,
    /// Time spent in index flushes and compactions.
    pub index_busy_us: u64,
    /// Index point lookups, their total time, and the sum over lookups of runs probed.
    pub index_lookups: u64,
    pub index_lookup_us: u64,
    pub index_lookup_runs: u64,
    /// Pages published and their time, per log2 bucket of memtable fill (bucket b starts at
    /// 2^(b + `fill_log2_min`) bytes).
    pub inserts_by_fill: Vec<(u64, u64)>,
    pub fill_log2_min: u32,
    /// Index L0 runs and mean table bytes now (the cost of re-compacting L0).
    pub l0_runs: u64,
    pub index_table_bytes: u64,
    pub put_latency: Vec<u64>,
    pub get_latency: Vec<u64>,
    /// Total time spent in `put_batch` / `get_batch` calls, us.
    pub put_call_us: u64,
    pub get_call_us: u64,
    pub pages: u64,
    pub live_bytes: u64,
    pub log_bytes: u64,
    pub index_disk_bytes: u64,
    pub free_bytes: Option<u64>,
}

/// What happened between two observations, as rates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub seconds: f64,
    /// Pages written and read in the window, and the time spent in those calls (us): the
    /// foreground cost a decision is verified against.
    pub put_pages: u64,
    pub get_pages: u64,
    pub put_call_us: u64,
    pub get_call_us: u64,
    pub put_pages_per_s: f64,
    pub put_bytes_per_s: f64,
    pub get_pages_per_s: f64,
    pub get_bytes_per_s: f64,
    pub probe_keys_per_s: f64,
    /// Hits over pages asked for; `None` without gets.
    pub hit_rate: Option<f64>,
    /// Mean bytes per written page (or per read page when nothing was written).
    pub mean_page_bytes: f64,
    /// Read I/Os per page read (after coalescing).
    pub ios_per_get_page: f64,
    pub put_p50_us: Option<u64>,
    pub put_p99_us: Option<u64>,
    pub get_p50_us: Option<u64>,
    pub get_p99_us: Option<u64>,
    /// Foreground bytes per second (puts + gets).
    pub fg_bytes_per_s: f64,
    /// Background value-log bytes per second (relocation reads + writes).
    pub bg_bytes_per_s: f64,
    /// Fraction of the window the index spent flushing and compacting (of one core).
    pub index_busy_frac: f64,
    /// Index point lookups per second.
    pub lookups_per_s: f64,
    /// Mean index lookup time and runs probed per lookup; `None` without lookups.
    pub lookup_us: Option<f64>,
    pub lookup_runs: Option<f64>,
    /// Mean publication time per page (index + residency insert under the writer lock) per
    /// memtable fill: `(log2 of the bucket's middle fill, pages, mean us)`, buckets with
    /// pages only.
    pub insert_us_by_fill: Vec<(f64, u64, f64)>,
    pub l0_runs: u64,
    pub index_table_bytes: u64,
    /// Share of page operations that were writes.
    pub write_fraction: f64,
    /// Log bytes over live bytes.
    pub space_amplification: f64,
    /// (put + relocated bytes) / put bytes in this window.
    pub write_amplification: f64,
    pub pages: u64,
    pub index_bytes_per_page: f64,
    pub free_bytes: Option<u64>,
}

fn per_s(after: u64, before: u64, seconds: f64) -> f64 {
    after.saturating_sub(before) as f64 / seconds
}

impl Window {
    /// The window between `a` (earlier) and `b`.
    #[must_use]
    pub fn between(a: &Observation, b: &Observation) -> Self {
        let seconds = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
        let d = |x: u64, y: u64| x.saturating_sub(y);
        let puts = d(b.put_pages, a.put_pages);
        let gets = d(b.get_pages, a.get_pages);
        let probes = d(b.probe_keys, a.probe_keys);
        let lookups = d(b.index_lookups, a.index_lookups);
        let put_bytes = d(b.put_bytes, a.put_bytes);
        let get_bytes = d(b.get_bytes, a.get_bytes);
        let mean_page_bytes = if puts > 0 {
            put_bytes as f64 / puts as f64
        } else if gets > 0 {
            get_bytes as f64 / gets as f64
        } else {
            0.0
        };
        let ops = puts + gets + probes;
        Self {
            seconds,
            put_pages: puts,
            get_pages: gets,
            put_call_us: d(b.put_call_us, a.put_call_us),
            get_call_us: d(b.get_call_us, a.get_call_us),
            put_pages_per_s: puts as f64 / seconds,
            put_bytes_per_s: put_bytes as f64 / seconds,
            get_pages_per_s: gets as f64 / seconds,
            get_bytes_per_s: get_bytes as f64 / seconds,
            probe_keys_per_s: probes as f64 / seconds,
            hit_rate: (gets > 0).then(|| d(b.get_hits, a.get_hits) as f64 / gets as f64),
            mean_page_bytes,
            ios_per_get_page: if gets > 0 {
                d(b.read_ios, a.read_ios) as f64 / gets as f64
            } else {
                0.0
            },
            put_p50_us: window_quantile_us(&a.put_latency, &b.put_latency, 0.5),
            put_p99_us: window_quantile_us(&a.put_latency, &b.put_latency, 0.99),
            get_p50_us: window_quantile_us(&a.get_latency, &b.get_latency, 0.5),
            get_p99_us: window_quantile_us(&a.get_latency, &b.get_latency, 0.99),
            fg_bytes_per_s: (put_bytes + get_bytes) as f64 / seconds,
            bg_bytes_per_s: 2.0 * per_s(b.relocated_bytes, a.relocated_bytes, seconds),
            index_busy_frac: per_s(b.index_busy_us, a.index_busy_us, seconds) / 1e6,
            lookups_per_s: lookups as f64 / seconds,
            lookup_us: (lookups > 0)
                .then(|| d(b.index_lookup_us, a.index_lookup_us) as f64 / lookups as f64),
            lookup_runs: (lookups > 0)
                .then(|| d(b.index_lookup_runs, a.index_lookup_runs) as f64 / lookups as f64),
            insert_us_by_fill: b
                .inserts_by_fill
                .iter()
                .zip(a.inserts_by_fill.iter().chain(std::iter::repeat(&(0, 0))))
                .enumerate()
                .filter_map(|(i, (after, before))| {
                    let n = d(after.0, before.0);
                    (n > 0).then(|| {
                        let log2 = f64::from(b.fill_log2_min) + i as f64 + 0.5;
                        (log2, n, d(after.1, before.1) as f64 / n as f64)
                    })
                })
                .collect(),
            l0_runs: b.l0_runs,
            index_table_bytes: b.index_table_bytes,
            write_fraction: if ops > 0 {
                puts as f64 / ops as f64
            } else {
                0.0
            },
            space_amplification: if b.live_bytes > 0 {
                b.log_bytes as f64 / b.live_bytes as f64
            } else {
                1.0
            },
            write_amplification: if put_bytes > 0 {
                (put_bytes + d(b.relocated_bytes, a.relocated_bytes)) as f64 / put_bytes as f64
            } else {
                1.0
            },
            pages: b.pages,
            index_bytes_per_page: if b.pages > 0 {
                b.index_disk_bytes as f64 / b.pages as f64
            } else {
                0.0
            },
            free_bytes: b.free_bytes,
        }
    }

    /// Did anything happen? Idle windows carry no evidence about the workload.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.put_pages_per_s + self.get_pages_per_s + self.probe_keys_per_s < 1.0
    }
}

/// The last [`WINDOWS_KEPT`] windows and the observation that ends the newest.
#[derive(Default)]
pub struct Monitor {
    last: Option<Observation>,
    windows: VecDeque<Window>,
}

impl Monitor {
    /// Closes a window at `obs`; returns it (none for the first observation).
    pub fn observe(&mut self, obs: Observation) -> Option<Window> {
        let w = self.last.as_ref().map(|prev| Window::between(prev, &obs));
        self.last = Some(obs);
        if let Some(w) = &w {
            if self.windows.len() == WINDOWS_KEPT {
                self.windows.pop_front();
            }
            self.windows.push_back(w.clone());
        }
        debug_assert!(self.windows.len() <= WINDOWS_KEPT);
        w
    }

    /// The newest `n` busy windows, newest last.
    #[must_use]
    pub fn recent_busy(&self, n: usize) -> Vec<&Window> {
        let mut v: Vec<&Window> = self
            .windows
            .iter()
            .rev()
            .filter(|w| !w.is_idle())
            .take(n)
            .collect();
        v.reverse();
        v
    }
}
