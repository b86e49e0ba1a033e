//! The in-memory residency set: which pages exist, and how many live bytes each segment holds.
//!
//! Why in memory: `probe` of 128 keys must answer in microseconds, and SGLang probes on every
//! request. One entry is 16 bytes in a table kept at most 3/4 full, so 10M pages cost 256 MiB. It is rebuilt
//! from the index on open; the index stays the source of truth.

use std::collections::BTreeMap;

use super::fptable::FpTable;
use crate::key::Fingerprint;
use crate::vlog::format::align_up;

/// Where a resident page lives, compactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// Segment id.
    pub segment_id: u32,
    /// Aligned footprint in 4 KiB blocks.
    pub blocks: u32,
}

// SAFETY: two integers; all-zero is a valid (empty) slot.
unsafe impl super::fptable::ZeroValid for Slot {}

impl Slot {
    /// Slot for a payload of `len` bytes.
    #[must_use]
    pub fn new(segment_id: u32, len: u64) -> Self {
        let blocks = u32::try_from(align_up(len) / 4096).unwrap_or(u32::MAX);
        Self { segment_id, blocks }
    }

    fn bytes(self) -> u64 {
        u64::from(self.blocks) * 4096
    }
}

/// Resident pages and per-segment live bytes.
#[derive(Default)]
pub struct Residency {
    pages: FpTable<Slot>,
    live_by_segment: BTreeMap<u32, u64>,
    live_bytes: u64,
}

impl Residency {
    /// Is the page resident?
    #[must_use]
    pub fn contains(&self, fp: Fingerprint) -> bool {
        self.pages.contains(fp)
    }

    /// How many of `fps`, from the start, are resident.
    #[must_use]
    pub fn leading_present(&self, fps: &[Fingerprint]) -> usize {
        self.pages.leading_present(fps)
    }

    /// Records a page; returns false (and changes nothing) if it was already resident.
    pub fn insert(&mut self, fp: Fingerprint, slot: Slot) -> bool {
        if !self.pages.insert(fp, slot) {
            return false;
        }
        *self.live_by_segment.entry(slot.segment_id).or_default() += slot.bytes();
        self.live_bytes += slot.bytes();
        true
    }

    /// Replaces a page's slot (replay of a later frame for the same key).
    pub fn upsert(&mut self, fp: Fingerprint, slot: Slot) {
        self.remove(fp);
        self.insert(fp, slot);
    }

    /// Forgets a page.
    pub fn remove(&mut self, fp: Fingerprint) -> Option<Slot> {
        let slot = self.pages.remove(fp)?;
        if let Some(live) = self.live_by_segment.get_mut(&slot.segment_id) {
            *live = live.saturating_sub(slot.bytes());
            if *live == 0 {
                self.live_by_segment.remove(&slot.segment_id);
            }
        }
        self.live_bytes = self.live_bytes.saturating_sub(slot.bytes());
        Some(slot)
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Resident page count.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Live (aligned) payload bytes.
    #[must_use]
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Live bytes per segment.
    #[must_use]
    pub fn live_by_segment(&self) -> &BTreeMap<u32, u64> {
        &self.live_by_segment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounting_follows_inserts_and_removes() {
        let mut r = Residency::default();
        assert!(r.insert(1, Slot::new(3, 5000)));
        assert!(!r.insert(1, Slot::new(4, 10)), "first writer wins");
        assert!(r.insert(2, Slot::new(3, 4096)));
        assert_eq!(r.live_bytes(), 3 * 4096);
        assert_eq!(r.live_by_segment().get(&3), Some(&(3 * 4096)));
        r.upsert(2, Slot::new(5, 1));
        assert_eq!(r.live_by_segment().get(&5), Some(&4096));
        assert_eq!(r.remove(1), Some(Slot::new(3, 5000)));
        assert_eq!(r.live_by_segment().get(&3), None);
        assert_eq!(r.len(), 1);
    }
}
