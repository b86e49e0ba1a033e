//! The top of the results: [`CompareReport`], everything one `bench` run measured, and what
//! `--report DIR` writes from it: a markdown report (`report.md`), the raw results
//! (`compare.json`) and PNG plots drawn with plotters:
//!
//! - `throughput_vs_page_size.png`: put and cold-get GB/s per backend, with the device limit;
//! - `cost_vs_objects.png`: put and cold-get cost per page as the object count grows;
//! - `hit_rate_vs_capacity.png`: prefix hit rate of LRU, Belady and our prefix-aware policy at
//!   1/5/10/25% of the trace's distinct blocks (policy simulators on the real trace);
//! - `ttft_cdf_model.png`: the CDF of the TTFT **model** from a replay against our store.
//!
//! Text is rendered with plotters' pure-Rust `ab_glyph` backend and the DejaVu Sans font
//! shipped in `assets/` (Bitstream Vera licence, see `assets/LICENSE-DejaVu`), so reports
//! need no system fonts or C libraries.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ablation::{self, AblationResult};
use crate::compare::{page_size_table, scale_table, PageSizeResult, ScalePoint};
use crate::compression::{self, CompressionReport};
use crate::plot::{err, register_font, FONT_FAMILY};
use crate::policy::{simulate_kind, PolicyKind};
use crate::replay::{run_detailed, ReplayArgs, ReplayPolicy, ReplayReport};
use crate::trace::Trace;
use crate::ttft::ModelKind;
use crate::units::fmt_bytes;

/// Capacities of the hit-rate figure, as fractions of the trace's distinct blocks (the
/// REFERENCE.md §6 grid).
pub const CAPACITY_FRACS: [f64; 4] = [0.01, 0.05, 0.10, 0.25];
/// Capacity of the replay behind the TTFT figure.
const TTFT_CAPACITY_FRAC: f64 = 0.10;

/// Everything one `bench` run measured: what the report shows and `--json` writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompareReport {
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: u64,
    pub command: String,
    pub page_sizes: Vec<PageSizeResult>,
    pub scale_page_bytes: u64,
    pub scale: Vec<ScalePoint>,
    pub ablations: Vec<AblationResult>,
    /// The compression measurement (absent in reports from before it existed).
    #[serde(default)]
    pub compression: Option<CompressionReport>,
    /// Wall seconds of the whole run.
    #[serde(default)]
    pub wall_s: f64,
}

/// Hit rates and the TTFT model from the trace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TraceFigures {
    pub trace: String,
    /// (policy, capacity fraction, prefix hit rate).
    pub hit_rates: Vec<(String, f64, f64)>,
    pub unlimited_hit_rate: f64,
    /// The replay the TTFT CDF comes from.
    pub replay: ReplayReport,
    /// TTFT model per request with the disk tier (replay), sorted.
    pub ttft_model_s: Vec<f64>,
    /// TTFT model per request with no disk tier (every token prefilled), sorted.
    pub ttft_model_no_tier_s: Vec<f64>,
}

impl TraceFigures {
    /// Runs the simulators at [`CAPACITY_FRACS`] and one replay at 10% capacity; the TTFT model
    /// loads hits at `load_bytes_per_s` when given (else at the replay's measured bandwidth).
    ///
    /// # Errors
    /// The trace does not load, or the replay fails.
    pub fn compute(
        trace_path: &Path,
        block_bytes: u64,
        load_bytes_per_s: Option<f64>,
    ) -> anyhow::Result<Self> {
        let trace = Trace::load(trace_path, crate::trace::MOONCAKE_BLOCK_TOKENS)?;
        let mut hit_rates = Vec::new();
        for kind in [PolicyKind::Lru, PolicyKind::Belady, PolicyKind::Prefix] {
            for f in CAPACITY_FRACS {
                let r = simulate_kind(&trace, kind, trace.capacity_blocks(f));
                hit_rates.push((kind.name().to_string(), f, r.hit_rate));
            }
        }
        eprintln!("replaying {} for the TTFT model", trace_path.display());
        let mut args = ReplayArgs::new(trace_path, TTFT_CAPACITY_FRAC);
        // The replayer-enforced `prefix` policy, as this report has always used: it works at
        // any trace size and `--replay-block-bytes`, whereas the store's own bound (replay's
        // default) needs at least 16 MiB, which small traces at 10% do not reach. The
        // report names the policy; `sglang-lsm replay` measures the store's own bound.
        args.policy = ReplayPolicy::Prefix;
        args.block_bytes = block_bytes;
        args.load_bytes_per_s = load_bytes_per_s;
        args.quiet = false;
        let (replay, mut ttft) = run_detailed(&args)?;
        ttft.sort_by(f64::total_cmp);
        let profile = ModelKind::Llama3_8b.profile();
        let mut none: Vec<f64> = trace
            .requests
            .iter()
            .map(|r| r.input_tokens as f64 / profile.prefill_tokens_per_s)
            .collect();
        none.sort_by(f64::total_cmp);
        Ok(Self {
            trace: trace_path.display().to_string(),
            hit_rates,
            unlimited_hit_rate: trace.stats().unlimited_hit_rate(),
            replay,
            ttft_model_s: ttft,
            ttft_model_no_tier_s: none,
        })
    }
}

/// Writes `report.md`, `compare.json` and the plots into `dir`.
///
/// # Errors
/// The directory or a file cannot be written, or a plot fails to render.
pub fn write(dir: &Path, r: &CompareReport, figures: Option<&TraceFigures>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    register_font()?;
    let mut md = String::new();
    md.push_str("# sglang-lsm bench report (every store side by side)\n\n");
    md.push_str(&format!(
        "Command: `{}`  \nStarted: {} (Unix seconds). Ratios are within this run; the device \
         limit is an O_DIRECT sequential write/read of the same bytes measured right before \
         each page size.\n",
        r.command, r.started_unix_s
    ));
    md.push_str(&page_size_table(&r.page_sizes));
    md.push_str(&scale_table(r.scale_page_bytes, &r.scale));
    md.push_str(&ablation::table(&r.ablations));
    if let Some(c) = &r.compression {
        md.push_str(&compression::table(c));
    }
    if !r.page_sizes.is_empty() {
        plot_throughput(&dir.join("throughput_vs_page_size.png"), r)?;
        md.push_str("\n![throughput vs page size](throughput_vs_page_size.png)\n");
    }
    if !r.scale.is_empty() {
        plot_scale(&dir.join("cost_vs_objects.png"), r)?;
        md.push_str("\n![cost vs object count](cost_vs_objects.png)\n");
    }
    if let Some(f) = figures {
        md.push_str(&hit_rate_table(f));
        plot_hit_rates(&dir.join("hit_rate_vs_capacity.png"), f)?;
        md.push_str("\n![hit rate vs capacity](hit_rate_vs_capacity.png)\n");
        md.push_str(&format!(
            "\n**TTFT (MODEL, not measured on a GPU)**: replay of `{}` against our store at {:.0}% \
             capacity, policy `{}`, model `{}` ({}); hits load at {:.2} GB/s (replay measured \
             {:.2} GB/s at its scaled-down {} blocks). Mean {:.3} s, p99 {:.3} s; with no disk \
             tier mean {:.3} s. Hit rate {:.1}%, timely {:.1}%. A disk tier only beats recompute \
             when it loads faster than kv_bytes_per_token x prefill tokens/s.\n",
            f.trace,
            100.0 * TTFT_CAPACITY_FRAC,
            f.replay.policy,
            f.replay.model,
            f.replay.model_source,
            f.replay.ttft_model_load_bytes_per_s / 1e9,
            f.replay.read_bandwidth_bytes_per_s / 1e9,
            fmt_bytes(f.replay.block_bytes),
            f.replay.ttft_model_mean_s,
            f.replay.ttft_model_p99_s,
            f.replay.ttft_model_no_cache_mean_s,
            100.0 * f.replay.hit_rate,
            100.0 * f.replay.timely_hit_rate
        ));
        plot_ttft(&dir.join("ttft_cdf_model.png"), f)?;
        md.push_str("\n![TTFT model CDF](ttft_cdf_model.png)\n");
    } else {
        md.push_str("\nNo trace was available: hit-rate and TTFT figures are omitted.\n");
    }
    std::fs::write(dir.join("report.md"), md).context("writing report.md")?;
    let json = serde_json::json!({ "compare": r, "trace_figures": figures });
    std::fs::write(
        dir.join("compare.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )
    .context("writing compare.json")?;
    Ok(())
}

fn hit_rate_table(f: &TraceFigures) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n**Prefix hit rate vs capacity** (policy simulators on `{}`; unlimited capacity {:.1}%)\n",
        f.trace,
        100.0 * f.unlimited_hit_rate
    );
    let _ = write!(s, "| policy |");
    for c in CAPACITY_FRACS {
        let _ = write!(s, " {:.0}% |", 100.0 * c);
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|{}", "---|".repeat(CAPACITY_FRACS.len()));
    for p in ["lru", "belady", "prefix"] {
        let _ = write!(s, "| {p} |");
        for c in CAPACITY_FRACS {
            let v = f
                .hit_rates
                .iter()
                .find(|(n, cf, _)| n == p && (*cf - c).abs() < 1e-12)
                .map_or(f64::NAN, |x| x.2);
            let _ = write!(s, " {:.1}% |", 100.0 * v);
        }
        let _ = writeln!(s);
    }
    s
}

/// A line: legend name, points, and whether it is a dashed reference line (the device limit,
/// the unlimited-capacity ceiling).
type Series = (String, Vec<(f64, f64)>, bool);

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Draws one log-x line chart of `series` (name, points) into `area`.
#[allow(clippy::too_many_arguments)]
fn line_chart(
    area: &Area<'_>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    log_x: bool,
    log_y: bool,
    x_fmt: Option<&dyn Fn(&f64) -> String>,
    series: &[Series],
) -> anyhow::Result<()> {
    let pts = series.iter().flat_map(|s| s.1.iter().copied());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    anyhow::ensure!(x0 <= x1, "no points to plot for {title}");
    if x0 == x1 {
        x0 *= 0.5;
        x1 *= 2.0;
    }
    let (y0, y1) = if log_y {
        (y0.max(1e-9) / 1.5, y1 * 1.5)
    } else {
        (0.0, y1 * 1.1 + 1e-9)
    };
    let mut b = ChartBuilder::on(area);
    b.caption(title, (FONT_FAMILY, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(x_desc)
                .y_desc(y_desc)
                .label_style((FONT_FAMILY, 14));
            if let Some(f) = x_fmt {
                mesh.x_label_formatter(f);
            }
            mesh.draw().map_err(err)?;
            for (i, (name, points, dashed)) in series.iter().enumerate() {
                let color: RGBColor = if *dashed {
                    BLACK
                } else {
                    let (r, g, b) = Palette99::pick(i).rgb();
                    RGBColor(r, g, b)
                };
                let style = color.stroke_width(2);
                if *dashed {
                    chart
                        .draw_series(DashedLineSeries::new(points.iter().copied(), 6, 4, style))
                        .map_err(err)?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                } else {
                    chart
                        .draw_series(LineSeries::new(points.iter().copied(), style))
                        .map_err(err)?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                    chart
                        .draw_series(
                            points
                                .iter()
                                .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
                        )
                        .map_err(err)?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FONT_FAMILY, 14))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(err)?;
        }};
    }
    match (log_x, log_y) {
        (true, true) => draw!(b
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(err)?),
        (true, false) => draw!(b
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
            .map_err(err)?),
        (false, true) => draw!(b
            .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
            .map_err(err)?),
        (false, false) => draw!(b.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?),
    }
    Ok(())
}

fn backends_in(r: &CompareReport) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for ps in &r.page_sizes {
        for c in &ps.cases {
            if !names.contains(&c.backend) {
                names.push(c.backend.clone());
            }
        }
    }
    names
}

fn plot_throughput(path: &Path, r: &CompareReport) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((1, 2));
    let names = backends_in(r);
    for (panel, put) in panels.iter().zip([true, false]) {
        let mut series: Vec<Series> = names
            .iter()
            .map(|n| {
                let pts = r
                    .page_sizes
                    .iter()
                    .filter_map(|ps| {
                        ps.cases.iter().find(|c| &c.backend == n).map(|c| {
                            let v = if put {
                                c.put_bytes_per_s
                            } else {
                                c.cold_get_bytes_per_s
                            };
                            (((ps.page_bytes / 1024) as f64).log2(), v / 1e9)
                        })
                    })
                    .collect();
                (n.clone(), pts, false)
            })
            .collect();
        series.push((
            "device (O_DIRECT)".to_string(),
            r.page_sizes
                .iter()
                .map(|ps| {
                    let d = if put {
                        ps.device.write_bytes_per_s
                    } else {
                        ps.device.read_bytes_per_s
                    };
                    (((ps.page_bytes / 1024) as f64).log2(), d / 1e9)
                })
                .collect(),
            true,
        ));
        line_chart(
            panel,
            if put {
                "put throughput (incl. sync)"
            } else {
                "cold get throughput"
            },
            "page size (log scale)",
            "GB/s",
            false,
            false,
            Some(&|x: &f64| fmt_bytes((2f64.powf(*x) * 1024.0).round() as u64)),
            &series,
        )?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn plot_scale(path: &Path, r: &CompareReport) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((1, 2));
    let mut names: Vec<String> = Vec::new();
    for p in &r.scale {
        if !names.contains(&p.backend) {
            names.push(p.backend.clone());
        }
    }
    for (panel, put) in panels.iter().zip([true, false]) {
        let series: Vec<Series> = names
            .iter()
            .map(|n| {
                let pts = r
                    .scale
                    .iter()
                    .filter(|p| &p.backend == n)
                    .map(|p| {
                        let v = if put {
                            p.put_us_per_page
                        } else {
                            p.cold_get_us_per_page_p50
                        };
                        (p.objects as f64, v)
                    })
                    .collect();
                (n.clone(), pts, false)
            })
            .collect();
        line_chart(
            panel,
            &format!(
                "{} cost per {} page",
                if put { "put" } else { "cold get" },
                fmt_bytes(r.scale_page_bytes)
            ),
            "objects in the store (log)",
            "us per page (log)",
            true,
            true,
            Some(&|x: &f64| fmt_count(*x)),
            &series,
        )?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// `12000` -> `12k`, `3000000` -> `3M`.
fn fmt_count(x: f64) -> String {
    if x >= 1e6 {
        format!("{}M", (x / 1e5).round() / 10.0)
    } else if x >= 1e3 {
        format!("{}k", (x / 1e2).round() / 10.0)
    } else {
        format!("{x:.0}")
    }
}

fn plot_hit_rates(path: &Path, f: &TraceFigures) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut series: Vec<Series> = ["lru", "belady", "prefix"]
        .iter()
        .map(|p| {
            let pts = f
                .hit_rates
                .iter()
                .filter(|(n, _, _)| n == p)
                .map(|(_, c, h)| (100.0 * c, 100.0 * h))
                .collect();
            ((*p).to_string(), pts, false)
        })
        .collect();
    series.push((
        "unlimited capacity".to_string(),
        CAPACITY_FRACS
            .iter()
            .map(|c| (100.0 * c, 100.0 * f.unlimited_hit_rate))
            .collect(),
        true,
    ));
    line_chart(
        &root,
        "prefix hit rate vs capacity (Mooncake trace, simulators)",
        "capacity (% of distinct blocks)",
        "prefix hit rate (%)",
        false,
        false,
        None,
        &series,
    )?;
    root.present().map_err(err)?;
    Ok(())
}

fn cdf(sorted: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted.len().max(1) as f64;
    sorted
        .iter()
        .enumerate()
        .map(|(i, &v)| (v.max(1e-4), (i + 1) as f64 / n))
        .collect()
}

fn plot_ttft(path: &Path, f: &TraceFigures) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let series = vec![
        (
            format!(
                "with disk tier ({}, {:.0}% capacity)",
                f.replay.policy,
                100.0 * TTFT_CAPACITY_FRAC
            ),
            cdf(&f.ttft_model_s),
            false,
        ),
        (
            "no disk tier (all prefill)".to_string(),
            cdf(&f.ttft_model_no_tier_s),
            false,
        ),
    ];
    line_chart(
        &root,
        &format!(
            "TTFT CDF - MODEL ({}), not a GPU measurement",
            f.replay.model
        ),
        "modelled TTFT (s, log)",
        "fraction of requests",
        true,
        false,
        None,
        &series,
    )?;
    root.present().map_err(err)?;
    Ok(())
}
