//! The adaptive controller (docs/CONTROLLER.md): watches the workload through [`Monitor`],
//! predicts the cost of candidate knob settings with the [`cost`] model, and installs the
//! cheapest when it beats the current one by a margin.
//!
//! It is pure logic: the store hands it an [`Observation`] once per tick and applies the
//! [`Knobs`] it returns, so the policy is unit-testable without disks or threads. With
//! `adaptive = false` it still observes and predicts (so `stats` can show predicted vs
//! measured cost for a hand-tuned store) but never changes a knob.

pub mod cost;
pub mod knobs;
pub mod latency;
pub mod monitor;
pub mod verify;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use cost::{Calibration, Prediction, Workload};
pub use knobs::{Knobs, LiveKnobs, BOUNDS};
pub use monitor::{Monitor, Observation, Window};
use verify::{ForegroundCost, Trial, Verdict};

/// Busy windows a setting stays in force before the controller may change it again: with
/// 1 s ticks, at most one change per 5 s, so a flapping workload cannot make it oscillate.
pub const MIN_DWELL_WINDOWS: u32 = 5;
/// A candidate must cut predicted cost by this fraction of the current cost ...
pub const MIN_GAIN_FRACTION: f64 = 0.15;
/// ... and by at least this much index CPU (2% of a core), so idle-ish stores stay put.
pub const MIN_GAIN_US_PER_S: f64 = 20_000.0;
/// Changes remembered for `stats` (all are also logged).
pub const DECISIONS_KEPT: usize = 64;
/// Weight of the newest window in the smoothed workload.
const EWMA_ALPHA: f64 = 0.5;
/// Weight kept by older calibration evidence per busy window.
const CALIBRATION_DECAY: f64 = 0.9;
/// A change's one-time cost (re-compacting L0) is spread over this many seconds of the
/// current workload: a phase shorter than this does not pay for a reorganisation.
pub const TRANSITION_HORIZON_S: f64 = 60.0;

/// Candidate values searched per knob (all inside [`BOUNDS`]).
const MEMTABLE_MIB: [u64; 5] = [8, 16, 32, 64, 128];
const L0_THRESHOLDS: [u8; 4] = [2, 4, 8, 16];
const LEVEL_RATIOS: [u32; 4] = [4, 8, 10, 16];

/// One window as measured, with the knobs in force and what the model predicted for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub window: Window,
    pub knobs: Knobs,
    pub predicted: Prediction,
}

/// A knob change, with the evidence that justified it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Controller tick number at which it was made.
    pub tick: u64,
    /// `"retune"` (the model predicted a gain) or `"revert"` (a retune measured slower).
    pub kind: String,
    /// For a revert: measured foreground us per page before and after the retune.
    pub measured_before_us: Option<f64>,
    pub measured_after_us: Option<f64>,
    pub from: Knobs,
    pub to: Knobs,
    pub workload: Workload,
    pub calibration: Calibration,
    pub predicted_before: Prediction,
    pub predicted_after: Prediction,
}

/// What `stats` shows about the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ControllerStats {
    pub adaptive: bool,
    pub ticks: u64,
    pub decisions_total: u64,
    /// Retunes undone because the foreground measured slower.
    pub reverts_total: u64,
    /// A retune is being verified.
    pub verifying: bool,
    pub knobs: Option<Knobs>,
    pub workload: Option<Workload>,
    pub calibration: Option<Calibration>,
    pub last_window: Option<WindowRecord>,
    pub last_decision: Option<Decision>,
}

/// Decayed sums for a one-variable regression `y = base + slope * x` (lookup time against
/// runs probed; publication time against log2 memtable fill).
#[derive(Default)]
struct LinearFit {
    n: f64,
    x: f64,
    y: f64,
    xx: f64,
    xy: f64,
}

impl LinearFit {
    fn decay(&mut self) {
        for v in [
            &mut self.n,
            &mut self.x,
            &mut self.y,
            &mut self.xx,
            &mut self.xy,
        ] {
            *v *= CALIBRATION_DECAY;
        }
    }

    /// One point per window (its mean), older windows decayed.
    fn add(&mut self, x: f64, y: f64) {
        self.decay();
        self.add_weighted(x, y, 1.0);
    }

    /// A point of weight `w` (e.g. the pages a bucket's mean covers), without decaying.
    fn add_weighted(&mut self, x: f64, y: f64, w: f64) {
        self.n += w;
        self.x += w * x;
        self.y += w * y;
        self.xx += w * x * x;
        self.xy += w * x * y;
    }

    /// Fits `(base, slope)`; keeps `prior_slope` when x barely varied (no evidence).
    fn fit(&self, prior_slope: f64) -> Option<(f64, f64)> {
        if self.n < 1.0 {
            return None;
        }
        let (mx, my) = (self.x / self.n, self.y / self.n);
        let var = self.xx / self.n - mx * mx;
        let slope = if var > 0.25 {
            ((self.xy / self.n - mx * my) / var).clamp(0.0, 50.0)
        } else {
            prior_slope
        };
        Some(((my - slope * mx).max(0.0), slope))
    }
}

pub struct Controller {
    adaptive: bool,
    monitor: Monitor,
    calibration: Calibration,
    lookup_fit: LinearFit,
    insert_fit: LinearFit,
    merge_measured_us: f64,
    merge_units: f64,
    workload: Option<Workload>,
    ticks: u64,
    windows_since_change: u32,
    decisions: VecDeque<Decision>,
    decisions_total: u64,
    reverts_total: u64,
    history: VecDeque<WindowRecord>,
    trial: Option<Trial>,
    /// The configured reclamation budget: the controller only raises it.
    reclaim_floor_bytes_per_s: u64,
    /// After a revert the index knobs stay put until this tick; each revert doubles the
    /// pause (bounded harm: one verification period per pause).
    frozen_until: u64,
    freeze_ticks: u64,
}

/// The index part of a setting (what a revert rejects).
fn index_part(k: &Knobs) -> (u64, u8, u32) {
    (k.memtable_bytes, k.l0_threshold, k.level_ratio)
}

fn workload_of(w: &Window) -> Workload {
    Workload {
        inserts_per_s: w.put_pages_per_s,
        lookups_per_s: w.lookups_per_s,
        pages: w.pages as f64,
        // Before the first flush the index has no tables; use the SGLang-key typical size.
        entry_bytes: if w.index_bytes_per_page >= 16.0 {
            w.index_bytes_per_page
        } else {
            170.0
        },
    }
}

impl Controller {
    #[must_use]
    pub fn new(adaptive: bool) -> Self {
        Self::with_calibration(adaptive, Calibration::default())
    }

    /// The reclamation budget the controller never goes below (the configured one).
    #[must_use]
    pub fn with_reclaim_floor(mut self, bytes_per_s: u64) -> Self {
        self.reclaim_floor_bytes_per_s = bytes_per_s;
        self
    }

    /// A controller starting from the given priors (tests, experiments).
    #[must_use]
    pub fn with_calibration(adaptive: bool, calibration: Calibration) -> Self {
        Self {
            adaptive,
            monitor: Monitor::default(),
            calibration,
            lookup_fit: LinearFit::default(),
            insert_fit: LinearFit::default(),
            merge_measured_us: 0.0,
            merge_units: 0.0,
            workload: None,
            ticks: 0,
            windows_since_change: MIN_DWELL_WINDOWS,
            decisions: VecDeque::new(),
            decisions_total: 0,
            reverts_total: 0,
            history: VecDeque::new(),
            trial: None,
            reclaim_floor_bytes_per_s: 0,
            frozen_until: 0,
            freeze_ticks: verify::REJECT_COOLDOWN_TICKS,
        }
    }

    /// Feeds one observation; returns the knobs to install when the controller decides to
    /// change them (never when `adaptive` is off).
    pub fn tick(
        &mut self,
        obs: Observation,
        current: Knobs,
        capacity: Option<u64>,
    ) -> Option<Knobs> {
        self.ticks += 1;
        let live_bytes = obs.live_bytes;
        let log_bytes = obs.log_bytes;
        let w = self.monitor.observe(obs)?;
        if w.is_idle() {
            return None;
        }
        let inst = workload_of(&w);
        let predicted = cost::predict(&current, &inst, &self.calibration);
        self.remember(WindowRecord {
            window: w.clone(),
            knobs: current,
            predicted,
        });
        self.calibrate(&w, &current, &inst);
        let smoothed = match self.workload {
            None => inst,
            Some(s) => Workload {
                inserts_per_s: EWMA_ALPHA * inst.inserts_per_s
                    + (1.0 - EWMA_ALPHA) * s.inserts_per_s,
                lookups_per_s: EWMA_ALPHA * inst.lookups_per_s
                    + (1.0 - EWMA_ALPHA) * s.lookups_per_s,
                ..inst
            },
        };
        self.workload = Some(smoothed);
        self.windows_since_change = self.windows_since_change.saturating_add(1);
        if let Some(trial) = self.trial.as_mut() {
            match trial.observe(&w) {
                Verdict::Pending => return None,
                Verdict::Keep => self.trial = None,
                Verdict::Revert {
                    before_us,
                    after_us,
                } => return Some(self.revert(current, smoothed, before_us, after_us)),
            }
        }
        if !self.adaptive || self.windows_since_change < MIN_DWELL_WINDOWS {
            return None;
        }
        let mut best = self.best_index_knobs(current, &smoothed, &w);
        if capacity.is_some() {
            let live_fraction = if log_bytes > 0 {
                live_bytes as f64 / log_bytes as f64
            } else {
                0.0
            };
            // Never below the configured budget: the background reclaimer holds the reclaim
            // lock while it waits for budget, and a writer that must reclaim inline waits for
            // that lock — a 16 MiB/s budget stalled one put for 46 s in bench-capacity.
            let (lo, hi) = BOUNDS.reclaim_bytes_per_s;
            best.reclaim_bytes_per_s =
                (cost::reclaim_budget_bytes_per_s(w.put_bytes_per_s, live_fraction) as u64)
                    .clamp(lo.max(self.reclaim_floor_bytes_per_s), hi);
        }
        let before = cost::predict(&current, &smoothed, &self.calibration);
        let after = cost::predict(&best, &smoothed, &self.calibration);
        let gain = before.cost_us_per_s - after.cost_us_per_s;
        let index_change = gain > MIN_GAIN_FRACTION * before.cost_us_per_s
            && gain > MIN_GAIN_US_PER_S
            && self.ticks >= self.frozen_until;
        let budget_change = {
            let (a, b) = (
                current.reclaim_bytes_per_s as f64,
                best.reclaim_bytes_per_s as f64,
            );
            a.max(b) > 2.0 * a.min(b)
        };
        if !index_change && !budget_change {
            return None;
        }
        let mut to = if index_change { best } else { current };
        to.reclaim_bytes_per_s = if budget_change {
            best.reclaim_bytes_per_s
        } else {
            current.reclaim_bytes_per_s
        };
        if to == current {
            return None;
        }
        if index_part(&to) != index_part(&current) {
            let mut before = ForegroundCost::default();
            for past in self.monitor.recent_busy(verify::VERIFY_WINDOWS as usize) {
                before.add(past);
            }
            self.trial = Some(Trial::new(current, to, before));
        }
        let decision = Decision {
            tick: self.ticks,
            kind: "retune".into(),
            measured_before_us: None,
            measured_after_us: None,
            from: current,
            to,
            workload: smoothed,
            calibration: self.calibration,
            predicted_before: before,
            predicted_after: cost::predict(&to, &smoothed, &self.calibration),
        };
        tracing::info!(
            from = ?decision.from,
            to = ?decision.to,
            workload = ?decision.workload,
            calibration = ?decision.calibration,
            predicted_cost_before_us_per_s = decision.predicted_before.cost_us_per_s,
            predicted_cost_after_us_per_s = decision.predicted_after.cost_us_per_s,
            "controller retuned the store"
        );
        self.record(decision);
        Some(to)
    }

    fn record(&mut self, decision: Decision) {
        if self.decisions.len() == DECISIONS_KEPT {
            self.decisions.pop_front();
        }
        self.decisions.push_back(decision);
        self.decisions_total += 1;
        self.windows_since_change = 0;
    }

    /// Undoes the retune under trial (its index knobs; the reclamation budget stays) and
    /// pauses index retuning ([`verify::REJECT_COOLDOWN_TICKS`], doubling per revert).
    fn revert(&mut self, current: Knobs, w: Workload, before_us: f64, after_us: f64) -> Knobs {
        let Some(trial) = self.trial.take() else {
            return current;
        };
        let to = Knobs {
            memtable_bytes: trial.from.memtable_bytes,
            l0_threshold: trial.from.l0_threshold,
            level_ratio: trial.from.level_ratio,
            ..current
        };
        self.frozen_until = self.ticks + self.freeze_ticks;
        self.freeze_ticks = (self.freeze_ticks * 2).min(verify::MAX_FREEZE_TICKS);
        tracing::info!(
            from = ?current,
            to = ?to,
            measured_before_us_per_page = before_us,
            measured_after_us_per_page = after_us,
            "controller reverted a retune that measured slower"
        );
        self.reverts_total += 1;
        self.record(Decision {
            tick: self.ticks,
            kind: "revert".into(),
            measured_before_us: Some(before_us),
            measured_after_us: Some(after_us),
            from: current,
            to,
            workload: w,
            calibration: self.calibration,
            predicted_before: cost::predict(&current, &w, &self.calibration),
            predicted_after: cost::predict(&to, &w, &self.calibration),
        });
        to
    }

    /// The cheapest index setting for `w` (other knobs as in `current`), counting each
    /// candidate's one-time transition cost spread over [`TRANSITION_HORIZON_S`].
    fn best_index_knobs(&self, current: Knobs, w: &Workload, now: &Window) -> Knobs {
        let mut best = (
            cost::predict(&current, w, &self.calibration).cost_us_per_s,
            current,
        );
        for m in MEMTABLE_MIB {
            for l0 in L0_THRESHOLDS {
                for t in LEVEL_RATIOS {
                    let k = Knobs {
                        memtable_bytes: m << 20,
                        l0_threshold: l0,
                        level_ratio: t,
                        ..current
                    };
                    let once = cost::transition_us(
                        &current,
                        &k,
                        now.l0_runs,
                        now.index_table_bytes,
                        &self.calibration,
                    );
                    let c = cost::predict(&k, w, &self.calibration).cost_us_per_s
                        + once / TRANSITION_HORIZON_S;
                    if c < best.0 {
                        best = (c, k);
                    }
                }
            }
        }
        best.1
    }

    fn calibrate(&mut self, w: &Window, current: &Knobs, inst: &Workload) {
        let units = cost::merge_units_per_s(current, inst) * w.seconds;
        let measured = w.index_busy_frac * 1e6 * w.seconds;
        if units > 0.0 || measured > 0.0 {
            self.merge_units = self.merge_units * CALIBRATION_DECAY + units;
            self.merge_measured_us = self.merge_measured_us * CALIBRATION_DECAY + measured;
            // Needs evidence worth a few flushes before it overrides the prior.
            if self.merge_units > 8.0 * cost::FLUSH_FIXED_BYTES && self.merge_measured_us > 0.0 {
                self.calibration.merge_us_per_byte =
                    (self.merge_measured_us / self.merge_units).clamp(1e-5, 1.0);
            }
        }
        if let (Some(runs), Some(us)) = (w.lookup_runs, w.lookup_us) {
            self.lookup_fit.add(runs, us);
            if let Some((base, slope)) = self.lookup_fit.fit(self.calibration.lookup_us_per_run) {
                self.calibration.lookup_base_us = base;
                self.calibration.lookup_us_per_run = slope;
            }
        }
        if !w.insert_us_by_fill.is_empty() {
            self.insert_fit.decay();
            for &(fill_log2, pages, us) in &w.insert_us_by_fill {
                self.insert_fit.add_weighted(fill_log2, us, pages as f64);
            }
            if let Some((base, slope)) = self.insert_fit.fit(self.calibration.insert_us_per_log2) {
                self.calibration.insert_base_us = base;
                self.calibration.insert_us_per_log2 = slope;
            }
        }
    }

    fn remember(&mut self, r: WindowRecord) {
        if self.history.len() == monitor::WINDOWS_KEPT {
            self.history.pop_front();
        }
        self.history.push_back(r);
    }

    /// Busy windows seen recently, with predictions (newest last).
    #[must_use]
    pub fn history(&self) -> Vec<WindowRecord> {
        self.history.iter().cloned().collect()
    }

    /// Recent decisions (newest last).
    #[must_use]
    pub fn decisions(&self) -> Vec<Decision> {
        self.decisions.iter().cloned().collect()
    }

    #[must_use]
    pub fn stats(&self, knobs: Knobs) -> ControllerStats {
        ControllerStats {
            adaptive: self.adaptive,
            ticks: self.ticks,
            decisions_total: self.decisions_total,
            reverts_total: self.reverts_total,
            verifying: self.trial.is_some(),
            knobs: Some(knobs),
            workload: self.workload,
            calibration: Some(self.calibration),
            last_window: self.history.back().cloned(),
            last_decision: self.decisions.back().cloned(),
        }
    }
}

#[cfg(test)]
mod tests;
