//! DuoAttention evaluation plots (feature `plot`): the needle-in-a-haystack heat map (context ×
//! depth, colour = accuracy) of one selection and sparsity, and accuracy against sparsity, one
//! line per head selection. SVG, text in the embedded DejaVu Sans.

use std::path::Path;

use plotters::prelude::*;
use ringattn_runtime::{Error, Result};

/// One heat map: accuracy of each (context, depth) cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    /// Title.
    pub title: String,
    /// Context lengths (columns, left to right).
    pub contexts: Vec<usize>,
    /// Needle depths (rows, top to bottom).
    pub depths: Vec<f64>,
    /// Accuracy in [0, 1] of `[context][depth]`, row-major by context; `None`: not measured.
    pub accuracy: Vec<Option<f64>>,
}

/// One line of the accuracy-vs-sparsity plot.
#[derive(Clone, Debug, PartialEq)]
pub struct AccuracyCurve {
    /// Legend name.
    pub name: String,
    /// (sparsity, accuracy) points, by sparsity.
    pub points: Vec<(f64, f64)>,
}

fn register_font() -> Result<()> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| Error::config("the embedded plot font could not be loaded"))
}

fn fail(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Io {
        context: format!("drawing {}", path.display()),
        source: std::io::Error::other(e),
    }
}

/// Red (0) through yellow to green (1).
fn shade(a: f64) -> RGBColor {
    let a = a.clamp(0.0, 1.0);
    let (r, g) = if a < 0.5 {
        (230.0, 60.0 + 340.0 * a)
    } else {
        (230.0 - 360.0 * (a - 0.5), 230.0)
    };
    RGBColor(r as u8, g as u8, 70)
}

/// Writes the heat map `h` as an SVG at `path`.
pub fn write_heatmap_svg(path: &Path, h: &Heatmap) -> Result<()> {
    register_font()?;
    draw_heatmap(path, h).map_err(fail(path))
}

fn draw_heatmap(path: &Path, h: &Heatmap) -> std::result::Result<(), String> {
    let (nc, nd) = (h.contexts.len(), h.depths.len());
    let root =
        SVGBackend::new(path, (160 + 110 * nc as u32, 140 + 60 * nd as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&h.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..nc as f64, 0f64..nd as f64)
        .map_err(|e| e.to_string())?;
    let contexts = h.contexts.clone();
    let depths = h.depths.clone();
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("context (tokens)")
        .y_desc("needle depth")
        .x_labels(nc * 2 + 1)
        .y_labels(nd * 2 + 1)
        .x_label_formatter(&|x| label_at(*x, &contexts, |c| c.to_string()))
        .y_label_formatter(&|y| label_at(*y, &depths, |d| format!("{d:.2}")))
        .draw()
        .map_err(|e| e.to_string())?;
    for ci in 0..nc {
        for di in 0..nd {
            let acc = h.accuracy.get(ci * nd + di).copied().flatten();
            let colour = acc.map_or(RGBColor(220, 220, 220), shade);
            let cell = [(ci as f64, di as f64), (ci as f64 + 1.0, di as f64 + 1.0)];
            chart
                .draw_series([Rectangle::new(cell, colour.filled())])
                .map_err(|e| e.to_string())?;
            let text = acc.map_or("-".to_string(), |a| format!("{:.0}%", 100.0 * a));
            chart
                .draw_series([Text::new(
                    text,
                    (ci as f64 + 0.35, di as f64 + 0.6),
                    ("sans-serif", 14),
                )])
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

/// The label of the category whose cell centre is at `x` (none between centres).
fn label_at<T: Copy>(x: f64, values: &[T], f: impl Fn(T) -> String) -> String {
    let i = x - 0.5;
    if (i - i.round()).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    values
        .get(i.round() as usize)
        .map_or(String::new(), |&v| f(v))
}

/// Writes accuracy against sparsity, one line per curve, as an SVG at `path`.
pub fn write_accuracy_svg(path: &Path, title: &str, curves: &[AccuracyCurve]) -> Result<()> {
    register_font()?;
    draw_accuracy(path, title, curves).map_err(fail(path))
}

fn draw_accuracy(
    path: &Path,
    title: &str,
    curves: &[AccuracyCurve],
) -> std::result::Result<(), String> {
    let root = SVGBackend::new(path, (640, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.02f64..1.02, 0f64..1.05)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("sparsity (fraction of streaming KV heads)")
        .y_desc("pass key accuracy")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, c) in curves.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(c.points.clone(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(c.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
        chart
            .draw_series(c.points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heat_map_and_a_curve_plot_are_written_as_svg() {
        let dir = tempfile::tempdir().unwrap();
        let h = Heatmap {
            title: "t".into(),
            contexts: vec![1024, 2048],
            depths: vec![0.0, 0.5, 1.0],
            accuracy: vec![Some(1.0), Some(0.5), None, Some(0.0), Some(1.0), Some(0.25)],
        };
        let p = dir.path().join("h.svg");
        write_heatmap_svg(&p, &h).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("<svg") && text.contains("2048") && text.contains("50%"));
        let c = AccuracyCurve {
            name: "calibrated".into(),
            points: vec![(0.0, 1.0), (0.5, 0.8)],
        };
        let q = dir.path().join("a.svg");
        write_accuracy_svg(&q, "acc", &[c]).unwrap();
        assert!(std::fs::read_to_string(&q).unwrap().contains("calibrated"));
    }

    #[test]
    fn shades_run_from_red_to_green() {
        assert!(shade(0.0).0 > shade(0.0).1);
        assert!(shade(1.0).1 > shade(1.0).0);
    }
}
