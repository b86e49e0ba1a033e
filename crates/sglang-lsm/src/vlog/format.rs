//! Byte layout of value-log segments and frames (docs/FORMAT.md, format version 1).
//!
//! A segment is a 4 KiB header block followed by frames. A frame is one `put_batch` (or a
//! delete/clear): a header region listing its records, then each payload at a 4 KiB-aligned
//! offset. All integers are little-endian.

use crate::io::IO_ALIGN;
use crate::key::Fingerprint;

/// On-disk format version of the whole store (segments, frames, index records).
pub const FORMAT_VERSION: u32 = 1;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SLSMSEG\0";
/// Bytes reserved at the start of a segment for its header.
pub const SEGMENT_HEADER_BYTES: u64 = IO_ALIGN as u64;
/// First four bytes of every frame ("FRM1").
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"FRM1");
/// Fixed part of a frame header.
pub const FRAME_HEADER_BYTES: usize = 48;
/// Fixed part of one entry in a frame header, before the key bytes.
pub const ENTRY_FIXED_BYTES: usize = 32;
/// Upper bound on records in one frame; bounds header size and replay work.
pub const MAX_FRAME_RECORDS: usize = 1 << 16;

/// What a frame does when replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Records with payloads: insert them.
    Put = 1,
    /// Records without payloads: remove those keys.
    Delete = 2,
    /// Remove everything written before this frame.
    Clear = 3,
}

impl FrameKind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Put),
            2 => Some(Self::Delete),
            3 => Some(Self::Clear),
            _ => None,
        }
    }
}

/// One record as described in a frame header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    /// The page key.
    pub key: Vec<u8>,
    /// Fingerprint of the parent page, or `NO_PARENT`.
    pub parent_fp: Fingerprint,
    /// Payload offset relative to the frame start (4 KiB-aligned); 0 for deletes.
    pub payload_offset: u64,
    /// Payload length in bytes; 0 for deletes.
    pub payload_len: u64,
    /// crc32c over key bytes then payload bytes.
    pub payload_crc: u32,
}

impl EntryMeta {
    /// For a Delete record: the segment that held the Put it cancels, if the writer knew it
    /// (records of builds before this field was used say 0, "not known").
    #[must_use]
    pub fn cancelled_put_segment(&self) -> Option<u32> {
        u32::try_from(self.payload_offset).ok().filter(|&id| id > 0)
    }
}

/// A decoded frame header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Frame kind.
    pub kind: FrameKind,
    /// Sequence number shared by every record of the frame.
    pub seqno: u64,
    /// Total frame length including padding (a multiple of 4 KiB).
    pub frame_len: u64,
    /// Records.
    pub entries: Vec<EntryMeta>,
}

/// Rounds up to the I/O alignment.
#[must_use]
pub fn align_up(n: u64) -> u64 {
    n.next_multiple_of(IO_ALIGN as u64)
}

/// Encoded size of a frame header with these key lengths.
#[must_use]
pub fn header_len(key_lens: impl Iterator<Item = usize>) -> usize {
    FRAME_HEADER_BYTES + key_lens.map(|k| ENTRY_FIXED_BYTES + k).sum::<usize>()
}

/// Writes the header into `out` (which must hold `header_len` bytes).
///
/// # Panics
/// If `out` is too small or a key exceeds u16 (both excluded by callers' validation).
pub fn encode_header(h: &FrameHeader, out: &mut [u8]) {
    let hlen = header_len(h.entries.iter().map(|e| e.key.len()));
    assert!(out.len() >= hlen, "header buffer too small");
    assert!(h.entries.len() <= MAX_FRAME_RECORDS, "frame record bound");
    out[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    out[8] = h.kind as u8;
    out[9..12].fill(0);
    out[12..16].copy_from_slice(&(h.entries.len() as u32).to_le_bytes());
    out[16..24].copy_from_slice(&h.seqno.to_le_bytes());
    out[24..28].copy_from_slice(&(hlen as u32).to_le_bytes());
    out[28..32].fill(0);
    out[32..40].copy_from_slice(&h.frame_len.to_le_bytes());
    out[40..48].fill(0);
    let mut at = FRAME_HEADER_BYTES;
    for e in &h.entries {
        let klen = u16::try_from(e.key.len()).expect("key length validated");
        out[at..at + 2].copy_from_slice(&klen.to_le_bytes());
        out[at + 2..at + 4].fill(0);
        out[at + 4..at + 8].copy_from_slice(&e.payload_crc.to_le_bytes());
        out[at + 8..at + 16].copy_from_slice(&e.payload_offset.to_le_bytes());
        out[at + 16..at + 24].copy_from_slice(&e.payload_len.to_le_bytes());
        out[at + 24..at + 32].copy_from_slice(&e.parent_fp.to_le_bytes());
        out[at + 32..at + 32 + e.key.len()].copy_from_slice(&e.key);
        at += ENTRY_FIXED_BYTES + e.key.len();
    }
    let crc = crc32c::crc32c(&out[8..hlen]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// The fixed prefix of a frame: enough to know how many bytes the full header needs.
pub struct FramePrefix {
    /// Length of the encoded header (fixed part plus entries).
    pub header_len: usize,
    /// Total frame length.
    pub frame_len: u64,
    /// Frame sequence number.
    pub seqno: u64,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parses the fixed part of a frame header, or `None` if this is not a frame start.
#[must_use]
pub fn decode_prefix(b: &[u8]) -> Option<FramePrefix> {
    if b.len() < FRAME_HEADER_BYTES || u32_at(b, 0) != FRAME_MAGIC {
        return None;
    }
    let header_len = u32_at(b, 24) as usize;
    let frame_len = u64_at(b, 32);
    let count = u32_at(b, 12) as usize;
    let sane = header_len >= FRAME_HEADER_BYTES
        && count <= MAX_FRAME_RECORDS
        && header_len <= FRAME_HEADER_BYTES + count * (ENTRY_FIXED_BYTES + crate::MAX_KEY_BYTES)
        && frame_len >= align_up(header_len as u64)
        && frame_len.is_multiple_of(IO_ALIGN as u64);
    sane.then(|| FramePrefix {
        header_len,
        frame_len,
        seqno: u64_at(b, 16),
    })
}

/// Parses and checksums a full frame header (`b` holds at least `header_len` bytes).
/// `None` means torn or corrupt.
#[must_use]
pub fn decode_header(b: &[u8]) -> Option<FrameHeader> {
    let p = decode_prefix(b)?;
    if b.len() < p.header_len || crc32c::crc32c(&b[8..p.header_len]) != u32_at(b, 4) {
        return None;
    }
    let kind = FrameKind::from_u8(b[8])?;
    let count = u32_at(b, 12) as usize;
    let mut entries = Vec::with_capacity(count);
    let mut at = FRAME_HEADER_BYTES;
    for _ in 0..count {
        if at + ENTRY_FIXED_BYTES > p.header_len {
            return None;
        }
        let klen = usize::from(u16::from_le_bytes([b[at], b[at + 1]]));
        let end = at + ENTRY_FIXED_BYTES + klen;
        if end > p.header_len {
            return None;
        }
        let e = EntryMeta {
            payload_crc: u32_at(b, at + 4),
            payload_offset: u64_at(b, at + 8),
            payload_len: u64_at(b, at + 16),
            parent_fp: u64_at(b, at + 24),
            key: b[at + ENTRY_FIXED_BYTES..end].to_vec(),
        };
        if e.payload_len > 0 && e.payload_offset + e.payload_len > p.frame_len {
            return None;
        }
        entries.push(e);
        at = end;
    }
    Some(FrameHeader {
        kind,
        seqno: p.seqno,
        frame_len: p.frame_len,
        entries,
    })
}

/// Encodes the 4 KiB segment header block.
#[must_use]
pub fn encode_segment_header(segment_id: u32, created_unix_s: u64) -> [u8; 40] {
    let mut b = [0u8; 40];
    b[0..8].copy_from_slice(&SEGMENT_MAGIC);
    b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[16..20].copy_from_slice(&segment_id.to_le_bytes());
    b[24..32].copy_from_slice(&created_unix_s.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..32]);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Validates a segment header; returns `(format_version, segment_id)`.
#[must_use]
pub fn decode_segment_header(b: &[u8]) -> Option<(u32, u32)> {
    if b.len() < 40 || b[0..8] != SEGMENT_MAGIC || crc32c::crc32c(&b[0..32]) != u32_at(b, 32) {
        return None;
    }
    Some((u32_at(b, 8), u32_at(b, 16)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FrameHeader {
        FrameHeader {
            kind: FrameKind::Put,
            seqno: 42,
            frame_len: 3 * 4096,
            entries: vec![
                EntryMeta {
                    key: b"k1".to_vec(),
                    parent_fp: 0,
                    payload_offset: 4096,
                    payload_len: 4096,
                    payload_crc: 7,
                },
                EntryMeta {
                    key: b"key-two".to_vec(),
                    parent_fp: 99,
                    payload_offset: 8192,
                    payload_len: 10,
                    payload_crc: 8,
                },
            ],
        }
    }

    #[test]
    fn header_round_trip_and_bit_flip() {
        let h = sample();
        let mut buf = vec![0u8; 4096];
        encode_header(&h, &mut buf);
        assert_eq!(decode_header(&buf), Some(h));
        for i in [0usize, 5, 9, 20, 50, 90] {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert_eq!(decode_header(&bad), None, "flip at {i} must be detected");
        }
    }

    #[test]
    fn segment_header_round_trip() {
        let b = encode_segment_header(7, 123);
        assert_eq!(decode_segment_header(&b), Some((FORMAT_VERSION, 7)));
        let mut bad = b;
        bad[17] ^= 1;
        assert_eq!(decode_segment_header(&bad), None);
    }
}
