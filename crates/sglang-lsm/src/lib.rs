//! # sglang-lsm
//!
//! A storage engine for LLM KV-cache pages: the disk tier (L3) behind SGLang's HiCache.
//!
//! - **Key-value separation.** Page payloads go to append-only value-log segments ([`vlog`]),
//!   one contiguous vectored write per batch; a small record per page goes to an LSM index
//!   ([`index`], built on `lsm-tree`).
//! - **Prefix preservation.** Pages of a prefix written together are contiguous in the log, in
//!   prefix order, and the index keeps a parent-to-children keyspace ([`key`]).
//! - **Safety.** Every read is checksummed (a mismatch is a miss, never wrong bytes); the log
//!   doubles as the index's write-ahead log, so a killed process loses nothing acknowledged.
//!
//! ```no_run
//! use sglang_lsm::{Store, StoreConfig};
//! let store = Store::open("/tmp/kv", StoreConfig::default())?;
//! let (k, v) = (b"page-0".as_slice(), vec![7u8; 4096]);
//! store.put_batch(&[k], &[vec![&v[..]]], &[])?;
//! let mut out = vec![0u8; 4096];
//! let hits = store.get_batch(&[k], &mut [vec![&mut out[..]]])?;
//! assert!(hits[0] && out == v);
//! # Ok::<(), sglang_lsm::Error>(())
//! ```

pub mod config;
pub mod controller;
pub mod error;
pub mod follower;
pub mod index;
pub mod io;
pub mod key;
pub mod pages;
pub mod service;
pub mod store;
pub mod vlog;

pub use config::{Admission, Durability, Eviction, ReclaimVictim, StoreConfig, MAX_KEY_BYTES};
pub use error::{Error, Result};
pub use follower::{Follower, FollowerStats};
pub use pages::{ReadPages, WritePages};
pub use service::{Client, ClientOptions, Server, ServerOptions};
pub use store::{NamespaceStats, SegmentUsage, Store, StoreStats, VerifyReport};
