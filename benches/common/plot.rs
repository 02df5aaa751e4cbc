//! SVG plots of the harnesses' results, written by hand (two chart kinds, no plotting crate):
//! horizontal bars for throughput per configuration, and cumulative latency distributions.
//! Files go to `HAPPYSTREAMS_BENCH_PLOTS` (e.g. `docs/perf`), else `<target dir>/bench-plots`.

use std::fmt::Write as _;
use std::path::PathBuf;

const WIDTH: f64 = 760.0;
const LEFT: f64 = 300.0;
const COLORS: [&str; 6] = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#b07aa1"];

/// Where plots are written (created if missing).
pub fn dir() -> PathBuf {
    let dir = std::env::var_os("HAPPYSTREAMS_BENCH_PLOTS").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| super::root().join("target"))
            .join("bench-plots")
    });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn write(name: &str, svg: String) {
    let path = dir().join(name);
    std::fs::write(&path, svg).unwrap();
    println!("plot: {}", path.display());
}

/// Horizontal bars, one per `(label, value)`, scaled to the largest.
pub fn bars(name: &str, title: &str, unit: &str, bars: &[(String, f64)]) {
    let row = 28.0;
    let height = 60.0 + row * bars.len() as f64;
    let max = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1e-9);
    let span = WIDTH - LEFT - 140.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = 40.0 + row * i as f64;
        let w = span * value / max;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{LEFT}" y="{y}" width="{w:.1}" height="{}" fill="{}"/><text x="{:.1}" y="{}">{value:.0} {}</text>"#,
            LEFT - 8.0,
            y + 15.0,
            escape(label),
            row - 8.0,
            COLORS[i % COLORS.len()],
            LEFT + w + 6.0,
            y + 15.0,
            escape(unit)
        );
    }
    svg.push_str("</svg>\n");
    write(name, svg);
}

/// Cumulative distributions of sorted latencies (milliseconds), one line per series, on a
/// logarithmic time axis.
pub fn cdf(name: &str, title: &str, series: &[(String, Vec<i64>)]) {
    let (height, top, bottom, left, right) = (420.0, 40.0, 360.0, 70.0, WIDTH - 40.0);
    let max = series.iter().filter_map(|(_, s)| s.last().copied()).max().unwrap_or(1).max(10) as f64;
    let decades = max.log10().ceil().max(1.0);
    let x = |ms: f64| left + (right - left) * (ms.max(1.0).log10() / decades);
    let y = |fraction: f64| bottom - (bottom - top) * fraction;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for decade in 0..=decades as i32 {
        let ms = 10f64.powi(decade);
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{bottom}" stroke="#ddd"/><text x="{0:.1}" y="{1}" text-anchor="middle">{2} ms</text>"##,
            x(ms),
            bottom + 16.0,
            ms
        );
    }
    for tenth in 0..=10 {
        let fraction = f64::from(tenth) / 10.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" y1="{0:.1}" x2="{right}" y2="{0:.1}" stroke="#eee"/><text x="{1}" y="{2:.1}" text-anchor="end">{3:.0}%</text>"##,
            y(fraction),
            left - 6.0,
            y(fraction) + 4.0,
            fraction * 100.0
        );
    }
    for (i, (label, sorted)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let n = sorted.len().max(1) as f64;
        let step = (sorted.len() / 400).max(1);
        let points: Vec<String> = sorted
            .iter()
            .enumerate()
            .filter(|(k, _)| k % step == 0 || *k + 1 == sorted.len())
            .map(|(k, ms)| format!("{:.1},{:.1}", x(*ms as f64), y((k + 1) as f64 / n)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/><rect x="{}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            points.join(" "),
            left + 10.0,
            top + 8.0 + 18.0 * i as f64,
            left + 28.0,
            top + 18.0 + 18.0 * i as f64,
            escape(label)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">end-to-end latency (log scale)</text>"#,
        (left + right) / 2.0,
        bottom + 40.0
    );
    svg.push_str("</svg>\n");
    write(name, svg);
}
