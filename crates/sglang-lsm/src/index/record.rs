//! The index record: where a page's bytes live and how to check them (48 bytes, version 1).

use crate::key::Fingerprint;

/// Record layout version, stored in the first byte.
pub const RECORD_VERSION: u8 = 1;
/// Encoded size.
pub const RECORD_BYTES: usize = 48;

/// Location and checksum of one page in the value log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexRecord {
    /// Segment id.
    pub segment_id: u32,
    /// Absolute payload offset in the segment (4 KiB-aligned).
    pub offset: u64,
    /// Payload length.
    pub len: u64,
    /// crc32c over key then payload.
    pub crc: u32,
    /// Parent page fingerprint, or `NO_PARENT`.
    pub parent_fp: Fingerprint,
    /// Sequence number of the frame that wrote it (its age, for eviction).
    pub seqno: u64,
}

impl IndexRecord {
    /// Encodes to the fixed layout.
    #[must_use]
    pub fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut b = [0u8; RECORD_BYTES];
        b[0] = RECORD_VERSION;
        b[4..8].copy_from_slice(&self.segment_id.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.len.to_le_bytes());
        b[24..28].copy_from_slice(&self.crc.to_le_bytes());
        b[32..40].copy_from_slice(&self.parent_fp.to_le_bytes());
        b[40..48].copy_from_slice(&self.seqno.to_le_bytes());
        b
    }

    /// Decodes, or `None` for an unknown version or wrong size.
    #[must_use]
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != RECORD_BYTES || b[0] != RECORD_VERSION {
            return None;
        }
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(a)
        };
        Some(Self {
            segment_id: u32_at(4),
            offset: u64_at(8),
            len: u64_at(16),
            crc: u32_at(24),
            parent_fp: u64_at(32),
            seqno: u64_at(40),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = IndexRecord {
            segment_id: 3,
            offset: 8192,
            len: 131_072,
            crc: 0xDEAD_BEEF,
            parent_fp: 77,
            seqno: 9,
        };
        assert_eq!(IndexRecord::decode(&r.encode()), Some(r));
        let mut bad = r.encode();
        bad[0] = 9;
        assert_eq!(IndexRecord::decode(&bad), None);
    }
}
