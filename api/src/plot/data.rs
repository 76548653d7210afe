//! The data fed to the plotter, built from run reports by pure functions (what the tests check).

use std::collections::BTreeMap;

use serde_json::Value;

/// One line of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// (x, y) points, x increasing.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed and grey (ideal scaling).
    pub ideal: bool,
}

/// Data of scaling.png.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingPlot {
    /// Title line.
    pub title: String,
    /// Wall seconds against workers.
    pub time: Vec<Series>,
    /// GFLOP/s against workers.
    pub gflops: Vec<Series>,
    /// Workers beyond which threads outnumber cores, if the sweep went there.
    pub oversubscribed_beyond: Option<f64>,
}

/// Data of balance.png: one panel per layout, one line per rank (x = step, y = compute s).
#[derive(Clone, Debug, PartialEq)]
pub struct BalancePlot {
    /// Title line.
    pub title: String,
    /// (layout, per-rank series).
    pub panels: Vec<(String, Vec<Series>)>,
}

/// The fields of a run report the plots use.
#[derive(Clone, Debug)]
struct Rec {
    world: usize,
    seq: usize,
    layout: String,
    causal: bool,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    threads: u64,
    mode: String,
    dtype: String,
    base_seq: usize,
    cores: Option<u64>,
    wall_s: f64,
    gflops: f64,
    /// `steps[rank][step]` compute seconds.
    steps: Vec<Vec<f64>>,
}

fn rec(v: &Value) -> Option<Rec> {
    let world = v["world"].as_u64()? as usize;
    let seq = v["seq"].as_u64()? as usize;
    let ranks = v["ranks"].as_array()?;
    Some(Rec {
        world,
        seq,
        layout: v["layout"].as_str()?.to_string(),
        causal: v["causal"].as_bool()?,
        heads: v["heads"].as_u64()?,
        kv_heads: v["kv_heads"].as_u64()?,
        head_dim: v["head_dim"].as_u64()?,
        threads: ranks
            .first()
            .and_then(|r| r["threads"].as_u64())
            .unwrap_or(1),
        mode: v["sweep"]["mode"].as_str().unwrap_or("strong").to_string(),
        dtype: v["dtype"].as_str().unwrap_or("f32").to_string(),
        base_seq: v["sweep"]["base_seq"].as_u64().map_or(seq, |b| b as usize),
        cores: v["sweep"]["cores"].as_u64(),
        wall_s: v["wall_s"].as_f64()?,
        gflops: v["gflops"].as_f64()?,
        steps: ranks
            .iter()
            .map(|r| {
                r["steps"]
                    .as_array()
                    .map(|s| s.iter().filter_map(|x| x["compute_s"].as_f64()).collect())
                    .unwrap_or_default()
            })
            .collect(),
    })
}

const LAYOUT_ORDER: [&str; 3] = ["contiguous", "striped", "zigzag"];

fn layout_rank(l: &str) -> usize {
    LAYOUT_ORDER
        .iter()
        .position(|x| *x == l)
        .unwrap_or(LAYOUT_ORDER.len())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

type GroupKey = (String, usize, bool, u64, u64, u64, u64, String);

fn group_key(r: &Rec) -> GroupKey {
    (
        r.mode.clone(),
        r.base_seq,
        r.causal,
        r.heads,
        r.kv_heads,
        r.head_dim,
        r.threads,
        r.dtype.clone(),
    )
}

/// Builds the data of scaling.png from run reports (medians over repeats; the one-worker run
/// stands for every layout, since all layouts coincide there).
pub fn scaling_plot(values: &[Value]) -> Option<ScalingPlot> {
    let recs: Vec<Rec> = values.iter().filter_map(rec).collect();
    let mut groups: BTreeMap<GroupKey, Vec<&Rec>> = BTreeMap::new();
    for r in &recs {
        groups.entry(group_key(r)).or_default().push(r);
    }
    if groups.is_empty() {
        return None;
    }
    let multi = groups.len() > 1;
    let (mut time, mut gflops) = (Vec::new(), Vec::new());
    for (key, rs) in &groups {
        let (mode, base, causal) = (&key.0, key.1, key.2);
        let suffix = if multi {
            format!(
                " ({mode} N={base}{}{})",
                if causal { " causal" } else { "" },
                if key.7 == "f32" {
                    String::new()
                } else {
                    format!(" {}", key.7)
                }
            )
        } else {
            String::new()
        };
        let (t, g) = group_series(&key.0, rs, &suffix);
        time.extend(t);
        gflops.extend(g);
    }
    let over = recs
        .iter()
        .filter_map(|r| {
            r.cores
                .map(|c| (c as f64 / r.threads.max(1) as f64, r.world as f64))
        })
        .filter(|(limit, w)| w > limit)
        .map(|(limit, _)| limit)
        .reduce(f64::min);
    let (key, _) = groups.iter().next().expect("non-empty");
    let cores = recs.iter().filter_map(|r| r.cores).max();
    let title = if multi {
        "scaling, local backend".to_string()
    } else {
        format!(
            "{} scaling, N={}{}, {} · H={}/{} D={} {} · {} thread(s)/worker{}",
            key.0,
            key.1,
            if key.0 == "weak" { "×P" } else { "" },
            if key.2 { "causal" } else { "non-causal" },
            key.3,
            key.4,
            key.5,
            key.7,
            key.6,
            cores.map(|c| format!(" · {c} cores")).unwrap_or_default()
        )
    };
    Some(ScalingPlot {
        title,
        time,
        gflops,
        oversubscribed_beyond: over,
    })
}

/// The time and GFLOP/s lines of one group of runs (one line per layout, then ideal scaling
/// from the smallest world, each name ending in `suffix`).
fn group_series(mode: &str, rs: &[&Rec], suffix: &str) -> (Vec<Series>, Vec<Series>) {
    let (mut time, mut gflops) = (Vec::new(), Vec::new());
    let mut worlds: Vec<usize> = rs.iter().map(|r| r.world).collect();
    worlds.sort_unstable();
    worlds.dedup();
    let mut layouts: Vec<&str> = rs
        .iter()
        .filter(|r| r.world > 1)
        .map(|r| r.layout.as_str())
        .collect();
    if layouts.is_empty() {
        layouts = rs.iter().map(|r| r.layout.as_str()).collect();
    }
    layouts.sort_by_key(|l| (layout_rank(l), l.to_string()));
    layouts.dedup();
    let at = |w: usize, layout: Option<&str>, f: fn(&Rec) -> f64| -> Option<f64> {
        let v: Vec<f64> = rs
            .iter()
            .filter(|r| r.world == w && layout.is_none_or(|l| r.layout == l))
            .map(|r| f(r))
            .collect();
        (!v.is_empty()).then(|| median(v))
    };
    for layout in &layouts {
        let series = |f: fn(&Rec) -> f64| -> Vec<(f64, f64)> {
            worlds
                .iter()
                .filter_map(|&w| {
                    let own = at(w, Some(layout), f);
                    let y = if w == 1 {
                        own.or_else(|| at(1, None, f))
                    } else {
                        own
                    };
                    y.map(|y| (w as f64, y))
                })
                .collect()
        };
        time.push(Series {
            name: format!("{layout}{suffix}"),
            points: series(|r| r.wall_s),
            ideal: false,
        });
        gflops.push(Series {
            name: format!("{layout}{suffix}"),
            points: series(|r| r.gflops),
            ideal: false,
        });
    }
    // Ideal scaling from the smallest world (the fastest layout there).
    let w0 = worlds[0];
    let best = |f: fn(&Rec) -> f64, pick: fn(f64, f64) -> f64| {
        layouts
            .iter()
            .filter_map(|l| at(w0, Some(l), f))
            .chain(at(w0, None, f))
            .fold(f64::NAN, pick)
    };
    let (t0, g0) = (best(|r| r.wall_s, f64::min), best(|r| r.gflops, f64::max));
    let weak = mode == "weak";
    let scale = |w: usize| w as f64 / w0 as f64;
    time.push(Series {
        name: format!("ideal{suffix}"),
        points: worlds
            .iter()
            .map(|&w| (w as f64, if weak { t0 * scale(w) } else { t0 / scale(w) }))
            .collect(),
        ideal: true,
    });
    gflops.push(Series {
        name: format!("ideal{suffix}"),
        points: worlds.iter().map(|&w| (w as f64, g0 * scale(w))).collect(),
        ideal: true,
    });
    (time, gflops)
}

/// Builds the data of balance.png: the largest world run with both contiguous and striped
/// layouts (causal preferred), the latest report of each layout.
pub fn balance_plot(values: &[Value]) -> Option<BalancePlot> {
    let recs: Vec<Rec> = values
        .iter()
        .filter_map(rec)
        .filter(|r| r.world > 1 && r.steps.iter().any(|s| !s.is_empty()))
        .collect();
    // Prefer a run whose workers fit the cores (oversubscribed timings mix in the scheduler),
    // then causal, then the largest ring and length.
    let key = |r: &Rec| {
        let fits = r.cores.is_none_or(|c| r.world as u64 * r.threads <= c);
        (
            fits, r.causal, r.world, r.seq, r.heads, r.kv_heads, r.head_dim, r.threads,
        )
    };
    let best = recs
        .iter()
        .filter(|r| {
            r.layout == "contiguous"
                && recs
                    .iter()
                    .any(|s| s.layout == "striped" && key(s) == key(r))
        })
        .map(key)
        .max()?;
    let mut panels = Vec::new();
    for layout in LAYOUT_ORDER {
        let Some(r) = recs
            .iter()
            .rev()
            .find(|r| r.layout == layout && key(r) == best)
        else {
            continue;
        };
        let series = r
            .steps
            .iter()
            .enumerate()
            .map(|(rank, steps)| Series {
                name: format!("rank {rank}"),
                points: steps
                    .iter()
                    .enumerate()
                    .map(|(t, &c)| (t as f64, c))
                    .collect(),
                ideal: false,
            })
            .collect();
        panels.push((layout.to_string(), series));
    }
    let title = format!(
        "compute per rank per ring step · P={} N={} {} H={} D={}",
        best.2,
        best.3,
        if best.1 { "causal" } else { "non-causal" },
        best.4,
        best.6
    );
    Some(BalancePlot { title, panels })
}
