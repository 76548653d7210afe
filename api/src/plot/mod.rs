//! Plots of a scaling sweep, drawn with `plotters` from `DIR/results.jsonl` (feature `plot`).
//!
//! - `scaling.png` / `scaling.svg`: wall time and GFLOP/s against workers, one line per layout,
//!   ideal scaling dashed, the point beyond which workers outnumber cores marked;
//! - `balance.png` / `balance.svg`: per-rank compute seconds per ring step, contiguous beside
//!   striped (and zigzag), the picture that explains Striped Attention.
//!
//! Text is rendered with an embedded DejaVu Sans (crate `dejavu`) through `ab_glyph`, so no
//! system font library is needed. The data fed to the plotter ([`ScalingPlot`],
//! [`BalancePlot`]) is built by pure functions that the tests check.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use ringattn_runtime::{Error, Result};

use crate::results::{read_results, RESULTS_FILE};

mod data;
mod draw;
#[cfg(test)]
mod tests;

pub use data::{balance_plot, scaling_plot, BalancePlot, ScalingPlot, Series};
use draw::{draw_balance, draw_scaling};

/// Reads `dir/results.jsonl` and writes the plots beside it; returns the files written.
pub fn render_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let (values, _) = read_results(&dir.join(RESULTS_FILE))?;
    register_font()?;
    // Drawn into a staging directory `.plots.tmp.PID` beside the plots, then renamed into
    // place: a killed run never leaves a half-written plot.
    let staging = ringattn_runtime::io::temp_path(&dir.join("plots"));
    let io = |context: String| move |source| Error::Io { context, source };
    std::fs::create_dir_all(&staging).map_err(io(format!("creating {}", staging.display())))?;
    let drawn = draw_all(&staging, &values);
    let result = drawn.and_then(|staged| {
        staged
            .into_iter()
            .map(|path| {
                let target = dir.join(path.file_name().unwrap_or_default());
                std::fs::rename(&path, &target)
                    .map_err(io(format!("renaming to {}", target.display())))
                    .map(|()| target)
            })
            .collect()
    });
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Draws every plot the results allow into `dir`; returns the files written.
fn draw_all(dir: &Path, values: &[serde_json::Value]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    if let Some(data) = scaling_plot(values) {
        written.extend(draw_both(dir, "scaling", (1200, 520), &data)?);
    }
    if let Some(data) = balance_plot(values) {
        let width = 420 * data.panels.len() as u32 + 40;
        written.extend(draw_both(dir, "balance", (width, 460), &data)?);
    }
    Ok(written)
}

/// A plot that can draw itself on any plotters backend.
trait Drawable {
    /// Draws on `area`.
    fn draw_on<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult;
}

impl Drawable for ScalingPlot {
    fn draw_on<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult {
        draw_scaling(area, self)
    }
}

impl Drawable for BalancePlot {
    fn draw_on<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult {
        draw_balance(area, self)
    }
}

/// Writes `dir/STEM.png` and `dir/STEM.svg` of `size` pixels; returns both paths.
fn draw_both(
    dir: &Path,
    stem: &str,
    size: (u32, u32),
    data: &impl Drawable,
) -> Result<[PathBuf; 2]> {
    let png = dir.join(format!("{stem}.png"));
    draw(
        &png,
        |a| data.draw_on(a),
        BitMapBackend::new(&png, size).into_drawing_area(),
    )?;
    let svg = dir.join(format!("{stem}.svg"));
    draw(
        &svg,
        |a| data.draw_on(a),
        SVGBackend::new(&svg, size).into_drawing_area(),
    )?;
    Ok([png, svg])
}

/// Registers the embedded DejaVu Sans as plotters' `sans-serif` (once per process).
fn register_font() -> Result<()> {
    static FONT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *FONT.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::config("the embedded plot font could not be loaded"))
    }
}

/// What the drawing functions return (plotters' errors as text).
pub(crate) type DrawResult = std::result::Result<(), String>;

/// Fills `area` white, draws with `f` and writes the file, errors naming `path`.
fn draw<DB: DrawingBackend>(
    path: &Path,
    f: impl FnOnce(&DrawingArea<DB, Shift>) -> DrawResult,
    area: DrawingArea<DB, Shift>,
) -> Result<()> {
    let fail = |e: String| Error::Io {
        context: format!("drawing {}", path.display()),
        source: std::io::Error::other(e),
    };
    area.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    f(&area).map_err(fail)?;
    area.present().map_err(|e| fail(e.to_string()))
}
