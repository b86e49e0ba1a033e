//! Key handling: validation, 64-bit fingerprints, and SGLang's token-chain page keys.
//!
//! Keys are opaque byte strings (SGLang hands `"{sha256hex}_{namespace}"`). The engine never
//! stores a raw token prefix, so key size is bounded regardless of context length.

use sha2::{Digest, Sha256};

use crate::config::MAX_KEY_BYTES;
use crate::error::{Error, Result};

/// A 64-bit hash of a full key. Used for the in-memory residency set and for the index's
/// parent-to-children keyspace. Collisions only ever cost a miss: reads compare checksums that
/// bind the full key to its bytes.
pub type Fingerprint = u64;

/// Fingerprint of "no parent" (a root page).
pub const NO_PARENT: Fingerprint = 0;

/// Fingerprints a key. Never returns [`NO_PARENT`].
#[must_use]
pub fn fingerprint(key: &[u8]) -> Fingerprint {
    match xxhash_rust::xxh3::xxh3_64(key) {
        NO_PARENT => 1,
        fp => fp,
    }
}

/// Rejects keys the engine cannot store.
///
/// # Errors
/// [`Error::EmptyKey`] or [`Error::KeyTooLong`].
pub fn validate(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::KeyTooLong {
            len_bytes: key.len(),
            max_bytes: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

/// Parent fingerprint of each key in a batch: `keys[i-1]` for `i > 0`, and the last prefix
/// key (or none) for `keys[0]`. This is how SGLang chains page hashes.
pub fn parents(keys: &[&[u8]], prefix_keys: &[&[u8]]) -> Vec<Fingerprint> {
    let mut prev = prefix_keys.last().map_or(NO_PARENT, |k| fingerprint(k));
    keys.iter()
        .map(|k| {
            let parent = prev;
            prev = fingerprint(k);
            parent
        })
        .collect()
}

/// SGLang's page hash (`sglang.srt.mem_cache.utils.get_hash_str`): SHA-256 over the previous
/// page's digest bytes (if any) followed by each token id as u32 little-endian; hex-encoded.
#[must_use]
pub fn page_hash(prior: Option<&[u8; 32]>, tokens: &[u32]) -> [u8; 32] {
    let mut h = Sha256::new();
    if let Some(p) = prior {
        h.update(p);
    }
    for t in tokens {
        h.update(t.to_le_bytes());
    }
    h.finalize().into()
}

/// Page keys for a token sequence: one hex SHA-256 per full page of `page_tokens` tokens,
/// each chained on the previous, optionally followed by `suffix` (a namespace such as
/// `"_llama3_0_1"`). A trailing partial page gets no key, as in SGLang.
///
/// # Errors
/// [`Error::InvalidArgument`] if `page_tokens` is zero.
pub fn token_page_keys(tokens: &[u32], page_tokens: usize, suffix: &str) -> Result<Vec<String>> {
    if page_tokens == 0 {
        return Err(Error::InvalidArgument(
            "page_tokens must be positive".into(),
        ));
    }
    let mut prior: Option<[u8; 32]> = None;
    let mut keys = Vec::with_capacity(tokens.len() / page_tokens);
    for page in tokens.chunks_exact(page_tokens) {
        let digest = page_hash(prior.as_ref(), page);
        keys.push(format!("{}{suffix}", hex::encode(digest)));
        prior = Some(digest);
    }
    Ok(keys)
}

/// Checks a `get_batch` call before any lookup: one buffer list per key, valid keys.
///
/// # Errors
/// [`Error::InvalidArgument`] or a key error.
pub(crate) fn validate_get(keys: &[&[u8]], buffer_lists: usize) -> crate::error::Result<()> {
    if keys.len() != buffer_lists {
        return Err(crate::error::Error::InvalidArgument(format!(
            "get_batch got {} keys but {buffer_lists} buffer lists",
            keys.len()
        )));
    }
    keys.iter().try_for_each(|k| validate(k))
}

/// Checks, before any read, that the buffers given for each found page add up to its stored
/// length (`stored[i]`, `None` for a page not found).
///
/// # Errors
/// [`Error::LengthMismatch`] naming the first key that differs.
pub(crate) fn check_buffer_lengths(
    keys: &[&[u8]],
    buffers: &[Vec<&mut [u8]>],
    stored: impl Iterator<Item = Option<u64>>,
) -> crate::error::Result<()> {
    for (i, len) in stored.enumerate() {
        let Some(stored_bytes) = len else { continue };
        let given_bytes: u64 = buffers[i].iter().map(|b| b.len() as u64).sum();
        if given_bytes != stored_bytes {
            return Err(crate::error::Error::LengthMismatch {
                key: crate::error::key_display(keys[i]),
                stored_bytes,
                given_bytes,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_hash_matches_python_hashlib() {
        // python3: hashlib.sha256(b''.join(t.to_bytes(4,'little') for t in [1,2,3])).hexdigest()
        let first = page_hash(None, &[1, 2, 3]);
        assert_eq!(
            hex::encode(first),
            "4636993d3e1da4e9d6b8f87b79e8f7c6d018580d52661950eabc3845c5897a4d"
        );
        // ... then sha256(bytes.fromhex(first) + (4).to_bytes(4,'little')).hexdigest()
        let second = page_hash(Some(&first), &[4]);
        let keys = token_page_keys(&[1, 2, 3, 4, 5], 3, "_ns").expect("keys");
        assert_eq!(keys.len(), 1, "partial trailing page has no key");
        assert_eq!(keys[0], format!("{}_ns", hex::encode(first)));
        assert_eq!(
            hex::encode(second),
            "cae427896adf826b263f0caef3c2cac907160ef49aa89d8222ba92a1cab31e8a"
        );
        let keys = token_page_keys(&[1, 2, 3, 4, 0, 0], 3, "").expect("keys");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], hex::encode(first));
    }

    #[test]
    fn parents_follow_batch_order_and_prefix() {
        let keys: Vec<&[u8]> = vec![b"a", b"b", b"c"];
        let prefix: Vec<&[u8]> = vec![b"p0", b"p1"];
        let p = parents(&keys, &prefix);
        assert_eq!(
            p,
            vec![fingerprint(b"p1"), fingerprint(b"a"), fingerprint(b"b")]
        );
        assert_eq!(parents(&keys, &[])[0], NO_PARENT);
    }

    #[test]
    fn validate_bounds() {
        assert!(matches!(validate(b""), Err(Error::EmptyKey)));
        assert!(validate(&[b'x'; MAX_KEY_BYTES]).is_ok());
        assert!(matches!(
            validate(&[b'x'; MAX_KEY_BYTES + 1]),
            Err(Error::KeyTooLong { .. })
        ));
    }
}
