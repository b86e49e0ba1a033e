//! Page helpers every store benchmark shares: SGLang-shaped page keys, incompressible fills,
//! and stamped per-slot page buffers whose reads can be checked.

use sglang_lsm::io::AlignedBuf;

/// Bytes at the start of each page that carry its index, checked on every read.
const STAMP_BYTES: usize = 8;

/// SGLang-shaped page keys: 64 hex digits plus a namespace suffix.
pub(crate) fn page_key(tag: &str, i: u64) -> String {
    format!(
        "{:016x}{:016x}{:016x}{:016x}_{tag}",
        (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        i,
        (i ^ 0x5555).wrapping_mul(0xC2B2_AE3D_27D4_EB4F),
        i.rotate_left(17)
    )
}

/// Fills `buf` with xorshift bytes: incompressible, so no store gains from compression or
/// deduplication it would not get in production (bf16 KV tensors compress only a little, as
/// the compression benchmark measures).
pub(crate) fn fill_random(buf: &mut [u8], seed: u64) {
    let mut s = seed | 1;
    for chunk in buf.chunks_mut(8) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let b = s.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Per-slot page buffers for one batch, each split into K and V halves when it can be.
pub(crate) struct PageSlots {
    bufs: Vec<AlignedBuf>,
    page: usize,
}

impl PageSlots {
    pub(crate) fn new(slots: usize, page: usize, seed: u64) -> Self {
        let bufs = (0..slots)
            .map(|i| {
                let mut b = AlignedBuf::zeroed(page);
                fill_random(&mut b, seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9));
                b
            })
            .collect();
        Self { bufs, page }
    }

    /// Stamps slot `i` with page index `idx`, as every read checks.
    pub(crate) fn stamp(&mut self, i: usize, idx: u64) {
        self.bufs[i][..STAMP_BYTES].copy_from_slice(&idx.to_le_bytes());
    }

    pub(crate) fn stamp_of(&self, i: usize) -> u64 {
        let mut a = [0u8; STAMP_BYTES];
        a.copy_from_slice(&self.bufs[i][..STAMP_BYTES]);
        u64::from_le_bytes(a)
    }

    /// Slot `i`'s bytes past the stamp: equal for two `PageSlots` built with the same seed,
    /// so a reader can check a page's exact content against a reference set.
    pub(crate) fn body(&self, i: usize) -> &[u8] {
        &self.bufs[i][STAMP_BYTES..]
    }

    fn halves(page: usize) -> usize {
        // Split K|V at a 4 KiB boundary so aligned stores keep every part aligned.
        if page >= 8192 && (page / 2).is_multiple_of(4096) {
            page / 2
        } else {
            page
        }
    }

    pub(crate) fn parts(&self, n: usize) -> Vec<Vec<&[u8]>> {
        let h = Self::halves(self.page);
        self.bufs[..n]
            .iter()
            .map(|b| {
                if h == self.page {
                    vec![&b[..]]
                } else {
                    let (k, v) = b.split_at(h);
                    vec![k, v]
                }
            })
            .collect()
    }

    pub(crate) fn parts_mut(&mut self, n: usize) -> Vec<Vec<&mut [u8]>> {
        let h = Self::halves(self.page);
        let page = self.page;
        self.bufs[..n]
            .iter_mut()
            .map(|b| {
                if h == page {
                    vec![&mut b[..]]
                } else {
                    let (k, v) = b.split_at_mut(h);
                    vec![k, v]
                }
            })
            .collect()
    }
}
