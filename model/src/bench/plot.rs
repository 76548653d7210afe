//! `DIR/model.png` and `DIR/model.svg`: prefill and decode tokens/s against the prompt length,
//! one line per (tool, ranks, layout), llama.cpp in grey beside ringattn (feature `plot`;
//! text in the embedded DejaVu Sans, no system font library).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

use crate::error::{ModelError, Result};

/// One line of a panel: its label and (context, tokens/s) points sorted by context.
pub type Line = (String, Vec<(f64, f64)>);

/// The lines of one metric (`prefill_tokens_per_s` or `decode_tokens_per_s`) in `values`.
pub fn lines(values: &[Value], metric: &str) -> Vec<Line> {
    let mut by: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for v in values {
        let (Some(n), Some(y)) = (v["context"].as_f64(), v[metric].as_f64()) else {
            continue;
        };
        let label = match v["tool"].as_str() {
            Some("llama.cpp") => format!("llama.cpp T={}", v["threads_per_rank"]),
            _ => format!(
                "ringattn P={} {} T={}",
                v["workers"],
                v["layout"].as_str().unwrap_or("?"),
                v["threads_per_rank"]
            ),
        };
        by.entry(label).or_default().push((n, y));
    }
    by.into_iter()
        .map(|(k, mut p)| {
            p.sort_by(|a, b| a.0.total_cmp(&b.0));
            (k, p)
        })
        .collect()
}

/// Draws both files from `values` into `dir`; returns them (none for no data).
pub fn render(dir: &Path, values: &[Value]) -> Result<Vec<PathBuf>> {
    let panels = [
        ("prefill tokens/s", lines(values, "prefill_tokens_per_s")),
        ("decode tokens/s", lines(values, "decode_tokens_per_s")),
    ];
    if panels.iter().all(|p| p.1.is_empty()) {
        return Ok(Vec::new());
    }
    let fail = |path: &Path, e: String| {
        ModelError::Runtime(ringattn_runtime::Error::Io {
            context: format!("drawing {}", path.display()),
            source: std::io::Error::other(e),
        })
    };
    if plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .is_err()
    {
        return Err(fail(
            dir,
            "the embedded plot font could not be loaded".into(),
        ));
    }
    let size = (1100, 460);
    let png = dir.join("model.png");
    draw(BitMapBackend::new(&png, size).into_drawing_area(), &panels).map_err(|e| fail(&png, e))?;
    let svg = dir.join("model.svg");
    draw(SVGBackend::new(&svg, size).into_drawing_area(), &panels).map_err(|e| fail(&svg, e))?;
    Ok(vec![png, svg])
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    panels: &[(&str, Vec<Line>)],
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let root = root
        .titled("SmolLM2-135M: ringattn vs llama.cpp", ("sans-serif", 20))
        .map_err(e)?;
    for (area, (title, lines)) in root.split_evenly((1, panels.len())).iter().zip(panels) {
        panel(area, title, lines)?;
    }
    root.present().map_err(e)
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    lines: &[Line],
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let pts = || lines.iter().flat_map(|l| l.1.iter());
    let x_hi = pts().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let y_hi = pts().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..x_hi, 0.0..y_hi)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("prompt tokens")
        .y_desc(title)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(e)?;
    for (i, (label, p)) in lines.iter().enumerate() {
        let c = if label.starts_with("llama.cpp") {
            RGBColor(110, 110, 110)
        } else {
            let c = Palette99::pick(i).to_rgba();
            RGBColor(c.0, c.1, c.2)
        };
        chart
            .draw_series(LineSeries::new(p.iter().copied(), c.stroke_width(2)))
            .map_err(e)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart
            .draw_series(p.iter().map(|&q| Circle::new(q, 3, c.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(e)
}

/// Draws both files from the lines of `DIR/results.jsonl` (unreadable ones skipped) into
/// `dir`; returns them (none for no data).
pub fn render_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let results = dir.join(ringattn::results::RESULTS_FILE);
    let (values, _) = ringattn::results::read_results(&results)?;
    render(dir, &values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_group_by_tool_ranks_and_layout_sorted_by_context() {
        let v = vec![
            json!({"tool": "ringattn", "context": 2048, "workers": 2, "layout": "striped",
                   "threads_per_rank": 1, "prefill_tokens_per_s": 10.0}),
            json!({"tool": "ringattn", "context": 1024, "workers": 2, "layout": "striped",
                   "threads_per_rank": 1, "prefill_tokens_per_s": 20.0}),
            json!({"tool": "llama.cpp", "context": 1024, "threads_per_rank": 2,
                   "prefill_tokens_per_s": 5.0}),
        ];
        let l = lines(&v, "prefill_tokens_per_s");
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].0, "llama.cpp T=2");
        assert_eq!(l[1].0, "ringattn P=2 striped T=1");
        assert_eq!(l[1].1, vec![(1024.0, 20.0), (2048.0, 10.0)]);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(render(dir.path(), &v).unwrap().len(), 2);
        assert!(render(dir.path(), &[]).unwrap().is_empty());
    }

    #[test]
    fn render_dir_draws_what_results_jsonl_holds() {
        let dir = tempfile::tempdir().unwrap();
        assert!(render_dir(dir.path()).unwrap().is_empty());
        let line = json!({"tool": "ringattn", "context": 1024, "workers": 1, "layout": "striped",
                          "threads_per_rank": 1, "prefill_tokens_per_s": 20.0});
        std::fs::write(
            dir.path().join("results.jsonl"),
            format!("{line}\nnot json\n"),
        )
        .unwrap();
        let written = render_dir(dir.path()).unwrap();
        assert_eq!(written.len(), 2);
        assert!(written.iter().all(|p| p.is_file()), "{written:?}");
    }
}
