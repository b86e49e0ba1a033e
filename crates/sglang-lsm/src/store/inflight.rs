//! Pages a `put_batch` is writing now.
//!
//! Two replicas behind one node service back up the same prompt at about the same time.
//! Without this, both find its pages absent and both write them: twice the I/O, and the log
//! holds a dead copy until reclaimed. A put claims the absent pages it will write; a put that
//! finds some of its pages claimed waits for that put to finish (bounded), then sees them
//! resident and writes only the rest. A put never waits while holding a claim, so two puts
//! cannot wait for each other.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::key::Fingerprint;

/// Longest a put waits for another to finish the same pages; past it, it writes them too
/// (the old behaviour: a dead copy, never a wrong one).
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Bound on claimed pages: every batch in flight, far above any real concurrency.
const MAX_CLAIMED: usize = 1 << 22;

#[derive(Default)]
pub(crate) struct InFlight {
    claimed: Mutex<HashSet<Fingerprint>>,
    released: Condvar,
}

/// Releases its pages (and wakes waiters) on drop.
pub(crate) struct Claim<'a> {
    owner: &'a InFlight,
    fps: Vec<Fingerprint>,
}

impl InFlight {
    /// Waits until no other put is writing any of `fps`, then claims them. Returns whether it
    /// waited.
    pub(crate) fn claim(&self, fps: &[Fingerprint]) -> (Claim<'_>, bool) {
        let deadline = Instant::now() + MAX_WAIT;
        let mut claimed = self.claimed.lock();
        let mut waited = false;
        while fps.iter().any(|f| claimed.contains(f)) {
            waited = true;
            if self.released.wait_until(&mut claimed, deadline).timed_out() {
                tracing::warn!(
                    pages = fps.len(),
                    "a concurrent put of the same pages took over {MAX_WAIT:?}; writing them again"
                );
                break;
            }
        }
        // Past the bound a put writes without claiming: a possible second copy, never a leak.
        let room = MAX_CLAIMED.saturating_sub(claimed.len());
        let mine: Vec<Fingerprint> = if fps.len() <= room {
            fps.iter().copied().filter(|&f| claimed.insert(f)).collect()
        } else {
            Vec::new()
        };
        (
            Claim {
                owner: self,
                fps: mine,
            },
            waited,
        )
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.fps.is_empty() {
            return;
        }
        let mut claimed = self.owner.claimed.lock();
        for f in &self.fps {
            claimed.remove(f);
        }
        drop(claimed);
        self.owner.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_second_claim_of_the_same_pages_waits_for_the_first() {
        let f = Arc::new(InFlight::default());
        let (first, waited) = f.claim(&[1, 2, 3]);
        assert!(!waited);
        let f2 = Arc::clone(&f);
        let second = std::thread::spawn(move || {
            let started = Instant::now();
            let (claim, waited) = f2.claim(&[3, 4]);
            assert_eq!(claim.fps, vec![3, 4]);
            (waited, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        let (waited, took) = second.join().expect("thread");
        assert!(waited && took >= Duration::from_millis(40), "{took:?}");
        let (again, waited) = f.claim(&[1, 2, 3, 4]);
        assert!(!waited, "every claim was released");
        assert_eq!(again.fps.len(), 4);
    }

    #[test]
    fn disjoint_claims_do_not_wait_and_duplicates_are_claimed_once() {
        let f = InFlight::default();
        let (_a, _) = f.claim(&[1, 2]);
        let (b, waited) = f.claim(&[3, 3, 4]);
        assert!(!waited);
        assert_eq!(b.fps, vec![3, 4]);
    }
}
