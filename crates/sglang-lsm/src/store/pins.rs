//! Pins: the parents of pages a `put_batch` is about to publish.
//!
//! Between choosing its pages and publishing them, a put may wait for inline reclamation or
//! quota eviction, and the background reclaimer runs meanwhile. Any of them could evict the
//! page a new page hangs from — it is a childless leaf until the child is published — and the
//! child would then be stored unreachable (an orphan: found by the quota proptest in CI). A
//! pin makes eviction treat the page as if it had a resident child; the put unpins when it
//! returns, on every path.
//!
//! Explicit `delete` still removes a pinned page (the caller asked for it); `put_batch`
//! re-checks each parent at publication and declines a page whose parent went missing.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::key::{Fingerprint, NO_PARENT};

/// Bound on distinct pinned pages: one per page of every batch in flight (a batch holds at
/// most `MAX_FRAME_RECORDS` pages), far above any real concurrency.
const MAX_PINNED: usize = 1 << 22;

/// Pinned fingerprints with a count per pin holder. A leaf lock: nothing else is acquired
/// while it is held.
#[derive(Default)]
pub(crate) struct Pins {
    pinned: Mutex<HashMap<Fingerprint, u32>>,
}

/// Unpins on drop.
pub(crate) struct PinGuard<'a> {
    pins: &'a Pins,
    fps: Vec<Fingerprint>,
}

impl Pins {
    /// Pins `fps` (duplicates and `NO_PARENT` ignored) until the guard drops.
    pub(crate) fn pin(&self, fps: impl IntoIterator<Item = Fingerprint>) -> PinGuard<'_> {
        let mut fps: Vec<Fingerprint> = fps.into_iter().filter(|&f| f != NO_PARENT).collect();
        fps.sort_unstable();
        fps.dedup();
        if !fps.is_empty() {
            let mut p = self.pinned.lock();
            for &fp in &fps {
                *p.entry(fp).or_insert(0) += 1;
            }
            assert!(
                p.len() <= MAX_PINNED,
                "pin table unbounded: {} pages",
                p.len()
            );
        }
        PinGuard { pins: self, fps }
    }

    /// Whether `fp` is pinned now.
    pub(crate) fn contains(&self, fp: Fingerprint) -> bool {
        self.pinned.lock().contains_key(&fp)
    }

    /// Runs `f` with a predicate answering "pinned?" under one lock acquisition (for filters
    /// over a whole chunk of eviction candidates).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&dyn Fn(Fingerprint) -> bool) -> R) -> R {
        let p = self.pinned.lock();
        f(&|fp| p.contains_key(&fp))
    }
}

impl Drop for PinGuard<'_> {
    fn drop(&mut self) {
        if self.fps.is_empty() {
            return;
        }
        let mut p = self.pins.pinned.lock();
        for fp in &self.fps {
            match p.get_mut(fp) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    p.remove(fp);
                }
                None => debug_assert!(false, "unpinned a page that was not pinned"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_nest_and_release_on_drop() {
        let pins = Pins::default();
        let (a, b): (Fingerprint, Fingerprint) = (7, 9);
        let g1 = pins.pin([a, a, b, NO_PARENT]);
        {
            let _g2 = pins.pin([a]);
            assert!(pins.contains(a) && pins.contains(b));
        }
        assert!(pins.contains(a), "the first holder still pins a");
        assert!(!pins.contains(NO_PARENT));
        drop(g1);
        assert!(!pins.contains(a) && !pins.contains(b));
        assert!(pins.with(|pinned| !pinned(a)));
    }
}
