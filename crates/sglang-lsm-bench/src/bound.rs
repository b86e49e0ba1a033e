//! The store's own capacity bound as the benchmarks see it (`bench-capacity`, `replay
//! --policy store`): one home for what the engine does with `capacity_bytes`, so the two
//! benchmarks cannot drift apart on it. Both check the log against capacity + one segment:
//! relocation appends a victim's kept pages at the log head before the victim is deleted, so
//! the log may pass the capacity by up to a segment while reclamation catches up.

use sglang_lsm::StoreConfig;

/// The segment size the engine picks for a bounded store (`Store::open`, store/mod.rs): the
/// configured size, shrunk so the capacity holds at least 32 segments, at least 1 MiB.
pub fn engine_segment_bytes(config: &StoreConfig) -> u64 {
    match config.capacity_bytes {
        Some(cap) => config.segment_bytes.min(cap / 32).max(1 << 20),
        None => config.segment_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_shrink_with_the_capacity_but_not_below_one_mib() {
        let at = |cap: Option<u64>| {
            engine_segment_bytes(&StoreConfig {
                capacity_bytes: cap,
                ..StoreConfig::default()
            })
        };
        assert_eq!(at(None), 256 << 20);
        assert_eq!(at(Some(64 << 30)), 256 << 20);
        assert_eq!(at(Some(320 << 20)), 10 << 20);
        assert_eq!(at(Some(8 << 20)), 1 << 20);
    }
}
