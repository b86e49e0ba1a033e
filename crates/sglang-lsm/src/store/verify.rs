//! Offline-style integrity check of every live page, and per-segment usage.

use serde::Serialize;

use super::Store;
use crate::error::Result;
use crate::index::IndexRecord;
use crate::vlog::frame::page_crc;

/// Result of [`Store::verify`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Pages whose bytes match their checksum.
    pub verified: u64,
    /// Pages that failed (checksum mismatch, unreadable, or missing segment).
    pub corrupt: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// Up to 100 corrupt keys, lossily decoded, for the report.
    pub corrupt_keys: Vec<String>,
}

/// Bytes and live bytes of one segment.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentUsage {
    /// Segment id.
    pub id: u32,
    /// File bytes.
    pub bytes: u64,
    /// Aligned payload bytes of resident pages in it.
    pub live_bytes: u64,
}

impl Store {
    /// Reads every live page in log order and checks its checksum, without changing anything.
    /// `progress(done, total)` is called as pages are checked.
    ///
    /// # Errors
    /// Index iteration failures.
    pub fn verify(&self, mut progress: impl FnMut(u64, u64)) -> Result<VerifyReport> {
        let mut records: Vec<(Vec<u8>, IndexRecord)> = Vec::new();
        self.inner.index.for_each_record(|k, rec| {
            records.push((k.to_vec(), rec));
            Ok(())
        })?;
        records.sort_by_key(|(_, r)| (r.segment_id, r.offset));
        let total = records.len() as u64;
        let mut report = VerifyReport::default();
        let mut buf = Vec::new();
        for (done, (key, rec)) in records.iter().enumerate() {
            let ok = self.inner.vlog.segment(rec.segment_id).is_some_and(|seg| {
                buf.resize(usize::try_from(rec.len).unwrap_or(0), 0);
                seg.read_into(&mut [&mut buf[..]], rec.offset, false)
                    .is_ok()
                    && page_crc(key, [&buf[..]]) == rec.crc
            });
            if ok {
                report.verified += 1;
                report.bytes += rec.len;
            } else {
                report.corrupt += 1;
                if report.corrupt_keys.len() < 100 {
                    report.corrupt_keys.push(crate::error::key_display(key));
                }
            }
            progress(done as u64 + 1, total);
        }
        Ok(report)
    }

    /// Size and live bytes of every segment (live fraction = reclaimable space signal).
    #[must_use]
    pub fn segment_usage(&self) -> Vec<SegmentUsage> {
        let live: std::collections::BTreeMap<u32, u64> = self
            .inner
            .residency
            .read()
            .segments()
            .iter()
            .map(|(id, m)| (*id, m.live_bytes))
            .collect();
        self.inner
            .vlog
            .segment_sizes()
            .into_iter()
            .map(|(id, bytes)| SegmentUsage {
                id,
                bytes,
                live_bytes: live.get(&id).copied().unwrap_or(0),
            })
            .collect()
    }
}
