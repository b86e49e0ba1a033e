//! Tombstones outlive the Puts they cancel.
//!
//! A Delete frame is the only record that a page is gone. Replay (a fresh `Follower`, an index
//! rebuilt from the log) applies frames in log order, so if reclamation removes the segment
//! holding a Delete while an older segment still holds the page's Put, replay brings the page
//! back (issue 15). Before such a segment goes, its tombstones for pages that are still absent
//! are re-logged into the active segment, where they again follow every older Put.
//!
//! Each Delete record names the segment that held the Put it cancelled. Older copies of that
//! page (superseded Puts, stale relocation sources) can only sit in segments with lower ids, so
//! a tombstone is carried while any segment at or below that id is still on disk, and dropped
//! once all are gone: with FIFO reclamation that is the next pass or so. Under S3-FIFO a main
//! segment may outlive several passes; its age bound (`store::s3fifo::MAX_AGE_LOG_BOUNDS`)
//! is what keeps this set bounded there. A record that does not
//! know its Put's segment (older builds) is carried while any older segment exists. A page put
//! again since its delete is never carried (the index holds it).

use super::Inner;
use crate::config::Durability;
use crate::error::Result;
use crate::key::Fingerprint;
use crate::vlog::format::{FrameHeader, FrameKind, MAX_FRAME_RECORDS};
use crate::vlog::PreparedFrame;

impl Inner {
    /// Re-logs the Delete records of segment `victim` (its frame headers in `frames`) that
    /// still matter, and makes them durable as the configured mode promises, before the
    /// caller removes the segment. Returns how many were carried.
    pub(crate) fn carry_tombstones(
        &self,
        victim: u32,
        frames: &[(u64, FrameHeader)],
    ) -> Result<u64> {
        let Some(oldest) = self
            .vlog
            .segment_sizes()
            .iter()
            .map(|&(id, _)| id)
            .filter(|&id| id < victim)
            .min()
        else {
            return Ok(0);
        };
        let mut deleted: Vec<(Vec<u8>, Fingerprint, u32)> = frames
            .iter()
            .filter(|(_, h)| h.kind == FrameKind::Delete)
            .flat_map(|(_, h)| h.entries.iter())
            .filter(|e| e.cancelled_put_segment().is_none_or(|put| oldest <= put))
            // Not known counts as "any older segment", the most conservative value, so it
            // survives the dedup below and is carried as such.
            .map(|e| {
                let put = e.cancelled_put_segment().unwrap_or(u32::MAX);
                (e.key.clone(), e.parent_fp, put)
            })
            .collect();
        if deleted.is_empty() {
            return Ok(0);
        }
        // One record per key, the one that must live longest (the highest Put segment).
        deleted.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)));
        deleted.dedup_by(|later, first| later.0 == first.0);
        let mut carried = 0u64;
        for chunk in deleted.chunks(MAX_FRAME_RECORDS) {
            // Under the writer lock, so no put of these keys can slip between the check and
            // the append: a page put again since its delete must not be deleted by the copy.
            let mut w = self.vlog.lock_writer();
            let mut still_absent: Vec<(&[u8], Fingerprint, u32)> = Vec::with_capacity(chunk.len());
            for (key, parent, put_segment) in chunk {
                if self.index.get(key)?.is_none() {
                    still_absent.push((key.as_slice(), *parent, *put_segment));
                }
            }
            if still_absent.is_empty() {
                continue;
            }
            let mut frame = PreparedFrame::deletes(&still_absent);
            self.vlog.append(&mut w, &mut frame)?;
            carried += still_absent.len() as u64;
        }
        if carried > 0 && self.config.durability != Durability::None {
            self.vlog.sync()?;
        }
        tracing::debug!(segment = victim, carried, "tombstones carried forward");
        Ok(carried)
    }
}
