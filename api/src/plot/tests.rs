//! The data fed to the plotter, and the files written (valid PNG / SVG, expected series).

use serde_json::{json, Value};

use super::*;

/// A run report as `bench scaling` writes it (only the fields the plots read).
fn report(world: usize, layout: &str, wall: f64, steps: &[&[f64]]) -> Value {
    json!({
        "version": 1, "backend": "local", "world": world, "layout": layout, "seq": 4096,
        "heads": 8, "kv_heads": 8, "head_dim": 128, "causal": true, "dtype": "f32",
        "wall_s": wall, "flops": 1e9, "gflops": 1.0 / wall, "imbalance": 1.0, "overlap": 1.0,
        "ranks": (0..world).map(|r| json!({
            "rank": r, "threads": 1, "compute_s": 0.0,
            "steps": steps.get(r).map(|s| s.iter().map(|c| json!({"compute_s": c})).collect::<Vec<_>>()).unwrap_or_default(),
        })).collect::<Vec<_>>(),
        "sweep": {"mode": "strong", "base_seq": 4096, "cores": 2},
    })
}

fn sweep() -> Vec<Value> {
    vec![
        report(1, "contiguous", 4.0, &[&[4.0]]),
        report(2, "contiguous", 3.0, &[&[1.0, 0.0], &[1.0, 2.0]]),
        report(2, "striped", 2.0, &[&[1.0, 1.0], &[1.0, 1.0]]),
        report(4, "contiguous", 2.5, &[]),
        report(4, "striped", 1.5, &[]),
        // A repeat: the plot takes the median (1.5, 1.7 → 1.6).
        report(4, "striped", 1.7, &[]),
    ]
}

#[test]
fn scaling_series_have_one_line_per_layout_and_ideal_scaling() {
    let d = scaling_plot(&sweep()).unwrap();
    let names: Vec<&str> = d.time.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["contiguous", "striped", "ideal"]);
    // The one-worker run stands for every layout.
    assert_eq!(d.time[0].points, [(1.0, 4.0), (2.0, 3.0), (4.0, 2.5)]);
    assert_eq!(d.time[1].points, [(1.0, 4.0), (2.0, 2.0), (4.0, 1.6)]);
    assert!(d.time[2].ideal && !d.time[0].ideal);
    assert_eq!(d.time[2].points, [(1.0, 4.0), (2.0, 2.0), (4.0, 1.0)]);
    assert_eq!(d.gflops[2].points, [(1.0, 0.25), (2.0, 0.5), (4.0, 1.0)]);
    assert_eq!(d.gflops[0].points[1], (2.0, 1.0 / 3.0));
    // 2 cores, 1 thread per worker: P = 4 is oversubscribed.
    assert_eq!(d.oversubscribed_beyond, Some(2.0));
    assert!(
        d.title.contains("strong scaling") && d.title.contains("causal"),
        "{}",
        d.title
    );
}

#[test]
fn weak_scaling_ideal_grows_with_the_work_per_worker() {
    let mut v = sweep();
    for r in &mut v {
        r["sweep"]["mode"] = json!("weak");
    }
    let d = scaling_plot(&v).unwrap();
    let ideal = d.time.iter().find(|s| s.ideal).unwrap();
    assert_eq!(ideal.points, [(1.0, 4.0), (2.0, 8.0), (4.0, 16.0)]);
}

#[test]
fn balance_shows_each_rank_per_step_for_contiguous_and_striped() {
    let d = balance_plot(&sweep()).unwrap();
    let layouts: Vec<&str> = d.panels.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(layouts, ["contiguous", "striped"]);
    let contiguous = &d.panels[0].1;
    assert_eq!(contiguous.len(), 2);
    assert_eq!(contiguous[0].name, "rank 0");
    assert_eq!(contiguous[1].points, [(0.0, 1.0), (1.0, 2.0)]);
    assert!(d.title.contains("P=2"), "{}", d.title);
    // Nothing to compare without both layouts.
    assert!(balance_plot(&sweep()[..2]).is_none());
    assert!(scaling_plot(&[]).is_none());
}

#[test]
fn rendered_files_are_valid_png_and_svg_with_the_series() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = sweep().iter().map(|v| v.to_string()).collect();
    std::fs::write(dir.path().join(RESULTS_FILE), lines.join("\n") + "\n").unwrap();
    let written = render_dir(dir.path()).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["scaling.png", "scaling.svg", "balance.png", "balance.svg"]
    );
    for png in ["scaling.png", "balance.png"] {
        let bytes = std::fs::read(dir.path().join(png)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
        assert_eq!(&bytes[12..16], b"IHDR");
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        assert!(width >= 800, "{png}: width {width}");
    }
    let svg = std::fs::read_to_string(dir.path().join("scaling.svg")).unwrap();
    assert!(svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for label in [
        "contiguous",
        "striped",
        "ideal",
        "workers",
        "GFLOP/s",
        "oversubscribed",
    ] {
        assert!(svg.contains(label), "scaling.svg lacks {label}");
    }
    let balance = std::fs::read_to_string(dir.path().join("balance.svg")).unwrap();
    assert!(balance.contains("rank 1") && balance.contains("ring step"));
}

#[test]
fn workers_axis_ends_at_the_largest_p_and_shading_starts_between_the_points() {
    let mut d = scaling_plot(&sweep()).unwrap();
    assert_eq!(draw::worker_range(&d), (1.0, 4.0));
    // Two cores, one thread per worker: P = 4 is oversubscribed, P = 2 is not.
    d.oversubscribed_beyond = Some(2.0);
    let start = draw::shade_start(&d, 2.0);
    assert!(start > 2.0 && start < 4.0, "{start}");
    assert!((start - 8f64.sqrt()).abs() < 1e-12);
}
