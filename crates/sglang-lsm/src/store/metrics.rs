//! Prometheus text exposition of the store's state and counters.

use std::fmt::Write as _;

use super::{NamespaceStats, Store};

/// Upper bounds of the segment live-fraction histogram buckets.
const LIVE_FRACTION_BUCKETS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

impl Store {
    /// Metrics in the Prometheus text format (version 0.0.4), all prefixed `sglang_lsm_`.
    /// Counters end in `_total`; the segment live-fraction histogram shows how much space
    /// reclamation can win.
    #[must_use]
    pub fn metrics_text(&self) -> String {
        let st = self.stats();
        let mut out = String::with_capacity(4096);
        let mut gauge = |name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP sglang_lsm_{name} {help}");
            let _ = writeln!(out, "# TYPE sglang_lsm_{name} gauge");
            let _ = writeln!(out, "sglang_lsm_{name} {v}");
        };
        gauge("pages", "Resident pages.", st.pages as f64);
        gauge(
            "live_bytes",
            "Aligned payload bytes of resident pages.",
            st.live_bytes as f64,
        );
        gauge(
            "log_bytes",
            "Bytes of all value-log segments.",
            st.log_bytes as f64,
        );
        gauge(
            "probation_bytes",
            "Bytes of probation segments (eviction = s3fifo).",
            st.probation_bytes as f64,
        );
        gauge(
            "capacity_bytes",
            "Configured bound on log bytes (0 = unbounded).",
            st.capacity_bytes.unwrap_or(0) as f64,
        );
        gauge(
            "min_free_bytes",
            "Configured free-space floor (0 = none).",
            st.min_free_bytes.unwrap_or(0) as f64,
        );
        if let Some(free) = st.free_bytes {
            gauge(
                "free_bytes",
                "Free bytes on the store's filesystem.",
                free as f64,
            );
        }
        gauge(
            "log_bound_bytes",
            "Bound on log bytes in force: min(capacity, log + free - min_free) (0 = unbounded).",
            st.log_bound_bytes.unwrap_or(0) as f64,
        );
        gauge("segments", "Value-log segments.", st.segments as f64);
        gauge(
            "quarantined_segments",
            "Damaged segment files set aside in vlog/quarantine/ (their pages are misses).",
            st.quarantined_segments as f64,
        );
        gauge(
            "index_rebuilds",
            "1 if this open rebuilt a damaged index from the value log.",
            st.index_rebuilds as f64,
        );
        gauge(
            "index_disk_bytes",
            "LSM index bytes on disk.",
            st.index_disk_bytes as f64,
        );
        gauge(
            "write_amplification",
            "(put bytes + relocated bytes) / put bytes.",
            st.write_amplification,
        );
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP sglang_lsm_{name}_total {help}");
            let _ = writeln!(out, "# TYPE sglang_lsm_{name}_total counter");
            let _ = writeln!(out, "sglang_lsm_{name}_total {v}");
        };
        counter("put_pages", "Pages written.", st.put_pages);
        counter(
            "put_bytes",
            "Payload bytes written by callers.",
            st.put_bytes,
        );
        counter(
            "put_existing_pages",
            "Puts of pages already present.",
            st.put_existing_pages,
        );
        counter(
            "put_waits",
            "Puts that waited for a concurrent put of the same pages instead of rewriting them.",
            st.put_waits,
        );
        counter(
            "put_declined_pages",
            "Pages declined for capacity.",
            st.put_declined_pages,
        );
        counter("get_pages", "Pages requested.", st.get_pages);
        counter(
            "get_hits",
            "Pages returned with verified bytes.",
            st.get_hits,
        );
        counter("get_misses", "Pages not returned.", st.get_misses);
        counter(
            "get_corrupt",
            "Pages that failed their checksum.",
            st.get_corrupt,
        );
        counter(
            "get_read_errors",
            "Pages whose read failed (kept, reported as misses).",
            st.get_read_errors,
        );
        counter("get_bytes", "Payload bytes returned.", st.get_bytes);
        counter("probe_keys", "Keys examined by probe.", st.probe_keys);
        counter("deletes", "Pages deleted.", st.deletes);
        counter(
            "evicted_pages",
            "Pages evicted by reclamation.",
            st.evicted_pages,
        );
        counter(
            "relocated_pages",
            "Pages relocated by reclamation.",
            st.relocated_pages,
        );
        counter(
            "promoted_pages",
            "Pages moved from probation to main (eviction = s3fifo).",
            st.promoted_pages,
        );
        counter(
            "ghost_returned_pages",
            "Pages put again after eviction from probation (eviction = s3fifo).",
            st.ghost_returned_pages,
        );
        counter(
            "relocated_bytes",
            "Background write bytes of relocation.",
            st.relocated_bytes,
        );
        counter(
            "segments_reclaimed",
            "Segments emptied and deleted.",
            st.segments_reclaimed,
        );
        counter("index_flushes", "Index memtable flushes.", st.index_flushes);
        counter(
            "index_compactions",
            "Index compactions.",
            st.index_compactions,
        );
        counter(
            "background_errors",
            "Background maintenance failures.",
            st.background_errors,
        );

        controller_metrics(&mut out, &st.controller);
        write_namespaces(&mut out, &st.namespaces);

        let usage = self.segment_usage();
        let _ = writeln!(
            out,
            "# HELP sglang_lsm_segment_live_fraction Live bytes / bytes per segment."
        );
        let _ = writeln!(out, "# TYPE sglang_lsm_segment_live_fraction histogram");
        let fractions: Vec<f64> = usage
            .iter()
            .map(|s| s.live_bytes as f64 / s.bytes.max(1) as f64)
            .collect();
        for le in LIVE_FRACTION_BUCKETS {
            let n = fractions.iter().filter(|&&f| f <= le).count();
            let _ = writeln!(
                out,
                "sglang_lsm_segment_live_fraction_bucket{{le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "sglang_lsm_segment_live_fraction_bucket{{le=\"+Inf\"}} {}",
            fractions.len()
        );
        let _ = writeln!(
            out,
            "sglang_lsm_segment_live_fraction_sum {}",
            fractions.iter().sum::<f64>()
        );
        let _ = writeln!(
            out,
            "sglang_lsm_segment_live_fraction_count {}",
            fractions.len()
        );
        out
    }
}

/// The controller's knobs in force, decisions, and its latest prediction vs measurement.
fn controller_metrics(out: &mut String, c: &crate::controller::ControllerStats) {
    let mut gauge = |name: &str, help: &str, v: f64| {
        let _ = writeln!(out, "# HELP sglang_lsm_controller_{name} {help}");
        let _ = writeln!(out, "# TYPE sglang_lsm_controller_{name} gauge");
        let _ = writeln!(out, "sglang_lsm_controller_{name} {v}");
    };
    gauge(
        "adaptive",
        "1 when the controller may retune knobs.",
        f64::from(u8::from(c.adaptive)),
    );
    if let Some(k) = &c.knobs {
        gauge(
            "memtable_bytes",
            "Memtable flush trigger in force.",
            k.memtable_bytes as f64,
        );
        gauge(
            "l0_threshold",
            "Index L0 compaction trigger in force.",
            f64::from(k.l0_threshold),
        );
        gauge(
            "level_ratio",
            "Index level size ratio in force.",
            f64::from(k.level_ratio),
        );
        gauge(
            "reclaim_bytes_per_s",
            "Background reclamation budget in force.",
            k.reclaim_bytes_per_s as f64,
        );
    }
    if let Some(w) = &c.last_window {
        gauge(
            "predicted_index_busy_fraction",
            "Cost model: index flush+compaction time per second, last window.",
            w.predicted.index_busy_frac,
        );
        gauge(
            "measured_index_busy_fraction",
            "Measured index flush+compaction time per second, last window.",
            w.window.index_busy_frac,
        );
    }
    let _ = writeln!(
        out,
        "# HELP sglang_lsm_controller_decisions_total Knob changes made by the controller."
    );
    let _ = writeln!(out, "# TYPE sglang_lsm_controller_decisions_total counter");
    let _ = writeln!(
        out,
        "sglang_lsm_controller_decisions_total {}",
        c.decisions_total
    );
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One family per quantity, one sample per namespace with a quota.
fn write_namespaces(out: &mut String, namespaces: &[NamespaceStats]) {
    if namespaces.is_empty() {
        return;
    }
    type Field = fn(&NamespaceStats) -> u64;
    let families: [(&str, &str, &str, Field); 5] = [
        (
            "namespace_quota_bytes",
            "gauge",
            "Quota on live bytes.",
            |n| n.quota_bytes,
        ),
        (
            "namespace_live_bytes",
            "gauge",
            "Aligned payload bytes of resident pages.",
            |n| n.live_bytes,
        ),
        ("namespace_pages", "gauge", "Resident pages.", |n| n.pages),
        (
            "namespace_evicted_pages_total",
            "counter",
            "Pages evicted to keep the namespace under its quota.",
            |n| n.evicted_pages,
        ),
        (
            "namespace_declined_pages_total",
            "counter",
            "Pages declined because they did not fit the quota.",
            |n| n.declined_pages,
        ),
    ];
    for (name, kind, help, field) in families {
        let _ = writeln!(out, "# HELP sglang_lsm_{name} {help}");
        let _ = writeln!(out, "# TYPE sglang_lsm_{name} {kind}");
        for n in namespaces {
            let _ = writeln!(
                out,
                "sglang_lsm_{name}{{namespace=\"{}\"}} {}",
                label(&n.namespace),
                field(n)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Store, StoreConfig};

    #[test]
    fn exposition_has_counters_and_histogram() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path(), StoreConfig::default()).expect("open");
        let v = vec![1u8; 8192];
        s.put_batch(&[b"a", b"b"], &[vec![&v[..]], vec![&v[..]]], &[])
            .expect("put");
        let text = s.metrics_text();
        assert!(text.contains("sglang_lsm_put_pages_total 2"), "{text}");
        assert!(text.contains("sglang_lsm_pages 2"), "{text}");
        assert!(text.contains("sglang_lsm_controller_adaptive 0"), "{text}");
        assert!(
            text.contains("sglang_lsm_controller_l0_threshold 4"),
            "{text}"
        );
        assert!(
            text.contains("sglang_lsm_segment_live_fraction_bucket{le=\"+Inf\"} 1"),
            "{text}"
        );
        assert!(text.contains("sglang_lsm_min_free_bytes 0"), "{text}");
        assert!(
            !text.contains("namespace="),
            "no quotas, no namespace samples"
        );
        check_samples(&text);
    }

    fn check_samples(text: &str) {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let mut parts = line.rsplitn(2, ' ');
            let value = parts.next().expect("value");
            assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
        }
    }

    #[test]
    fn namespaces_and_floor_are_exposed_with_labels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = StoreConfig {
            min_free_bytes: Some(1 << 20),
            namespace_quotas: [("a\"b".to_string(), 1 << 20), ("m".to_string(), 2 << 20)].into(),
            ..StoreConfig::default()
        };
        let s = Store::open(dir.path(), cfg).expect("open");
        let v = vec![1u8; 8192];
        s.put_batch(&[b"m:1", b"m:2"], &[vec![&v[..]], vec![&v[..]]], &[])
            .expect("put");
        let text = s.metrics_text();
        for want in [
            "sglang_lsm_namespace_live_bytes{namespace=\"m\"} 16384",
            "sglang_lsm_namespace_pages{namespace=\"m\"} 2",
            "sglang_lsm_namespace_quota_bytes{namespace=\"m\"} 2097152",
            "sglang_lsm_namespace_live_bytes{namespace=\"a\\\"b\"} 0",
            "# TYPE sglang_lsm_namespace_evicted_pages_total counter",
            "sglang_lsm_namespace_declined_pages_total{namespace=\"m\"} 0",
            "sglang_lsm_min_free_bytes 1048576",
            "sglang_lsm_free_bytes ",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        check_samples(&text);
    }
}
