//! Building a frame before taking the append lock: checksums, layout and header bytes.

use super::format::{align_up, encode_header, header_len, EntryMeta, FrameHeader, FrameKind};
use crate::io::{AlignedBuf, IO_ALIGN};
use crate::key::Fingerprint;

#[repr(align(4096))]
struct ZeroBlock([u8; IO_ALIGN]);
static ZEROS: ZeroBlock = ZeroBlock([0; IO_ALIGN]);

/// One page to put: its key, parent and payload given as consecutive parts (K then V, ...).
pub struct PutPage<'a> {
    /// Page key.
    pub key: &'a [u8],
    /// Parent fingerprint or `NO_PARENT`.
    pub parent_fp: Fingerprint,
    /// Payload parts, concatenated in order.
    pub parts: &'a [&'a [u8]],
}

/// Checksum binding a key to its payload: crc32c over the key bytes, then every part.
#[must_use]
pub fn page_crc<'a>(key: &[u8], parts: impl IntoIterator<Item = &'a [u8]>) -> u32 {
    parts
        .into_iter()
        .fold(crc32c::crc32c(key), crc32c::crc32c_append)
}

/// Frames at least this large are checksummed on two threads: the checksum runs serially
/// before the write, and halving it is worth a thread spawn (~20 us) only for big batches.
const PARALLEL_CRC_BYTES: u64 = 8 << 20;

/// Every page's checksum, in order.
fn checksums(pages: &[PutPage<'_>]) -> Vec<u32> {
    let one = |p: &PutPage<'_>| page_crc(p.key, p.parts.iter().copied());
    let total: u64 = pages
        .iter()
        .flat_map(|p| p.parts.iter())
        .map(|s| s.len() as u64)
        .sum();
    if total < PARALLEL_CRC_BYTES || pages.len() < 2 {
        return pages.iter().map(one).collect();
    }
    // Split by bytes, not pages, so both halves take about as long.
    let mut acc = 0u64;
    let split = pages
        .iter()
        .position(|p| {
            acc += p.parts.iter().map(|s| s.len() as u64).sum::<u64>();
            acc * 2 >= total
        })
        .map_or(pages.len() / 2, |i| (i + 1).min(pages.len() - 1));
    let (a, b) = pages.split_at(split);
    std::thread::scope(|s| {
        let second = s.spawn(|| b.iter().map(one).collect::<Vec<u32>>());
        let mut out: Vec<u32> = a.iter().map(one).collect();
        match second.join() {
            Ok(rest) => out.extend(rest),
            // A panic in crc code cannot leave partial state; recompute on this thread.
            Err(_) => out.extend(b.iter().map(one)),
        }
        out
    })
}

/// A frame laid out and checksummed, waiting for its sequence number.
pub struct PreparedFrame<'a> {
    header: FrameHeader,
    header_buf: AlignedBuf,
    header_region: usize,
    payloads: Vec<&'a [u8]>,
}

impl<'a> PreparedFrame<'a> {
    /// A frame inserting `pages`. Computes each page's checksum (the CPU work stays outside
    /// the append lock).
    #[must_use]
    pub fn put(pages: &[PutPage<'a>]) -> Self {
        let crcs = checksums(pages);
        let hlen = header_len(pages.iter().map(|p| p.key.len()));
        let header_region = align_up(hlen as u64);
        let mut cursor = header_region;
        let mut entries = Vec::with_capacity(pages.len());
        let mut payloads = Vec::with_capacity(pages.len() * 3);
        for (p, crc) in pages.iter().zip(crcs) {
            let len: u64 = p.parts.iter().map(|s| s.len() as u64).sum();
            entries.push(EntryMeta {
                key: p.key.to_vec(),
                parent_fp: p.parent_fp,
                payload_offset: cursor,
                payload_len: len,
                payload_crc: crc,
            });
            payloads.extend(p.parts.iter().copied().filter(|s| !s.is_empty()));
            let pad = (align_up(len) - len) as usize;
            if pad > 0 {
                payloads.push(&ZEROS.0[..pad]);
            }
            cursor += align_up(len);
        }
        Self::new(FrameKind::Put, entries, cursor, payloads)
    }

    /// A frame of payload-less records (`Delete`) or a `Clear` marker (no records).
    #[must_use]
    pub fn marker(kind: FrameKind, keys: &[(&[u8], Fingerprint)]) -> Self {
        let entries: Vec<EntryMeta> = keys
            .iter()
            .map(|(k, parent)| EntryMeta {
                key: k.to_vec(),
                parent_fp: *parent,
                payload_offset: 0,
                payload_len: 0,
                payload_crc: 0,
            })
            .collect();
        let hlen = header_len(entries.iter().map(|e| e.key.len()));
        Self::new(kind, entries, align_up(hlen as u64), Vec::new())
    }

    /// A Delete frame. Each record names the page, its parent, and the segment that held the
    /// Put it cancels (0: not known), kept in the record's otherwise unused `payload_offset`
    /// (docs/FORMAT.md) so reclamation knows how long the tombstone must outlive that Put.
    #[must_use]
    pub fn deletes(records: &[(&[u8], Fingerprint, u32)]) -> Self {
        let entries: Vec<EntryMeta> = records
            .iter()
            .map(|&(k, parent, put_segment)| EntryMeta {
                key: k.to_vec(),
                parent_fp: parent,
                payload_offset: u64::from(put_segment),
                payload_len: 0,
                payload_crc: 0,
            })
            .collect();
        let hlen = header_len(entries.iter().map(|e| e.key.len()));
        Self::new(
            FrameKind::Delete,
            entries,
            align_up(hlen as u64),
            Vec::new(),
        )
    }

    fn new(
        kind: FrameKind,
        entries: Vec<EntryMeta>,
        frame_len: u64,
        payloads: Vec<&'a [u8]>,
    ) -> Self {
        let hlen = header_len(entries.iter().map(|e| e.key.len()));
        let header_region = align_up(hlen as u64) as usize;
        Self {
            header: FrameHeader {
                kind,
                seqno: 0,
                frame_len,
                entries,
            },
            header_buf: AlignedBuf::zeroed(header_region),
            header_region,
            payloads,
        }
    }

    /// Whether it is a Put frame (one that places pages in its segment).
    #[must_use]
    pub fn is_put(&self) -> bool {
        self.header.kind == FrameKind::Put
    }

    /// Total bytes the frame occupies in the log.
    #[must_use]
    pub fn frame_len(&self) -> u64 {
        self.header.frame_len
    }

    /// Records of the frame, with offsets relative to the frame start.
    #[must_use]
    pub fn entries(&self) -> &[EntryMeta] {
        &self.header.entries
    }

    /// Stamps the sequence number and encodes the header.
    pub fn seal(&mut self, seqno: u64) {
        self.header.seqno = seqno;
        encode_header(&self.header, &mut self.header_buf);
    }

    /// Header then payloads with padding, ready for one vectored write.
    #[must_use]
    pub fn iovecs(&self) -> Vec<&[u8]> {
        let mut v = Vec::with_capacity(1 + self.payloads.len());
        v.push(&self.header_buf[..self.header_region]);
        v.extend(self.payloads.iter().copied());
        v
    }

    /// True when every buffer can go through O_DIRECT unchanged.
    #[must_use]
    pub fn direct_compatible(&self) -> bool {
        super::segment::direct_compatible(self.payloads.iter().copied(), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_checksums_match_serial_ones() {
        let big: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 3 << 20]).collect();
        let parts: Vec<Vec<&[u8]>> = big.iter().map(|b| vec![&b[..1000], &b[1000..]]).collect();
        let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
        let pages: Vec<PutPage<'_>> = keys
            .iter()
            .zip(&parts)
            .map(|(k, p)| PutPage {
                key: k.as_bytes(),
                parent_fp: 0,
                parts: p,
            })
            .collect();
        let serial: Vec<u32> = pages
            .iter()
            .map(|p| page_crc(p.key, p.parts.iter().copied()))
            .collect();
        assert_eq!(checksums(&pages), serial);
        assert_eq!(checksums(&pages[..1]), serial[..1]);
    }
}
