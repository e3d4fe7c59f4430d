//! `panorama-agent check-routes`: the series a log file would produce,
//! and how many lines each gets, so that `routes` and `max_series` can be
//! tuned before the agent is deployed.

use std::collections::HashMap;
use std::io::BufRead;

use crate::parse::{Format, ParseSpec, Pipeline, SpecError};

/// What a file would become.
#[derive(Debug, Default, PartialEq)]
pub struct SeriesCounts {
    /// Lines read.
    pub lines: u64,
    /// Lines that did not parse.
    pub failed: u64,
    /// Events per series name (with the layer), busiest first.
    pub series: Vec<(String, u64)>,
}

/// Parses every line of `input` as `spec` would.
///
/// # Errors
/// A spec that does not build, or a read error.
pub fn series_of(spec: ParseSpec, input: impl BufRead) -> Result<SeriesCounts, CheckError> {
    let multi_line = spec.format == Format::MysqlSlow;
    let mut pipeline = Pipeline::new(spec, "check")?;
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut events = Vec::new();
    let mut out = SeriesCounts::default();
    for line in input.split(b'\n') {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        out.lines += 1;
        if pipeline.feed(&line, &mut events).is_err() {
            out.failed += 1;
        }
        for e in events.drain(..) {
            *counts.entry(format!("{} {}", e.layer, e.name)).or_default() += 1;
        }
    }
    if multi_line {
        pipeline.flush(&mut events);
        for e in events.drain(..) {
            *counts.entry(format!("{} {}", e.layer, e.name)).or_default() += 1;
        }
    }
    out.series = counts.into_iter().collect();
    out.series
        .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

impl SeriesCounts {
    /// The report as printed: one `count  series` line each, busiest
    /// first, then totals.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (name, n) in &self.series {
            s.push_str(&format!("{n:>10}  {name}\n"));
        }
        s.push_str(&format!(
            "{} series from {} lines ({} did not parse)\n",
            self.series.len(),
            self.lines,
            self.failed
        ));
        s
    }
}

/// Why a file could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The parse spec does not build.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The file could not be read.
    #[error("reading: {0}")]
    Read(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_assets_and_ids_collapse_into_a_few_series() {
        let mut log = String::new();
        for i in 0..200u64 {
            let path = match i % 4 {
                0 => format!(
                    "/static/app.{:012x}.js",
                    i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16
                ),
                1 => format!("/api/profile/{i}"),
                2 => format!(
                    "/avatars/{:016x}.png",
                    i.wrapping_mul(0x2545_f491_4f6c_dd1d)
                ),
                _ => "/api/login".into(),
            };
            log.push_str(&format!(
                "10.0.0.1 - - [22/Nov/2026:13:00:01 +0000] \"GET {path} HTTP/1.1\" 200 5 \"-\" \"c\" 0.010\n"
            ));
        }
        log.push_str("not an access log line\n");
        let spec = ParseSpec::new(Format::Combined, "web");
        let c = series_of(spec, log.as_bytes()).unwrap();
        assert_eq!((c.lines, c.failed), (201, 1));
        let names: Vec<&str> = c.series.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "url GET /api/login",
                "url GET /api/profile/:num",
                "url GET /avatars/:hash.png",
                "url GET /static/app.:hash.js"
            ]
        );
        assert!(c.series.iter().all(|(_, n)| *n == 50));
        assert!(
            c.render()
                .ends_with("4 series from 201 lines (1 did not parse)\n")
        );
    }
}
