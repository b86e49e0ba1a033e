//! `bench-capacity`'s output: the summary table and the report directory.

use std::path::Path;

use anyhow::Context;

use super::{plot, CapacityReport};
use crate::units::fmt_bytes;

/// Writes `capacity_bound.png`, `capacity.md` and `capacity.json` into `out`.
///
/// # Errors
/// A file cannot be written or the plot fails.
pub fn write_report(out: &Path, r: &CapacityReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    plot::draw(&out.join("capacity_bound.png"), r)?;
    let md = format!(
        "# sglang-lsm bench-capacity\n\nCommand: `{}`\n\n{}\n![disk bytes vs bytes written](capacity_bound.png)\n",
        r.command,
        summary(r)
    );
    std::fs::write(out.join("capacity.md"), md).context("writing capacity.md")?;
    std::fs::write(
        out.join("capacity.json"),
        serde_json::to_string_pretty(r)? + "\n",
    )
    .context("writing capacity.json")?;
    Ok(())
}

fn mib(b: i64) -> f64 {
    b as f64 / f64::from(1u32 << 20)
}

/// The result as markdown.
pub fn summary(r: &CapacityReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let pct = |(h, n): (u64, u64)| {
        if n == 0 {
            "-".to_string()
        } else {
            format!("{:.1}% ({h}/{n} pages)", 100.0 * h as f64 / n as f64)
        }
    };
    let ok = |b: bool| if b { "ok" } else { "FAILED" };
    let _ = writeln!(
        s,
        "Capacity {} (segment {}), {} pages in chains of {} written {} per put_batch, {} hot chains; \
         wrote {} ({:.1}x capacity) in {:.0} s, restart after {}.\n",
        fmt_bytes(r.capacity_bytes),
        fmt_bytes(r.segment_bytes),
        fmt_bytes(r.page_bytes),
        r.chain_pages,
        r.batch_pages,
        r.hot_chains,
        fmt_bytes(r.bytes_written),
        r.bytes_written as f64 / r.capacity_bytes as f64,
        r.wall_s,
        fmt_bytes(r.restart_written)
    );
    let _ = writeln!(s, "| check | result |");
    let _ = writeln!(s, "|---|---|");
    let _ = writeln!(
        s,
        "| disk <= capacity + segment + index, {} samples | {}: max on disk {:.1} MiB (value log {:.1} MiB, at most {:.1} MiB past the capacity; index+meta {:.1} MiB); closest to the bound: {:.1} MiB under |",
        r.disk_samples.len(),
        ok(r.bound_violations == 0),
        mib(r.max_disk_bytes as i64),
        mib(r.max_vlog_disk_bytes as i64),
        mib(r.max_vlog_over_capacity_bytes),
        mib(r.max_other_disk_bytes as i64),
        -mib(r.worst_margin_bytes)
    );
    let _ = writeln!(
        s,
        "| store's log_bytes (max) | {} (largest segment file {}) |",
        fmt_bytes(r.max_log_bytes),
        fmt_bytes(r.largest_segment_file)
    );
    let _ = writeln!(
        s,
        "| restart keeps residency | {}: {} chains, {} pages before; {} chains changed, {} lost, {} gained; reopen {:.2} s |",
        ok(r.restart_changed_chains == 0),
        r.before_restart.chains,
        r.before_restart.resident_pages,
        r.restart_changed_chains,
        r.restart_lost_pages,
        r.restart_gained_pages,
        r.reopen_s
    );
    let _ = writeln!(
        s,
        "| contents after reopen | {}: {} pages read back byte for byte, {} wrong |",
        ok(r.after_reopen.wrong_pages == 0),
        r.after_reopen.verified_pages,
        r.after_reopen.wrong_pages
    );
    let _ = writeln!(
        s,
        "| contents of every hot-set read | {}: {} pages wrong |",
        ok(r.hot_wrong_pages == 0),
        r.hot_wrong_pages
    );
    for (name, c) in [
        ("before restart", &r.before_restart),
        ("after reopen", &r.after_reopen),
        ("end", &r.end),
    ] {
        let _ = writeln!(
            s,
            "| no orphans, probe agrees, {name} | {}: {} resident pages (store: {}), {} orphans, {} probe mismatches |",
            ok(c.orphans == 0 && c.probe_mismatches == 0 && c.resident_pages == c.store_pages),
            c.resident_pages,
            c.store_pages,
            c.orphans,
            c.probe_mismatches
        );
    }
    let _ = writeln!(
        s,
        "| put_batch latency p50 / p99 / max | {:.1} / {:.1} / {:.0} ms |",
        r.put_batch_ms.0, r.put_batch_ms.1, r.put_batch_ms.2
    );
    let _ = writeln!(
        s,
        "| hot-set hit rate before / after restart | {} / {} |",
        pct(r.hot_hits_before_restart),
        pct(r.hot_hits_after_restart)
    );
    let _ = writeln!(
        s,
        "| write amplification, evicted, relocated (before restart), declined | {:.2}, {} pages, {} ({}), {} pages |",
        r.write_amplification,
        r.evicted_pages,
        fmt_bytes(r.relocated_bytes),
        fmt_bytes(r.relocated_bytes_before_restart),
        r.pages_declined
    );
    let _ = writeln!(
        s,
        "\nResult: {}",
        if r.passed { "PASSED" } else { "FAILED" }
    );
    s
}
