//! Hand-written SVG charts: sparklines and line charts.
//!
//! SVG keeps the pages free of a JavaScript charting library and a build
//! step; the browser scales it to any width, a phone included. A chart
//! carries its times and values in `data-` attributes so the small script
//! in `static/app.js` can show the value under the pointer. Only numbers,
//! formatted times and our own labels go into a chart, and even those are
//! escaped, so chart markup can be inserted as is.

use std::fmt::Write;

/// Escapes text for XML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line of a chart.
pub(crate) struct Line {
    /// Legend and hover label.
    pub(crate) label: String,
    /// One value per time; `None` leaves a gap.
    pub(crate) values: Vec<Option<f64>>,
    /// Drawn dashed and pale: a comparison (yesterday), not the present.
    pub(crate) dashed: bool,
}

/// How a chart's values read.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    /// A plain number.
    Plain,
    /// A ratio shown as a percentage.
    Percent,
}

impl Unit {
    fn fmt(self, v: f64) -> String {
        match self {
            Unit::Plain => crate::format::num(v),
            Unit::Percent => crate::format::pct(v),
        }
    }
}

const W: f64 = 600.0;
const H: f64 = 170.0;
const LEFT: f64 = 48.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 20.0;

/// A line chart over `times` (Unix ms) with labels `time_labels`. When
/// `click` is given, clicking a point opens `click` + `&at=<ms>`.
pub(crate) fn line_chart(
    title: &str,
    times: &[i64],
    time_labels: &[String],
    lines: &[Line],
    unit: Unit,
    click: Option<&str>,
) -> String {
    let mut s = String::new();
    let n = times.len();
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let top = nice_ceiling(max, unit);
    let x = |i: usize| {
        if n <= 1 {
            LEFT + (W - LEFT) / 2.0
        } else {
            LEFT + (W - LEFT - 4.0) * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - if top > 0.0 { v / top } else { 0.0 });
    let data_t = time_labels.join("|");
    let data_ms = times
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let data_s = lines
        .iter()
        .map(|l| {
            let vals = l
                .values
                .iter()
                .map(|v| v.map_or_else(String::new, |v| unit.fmt(v)))
                .collect::<Vec<_>>()
                .join(",");
            format!("{}:{vals}", l.label.replace([':', ';'], " "))
        })
        .collect::<Vec<_>>()
        .join(";");
    let _ = write!(
        s,
        r#"<figure class="chart"><figcaption>{}</figcaption><svg viewBox="0 0 {W} {H}" role="img" aria-label="{}" data-t="{}" data-ms="{}" data-s="{}"{}>"#,
        esc(title),
        esc(title),
        esc(&data_t),
        data_ms,
        esc(&data_s),
        click.map_or_else(String::new, |c| format!(r#" data-href="{}""#, esc(c)))
    );
    for k in 0..=2 {
        let v = top * f64::from(k) / 2.0;
        let yy = y(v);
        let _ = write!(
            s,
            r#"<line class="grid" x1="{LEFT}" x2="{W}" y1="{yy:.1}" y2="{yy:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 4.0,
            yy + 4.0,
            esc(&unit.fmt(v))
        );
    }
    if n > 0 {
        for (i, anchor) in [(0, "start"), (n - 1, "end")] {
            let _ = write!(
                s,
                r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
                x(i),
                H - 4.0,
                esc(time_labels.get(i).map_or("", String::as_str))
            );
        }
    }
    for (li, l) in lines.iter().enumerate() {
        let class = if l.dashed {
            "cmp".to_owned()
        } else {
            format!("l{}", li % 4)
        };
        // Gaps split the line into runs; a lone point becomes a dot.
        let mut run: Vec<(f64, f64)> = Vec::new();
        let flush = |run: &mut Vec<(f64, f64)>, s: &mut String| {
            match run.len() {
                0 => {}
                1 => {
                    let _ = write!(
                        s,
                        r#"<circle class="{class}" cx="{:.1}" cy="{:.1}" r="2"/>"#,
                        run[0].0, run[0].1
                    );
                }
                _ => {
                    let pts = run
                        .iter()
                        .map(|(a, b)| format!("{a:.1},{b:.1}"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    let _ = write!(s, r#"<polyline class="{class}" points="{pts}"/>"#);
                }
            }
            run.clear();
        };
        for (i, v) in l.values.iter().enumerate() {
            match v {
                Some(v) => run.push((x(i), y(*v))),
                None => flush(&mut run, &mut s),
            }
        }
        flush(&mut run, &mut s);
    }
    let _ = write!(
        s,
        r#"<line class="hover" x1="0" x2="0" y1="{TOP}" y2="{:.1}" visibility="hidden"/></svg><div class="legend">"#,
        H - BOTTOM
    );
    for (li, l) in lines.iter().enumerate() {
        let class = if l.dashed {
            "cmp".to_owned()
        } else {
            format!("l{}", li % 4)
        };
        let _ = write!(s, r#"<span class="key {class}">{}</span>"#, esc(&l.label));
    }
    s.push_str(r#"<output class="tip"></output></div></figure>"#);
    s
}

/// A small line without axes for the overview bands.
pub(crate) fn sparkline(values: &[Option<f64>], label: &str) -> String {
    const SW: f64 = 160.0;
    const SH: f64 = 32.0;
    let max = values.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
    let n = values.len().max(2);
    let pts: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let yv = v.unwrap_or(0.0);
            let yy = if max > 0.0 {
                SH - 2.0 - (SH - 4.0) * yv / max
            } else {
                SH - 2.0
            };
            format!("{:.1},{yy:.1}", SW * i as f64 / (n - 1) as f64)
        })
        .collect();
    format!(
        r#"<svg class="spark" viewBox="0 0 {SW} {SH}" preserveAspectRatio="none" role="img" aria-label="{}"><polyline points="{}"/></svg>"#,
        esc(label),
        pts.join(" ")
    )
}

/// A round top for the y axis: 1, 2 or 5 times a power of ten.
fn nice_ceiling(max: f64, unit: Unit) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return match unit {
            Unit::Percent => 0.01,
            Unit::Plain => 1.0,
        };
    }
    let p = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if max <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_and_scale() {
        let svg = line_chart(
            "<b>",
            &[0, 60_000, 120_000],
            &["a".into(), "b".into(), "c".into()],
            &[Line {
                label: "x<y".into(),
                values: vec![Some(1.0), None, Some(3.0)],
                dashed: false,
            }],
            Unit::Plain,
            Some("/series?a=1&b=2"),
        );
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(svg.contains("x&lt;y"));
        assert!(svg.contains("data-href=\"/series?a=1&amp;b=2\""));
        assert_eq!(svg.matches("<circle").count(), 2, "a gap leaves two dots");
        assert_eq!(nice_ceiling(3.2, Unit::Plain), 5.0);
        assert_eq!(nice_ceiling(120.0, Unit::Plain), 200.0);
    }
}
