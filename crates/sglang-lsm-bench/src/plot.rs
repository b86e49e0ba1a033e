//! Plot helpers shared by the report and the capacity figure: the DejaVu Sans font shipped in
//! `assets/` (so plots need no system fonts), and plotters errors as `anyhow` errors.

use std::sync::OnceLock;

use plotters::prelude::*;

/// Embedded so a report renders the same on a machine with no fonts installed.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// The family name plots ask for; [`register_font`] maps it to the embedded font.
pub(crate) const FONT_FAMILY: &str = "sans-serif";

/// Registers the embedded font under [`FONT_FAMILY`], once per process (plotters keeps one
/// global font table), before anything draws text.
///
/// # Errors
/// The font bytes do not parse.
pub(crate) fn register_font() -> anyhow::Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_ok()
    });
    anyhow::ensure!(ok, "the embedded DejaVu Sans font did not load");
    Ok(())
}

/// Plotters' errors are generic over the drawing backend; keep only the message.
pub(crate) fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("plot: {e}")
}
