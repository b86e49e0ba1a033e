//! Measured verification of a decision: the cost model proposes, the store's own foreground
//! cost disposes. After a change the controller compares the time spent per page written and
//! per page read before and after, weighted by the pages of the verification windows (so a
//! shift in the read/write mix is not mistaken for an effect), and reverts a change that made
//! the foreground slower. The model predicts index CPU; on a machine where that is not what
//! limits throughput, this loop keeps the controller from doing harm (docs/CONTROLLER.md).

use serde::{Deserialize, Serialize};

use super::knobs::Knobs;
use super::monitor::Window;

/// Busy windows measured after a change (the first, which straddles it, is skipped).
pub const VERIFY_WINDOWS: u32 = 5;
/// A change is reverted when the foreground got slower by more than this fraction.
pub const REVERT_MARGIN: f64 = 0.05;
/// Ticks the index knobs stay put after a first revert (5 min at 1 s ticks); every further
/// revert doubles the pause, up to [`MAX_FREEZE_TICKS`] (2 h).
pub const REJECT_COOLDOWN_TICKS: u64 = 300;
pub const MAX_FREEZE_TICKS: u64 = 7200;

/// Foreground pages and the time spent in their calls, summed over windows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ForegroundCost {
    pub put_pages: u64,
    pub put_call_us: u64,
    pub get_pages: u64,
    pub get_call_us: u64,
}

impl ForegroundCost {
    pub fn add(&mut self, w: &Window) {
        self.put_pages += w.put_pages;
        self.put_call_us += w.put_call_us;
        self.get_pages += w.get_pages;
        self.get_call_us += w.get_call_us;
    }

    fn put_us_per_page(&self) -> Option<f64> {
        (self.put_pages > 0).then(|| self.put_call_us as f64 / self.put_pages as f64)
    }

    fn get_us_per_page(&self) -> Option<f64> {
        (self.get_pages > 0).then(|| self.get_call_us as f64 / self.get_pages as f64)
    }
}

/// The outcome of a trial so far.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    Pending,
    Keep,
    /// Mean foreground us per page of the verification mix, before and after.
    Revert {
        before_us: f64,
        after_us: f64,
    },
}

/// A change under verification.
#[derive(Clone, Debug)]
pub struct Trial {
    pub from: Knobs,
    pub to: Knobs,
    pub before: ForegroundCost,
    after: ForegroundCost,
    windows: u32,
}

impl Trial {
    #[must_use]
    pub fn new(from: Knobs, to: Knobs, before: ForegroundCost) -> Self {
        Self {
            from,
            to,
            before,
            after: ForegroundCost::default(),
            windows: 0,
        }
    }

    /// Feeds one busy window after the change.
    pub fn observe(&mut self, w: &Window) -> Verdict {
        self.windows += 1;
        if self.windows == 1 {
            return Verdict::Pending;
        }
        self.after.add(w);
        if self.windows <= VERIFY_WINDOWS {
            return Verdict::Pending;
        }
        self.verdict()
    }

    fn verdict(&self) -> Verdict {
        let mut before_us = 0.0;
        let mut after_us = 0.0;
        let mut pages = 0u64;
        let pairs = [
            (
                self.before.put_us_per_page(),
                self.after.put_us_per_page(),
                self.after.put_pages,
            ),
            (
                self.before.get_us_per_page(),
                self.after.get_us_per_page(),
                self.after.get_pages,
            ),
        ];
        for (b, a, n) in pairs {
            if let (Some(b), Some(a)) = (b, a) {
                before_us += b * n as f64;
                after_us += a * n as f64;
                pages += n;
            }
        }
        if pages == 0 {
            return Verdict::Keep; // nothing comparable: no evidence against the model
        }
        let (before_us, after_us) = (before_us / pages as f64, after_us / pages as f64);
        if after_us > before_us * (1.0 + REVERT_MARGIN) {
            Verdict::Revert {
                before_us,
                after_us,
            }
        } else {
            Verdict::Keep
        }
    }
}
