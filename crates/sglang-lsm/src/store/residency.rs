//! The in-memory residency set: which pages exist, where, and the eviction state the
//! reclaimer needs (referenced bit, resident-children count, per-segment live bytes and age),
//! plus live bytes per quota'd namespace (`store::quota`).
//!
//! Why in memory: `probe` of 128 keys must answer in microseconds, and SGLang probes on every
//! request. One entry is 24 bytes (fingerprint + slot) in a table kept at most 3/4 full, so
//! 10M pages cost 384 MiB. It is rebuilt from the index on open; the index stays the source
//! of truth for locations.

use std::collections::{BTreeMap, HashMap};

use super::fptable::FpTable;
use crate::key::{Fingerprint, NO_PARENT};
use crate::vlog::format::align_up;

const REFERENCED: u16 = 1;
/// Referenced at least once since it was first written (read, or re-put), kept across
/// relocation: the "seen at least twice" class that `protect_frequent` reclamation spares.
const FREQUENT: u16 = 2;
/// Hits since last written or relocated, saturating at 3 (bits 2-3): S3-FIFO's frequency,
/// which a main-queue relocation spends one of (`Residency::relocate_spending_one`).
const HITS_SHIFT: u16 = 2;
const HITS_MASK: u16 = 0b11 << HITS_SHIFT;
/// Most hits a page banks: at most this many passes of the main queue without a new read.
pub const MAX_HITS: u16 = 3;

/// Where a resident page lives, plus its eviction state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// Segment id.
    pub segment_id: u32,
    /// Aligned footprint in 4 KiB blocks.
    pub blocks: u32,
    /// Resident direct children. A page with children is never evicted: SGLang reaches a page
    /// only through its whole prefix, so evicting an ancestor would orphan its descendants.
    pub children: u32,
    flags: u16,
    /// Quota'd namespace id (0: none). Kept here, in what was padding, so quota accounting
    /// needs no key and no extra memory per page.
    pub ns: u16,
}

// SAFETY: plain integers; all-zero is a valid (empty) slot.
unsafe impl super::fptable::ZeroValid for Slot {}

impl Slot {
    /// Slot for a payload of `len` bytes.
    #[must_use]
    pub fn new(segment_id: u32, len: u64) -> Self {
        let blocks = u32::try_from(align_up(len) / 4096).unwrap_or(u32::MAX);
        Self {
            segment_id,
            blocks,
            ..Self::default()
        }
    }

    /// The same slot, in quota'd namespace `ns` (0: none).
    #[must_use]
    pub fn with_ns(self, ns: u16) -> Self {
        Self { ns, ..self }
    }

    /// The same slot with its referenced bit set (tests of eviction choices).
    #[cfg(test)]
    #[must_use]
    pub fn with_referenced(self) -> Self {
        Self {
            flags: self.flags | REFERENCED | (1 << HITS_SHIFT),
            ..self
        }
    }

    /// The same slot marked frequent (a page written again after it was evicted, see
    /// `admission::History`).
    #[must_use]
    pub fn with_frequent(self) -> Self {
        Self {
            flags: self.flags | FREQUENT,
            ..self
        }
    }

    /// Aligned bytes on disk.
    #[must_use]
    pub fn bytes(self) -> u64 {
        u64::from(self.blocks) * 4096
    }

    /// Read (or re-put) since it was last written: the reclaimer relocates it rather than
    /// evicting it (a second chance, as in CLOCK).
    #[must_use]
    pub fn referenced(self) -> bool {
        self.flags & REFERENCED != 0
    }

    /// Hits banked since last written or relocated (0..=[`MAX_HITS`]); zero exactly when
    /// not referenced.
    #[must_use]
    pub fn hits(self) -> u16 {
        (self.flags & HITS_MASK) >> HITS_SHIFT
    }

    /// Referenced at least once since first written, across relocations (in memory only: a
    /// reopened store starts with no frequent pages).
    #[must_use]
    pub fn frequent(self) -> bool {
        self.flags & FREQUENT != 0
    }
}

/// Per-segment accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Aligned payload bytes of resident pages.
    pub live_bytes: u64,
    /// Smallest write sequence number of a page placed here (its age).
    pub first_seqno: u64,
    /// Largest write sequence number of a page placed here (never lowered when pages leave:
    /// an upper bound on the newest live page, which is what cost-benefit's age needs).
    pub last_seqno: u64,
}

/// Live bytes and pages of one quota'd namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NsUsage {
    /// Aligned payload bytes of resident pages.
    pub live_bytes: u64,
    /// Resident pages.
    pub pages: u64,
}

/// Resident pages and per-segment live bytes.
#[derive(Default)]
pub struct Residency {
    pages: FpTable<Slot>,
    segments: BTreeMap<u32, SegmentMeta>,
    live_bytes: u64,
    /// Live bytes of frequent pages (bounds what `protect_frequent` may spare).
    frequent_bytes: u64,
    /// Live bytes of referenced pages (those a second-chance pass relocates rather than
    /// evicts): tells inline reclamation whether low yield means "everything was read".
    referenced_bytes: u64,
    /// Indexed by namespace id; grown on demand (ids are dense and few).
    namespaces: Vec<NsUsage>,
    /// Resident children of pages that are not resident (yet): a child may be stored before
    /// its parent (SGLang backs up a hybrid model's sidecar state before its KV page, and
    /// writes a suffix whose prefix sits in host memory). The parent takes the count when it
    /// arrives, so `children` never undercounts and a parent with a child is never a leaf.
    absent_parent_children: HashMap<Fingerprint, u32>,
}

impl Residency {
    /// Is the page resident?
    #[must_use]
    pub fn contains(&self, fp: Fingerprint) -> bool {
        self.pages.contains(fp)
    }

    /// The page's slot.
    #[must_use]
    pub fn slot(&self, fp: Fingerprint) -> Option<Slot> {
        self.pages.get(fp)
    }

    /// How many of `fps`, from the start, are resident.
    #[must_use]
    pub fn leading_present(&self, fps: &[Fingerprint]) -> usize {
        self.pages.leading_present(fps)
    }

    fn account(&mut self, slot: Slot, seqno: u64) {
        let meta = self.segments.entry(slot.segment_id).or_insert(SegmentMeta {
            live_bytes: 0,
            first_seqno: seqno,
            last_seqno: seqno,
        });
        meta.live_bytes += slot.bytes();
        meta.first_seqno = meta.first_seqno.min(seqno);
        meta.last_seqno = meta.last_seqno.max(seqno);
        self.live_bytes += slot.bytes();
        if slot.frequent() {
            self.frequent_bytes += slot.bytes();
        }
        if slot.referenced() {
            self.referenced_bytes += slot.bytes();
        }
        if slot.ns != 0 {
            let i = usize::from(slot.ns);
            if self.namespaces.len() <= i {
                self.namespaces.resize(i + 1, NsUsage::default());
            }
            self.namespaces[i].live_bytes += slot.bytes();
            self.namespaces[i].pages += 1;
        }
    }

    fn unaccount(&mut self, slot: Slot) {
        if let Some(meta) = self.segments.get_mut(&slot.segment_id) {
            meta.live_bytes = meta.live_bytes.saturating_sub(slot.bytes());
            if meta.live_bytes == 0 {
                self.segments.remove(&slot.segment_id);
            }
        }
        self.live_bytes = self.live_bytes.saturating_sub(slot.bytes());
        if slot.frequent() {
            debug_assert!(self.frequent_bytes >= slot.bytes());
            self.frequent_bytes = self.frequent_bytes.saturating_sub(slot.bytes());
        }
        if slot.referenced() {
            debug_assert!(self.referenced_bytes >= slot.bytes());
            self.referenced_bytes = self.referenced_bytes.saturating_sub(slot.bytes());
        }
        if let Some(u) = self.namespaces.get_mut(usize::from(slot.ns)) {
            debug_assert!(slot.ns == 0 || (u.pages > 0 && u.live_bytes >= slot.bytes()));
            u.live_bytes = u.live_bytes.saturating_sub(slot.bytes());
            u.pages = u.pages.saturating_sub(1);
        }
    }

    /// Records a new page written at `seqno`; returns false (and changes nothing) if it was
    /// already resident. Children stored before it are counted as its children.
    pub fn insert(&mut self, fp: Fingerprint, slot: Slot, parent: Fingerprint, seqno: u64) -> bool {
        if self.pages.contains(fp) {
            return false;
        }
        let early_children = self.absent_parent_children.remove(&fp).unwrap_or(0);
        let slot = Slot {
            children: slot.children.saturating_add(early_children),
            ..slot
        };
        let inserted = self.pages.insert(fp, slot);
        debug_assert!(inserted, "checked absent above");
        self.account(slot, seqno);
        self.link_child(parent);
        true
    }

    /// Counts one more resident child of `parent`, resident or not.
    fn link_child(&mut self, parent: Fingerprint) {
        if parent == NO_PARENT {
            return;
        }
        if self.pages.contains(parent) {
            self.pages
                .update(parent, |p| p.children = p.children.saturating_add(1));
        } else {
            *self.absent_parent_children.entry(parent).or_insert(0) += 1;
        }
    }

    /// Counts one child of `parent` fewer.
    fn unlink_child(&mut self, parent: Fingerprint) {
        if parent == NO_PARENT {
            return;
        }
        if self.pages.contains(parent) {
            self.pages.update(parent, |p| {
                debug_assert!(p.children > 0, "a parent lost a child it did not count");
                p.children = p.children.saturating_sub(1);
            });
        } else if let Some(n) = self.absent_parent_children.get_mut(&parent) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.absent_parent_children.remove(&parent);
            }
        }
    }

    /// Moves a page to a new location (relocation or replay of a newer frame), keeping its
    /// children count and frequent mark and clearing its referenced bit.
    pub fn relocate(&mut self, fp: Fingerprint, to: Slot, seqno: u64) -> bool {
        self.relocate_keeping(fp, to, seqno, 0)
    }

    /// [`Self::relocate`] that spends one banked hit instead of all of them: S3-FIFO's
    /// reinsertion into the main queue. A page with hits left stays referenced, so it is
    /// relocated again on the next pass unless those run out first.
    pub fn relocate_spending_one(&mut self, fp: Fingerprint, to: Slot, seqno: u64) -> bool {
        let left = self.pages.get(fp).map_or(0, |s| s.hits().saturating_sub(1));
        self.relocate_keeping(fp, to, seqno, left)
    }

    fn relocate_keeping(&mut self, fp: Fingerprint, to: Slot, seqno: u64, hits: u16) -> bool {
        debug_assert!(hits <= MAX_HITS);
        let Some(old) = self.pages.get(fp) else {
            return false;
        };
        self.unaccount(old);
        let referenced = if hits > 0 { REFERENCED } else { 0 };
        let moved = Slot {
            children: old.children,
            ns: old.ns,
            flags: (old.flags & FREQUENT) | referenced | (hits << HITS_SHIFT),
            ..to
        };
        self.pages.update(fp, |s| *s = moved);
        self.account(moved, seqno);
        true
    }

    /// Marks pages as referenced (a read hit or a re-put), and so frequent: a page touched
    /// once has been seen twice (written, then wanted again).
    pub fn touch(&mut self, fps: impl IntoIterator<Item = Fingerprint>) {
        for fp in fps {
            let (mut newly_frequent, mut newly_referenced) = (0, 0);
            self.pages.update(fp, |s| {
                if !s.frequent() {
                    newly_frequent = s.bytes();
                }
                if !s.referenced() {
                    newly_referenced = s.bytes();
                }
                let hits = (s.hits() + 1).min(MAX_HITS);
                s.flags = (s.flags & !HITS_MASK) | (hits << HITS_SHIFT) | REFERENCED | FREQUENT;
            });
            self.frequent_bytes += newly_frequent;
            self.referenced_bytes += newly_referenced;
        }
    }

    /// Forgets a page. Children it still has (only `remove_exact`, which allows orphans,
    /// removes such a page) keep their count, for the page's return.
    pub fn remove(&mut self, fp: Fingerprint, parent: Fingerprint) -> Option<Slot> {
        let slot = self.pages.remove(fp)?;
        self.unaccount(slot);
        if slot.children > 0 {
            self.absent_parent_children.insert(fp, slot.children);
        }
        self.unlink_child(parent);
        Some(slot)
    }

    /// Recounts children from `(child, parent)` pairs (after a rebuild from the index, whose
    /// pages were inserted without parents).
    pub fn count_children(&mut self, links: &[(Fingerprint, Fingerprint)]) {
        for &(child, parent) in links {
            if self.pages.contains(child) {
                self.link_child(parent);
            }
        }
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

    /// Live bytes of frequent pages.
    #[must_use]
    pub fn frequent_bytes(&self) -> u64 {
        self.frequent_bytes
    }

    /// Live bytes of referenced pages (read or re-put since last written or relocated).
    #[must_use]
    pub fn referenced_bytes(&self) -> u64 {
        debug_assert!(self.referenced_bytes <= self.live_bytes);
        self.referenced_bytes
    }

    /// Live bytes and pages of quota'd namespace `ns` (zero for 0, which is not tracked).
    #[must_use]
    pub fn namespace(&self, ns: u16) -> NsUsage {
        if ns == 0 {
            return NsUsage::default();
        }
        self.namespaces
            .get(usize::from(ns))
            .copied()
            .unwrap_or_default()
    }

    /// Accounting per segment that holds live pages.
    #[must_use]
    pub fn segments(&self) -> &BTreeMap<u32, SegmentMeta> {
        &self.segments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounting_children_and_relocation() {
        let mut r = Residency::default();
        assert!(r.insert(10, Slot::new(3, 5000), NO_PARENT, 7));
        assert!(
            !r.insert(10, Slot::new(4, 10), NO_PARENT, 8),
            "first writer wins"
        );
        assert!(r.insert(11, Slot::new(3, 4096), 10, 9));
        assert_eq!(r.slot(10).map(|s| s.children), Some(1));
        assert_eq!(r.live_bytes(), 3 * 4096);
        assert_eq!(
            r.segments()[&3],
            SegmentMeta {
                live_bytes: 3 * 4096,
                first_seqno: 7,
                last_seqno: 9
            }
        );
        r.touch([10, 11]);
        assert!(r.slot(10).is_some_and(Slot::referenced));
        assert!(r.relocate(10, Slot::new(5, 5000), 20));
        let moved = r.slot(10).expect("resident");
        assert_eq!(
            (moved.segment_id, moved.children, moved.referenced()),
            (5, 1, false)
        );
        assert_eq!(r.segments()[&3].live_bytes, 4096);
        assert_eq!(r.segments()[&5].live_bytes, 2 * 4096);
        assert_eq!(r.remove(11, 10).map(|s| s.segment_id), Some(3));
        assert_eq!(r.slot(10).map(|s| s.children), Some(0));
        assert!(!r.segments().contains_key(&3), "empty segments drop out");
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_child_stored_before_its_parent_is_counted_when_the_parent_arrives() {
        let mut r = Residency::default();
        // Child 11 (say, a sidecar state page) before its parent 10 (the KV page).
        assert!(r.insert(11, Slot::new(1, 4096), 10, 1));
        assert!(r.insert(10, Slot::new(1, 4096), NO_PARENT, 2));
        assert!(r.insert(12, Slot::new(1, 4096), 10, 3));
        assert_eq!(r.slot(10).map(|s| s.children), Some(2));
        // Losing the early child leaves the later one counted: 10 is still no leaf.
        r.remove(11, 10);
        assert_eq!(r.slot(10).map(|s| s.children), Some(1));
        r.remove(12, 10);
        assert_eq!(r.slot(10).map(|s| s.children), Some(0));
        assert!(r.absent_parent_children.is_empty());
    }

    #[test]
    fn a_removed_parent_gets_its_children_back_when_it_returns() {
        let mut r = Residency::default();
        assert!(r.insert(1, Slot::new(1, 4096), NO_PARENT, 1));
        assert!(r.insert(2, Slot::new(1, 4096), 1, 2));
        // `remove_exact` may take a parent with a child (replayer policies allow orphans).
        r.remove(1, NO_PARENT);
        assert!(r.insert(1, Slot::new(2, 4096), NO_PARENT, 3));
        assert_eq!(r.slot(1).map(|s| s.children), Some(1));
        // A rebuild from the index counts the same.
        let mut rebuilt = Residency::default();
        rebuilt.insert(2, Slot::new(1, 4096), NO_PARENT, 2);
        rebuilt.insert(1, Slot::new(2, 4096), NO_PARENT, 3);
        rebuilt.count_children(&[(2, 1), (1, NO_PARENT)]);
        assert_eq!(rebuilt.slot(1).map(|s| s.children), Some(1));
    }

    #[test]
    fn frequent_mark_survives_relocation_and_is_accounted() {
        let mut r = Residency::default();
        assert!(r.insert(1, Slot::new(1, 4096), NO_PARENT, 1));
        assert!(r.insert(2, Slot::new(1, 4096).with_frequent(), NO_PARENT, 2));
        assert_eq!(r.frequent_bytes(), 4096, "a page put again after eviction");
        r.touch([1, 1]);
        assert!(r.slot(1).is_some_and(|s| s.referenced() && s.frequent()));
        assert_eq!(r.frequent_bytes(), 2 * 4096, "touching twice counts once");
        assert!(r.relocate(1, Slot::new(2, 4096), 3));
        let moved = r.slot(1).expect("resident");
        assert!(
            moved.frequent() && !moved.referenced(),
            "relocation spends the second chance, keeps the frequent mark"
        );
        assert_eq!(r.frequent_bytes(), 2 * 4096);
        assert_eq!(r.segments()[&2].last_seqno, 3);
        r.remove(1, NO_PARENT);
        r.remove(2, NO_PARENT);
        assert_eq!(r.frequent_bytes(), 0);
    }

    #[test]
    fn hits_saturate_and_a_main_relocation_spends_one() {
        let mut r = Residency::default();
        assert!(r.insert(1, Slot::new(1, 4096), NO_PARENT, 1));
        assert_eq!(r.slot(1).map(Slot::hits), Some(0));
        r.touch([1, 1, 1, 1, 1]);
        assert_eq!(r.slot(1).map(Slot::hits), Some(MAX_HITS), "saturates");
        for left in (0..MAX_HITS).rev() {
            assert!(r.relocate_spending_one(1, Slot::new(2, 4096), 2));
            let s = r.slot(1).expect("resident");
            assert_eq!(s.hits(), left);
            assert_eq!(
                s.referenced(),
                left > 0,
                "referenced exactly while hits are left"
            );
            assert_eq!(r.referenced_bytes(), if left > 0 { 4096 } else { 0 });
        }
        // A plain relocation (CLOCK, or a promotion out of probation) spends them all.
        r.touch([1, 1]);
        assert!(r.relocate(1, Slot::new(3, 4096), 3));
        assert_eq!(
            r.slot(1).map(|s| (s.hits(), s.referenced())),
            Some((0, false))
        );
        assert_eq!(r.referenced_bytes(), 0);
    }

    #[test]
    fn referenced_bytes_follow_touches_relocations_and_removals() {
        let mut r = Residency::default();
        assert!(r.insert(1, Slot::new(1, 4096), NO_PARENT, 1));
        assert!(r.insert(2, Slot::new(1, 8192), NO_PARENT, 2));
        assert_eq!(r.referenced_bytes(), 0, "a new page is unreferenced");
        r.touch([1, 1, 2]);
        assert_eq!(
            r.referenced_bytes(),
            4096 + 8192,
            "touching twice counts once"
        );
        assert!(r.relocate(1, Slot::new(2, 4096), 3));
        assert_eq!(
            r.referenced_bytes(),
            8192,
            "relocation spends the second chance"
        );
        r.touch([1]);
        assert_eq!(r.referenced_bytes(), 4096 + 8192);
        r.remove(2, NO_PARENT);
        assert_eq!(r.referenced_bytes(), 4096);
        r.remove(1, NO_PARENT);
        assert_eq!(r.referenced_bytes(), 0);
    }

    #[test]
    fn namespace_accounting_follows_inserts_relocations_and_removals() {
        let mut r = Residency::default();
        assert!(r.insert(1, Slot::new(1, 5000).with_ns(2), NO_PARENT, 1));
        assert!(r.insert(2, Slot::new(1, 4096).with_ns(2), 1, 1));
        assert!(r.insert(3, Slot::new(1, 4096), NO_PARENT, 1));
        let usage = |bytes, pages| NsUsage {
            live_bytes: bytes,
            pages,
        };
        assert_eq!(r.namespace(2), usage(3 * 4096, 2));
        assert_eq!(r.namespace(0), usage(0, 0), "namespace 0 is not tracked");
        assert_eq!(r.namespace(1), usage(0, 0));
        assert!(r.relocate(1, Slot::new(4, 5000), 9));
        assert_eq!(
            r.slot(1).map(|s| s.ns),
            Some(2),
            "relocation keeps the namespace"
        );
        assert_eq!(r.namespace(2), usage(3 * 4096, 2));
        r.remove(2, 1);
        assert_eq!(r.namespace(2), usage(2 * 4096, 1));
        r.clear();
        assert_eq!(r.namespace(2), usage(0, 0));
    }
}
