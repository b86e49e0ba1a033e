//! Opening the index and the log together, and recovering from damage to either without
//! refusing the open: the value log names every page, so a damaged index is rebuilt from it,
//! and a damaged segment is quarantined (`vlog::quarantine`) at the cost of its own pages.
//!
//! Losing pages must never leave an orphan (a page `exists` counts and `probe` can never
//! reach), so the descendants of every lost page are dropped too, as a read-time checksum
//! mismatch does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::quota::Quotas;
use super::residency::{Residency, Slot};
use super::Store;
use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::index::{Index, IndexRecord};
use crate::io::FaultInjector;
use crate::key::{fingerprint, Fingerprint, NO_PARENT};
use crate::vlog::format::{FrameKind, MAX_FRAME_RECORDS};
use crate::vlog::{LogOptions, PreparedFrame, Quarantined, ReplayedFrame, ValueLog};

/// The index and log of a store, opened and consistent with each other.
pub(super) struct Opened {
    pub index: Index,
    pub vlog: ValueLog,
    pub residency: Residency,
    /// Index records the log no longer holds: into segments that are gone (quarantined, or a
    /// clear cut short), past the end of a truncated segment, or dropped from a torn frame.
    pub stale: Vec<(Vec<u8>, IndexRecord)>,
    /// Where the damaged index was moved before it was rebuilt from the log.
    pub index_set_aside: Option<PathBuf>,
}

/// Opens index and log; if the index is damaged, moves it aside and rebuilds it from the log.
pub(super) fn open_index_and_log(
    dir: &Path,
    config: &StoreConfig,
    opts: &LogOptions,
    faults: &Arc<FaultInjector>,
    quotas: &Quotas,
) -> Result<Opened> {
    // Segments set aside by a first attempt must count as lost by the retry too: it no
    // longer sees them, and the rebuilt index never held their pages.
    let mut quarantined = Vec::new();
    match open_once(dir, config, opts, faults, quotas, &mut quarantined) {
        Err(e) if index_damaged(&e) => {
            let aside = set_index_aside(dir, &e)?;
            let mut opened = open_once(dir, config, opts, faults, quotas, &mut quarantined)?;
            tracing::warn!(
                dir = %dir.display(),
                pages = opened.residency.len(),
                "index rebuilt from the value log"
            );
            opened.index_set_aside = Some(aside);
            Ok(opened)
        }
        other => other,
    }
}

/// Errors that say the index's own bytes are bad: its validation failures, an undecodable
/// record, and the OS errors a short or missing file gives. A failing disk, a permission or a
/// full disk is not damage; a rebuild would meet it too, so it is returned as it is.
fn index_damaged(e: &Error) -> bool {
    use std::io::ErrorKind::{InvalidData, NotFound, UnexpectedEof};
    match e {
        Error::Index(_) => true,
        Error::Corrupt { path, .. } => path.as_path() == Path::new("index"),
        Error::Io { path, source } => {
            path.as_path() == Path::new("index")
                && matches!(source.kind(), UnexpectedEof | InvalidData | NotFound)
        }
        _ => false,
    }
}

/// Renames `DIR/index` to `DIR/index.damaged-<unix seconds>[.N]`, kept for inspection.
fn set_index_aside(dir: &Path, cause: &Error) -> Result<PathBuf> {
    let from = dir.join("index");
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut to = dir.join(format!("index.damaged-{secs}"));
    let mut n = 1u32;
    while to.exists() {
        to = dir.join(format!("index.damaged-{secs}.{n}"));
        n += 1;
    }
    std::fs::rename(&from, &to).map_err(|e| Error::io(&from, e))?;
    crate::io::sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    tracing::error!(
        error = %cause,
        moved_to = %to.display(),
        "index damaged: set aside, rebuilding it from the value log"
    );
    Ok(to)
}

fn open_once(
    dir: &Path,
    config: &StoreConfig,
    opts: &LogOptions,
    faults: &Arc<FaultInjector>,
    quotas: &Quotas,
    quarantined: &mut Vec<Quarantined>,
) -> Result<Opened> {
    let index = Index::open(&dir.join("index"), config.index_cache_bytes)?;
    let persisted = index.persisted_seqno();
    let mut cleared_at = None;
    let vlog = ValueLog::open(
        &dir.join("vlog"),
        opts.clone(),
        Arc::clone(faults),
        persisted,
        quarantined,
        |frame| apply_replayed(&index, &frame, &mut cleared_at),
    )?;
    if let Some(id) = cleared_at {
        vlog.remove_segments_below(id)?;
    }
    let (residency, stale) = rebuild_residency(&index, &vlog, quotas)?;
    index.check_links()?;
    Ok(Opened {
        index,
        vlog,
        residency,
        stale,
        index_set_aside: None,
    })
}

fn apply_replayed(
    index: &Index,
    frame: &ReplayedFrame,
    cleared_at: &mut Option<u32>,
) -> Result<()> {
    let h = &frame.header;
    match h.kind {
        FrameKind::Put => {
            for e in &h.entries {
                let rec = IndexRecord {
                    segment_id: frame.segment_id,
                    offset: frame.frame_offset + e.payload_offset,
                    len: e.payload_len,
                    crc: e.payload_crc,
                    parent_fp: e.parent_fp,
                    seqno: h.seqno,
                };
                index.insert(&e.key, fingerprint(&e.key), &rec);
            }
        }
        FrameKind::Delete => {
            for e in &h.entries {
                if index.get(&e.key)?.is_some() {
                    index.remove(&e.key, fingerprint(&e.key), e.parent_fp, h.seqno);
                }
            }
        }
        FrameKind::Clear => {
            index.clear()?;
            *cleared_at = Some(frame.segment_id);
        }
    }
    Ok(())
}

type StaleRecords = Vec<(Vec<u8>, IndexRecord)>;

fn rebuild_residency(
    index: &Index,
    vlog: &ValueLog,
    quotas: &Quotas,
) -> Result<(Residency, StaleRecords)> {
    let mut residency = Residency::default();
    let mut stale = Vec::new();
    let mut links = Vec::new();
    index.for_each_record(|key, rec| {
        let fp = fingerprint(key);
        if vlog.holds(key, rec.segment_id, rec.offset, rec.len) {
            let slot = Slot::new(rec.segment_id, rec.len).with_ns(quotas.ns_of(key));
            residency.insert(fp, slot, NO_PARENT, rec.seqno);
            links.push((fp, rec.parent_fp));
        } else {
            stale.push((key.to_vec(), rec));
        }
        Ok(())
    })?;
    residency.count_children(&links);
    Ok((residency, stale))
}

impl Store {
    /// Drops what the damage found at open cost beyond its own pages: the descendants of
    /// pages whose segment is gone, and the records naming them; then, if a quarantined
    /// segment may have held pages the index never saw, the pages put after it whose parent
    /// is absent (they may be children of those), with their descendants.
    ///
    /// The second sweep can also take a page whose parent was never stored (a suffix stored
    /// without its prefix), which costs a hit but never an orphan; it runs only after damage.
    pub(super) fn drop_lost_pages(&self, stale: Vec<(Vec<u8>, IndexRecord)>) -> Result<()> {
        if !stale.is_empty() {
            tracing::warn!(
                records = stale.len(),
                "index records name pages the log no longer holds (segment gone, truncated or \
                 torn); dropping them and their descendants"
            );
            let roots: Vec<Vec<u8>> = stale.iter().map(|(k, _)| k.clone()).collect();
            self.delete_with_descendants(roots, |_| Ok(true))?;
            self.forget_records(&stale)?;
        }
        let Some(after) = self.inner.vlog.parents_lost_after_seqno() else {
            return Ok(());
        };
        let mut suspects = Vec::new();
        {
            let r = self.inner.residency.read();
            self.inner.index.for_each_record(|key, rec| {
                if rec.seqno > after && rec.parent_fp != NO_PARENT && !r.contains(rec.parent_fp) {
                    suspects.push(key.to_vec());
                }
                Ok(())
            })?;
        }
        if !suspects.is_empty() {
            tracing::warn!(
                pages = suspects.len(),
                after_seqno = after,
                "pages whose parent may have been in a quarantined segment: dropping them"
            );
            self.delete_with_descendants(suspects, |_| Ok(true))?;
        }
        Ok(())
    }

    /// Logs Delete records for index records that are not resident (their segment is gone)
    /// and removes them from the index, so verify and a later rebuild never see them again.
    fn forget_records(&self, records: &[(Vec<u8>, IndexRecord)]) -> Result<()> {
        let inner = &self.inner;
        for chunk in records.chunks(MAX_FRAME_RECORDS) {
            let mut w = inner.vlog.lock_writer();
            let tombstones: Vec<(&[u8], Fingerprint, u32)> = chunk
                .iter()
                .map(|(k, rec)| (k.as_slice(), rec.parent_fp, rec.segment_id))
                .collect();
            let mut frame = PreparedFrame::deletes(&tombstones);
            let at = inner.vlog.append(&mut w, &mut frame)?;
            for (k, rec) in chunk {
                inner
                    .index
                    .remove(k, fingerprint(k), rec.parent_fp, at.seqno);
            }
        }
        inner.after_publish()
    }
}
