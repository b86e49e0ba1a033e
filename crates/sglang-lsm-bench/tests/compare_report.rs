//! A tiny `compare` end to end (every backend, device limit, scale sweep, ablations), then the
//! report: markdown with the tables and real PNG files, including the trace figures.

use std::io::Write as _;

use clap::Parser;
use sglang_lsm_bench::bench::{self, CompareArgs};
use sglang_lsm_bench::report::{self, TraceFigures};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: CompareArgs,
}

/// A small prefix-chained trace: four documents asked about repeatedly, one-off prompts.
fn write_trace(path: &std::path::Path) {
    let mut f = std::fs::File::create(path).expect("trace");
    for r in 0..120u64 {
        // A fresh question block per request.
        let question = 1000 + r;
        let mut ids: Vec<u64> = if r % 3 == 0 {
            Vec::new()
        } else {
            let d = r % 4;
            (0..2 + d).map(|i| d * 100 + i).collect()
        };
        ids.push(question);
        writeln!(
            f,
            "{{\"timestamp\": {}, \"input_length\": {}, \"output_length\": 1, \"hash_ids\": {:?}}}",
            r * 10,
            ids.len() * 512,
            ids
        )
        .expect("write");
    }
}

fn is_png(path: &std::path::Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 1000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn compare_runs_every_backend_and_the_report_has_tables_and_plots() {
    // On the target disk, not /tmp: the device limit needs O_DIRECT, which tmpfs refuses.
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let dir = work.path().to_str().expect("utf-8 path");
    let cli = Cli::parse_from([
        "t",
        "--dir",
        dir,
        "--bytes",
        "2m",
        "--page-sizes",
        "128k,1m",
        "--probe-iters",
        "20",
        "--scale-counts",
        "300,900",
        "--ablation-prefixes",
        "3",
        "--ablation-prefix-pages",
        "4",
        "--compression-bytes",
        "512k",
    ]);
    let r = bench::collect(&cli.args).expect("compare runs");
    let kinds = sglang_lsm_bench::backend::BackendKind::available();
    assert_eq!(r.page_sizes.len(), 2);
    for ps in &r.page_sizes {
        assert_eq!(ps.cases.len(), kinds.len());
        assert!(ps.device.write_bytes_per_s > 0.0 && ps.device.read_bytes_per_s > 0.0);
        for c in &ps.cases {
            assert!(
                c.put_bytes_per_s > 0.0 && c.cold_get_bytes_per_s > 0.0,
                "{c:?}"
            );
            assert_eq!(c.pages * c.page_bytes, 2 << 20);
            assert!(c.disk_bytes >= 2 << 20, "{c:?}");
        }
    }
    // Two checkpoints per backend, at the object counts asked for.
    assert_eq!(r.scale.len(), 2 * kinds.len());
    assert!(r.scale.iter().all(|p| p.objects == 300 || p.objects == 900));
    assert_eq!(r.ablations.len(), 6);
    assert!(r
        .ablations
        .iter()
        .any(|a| a.variant.contains("no read coalescing")));
    assert!(r.compression.is_some());
    assert!(r.ablations[0].variant.contains("prefix order"));

    let trace = work.path().join("trace.jsonl");
    write_trace(&trace);
    let figures = TraceFigures::compute(&trace, 4096, Some(1e9)).expect("trace figures");
    assert_eq!(figures.hit_rates.len(), 12);
    assert_eq!(figures.ttft_model_s.len(), 120);
    assert_eq!(figures.replay.ttft_model_load_bytes_per_s, 1e9);
    // Belady is an upper bound for LRU at every capacity.
    for (p, c, h) in &figures.hit_rates {
        if p == "lru" {
            let b = figures
                .hit_rates
                .iter()
                .find(|(q, d, _)| q == "belady" && d == c)
                .expect("belady row");
            assert!(b.2 >= *h, "belady {} < lru {h} at {c}", b.2);
        }
    }

    let out = work.path().join("report");
    report::write(&out, &r, Some(&figures)).expect("report");
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(md.contains("| backend | put GB/s |"), "{md}");
    assert!(md.contains("| file-flat |") && md.contains("| ours |"));
    assert!(md.contains("**Ablations**") && md.contains("**Object count**"));
    assert!(md.contains("MODEL"));
    for png in [
        "throughput_vs_page_size.png",
        "cost_vs_objects.png",
        "hit_rate_vs_capacity.png",
        "ttft_cdf_model.png",
    ] {
        assert!(is_png(&out.join(png)), "{png} missing or not a PNG");
        assert!(md.contains(png), "report.md does not show {png}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("compare.json")).expect("json"))
            .expect("valid JSON");
    assert!(json["compare"]["page_sizes"].is_array());
}
