//! Drawing the plots with plotters (any backend: PNG bitmap or SVG).

use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

use super::{BalancePlot, DrawResult, ScalingPlot, Series};

/// A layout's color (the same in every plot), else one of a palette.
fn color(name: &str, i: usize) -> RGBColor {
    match name.split(' ').next().unwrap_or("") {
        "contiguous" => RGBColor(214, 39, 40),
        "striped" => RGBColor(31, 119, 180),
        "zigzag" => RGBColor(44, 160, 44),
        "ideal" => RGBColor(120, 120, 120),
        _ => {
            let c = Palette99::pick(i).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

/// The x range of the scaling panels: workers on a log2 axis from the smallest to the
/// largest P measured.
pub(super) fn worker_range(d: &ScalingPlot) -> (f64, f64) {
    let xs = || {
        d.time
            .iter()
            .chain(&d.gflops)
            .flat_map(|s| s.points.iter().map(|p| p.0))
    };
    let lo = xs().fold(f64::INFINITY, f64::min);
    let hi = xs().fold(0.0, f64::max);
    if !lo.is_finite() || hi <= lo {
        (lo.clamp(0.5, 1.0), hi.max(1.0) * 2.0)
    } else {
        (lo, hi)
    }
}

/// Where the oversubscribed shading starts: halfway (on the log axis) between the largest
/// measured P within `limit` and the first one beyond it, so the shading covers exactly the
/// oversubscribed points.
pub(super) fn shade_start(d: &ScalingPlot, limit: f64) -> f64 {
    let xs = || d.time.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let inside = xs().filter(|&x| x <= limit).fold(f64::NAN, f64::max);
    let beyond = xs().filter(|&x| x > limit).fold(f64::NAN, f64::min);
    match (inside.is_nan(), beyond.is_nan()) {
        (false, false) => (inside * beyond).sqrt(),
        (true, false) => beyond,
        _ => limit,
    }
}

/// Draws scaling.png: wall time and GFLOP/s against workers, side by side.
pub(crate) fn draw_scaling<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    d: &ScalingPlot,
) -> DrawResult {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let root = root.titled(&d.title, ("sans-serif", 20)).map_err(e)?;
    let panels = root.split_evenly((1, 2));
    // Times fall to the right and rates rise: put each legend where its lines are not, and
    // leave room above the lines for it (see `draw_panel`).
    let panels_data = [
        (
            &d.time[..],
            "wall time (s)",
            SeriesLabelPosition::UpperRight,
        ),
        (&d.gflops[..], "GFLOP/s", SeriesLabelPosition::UpperLeft),
    ];
    for (panel, data) in panels.iter().zip(panels_data) {
        draw_panel(panel, d, data)?;
    }
    Ok(())
}

/// One panel of scaling.png. The y axis reaches above the highest point by the legend's
/// height, so the legend never covers a line.
fn draw_panel<DB: DrawingBackend>(
    panel: &DrawingArea<DB, Shift>,
    d: &ScalingPlot,
    (series, ylabel, legend_at): (&[Series], &str, SeriesLabelPosition),
) -> DrawResult {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (xmin, xmax) = worker_range(d);
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(0.0, f64::max);
    let entries = series.len() + usize::from(d.oversubscribed_beyond.is_some());
    let plot_h = panel.dim_in_pixel().1.saturating_sub(80).max(100) as f64;
    let legend = ((entries * 20 + 20) as f64 / plot_h).min(0.7);
    let ymax = (top * 1.05 / (1.0 - legend)).max(1e-9);
    let mut chart = ChartBuilder::on(panel)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((xmin..xmax).log_scale().base(2.0), 0f64..ymax)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("workers (log2)")
        .y_desc(ylabel)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(e)?;
    if let Some(limit) = d.oversubscribed_beyond {
        let shade = RGBColor(255, 200, 120).mix(0.25);
        chart
            .draw_series([Rectangle::new(
                [(shade_start(d, limit), 0.0), (xmax, ymax)],
                shade.filled(),
            )])
            .map_err(e)?
            .label(format!(
                "oversubscribed: more workers than cores (> {limit:.0})"
            ))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], shade.filled()));
    }
    for (i, s) in series.iter().enumerate() {
        let c = color(&s.name, i);
        let style = if s.ideal {
            c.mix(0.7).stroke_width(1)
        } else {
            c.stroke_width(2)
        };
        let drawn = if s.ideal {
            chart
                .draw_series(DashedLineSeries::new(s.points.clone(), 6, 4, style))
                .map_err(e)?
        } else {
            chart
                .draw_series(LineSeries::new(s.points.clone(), style))
                .map_err(e)?
        };
        drawn
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        if !s.ideal {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(e)?;
        }
    }
    draw_legend(&mut chart, legend_at)
}

/// The legend of a chart, on a light background with a border, at `at`.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    at: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(at)
        .draw()
        .map_err(|e| e.to_string())
}

pub(crate) fn draw_balance<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    d: &BalancePlot,
) -> DrawResult {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let root = root.titled(&d.title, ("sans-serif", 18)).map_err(e)?;
    let panels = root.split_evenly((1, d.panels.len().max(1)));
    let all = d
        .panels
        .iter()
        .flat_map(|(_, s)| s.iter().flat_map(|s| s.points.iter()));
    let xmax = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let ymax = all.map(|p| p.1).fold(0.0, f64::max) * 1.15;
    for (panel, (layout, series)) in panels.iter().zip(&d.panels) {
        let mut chart = ChartBuilder::on(panel)
            .caption(layout, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.3f64..xmax + 0.3, 0f64..ymax.max(1e-9))
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("ring step")
            .y_desc("compute (s)")
            .x_labels(series.first().map_or(2, |s| s.points.len() + 1))
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(e)?;
        for (i, s) in series.iter().enumerate() {
            let c = Palette99::pick(i).to_rgba();
            let c = RGBColor(c.0, c.1, c.2);
            chart
                .draw_series(LineSeries::new(s.points.clone(), c.stroke_width(2)))
                .map_err(e)?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(e)?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    }
    Ok(())
}
