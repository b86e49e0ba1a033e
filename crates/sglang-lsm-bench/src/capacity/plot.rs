//! `capacity_bound.png`: bytes on disk against bytes written, with the bound and the restart
//! marked. Drawn like the comparison report's plots (plotters, the shipped DejaVu Sans font).

use std::path::Path;

use plotters::prelude::*;

use super::CapacityReport;
use crate::plot::{err, register_font, FONT_FAMILY};

const GIB: f64 = (1u64 << 30) as f64;

/// A legend name, its points (GiB written, GiB) and its colour.
type Line<'a> = (&'a str, &'a [(f64, f64)], RGBColor);

/// Draws the figure into `path`.
///
/// # Errors
/// The font does not load or the PNG cannot be written.
pub fn draw(path: &Path, r: &CapacityReport) -> anyhow::Result<()> {
    register_font()?;
    let g = |b: u64| b as f64 / GIB;
    let disk: Vec<(f64, f64)> = r
        .disk_samples
        .iter()
        .map(|s| (g(s.written), g(s.total())))
        .collect();
    let vlog: Vec<(f64, f64)> = r
        .disk_samples
        .iter()
        .map(|s| (g(s.written), g(s.vlog_bytes)))
        .collect();
    let log: Vec<(f64, f64)> = r
        .store_samples
        .iter()
        .map(|s| (g(s.written), g(s.log_bytes)))
        .collect();
    let bound: Vec<(f64, f64)> = r
        .disk_samples
        .iter()
        .map(|s| {
            (
                g(s.written),
                g(r.capacity_bytes + r.segment_bytes + s.other_bytes),
            )
        })
        .collect();
    let x1 = g(r.bytes_written).max(1e-9);
    let y1 = bound
        .iter()
        .chain(&disk)
        .map(|p| p.1)
        .fold(g(r.capacity_bytes), f64::max)
        * 1.15;

    let root = BitMapBackend::new(path, (1100, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "bytes on disk vs bytes written (capacity {}, restart at {:.1} GiB)",
                crate::units::fmt_bytes(r.capacity_bytes),
                g(r.restart_written)
            ),
            (FONT_FAMILY, 22),
        )
        .margin(14)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..x1, 0.0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("bytes written to the store (GiB)")
        .y_desc("GiB")
        .label_style((FONT_FAMILY, 14))
        .draw()
        .map_err(err)?;

    let line = |i: usize| {
        let (r, g, b) = Palette99::pick(i).rgb();
        RGBColor(r, g, b)
    };
    // The total last, on top: it is what the bound is about.
    let series: [Line<'_>; 3] = [
        ("store's log_bytes", &log, line(2)),
        ("value log on disk (du)", &vlog, line(1)),
        ("on disk: value log + index (du)", &disk, line(0)),
    ];
    for (name, pts, color) in series {
        // One pixel wide: thousands of samples zigzag, and thick polylines draw spikes at
        // sharp turns that are not in the data.
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(1)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .draw_series(DashedLineSeries::new(
            bound.iter().copied(),
            6,
            4,
            BLACK.stroke_width(2),
        ))
        .map_err(err)?
        .label("bound: capacity + one segment + index")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    let cap = g(r.capacity_bytes);
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, cap), (x1, cap)],
            3,
            5,
            BLACK.mix(0.6).stroke_width(1),
        ))
        .map_err(err)?
        .label("capacity")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.6)));
    let xr = g(r.restart_written);
    let red = RGBColor(200, 30, 30);
    chart
        .draw_series(DashedLineSeries::new(
            [(xr, 0.0), (xr, y1)],
            8,
            4,
            red.stroke_width(2),
        ))
        .map_err(err)?
        .label("close + reopen")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
    chart
        .draw_series(std::iter::once(Text::new(
            "restart",
            (xr + x1 * 0.01, y1 * 0.06),
            (FONT_FAMILY, 15).into_font().color(&red),
        )))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT_FAMILY, 14))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
