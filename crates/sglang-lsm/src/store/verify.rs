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
    /// Segment files in `vlog/quarantine/`: damaged, set aside at open, their pages misses.
    pub quarantined: Vec<crate::vlog::Quarantined>,
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
        let mut report = VerifyReport {
            quarantined: self.inner.vlog.quarantined().to_vec(),
            ..VerifyReport::default()
        };
        let mut buf = Vec::new();
        for (done, (key, rec)) in records.iter().enumerate() {
            // The store stays live while it is verified: background reclamation may move or
            // evict a page after the snapshot. A failed check only counts if the index still
            // points where we read; a moved page is checked again at its new place (bounded:
            // a page moves at most once per reclaimed segment).
            let mut rec = *rec;
            let mut outcome = None;
            for _ in 0..4 {
                if self.page_checks_out(key, &rec, &mut buf) {
                    outcome = Some(true);
                    break;
                }
                match self.inner.index.get(key)? {
                    Some(now) if now == rec => {
                        outcome = Some(false);
                        break;
                    }
                    Some(now) => rec = now,
                    None => break, // evicted or deleted meanwhile: nothing to verify
                }
            }
            match outcome {
                Some(true) => {
                    report.verified += 1;
                    report.bytes += rec.len;
                }
                Some(false) => {
                    report.corrupt += 1;
                    if report.corrupt_keys.len() < 100 {
                        report.corrupt_keys.push(crate::error::key_display(key));
                    }
                }
                None => {}
            }
            progress(done as u64 + 1, total);
        }
        Ok(report)
    }

    /// Size and live bytes of every segment (live fraction = reclaimable space signal).
    /// Reads one record's extent and checks its checksum.
    fn page_checks_out(&self, key: &[u8], rec: &IndexRecord, buf: &mut Vec<u8>) -> bool {
        self.inner.vlog.segment(rec.segment_id).is_some_and(|seg| {
            buf.resize(usize::try_from(rec.len).unwrap_or(0), 0);
            seg.read_into(&mut [&mut buf[..]], rec.offset, false)
                .is_ok()
                && page_crc(key, [&buf[..]]) == rec.crc
        })
    }

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
