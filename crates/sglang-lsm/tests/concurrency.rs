//! Several threads putting, probing and getting at once, including the same keys.

mod common;

use std::sync::Arc;

use common::{get_pages, keys, open, page_bytes, put_pages};

#[test]
fn concurrent_writers_and_readers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(open(dir.path()));
    let len = 9000;
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for round in 0..20 {
                    // Threads 0-2 share key sets, so the same key is written concurrently.
                    let ks = keys(&format!("t{}-r{round}", t % 3), 16);
                    assert!(put_pages(&s, &ks, len).iter().all(|&b| b));
                    let refs: Vec<&[u8]> = ks.iter().map(|k| k.as_bytes()).collect();
                    assert_eq!(s.probe(&refs, &[]).expect("probe"), 16);
                    for (k, g) in ks.iter().zip(get_pages(&s, &ks, len)) {
                        assert_eq!(g.as_deref(), Some(&page_bytes(k.as_bytes(), len)[..]));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let st = s.stats();
    assert_eq!(st.pages, 3 * 20 * 16);
    assert_eq!(st.get_corrupt, 0);
    let report = s.verify(|_, _| {}).expect("verify");
    assert_eq!((report.verified, report.corrupt), (960, 0));
}
