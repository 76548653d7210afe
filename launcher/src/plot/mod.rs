//! Plots of a scaling sweep, drawn with `plotters` from `DIR/results.jsonl`.
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
use std::process::ExitCode;

use clap::Args;
use plotters::coord::Shift;
use plotters::prelude::*;
use ringattn_runtime::{Error, Result};

use crate::bench::scaling::{read_results, RESULTS_FILE};

mod data;
mod draw;
#[cfg(test)]
mod tests;

pub use data::{balance_plot, scaling_plot, BalancePlot, ScalingPlot};
use draw::{draw_balance, draw_scaling};

/// Options of `ringattn plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Directory holding results.jsonl (the plots are written beside it).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Runs `ringattn plot DIR`.
pub fn run_plot(args: &PlotArgs) -> Result<ExitCode> {
    let results = args.dir.join(RESULTS_FILE);
    if !results.exists() {
        return Err(Error::config(format!(
            "{} not found (run `ringattn bench scaling --out {}` first)",
            results.display(),
            args.dir.display()
        )));
    }
    let written = render_dir(&args.dir)?;
    if written.is_empty() {
        return Err(Error::config(format!(
            "{} holds no run reports",
            results.display()
        )));
    }
    for p in written {
        outln!("wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads `dir/results.jsonl` and writes the plots beside it; returns the files written.
pub fn render_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let (values, _) = read_results(&dir.join(RESULTS_FILE))?;
    register_font()?;
    // Drawn into a staging directory `.plots.tmp.PID` beside the plots, then renamed into
    // place: a killed run never leaves a half-written plot (stale staging directories of
    // dead processes are removed here).
    let staging = ringattn_runtime::io::temp_path(&dir.join("plots"));
    let io = |context: String| move |source| Error::Io { context, source };
    std::fs::create_dir_all(&staging).map_err(io(format!("creating {}", staging.display())))?;
    let drawn = draw_all(&staging, &values);
    let result = drawn.and_then(|names| {
        names
            .into_iter()
            .map(|name| {
                let target = dir.join(&name);
                std::fs::rename(staging.join(&name), &target)
                    .map_err(io(format!("renaming to {}", target.display())))
                    .map(|()| target)
            })
            .collect()
    });
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Draws every plot the results allow into `dir`; returns their file names.
fn draw_all(dir: &Path, values: &[serde_json::Value]) -> Result<Vec<String>> {
    let mut written = Vec::new();
    if let Some(data) = scaling_plot(values) {
        let png = dir.join("scaling.png");
        draw(
            &png,
            |a| draw_scaling(a, &data),
            BitMapBackend::new(&png, (1200, 520)).into_drawing_area(),
        )?;
        let svg = dir.join("scaling.svg");
        draw(
            &svg,
            |a| draw_scaling(a, &data),
            SVGBackend::new(&svg, (1200, 520)).into_drawing_area(),
        )?;
        written.extend([png, svg].map(|p| file_name(&p)));
    }
    if let Some(data) = balance_plot(values) {
        let width = 420 * data.panels.len() as u32 + 40;
        let png = dir.join("balance.png");
        draw(
            &png,
            |a| draw_balance(a, &data),
            BitMapBackend::new(&png, (width, 460)).into_drawing_area(),
        )?;
        let svg = dir.join("balance.svg");
        draw(
            &svg,
            |a| draw_balance(a, &data),
            SVGBackend::new(&svg, (width, 460)).into_drawing_area(),
        )?;
        written.extend([png, svg].map(|p| file_name(&p)));
    }
    Ok(written)
}

/// The file name of a path this module made (always has one).
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

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
