//! An open-addressing table keyed by 64-bit fingerprints, built for batched membership tests.
//!
//! Why not `HashMap`: a `probe` of 128 random keys in a 10M-entry `HashMap` costs two
//! dependent cache misses per key (control byte, then bucket), ~35 µs in total. Here the
//! fingerprints live in one flat array (linear probing, no tombstones: backward-shift
//! deletion), so a lookup is usually one cache line, and `contains_many` prefetches every
//! line before testing any, letting the misses overlap. The array is mapped with transparent
//! huge pages where the kernel allows (`madvise`), because in a VM a TLB miss is a two-level
//! page walk that costs more than the cache miss itself.

use crate::key::Fingerprint;

/// Empty-slot marker; `key::fingerprint` never returns 0.
const EMPTY: Fingerprint = 0;
const MIN_CAPACITY: usize = 1024;

/// Types for which all-zero bytes are a valid value (the table's memory starts zeroed).
///
/// # Safety
/// Implementors must be plain data whose all-zero bit pattern is a valid value.
pub unsafe trait ZeroValid: Copy + Default {}
// SAFETY: integers are plain data.
unsafe impl ZeroValid for u8 {}
// SAFETY: as above.
unsafe impl ZeroValid for u32 {}

/// A zero-initialised anonymous mapping holding `len` entries of `(Fingerprint, V)`.
struct Slab<V: ZeroValid> {
    ptr: std::ptr::NonNull<(Fingerprint, V)>,
    len: usize,
    bytes: usize,
}

// SAFETY: Slab uniquely owns its mapping, like a Box<[T]>.
unsafe impl<V: ZeroValid + Send> Send for Slab<V> {}
// SAFETY: shared access is read-only.
unsafe impl<V: ZeroValid + Sync> Sync for Slab<V> {}

impl<V: ZeroValid> Slab<V> {
    fn zeroed(len: usize) -> Self {
        let bytes = (len * std::mem::size_of::<(Fingerprint, V)>()).next_multiple_of(2 << 20);
        // SAFETY: anonymous private mapping; arguments are valid; result checked below.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(bytes, 4096)
                    .unwrap_or(std::alloc::Layout::new::<u8>()),
            );
        }
        // SAFETY: raw is our mapping of `bytes` bytes. A refused hint is harmless.
        unsafe { libc::madvise(raw, bytes, libc::MADV_HUGEPAGE) };
        let ptr = std::ptr::NonNull::new(raw.cast()).unwrap_or(std::ptr::NonNull::dangling());
        Self { ptr, len, bytes }
    }
}

impl<V: ZeroValid> std::ops::Deref for Slab<V> {
    type Target = [(Fingerprint, V)];
    fn deref(&self) -> &Self::Target {
        // SAFETY: the mapping holds `len` zero-initialised (hence valid) entries.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<V: ZeroValid> std::ops::DerefMut for Slab<V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        // SAFETY: as above, with exclusive access through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<V: ZeroValid> Drop for Slab<V> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping created in `zeroed`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

/// Fingerprint → `V` map with linear probing.
pub struct FpTable<V: ZeroValid> {
    slots: Slab<V>,
    len: usize,
    mask: usize,
}

impl<V: ZeroValid> Default for FpTable<V> {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

#[inline]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint; it never faults, even for invalid addresses.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl<V: ZeroValid> FpTable<V> {
    /// A table that holds `n` entries without growing.
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        let cap = (n * 4 / 3 + 1).next_power_of_two().max(MIN_CAPACITY);
        Self {
            slots: Slab::zeroed(cap),
            len: 0,
            mask: cap - 1,
        }
    }

    /// Entries stored.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn home(&self, fp: Fingerprint) -> usize {
        // Fingerprints are uniform (xxh3); fold the high half in so low bits alone don't decide.
        ((fp ^ (fp >> 32)) as usize) & self.mask
    }

    fn find(&self, fp: Fingerprint) -> Option<usize> {
        debug_assert_ne!(fp, EMPTY);
        let mut i = self.home(fp);
        // Bounded: the table is never full (load ≤ 3/4), so an empty slot ends every probe.
        for _ in 0..=self.mask {
            match self.slots[i].0 {
                EMPTY => return None,
                f if f == fp => return Some(i),
                _ => i = (i + 1) & self.mask,
            }
        }
        None
    }

    /// The value for `fp`.
    #[must_use]
    pub fn get(&self, fp: Fingerprint) -> Option<V> {
        self.find(fp).map(|i| self.slots[i].1)
    }

    /// Applies `f` to the value for `fp`; false if absent.
    pub fn update(&mut self, fp: Fingerprint, f: impl FnOnce(&mut V)) -> bool {
        match self.find(fp) {
            Some(i) => {
                f(&mut self.slots[i].1);
                true
            }
            None => false,
        }
    }

    /// Whether `fp` is present.
    #[must_use]
    pub fn contains(&self, fp: Fingerprint) -> bool {
        self.find(fp).is_some()
    }

    /// Number of leading fingerprints present, with every lookup's cache line prefetched
    /// first.
    #[must_use]
    pub fn leading_present(&self, fps: &[Fingerprint]) -> usize {
        for &fp in fps {
            prefetch(&raw const self.slots[self.home(fp)]);
        }
        fps.iter().take_while(|&&fp| self.contains(fp)).count()
    }

    /// Inserts; returns false (changing nothing) if present.
    pub fn insert(&mut self, fp: Fingerprint, v: V) -> bool {
        assert_ne!(fp, EMPTY, "fingerprint 0 is reserved");
        if self.contains(fp) {
            return false;
        }
        if (self.len + 1) * 4 > (self.mask + 1) * 3 {
            self.grow();
        }
        let mut i = self.home(fp);
        while self.slots[i].0 != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = (fp, v);
        self.len += 1;
        true
    }

    /// Removes and returns the value for `fp`.
    pub fn remove(&mut self, fp: Fingerprint) -> Option<V> {
        let mut hole = self.find(fp)?;
        let v = self.slots[hole].1;
        // Backward-shift: pull later entries of the cluster into the hole when their home
        // position allows, so lookups never need tombstones.
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let f = self.slots[j].0;
            if f == EMPTY {
                break;
            }
            let home = self.home(f);
            // Move f if its home is not in the cyclic range (hole, j].
            let in_range = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !in_range {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
        }
        self.slots[hole] = (EMPTY, V::default());
        self.len -= 1;
        Some(v)
    }

    fn grow(&mut self) {
        let mut bigger = Self::with_capacity((self.mask + 1) * 3 / 2 + 1);
        for &(fp, v) in self.slots.iter() {
            if fp != EMPTY {
                bigger.insert(fp, v);
            }
        }
        *self = bigger;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #[test]
        fn behaves_like_a_hashmap(ops in prop::collection::vec((any::<bool>(), 1u64..200, any::<u32>()), 1..3000)) {
            let mut t: FpTable<u32> = FpTable::default();
            let mut m: HashMap<u64, u32> = HashMap::new();
            for (ins, k, v) in ops {
                // Cluster keys so probing and backward shifts are exercised.
                let fp = k * 1024 + 1;
                if ins {
                    let fresh = !m.contains_key(&fp);
                    if fresh { m.insert(fp, v); }
                    prop_assert_eq!(t.insert(fp, v), fresh);
                } else {
                    prop_assert_eq!(t.remove(fp), m.remove(&fp));
                }
                prop_assert_eq!(t.len(), m.len());
            }
            for k in m.keys() {
                prop_assert!(t.contains(*k));
            }
            let all: Vec<u64> = m.keys().copied().collect();
            prop_assert_eq!(t.leading_present(&all), all.len());
        }
    }

    #[test]
    fn grows_past_initial_capacity() {
        let mut t: FpTable<u8> = FpTable::default();
        for i in 1..=100_000u64 {
            assert!(t.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, 1));
        }
        assert_eq!(t.len(), 100_000);
        assert!(t.contains(7u64.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1));
    }
}
