//! `shardcore-bench chart`: SVG charts of load runs from their `--requests-out` logs,
//! one line per system: acknowledged lines per second over the run, and the latency
//! percentile spectrum (HdrHistogram's classic plot: percentile on a log axis of
//! 1/(1-p), latency on a log axis).
//!
//! Plain SVG 1.1 written by hand (no plotting dependency): a few hundred points per
//! line, readable in any browser and on GitHub.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// One run's request log, as `report::Summary::write_requests` writes it.
pub struct RunLog {
    pub name: String,
    /// (start ms, latency ms, acknowledged) per batch.
    pub requests: Vec<(f64, f64, bool)>,
}

/// Reads `batch,worker,start_ms,latency_ms,outcome,retries` lines.
pub fn read_log(name: &str, path: &Path) -> io::Result<RunLog> {
    let text = std::fs::read_to_string(path)?;
    let mut requests = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: line {}: expected batch,worker,start_ms,latency_ms,outcome,retries",
                    path.display(),
                    i + 1
                ),
            )
        };
        if cols.len() < 5 {
            return Err(bad());
        }
        let start: f64 = cols[2].parse().map_err(|_| bad())?;
        let latency: f64 = cols[3].parse().map_err(|_| bad())?;
        let ok = cols[4].starts_with('2');
        requests.push((start, latency, ok));
    }
    Ok(RunLog {
        name: name.to_string(),
        requests,
    })
}

/// Lines acknowledged per second, by the second the request completed in.
pub fn throughput_series(log: &RunLog, lines_per_batch: f64) -> Vec<(f64, f64)> {
    let mut per_second: Vec<f64> = Vec::new();
    for &(start, latency, ok) in &log.requests {
        if !ok {
            continue;
        }
        let second = ((start + latency) / 1000.0).floor().max(0.0) as usize;
        if per_second.len() <= second {
            per_second.resize(second + 1, 0.0);
        }
        per_second[second] += lines_per_batch;
    }
    // The last second is partial: plot it at its rate over the part that ran.
    let end_ms = log
        .requests
        .iter()
        .map(|r| r.0 + r.1)
        .fold(0.0f64, f64::max);
    if let Some(last) = per_second.last_mut() {
        let part = (end_ms / 1000.0).fract();
        if part > 0.05 {
            *last /= part;
        }
    }
    per_second
        .into_iter()
        .enumerate()
        .map(|(s, n)| (s as f64 + 0.5, n))
        .collect()
}

/// (1/(1-p), latency ms) at percentiles from 0 to 99.999 (as far as the run has
/// requests to tell), for the spectrum plot.
pub fn spectrum_series(log: &RunLog) -> Vec<(f64, f64)> {
    let mut lat: Vec<f64> = log
        .requests
        .iter()
        .filter(|r| r.2)
        .map(|r| r.1.max(0.001))
        .collect();
    if lat.is_empty() {
        return Vec::new();
    }
    lat.sort_by(f64::total_cmp);
    let n = lat.len() as f64;
    let mut out = Vec::new();
    // Points evenly spaced on the log axis: 1, 1.25, 1.6, 2, ... up to 1e5.
    let mut x = 1.0f64;
    while x <= 100_000.0 {
        let p = 1.0 - 1.0 / x;
        if p * n > n - 1.0 && x > 1.0 {
            break;
        }
        let i = ((p * n).ceil() as usize).clamp(1, lat.len()) - 1;
        out.push((x, lat[i]));
        x *= 10f64.powf(0.1);
    }
    out.push((
        1.0 / (1.0 - (n - 1.0) / n).max(1e-9),
        *lat.last().expect("non-empty"),
    ));
    out
}

/// An axis: label, log or linear, range.
pub struct Axis {
    pub label: String,
    pub log: bool,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const W: f64 = 820.0;
const H: f64 = 460.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Tick values for an axis over `[lo, hi]`.
fn ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    if log {
        let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (a..=b).map(|e| 10f64.powi(e)).collect()
    } else {
        let span = (hi - lo).max(1e-9);
        let raw = span / 6.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| span / s <= 7.0)
            .unwrap_or(10.0 * mag);
        let mut v = (lo / step).floor() * step;
        let mut out = Vec::new();
        while v <= hi + step * 0.001 {
            out.push(v);
            v += step;
        }
        out
    }
}

fn tick_label(v: f64, percentile_axis: bool) -> String {
    if percentile_axis {
        // 1/(1-p) -> p: 1 -> 0%, 10 -> 90%, 100 -> 99%, ...
        let p = 100.0 * (1.0 - 1.0 / v);
        return match v as u64 {
            1 => "0%".into(),
            _ => format!("{}%", trim(p)),
        };
    }
    if v.abs() >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v.abs() >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// A line chart, one polyline per series, legend on the right.
pub fn line_chart(
    title: &str,
    x: &Axis,
    y: &Axis,
    series: &[(String, Vec<(f64, f64)>)],
    x_is_percentile: bool,
) -> String {
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(a, b) in pts {
        x0 = x0.min(a);
        x1 = x1.max(a);
        y0 = y0.min(b);
        y1 = y1.max(b);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (1.0, 10.0, 1.0, 10.0);
    }
    if !y.log {
        y0 = 0.0;
    }
    if !x.log && !x_is_percentile {
        x0 = 0.0;
    }
    let xt = ticks(x0.max(if x.log { 1e-9 } else { f64::MIN }), x1, x.log);
    let yt = ticks(y0.max(if y.log { 1e-6 } else { f64::MIN }), y1, y.log);
    let (x0, x1) = (xt[0].min(x0), xt[xt.len() - 1].max(x1));
    let (y0, y1) = (yt[0].min(y0), yt[yt.len() - 1].max(y1));
    let map = |v: f64, lo: f64, hi: f64, log: bool| {
        if log {
            let (v, lo, hi) = (v.max(1e-12).log10(), lo.log10(), hi.log10());
            (v - lo) / (hi - lo).max(1e-12)
        } else {
            (v - lo) / (hi - lo).max(1e-12)
        }
    };
    let px = |v: f64| LEFT + map(v, x0, x1, x.log) * (W - LEFT - RIGHT);
    let py = |v: f64| H - BOTTOM - map(v, y0, y1, y.log) * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        escape(title)
    );
    for &t in &xt {
        let tx = px(t);
        let _ = writeln!(
            s,
            r##"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{:.1}" stroke="#e0e0e0"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 16.0,
            tick_label(t, x_is_percentile)
        );
    }
    for &t in &yt {
        let ty = py(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            ty + 4.0,
            tick_label(t, false)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{:.1}" height="{:.1}" fill="none" stroke="#888"/>"##,
        W - LEFT - RIGHT,
        H - TOP - BOTTOM
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 14.0,
        escape(&x.label)
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (TOP + H - BOTTOM) / 2.0,
        escape(&y.label)
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = points
            .iter()
            .filter(|(a, b)| (!x.log || *a > 0.0) && (!y.log || *b > 0.0))
            .map(|&(a, b)| format!("{:.1},{:.1}", px(a), py(b)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let ly = TOP + 10.0 + i as f64 * 20.0;
        let lx = W - RIGHT + 14.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Writes `throughput.svg` and `latency.svg` for the runs into `dir`, with `prefix`.
pub fn write_charts(
    runs: &[RunLog],
    lines_per_batch: f64,
    dir: &Path,
    prefix: &str,
    title: &str,
) -> io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let throughput: Vec<(String, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|r| (r.name.clone(), throughput_series(r, lines_per_batch)))
        .collect();
    let spectrum: Vec<(String, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|r| (r.name.clone(), spectrum_series(r)))
        .collect();
    let a = dir.join(format!("{prefix}throughput.svg"));
    std::fs::write(
        &a,
        line_chart(
            &format!("{title}: acknowledged lines per second"),
            &Axis {
                label: "seconds since the load started".into(),
                log: false,
            },
            &Axis {
                label: "lines/s".into(),
                log: false,
            },
            &throughput,
            false,
        ),
    )?;
    let b = dir.join(format!("{prefix}latency.svg"));
    std::fs::write(
        &b,
        line_chart(
            &format!("{title}: write latency by percentile"),
            &Axis {
                label: "percentile".into(),
                log: true,
            },
            &Axis {
                label: "latency, ms (log)".into(),
                log: true,
            },
            &spectrum,
            true,
        ),
    )?;
    Ok(vec![a, b])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> RunLog {
        RunLog {
            name: "a<b>".into(),
            // 3 s of requests every 100 ms, 10 ms each, plus one 200 ms outlier.
            requests: (0..30)
                .map(|i| (i as f64 * 100.0, if i == 7 { 200.0 } else { 10.0 }, true))
                .chain([(50.0, 5.0, false)])
                .collect(),
        }
    }

    #[test]
    fn series_count_acknowledged_lines_and_percentiles() {
        let t = throughput_series(&log(), 1000.0);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0], (0.5, 10_000.0));
        let s = spectrum_series(&log());
        assert_eq!(s[0], (1.0, 10.0), "p0 is the fastest");
        assert_eq!(s.last().unwrap().1, 200.0, "the max ends the spectrum");
        assert!(s.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn charts_are_well_formed_svg() {
        let dir = std::env::temp_dir().join(format!("shardcore-chart-{}", std::process::id()));
        let files = write_charts(&[log()], 1000.0, &dir, "x-", "Test").unwrap();
        for f in files {
            let svg = std::fs::read_to_string(&f).unwrap();
            assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
            assert!(svg.contains("a&lt;b&gt;"), "names are escaped");
            assert_eq!(svg.matches("<polyline").count(), 1);
            assert!(!svg.contains("NaN") && !svg.contains("inf"));
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
