//! Store configuration: a plain, serde-readable struct whose defaults are safe for a cache.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a returned `put_batch` promises against power loss. A process crash (SIGKILL) loses
/// nothing acknowledged in any mode: the value log is the write-ahead log and the kernel holds
/// every completed write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Page cache only. A power loss may drop recent pages (they read back as misses).
    None,
    /// `fdatasync` of the value log before every `put_batch`/`delete` returns.
    Batch,
    /// A background `fdatasync` every `sync_interval_ms`.
    Periodic,
}

/// Which new pages `put_batch` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Admission {
    /// Every page.
    All,
    /// A page only when it is put a second time (the first put records it and returns
    /// `false`). Trades the first reuse of every page for not writing one-off pages.
    SecondSighting,
}

/// How capacity reclamation picks its victim among sealed segments. A segment without live
/// pages is always taken first; the score only ranks segments that hold live pages. With `u`
/// = live bytes / file bytes of the segment, and ages in write sequence numbers (frames)
/// before the next write:
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReclaimVictim {
    /// The segment whose oldest live page is oldest (FIFO over segments; with the
    /// second-chance relocation, CLOCK over segments).
    Oldest,
    /// Lowest `u` (fewest live bytes to relocate or evict per byte freed); ties: oldest.
    Greedy,
    /// Highest LFS cost-benefit `(1 − u) × age / (1 + u)`, `age` = sequence numbers since the
    /// segment's newest live page was written; ties: oldest.
    CostBenefit,
}

/// What capacity reclamation keeps, and in which order it looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Eviction {
    /// One FIFO of segments with a second chance (CLOCK over segments): a page read since it
    /// was written is relocated to the head, every other leaf is evicted.
    Clock,
    /// S3-FIFO (Yang et al., SOSP 2023) over segments. New pages go to probation segments,
    /// which the reclaimer drains first once they hold more than `probation_fraction` of the
    /// bound: a page read meanwhile moves to a main segment, the others are evicted and
    /// remembered in a ghost list, and a remembered page put again goes straight to main.
    /// Main segments are reclaimed FIFO, a page relocated while it has hits left (up to 3,
    /// one spent per pass). One-hit wonders leave after a short probation instead of a whole
    /// pass through the store.
    #[serde(rename = "s3fifo")]
    S3Fifo,
}

/// Largest key the engine accepts. SGLang keys are ~64-200 bytes; 1 KiB leaves room for
/// namespaces while keeping one frame header within a few 4 KiB blocks.
pub const MAX_KEY_BYTES: usize = 1024;

/// Options for [`crate::Store::open`]. Unknown fields are rejected so typos surface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Upper bound on value-log bytes. `None` means unbounded. Writes that would exceed it are
    /// declined (`false` for that page), never failed.
    pub capacity_bytes: Option<u64>,
    /// Power-loss durability of acknowledged writes.
    pub durability: Durability,
    /// Interval for [`Durability::Periodic`].
    pub sync_interval_ms: u64,
    /// Write aligned frames with O_DIRECT (bypassing the page cache) when the filesystem allows
    /// it. On by default: buffered writes of large pages measured 2-4x slower here, and a cache
    /// tier gains nothing from caching what it just wrote.
    pub direct_write: bool,
    /// Read aligned extents with O_DIRECT. Off by default: buffered reads get kernel readahead
    /// and keep hot pages in the page cache.
    pub direct_read: bool,
    /// Value-log segment size; a segment is the unit of space reclamation.
    pub segment_bytes: u64,
    /// Active memtable size that triggers a flush of the index. A starting value: the
    /// controller retunes it while `adaptive` is on.
    pub memtable_bytes: u64,
    /// Index L0 runs that trigger a leveled compaction (starting value, like all knobs).
    pub l0_threshold: u8,
    /// Size ratio between adjacent index levels (starting value).
    pub level_ratio: u32,
    /// Let the controller retune the runtime knobs (memtable size, compaction parameters,
    /// reclamation budget) from the observed workload. Off: the configured values stay.
    /// Off by default until it never costs time: measured through the Python API (issue 11,
    /// docs/CONTROLLER.md) it cost 0-8% per phase of a shifting workload.
    pub adaptive: bool,
    /// How often the controller observes the workload (one window per tick).
    pub controller_interval_ms: u64,
    /// Threads used to run scattered reads of one `get_batch` in parallel.
    pub read_threads: usize,
    /// Merge neighbouring extents of one batch into one vectored read. Off reads every page
    /// with its own I/O (the coalescing ablation in the benchmarks).
    pub coalesce_reads: bool,
    /// Adjacent extents closer than this are read with one I/O (the gap is read and dropped).
    pub coalesce_gap_bytes: u64,
    /// Upper bound on one coalesced read.
    pub max_io_bytes: u64,
    /// Index block cache size.
    pub index_cache_bytes: u64,
    /// I/O budget of background reclamation (relocation reads + writes), bytes per second.
    /// Inline reclamation on behalf of a blocked `put_batch` is not throttled.
    pub reclaim_bytes_per_s: u64,
    /// Admission policy for new pages.
    pub admission: Admission,
    /// How reclamation picks its victim segment (see [`ReclaimVictim`]); under
    /// `Eviction::S3Fifo`, among the segments of the queue being drained.
    pub reclaim_victim: ReclaimVictim,
    /// The eviction policy (see [`Eviction`]).
    pub eviction: Eviction,
    /// Under `Eviction::S3Fifo`: the share of the log bound probation segments may hold
    /// before the reclaimer drains them rather than the main queue (S3-FIFO's small queue;
    /// the paper's 10% is the default).
    pub probation_fraction: f64,
    /// Reclamation also relocates (rather than evicts) unreferenced pages that were ever
    /// referenced since first written (read or re-put: seen at least twice), while such pages
    /// hold at most this fraction of the log bound; beyond it they are evicted like any cold
    /// page, so they cannot fill the store. 0 turns the protection off.
    pub protect_frequent_fraction: f64,
    /// Pages remembered by `second_sighting` admission (8-24 bytes each).
    pub admission_ghost_pages: u64,
    /// Free space to leave on the store's filesystem. When set, the log is also bounded by
    /// `log bytes + free bytes - min_free_bytes` (free space sampled at most every ~100 ms or
    /// 64 MiB written), so other users of the disk keep at least this much. Like the capacity,
    /// it makes the store reclaim and decline, never fail.
    pub min_free_bytes: Option<u64>,
    /// Per-namespace bounds on live (aligned payload) bytes. A key's namespace is its bytes
    /// before the first `namespace_separator` (keys without one belong to `""`). A put that
    /// would exceed its namespace's quota evicts that namespace's coldest leaves, then declines.
    /// Namespaces without a quota share `capacity_bytes` as usual.
    pub namespace_quotas: BTreeMap<String, u64>,
    /// The single ASCII character that ends a key's namespace.
    pub namespace_separator: String,
}

/// Smallest namespace quota: below a few pages a quota would decline nearly everything.
pub const MIN_NAMESPACE_QUOTA_BYTES: u64 = 1 << 20;
/// Most namespaces with a quota (each costs a small accounting record and, while it is over
/// quota, a bounded eviction queue; see `store::quota`).
pub const MAX_NAMESPACE_QUOTAS: usize = 1024;

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            capacity_bytes: None,
            durability: Durability::None,
            sync_interval_ms: 1000,
            direct_write: true,
            direct_read: false,
            segment_bytes: 256 << 20,
            memtable_bytes: 16 << 20,
            l0_threshold: 4,
            level_ratio: 10,
            adaptive: false,
            controller_interval_ms: 1000,
            read_threads: 8,
            coalesce_reads: true,
            coalesce_gap_bytes: 64 << 10,
            max_io_bytes: 4 << 20,
            index_cache_bytes: 64 << 20,
            reclaim_bytes_per_s: 256 << 20,
            admission: Admission::All,
            reclaim_victim: ReclaimVictim::Oldest,
            eviction: Eviction::Clock,
            probation_fraction: 0.1,
            protect_frequent_fraction: 0.0,
            admission_ghost_pages: 1 << 20,
            min_free_bytes: None,
            namespace_quotas: BTreeMap::new(),
            namespace_separator: ":".to_string(),
        }
    }
}

impl StoreConfig {
    /// Parses a JSON object of options; absent fields keep their defaults.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the bad field.
    pub fn from_json(json: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(json).map_err(|e| {
            // serde names unknown fields but not fields of the wrong type; find the culprit
            // by parsing each field alone.
            let field = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json)
                .ok()
                .and_then(|map| {
                    map.into_iter().find_map(|(k, v)| {
                        let one = serde_json::Value::Object([(k.clone(), v)].into_iter().collect());
                        serde_json::from_value::<Self>(one).is_err().then_some(k)
                    })
                });
            match field {
                Some(f) => Error::InvalidArgument(format!("store config field {f:?}: {e}")),
                None => Error::InvalidArgument(format!("store config: {e}")),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every bound; called by `Store::open`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the field and its allowed range.
    pub fn validate(&self) -> Result<()> {
        fn check(ok: bool, what: &str) -> Result<()> {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidArgument(what.to_string()))
            }
        }
        check(
            (1 << 20..=1 << 40).contains(&self.segment_bytes),
            "segment_bytes must be between 1 MiB and 1 TiB",
        )?;
        check(
            (64 << 10..=1 << 30).contains(&self.memtable_bytes),
            "memtable_bytes must be between 64 KiB and 1 GiB",
        )?;
        check(
            (2..=64).contains(&self.l0_threshold),
            "l0_threshold must be between 2 and 64",
        )?;
        check(
            (2..=64).contains(&self.level_ratio),
            "level_ratio must be between 2 and 64",
        )?;
        check(
            (100..=60_000).contains(&self.controller_interval_ms),
            "controller_interval_ms must be between 100 and 60000",
        )?;
        check(
            (1..=64).contains(&self.read_threads),
            "read_threads must be between 1 and 64",
        )?;
        check(
            (1..=3_600_000).contains(&self.sync_interval_ms),
            "sync_interval_ms must be between 1 and 3600000",
        )?;
        check(
            self.coalesce_gap_bytes <= 16 << 20,
            "coalesce_gap_bytes must be at most 16 MiB",
        )?;
        check(
            (1 << 20..=1 << 30).contains(&self.max_io_bytes),
            "max_io_bytes must be between 1 MiB and 1 GiB",
        )?;
        check(
            self.capacity_bytes.is_none_or(|c| c >= 16 << 20),
            "capacity_bytes must be at least 16 MiB",
        )?;
        check(
            (1..=1 << 28).contains(&self.admission_ghost_pages),
            "admission_ghost_pages must be between 1 and 268435456",
        )?;
        check(
            (0.0..=0.95).contains(&self.protect_frequent_fraction),
            "protect_frequent_fraction must be between 0 (off) and 0.95",
        )?;
        check(
            (0.01..=0.9).contains(&self.probation_fraction),
            "probation_fraction must be between 0.01 and 0.9",
        )?;
        check(
            self.reclaim_bytes_per_s >= 1 << 20,
            "reclaim_bytes_per_s must be at least 1 MiB/s",
        )?;
        check(
            self.min_free_bytes.is_none_or(|m| m <= 1 << 60),
            "min_free_bytes must be at most 1 EiB (omit it, or use null, for no floor)",
        )?;
        self.validate_namespaces()
    }

    /// The namespace separator as a byte (validated to be one ASCII character).
    #[must_use]
    pub fn separator_byte(&self) -> u8 {
        self.namespace_separator
            .as_bytes()
            .first()
            .copied()
            .unwrap_or(b':')
    }

    fn validate_namespaces(&self) -> Result<()> {
        let sep = self.namespace_separator.as_bytes();
        if sep.len() != 1 || !sep[0].is_ascii() {
            return Err(Error::InvalidArgument(format!(
                "namespace_separator must be exactly one ASCII character (e.g. \":\"), got {:?}",
                self.namespace_separator
            )));
        }
        if self.namespace_quotas.len() > MAX_NAMESPACE_QUOTAS {
            return Err(Error::InvalidArgument(format!(
                "namespace_quotas has {} entries; at most {MAX_NAMESPACE_QUOTAS} namespaces may \
                 have a quota (give the rest none: they share capacity_bytes)",
                self.namespace_quotas.len()
            )));
        }
        for (ns, &quota) in &self.namespace_quotas {
            if ns.as_bytes().contains(&sep[0]) {
                return Err(Error::InvalidArgument(format!(
                    "namespace_quotas key {ns:?} contains the namespace_separator {:?}, so no \
                     key could ever be in it; use the part before the first separator",
                    self.namespace_separator
                )));
            }
            if quota < MIN_NAMESPACE_QUOTA_BYTES {
                return Err(Error::InvalidArgument(format!(
                    "namespace_quotas[{ns:?}] = {quota} bytes; a quota must be at least 1 MiB \
                     ({MIN_NAMESPACE_QUOTA_BYTES} bytes) — remove the entry for no quota"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_overrides_and_rejects_unknown() {
        let c = StoreConfig::from_json(r#"{"durability":"batch","capacity_bytes":1073741824}"#)
            .expect("valid config");
        assert_eq!(c.durability, Durability::Batch);
        assert_eq!(c.capacity_bytes, Some(1 << 30));
        assert_eq!(c.segment_bytes, StoreConfig::default().segment_bytes);
        let err = StoreConfig::from_json(r#"{"capacity_gigs":1}"#).expect_err("unknown field");
        assert!(err.to_string().contains("capacity_gigs"), "{err}");
        let err = StoreConfig::from_json(r#"{"read_threads":0}"#).expect_err("out of range");
        assert!(err.to_string().contains("read_threads"), "{err}");
    }

    #[test]
    fn reclamation_options_parse_and_are_checked() {
        let d = StoreConfig::default();
        assert_eq!(d.reclaim_victim, ReclaimVictim::Oldest, "default unchanged");
        assert!(
            d.protect_frequent_fraction == 0.0,
            "protection off by default"
        );
        for (name, v) in [
            ("oldest", ReclaimVictim::Oldest),
            ("greedy", ReclaimVictim::Greedy),
            ("cost_benefit", ReclaimVictim::CostBenefit),
        ] {
            let c =
                StoreConfig::from_json(&format!(r#"{{"reclaim_victim":"{name}"}}"#)).expect(name);
            assert_eq!(c.reclaim_victim, v);
        }
        let c = StoreConfig::from_json(r#"{"protect_frequent_fraction":0.9}"#).expect("valid");
        assert!((c.protect_frequent_fraction - 0.9).abs() < 1e-12);
        assert_eq!(d.eviction, Eviction::Clock, "CLOCK stays the default");
        let c = StoreConfig::from_json(r#"{"eviction":"s3fifo","probation_fraction":0.2}"#)
            .expect("valid");
        assert_eq!(c.eviction, Eviction::S3Fifo);
        assert!((c.probation_fraction - 0.2).abs() < 1e-12);
        for (json, field) in [
            (r#"{"eviction":"lru"}"#, "eviction"),
            (r#"{"probation_fraction":0}"#, "probation_fraction"),
            (r#"{"probation_fraction":0.95}"#, "probation_fraction"),
            (r#"{"reclaim_victim":"lru"}"#, "reclaim_victim"),
            (
                r#"{"protect_frequent_fraction":0.99}"#,
                "protect_frequent_fraction",
            ),
            (
                r#"{"protect_frequent_fraction":-0.1}"#,
                "protect_frequent_fraction",
            ),
        ] {
            let err = StoreConfig::from_json(json).expect_err(json);
            assert!(err.to_string().contains(field), "{json}: {err}");
        }
    }

    #[test]
    fn min_free_bytes_and_mistyped_fields_are_named() {
        let c = StoreConfig::from_json(r#"{"min_free_bytes":4096}"#).expect("valid config");
        assert_eq!(c.min_free_bytes, Some(4096));
        for json in [
            r#"{"min_free_bytes":-1}"#,
            r#"{"read_threads":4,"min_free_bytes":"x"}"#,
        ] {
            let err = StoreConfig::from_json(json).expect_err(json);
            assert!(
                err.to_string().contains("field \"min_free_bytes\""),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn namespace_options_parse_and_are_checked() {
        let c = StoreConfig::from_json(
            r#"{"namespace_quotas":{"a":1048576,"":2097152},"namespace_separator":"/"}"#,
        )
        .expect("valid config");
        assert_eq!(c.namespace_quotas.get("a"), Some(&(1 << 20)));
        assert_eq!(c.separator_byte(), b'/');
        assert_eq!(StoreConfig::default().separator_byte(), b':');
        for (json, field) in [
            (r#"{"namespace_quotas":{"a":1000}}"#, "namespace_quotas"),
            (
                r#"{"namespace_quotas":{"a:b":1048576}}"#,
                "namespace_quotas",
            ),
            (r#"{"namespace_separator":"::"}"#, "namespace_separator"),
            (r#"{"namespace_separator":""}"#, "namespace_separator"),
            (r#"{"namespace_separator":"é"}"#, "namespace_separator"),
        ] {
            let err = StoreConfig::from_json(json).expect_err(json);
            assert!(err.to_string().contains(field), "{json}: {err}");
        }
    }
}
