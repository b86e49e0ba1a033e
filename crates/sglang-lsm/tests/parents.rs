//! Pages with explicit parents (`put_batch_with_parents`): how a hybrid model's sidecar
//! entries (Mamba state, indexer pages) hang under their KV pages. A child stored before its
//! parent is counted when the parent arrives, so the parent is never evicted as a leaf while
//! the child lives; deleting or evicting the parent takes the child along, across a reopen
//! too; `exists_batch` answers per key; the node service's client does the same.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{page_bytes, small_config};
use sglang_lsm::{Client, ClientOptions, Follower, Server, ServerOptions, Store, StoreConfig};

const KV_BYTES: usize = 8192;
const STATE_BYTES: usize = 4096;

fn slices(keys: &[String]) -> Vec<&[u8]> {
    keys.iter().map(|k| k.as_bytes()).collect()
}

fn values(keys: &[String], len: usize) -> Vec<Vec<u8>> {
    keys.iter().map(|k| page_bytes(k.as_bytes(), len)).collect()
}

/// A chain of `n` KV pages and one state entry per page, named after its KV page.
fn chain(tag: &str, n: usize) -> (Vec<String>, Vec<String>) {
    let kv: Vec<String> = (0..n).map(|i| format!("{tag}-kv{i:04}")).collect();
    let state = kv.iter().map(|k| format!("{k}.mamba")).collect();
    (kv, state)
}

fn put_chain(store: &Store, kv: &[String]) -> Vec<bool> {
    let vals = values(kv, KV_BYTES);
    let parts: Vec<Vec<&[u8]>> = vals.iter().map(|v| vec![v.as_slice()]).collect();
    store
        .put_batch(&slices(kv), &parts, &[])
        .expect("put chain")
}

fn put_states(store: &Store, states: &[String], parents: &[String]) -> Vec<bool> {
    let vals = values(states, STATE_BYTES);
    let parts: Vec<Vec<&[u8]>> = vals.iter().map(|v| vec![v.as_slice()]).collect();
    store
        .put_batch_with_parents(&slices(states), &parts, &slices(parents))
        .expect("put states")
}

fn read_ok(store: &Store, keys: &[String], len: usize) -> Vec<bool> {
    common::get_pages(store, keys, len)
        .into_iter()
        .zip(keys)
        .map(|(got, k)| {
            if let Some(bytes) = &got {
                assert_eq!(bytes, &page_bytes(k.as_bytes(), len), "wrong bytes for {k}");
            }
            got.is_some()
        })
        .collect()
}

#[test]
fn children_stored_before_their_parents_go_with_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), small_config()).expect("open");
    let (kv, state) = chain("a", 6);
    // SGLang backs up sidecars first, KV after.
    assert_eq!(put_states(&store, &state, &kv), vec![true; 6]);
    assert_eq!(put_chain(&store, &kv), vec![true; 6]);
    let all: Vec<String> = kv.iter().chain(&state).cloned().collect();
    assert_eq!(
        store.exists_batch(&slices(&all)).expect("exists"),
        vec![true; 12]
    );
    assert_eq!(read_ok(&store, &state, STATE_BYTES), vec![true; 6]);

    // A missing page in the middle does not end the answer (unlike probe).
    let mixed = vec![kv[0].clone(), "nope".to_string(), state[5].clone()];
    assert_eq!(
        store.exists_batch(&slices(&mixed)).expect("exists"),
        vec![true, false, true]
    );

    // Deleting KV page 3 takes pages 3..6 and their states; 0..3 and theirs stay.
    assert!(store.delete(kv[3].as_bytes()).expect("delete"));
    let flags = store.exists_batch(&slices(&all)).expect("exists");
    assert_eq!(&flags[..6], &[true, true, true, false, false, false]);
    assert_eq!(&flags[6..], &[true, true, true, false, false, false]);

    // Across a reopen, the links come back from the index.
    drop(store);
    let store = Store::open(dir.path(), small_config()).expect("reopen");
    assert!(store.delete(kv[1].as_bytes()).expect("delete"));
    let flags = store.exists_batch(&slices(&all)).expect("exists");
    assert_eq!(&flags[..3], &[true, false, false]);
    assert_eq!(&flags[6..9], &[true, false, false]);
    let follower = Follower::open(dir.path(), 0).expect("follower");
    assert_eq!(
        follower.exists_batch(&slices(&all[..9])).expect("exists"),
        flags[..9].to_vec(),
        "a follower sees the same pages"
    );
}

#[test]
fn wrong_parent_count_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), small_config()).expect("open");
    let (kv, state) = chain("b", 2);
    let vals = values(&state, STATE_BYTES);
    let parts: Vec<Vec<&[u8]>> = vals.iter().map(|v| vec![v.as_slice()]).collect();
    let err = store
        .put_batch_with_parents(&slices(&state), &parts, &slices(&kv[..1]))
        .expect_err("one parent for two pages");
    assert!(err.to_string().contains("parent keys"), "{err}");
    assert_eq!(
        store.exists_batch(&slices(&state)).expect("exists"),
        vec![false; 2]
    );
}

/// Under capacity pressure a KV page is never evicted while its state lives: every state
/// whose KV page was stored is gone by the time its KV page is, and no wrong bytes come back.
#[test]
fn eviction_never_leaves_a_state_without_its_kv_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        capacity_bytes: Some(16 << 20),
        ..small_config()
    };
    let store = Store::open(dir.path(), config).expect("open");
    let mut stored: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for round in 0..400 {
        let (kv, state) = chain(&format!("r{round:03}"), 8);
        // Mamba-like: a state for the last page only, written before the KV.
        let last_state = vec![state[7].clone()];
        let s_ok = put_states(&store, &last_state, &kv[7..]);
        let kv_ok = put_chain(&store, &kv);
        if s_ok[0] && kv_ok.iter().all(|&ok| ok) {
            // A hit on the state alone gives it a second chance at reclamation; its KV page
            // must stay for it, although nothing read the KV page.
            assert_eq!(read_ok(&store, &last_state, STATE_BYTES), vec![true]);
            stored.push((kv, last_state));
        }
    }
    assert!(stored.len() > 200, "most rounds fit: {}", stored.len());
    assert!(
        store.stats().evicted_pages > 0,
        "the bound forced evictions: {:?}",
        store.stats()
    );
    let mut states_left = 0;
    for (kv, state) in &stored {
        let kv_present = store.exists_batch(&slices(kv)).expect("exists");
        let state_present = store.exists_batch(&slices(state)).expect("exists")[0];
        if state_present {
            states_left += 1;
            assert!(
                kv_present.iter().all(|&p| p),
                "state {} outlived its KV chain: {kv_present:?}",
                state[0]
            );
        }
        // Leaves only: what is left of a chain is a prefix of it.
        let n = kv_present.iter().take_while(|&&p| p).count();
        assert!(kv_present[n..].iter().all(|&p| !p), "{kv_present:?}");
        read_ok(&store, kv, KV_BYTES);
        read_ok(&store, state, STATE_BYTES);
    }
    assert!(states_left > 0, "the newest rounds keep their states");
}

#[test]
fn the_node_service_puts_under_parents_and_answers_per_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("kv.sock");
    let store = Arc::new(Store::open(dir.path().join("store"), small_config()).expect("open"));
    let mut options = ServerOptions::new(&socket);
    options.arena_bytes = sglang_lsm::service::server::MIN_ARENA_BYTES;
    let server = Server::bind(Arc::clone(&store), options).expect("bind");
    let stop = server.shutdown_flag();
    let thread = std::thread::spawn(move || server.run().expect("serve"));

    let client = Client::new(
        &socket,
        ClientOptions {
            timeout_ms: 5_000,
            max_connections: 1,
        },
    );
    // More than one arena chunk of states, so chunking keeps each page's own parent.
    let (kv, state) = chain("c", 600);
    let vals = values(&state, STATE_BYTES);
    let parts: Vec<Vec<&[u8]>> = vals.iter().map(|v| vec![v.as_slice()]).collect();
    let ok = client
        .put_batch_with_parents(&slices(&state), &parts, &slices(&kv))
        .expect("put under");
    assert_eq!(ok, vec![true; 600]);
    let kv_vals = values(&kv, KV_BYTES);
    let kv_parts: Vec<Vec<&[u8]>> = kv_vals.iter().map(|v| vec![v.as_slice()]).collect();
    assert!(client
        .put_batch(&slices(&kv), &kv_parts, &[])
        .expect("put kv")
        .iter()
        .all(|&ok| ok));
    assert!(client.delete(kv[300].as_bytes()).expect("delete"));
    let flags = client.exists_batch(&slices(&state)).expect("exists");
    let expected: Vec<bool> = (0..600).map(|i| i < 300).collect();
    assert_eq!(
        flags, expected,
        "the cascade took states 300.. with their KV pages"
    );
    let err = client
        .put_batch_with_parents(&slices(&state[..2]), &parts[..2], &slices(&kv[..1]))
        .expect_err("count mismatch");
    assert!(err.to_string().contains("parent keys"), "{err}");
    let stored: HashSet<bool> = store
        .exists_batch(&slices(&state[..300]))
        .expect("exists")
        .into_iter()
        .collect();
    assert_eq!(stored, HashSet::from([true]));

    drop(client);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    thread.join().expect("server thread");
}
