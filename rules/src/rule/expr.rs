//! The condition language of `when` and `recover`.
//!
//! On-duty staff read rules at night, so conditions are written the way one
//! would say them: `error_ratio > 5% and count >= 100`,
//! `p99 > 2 * p99 offset 1w`, `absent`. Numbers may carry units (`ms`,
//! `s`, `m`, `h` for latencies, `%` for ratios) so that thresholds are not
//! off by a thousand. Errors carry the byte offset inside the expression, so
//! the loader can point at file:line:col.
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := unit ("and" unit)*
//! unit    := "(" expr ")" | "absent" | sum cmp sum
//! sum     := product (("+" | "-") product)*
//! product := factor (("*" | "/") factor)*
//! factor  := number [unit] | metric ["offset" duration] | "-" factor
//! ```

use std::fmt;

use panorama_model::{DAY_MS, HOUR_MS, MINUTE_MS};
use serde::Serialize;

/// A per-window figure of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Events in the window.
    Count,
    /// Events per second over the window.
    Rate,
    /// Failed events.
    Errors,
    /// Failed / all (0..1).
    ErrorRatio,
    /// Mean latency, ms.
    Avg,
    /// Median latency, ms.
    P50,
    /// 90th percentile latency, ms.
    P90,
    /// 99th percentile latency, ms.
    P99,
    /// Largest latency, ms.
    Max,
    /// Mean gauge value (infra and component readings).
    Value,
    /// Largest gauge reading.
    ValueMax,
}

impl Metric {
    const ALL: [(&'static str, Metric); 11] = [
        ("count", Metric::Count),
        ("rate", Metric::Rate),
        ("errors", Metric::Errors),
        ("error_ratio", Metric::ErrorRatio),
        ("avg", Metric::Avg),
        ("p50", Metric::P50),
        ("p90", Metric::P90),
        ("p99", Metric::P99),
        ("max", Metric::Max),
        ("value", Metric::Value),
        ("value_max", Metric::ValueMax),
    ];

    /// The name used in rule files.
    pub fn name(self) -> &'static str {
        Metric::ALL
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("?", |(n, _)| n)
    }

    fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.iter().find(|(n, _)| *n == s).map(|(_, m)| *m)
    }

    /// How a value of this metric reads to a human.
    pub fn format(self, v: f64) -> String {
        match self {
            Metric::Count | Metric::Errors => format!("{v:.0}"),
            Metric::Rate => format!("{}/s", sig(v)),
            Metric::ErrorRatio => format!("{}%", sig(v * 100.0)),
            Metric::Avg | Metric::P50 | Metric::P90 | Metric::P99 | Metric::Max => {
                format!("{} ms", sig(v))
            }
            Metric::Value | Metric::ValueMax => sig(v),
        }
    }
}

/// Three significant digits, without trailing zeros.
fn sig(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    let decimals = if a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Cmp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Cmp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }
}

/// An arithmetic operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A constant (units already applied: ms, fraction).
    Number(f64),
    /// A metric of the window, or of the same window `offset_ms` earlier.
    Metric {
        /// Which.
        metric: Metric,
        /// 0 for now; a baseline otherwise.
        offset_ms: i64,
    },
    /// `-x`
    Neg(Box<Value>),
    /// `a op b`
    Bin(Box<Value>, char, Box<Value>),
}

/// A condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// `left cmp right`
    Compare(Value, Cmp, Value),
    /// The group has no data in the window.
    Absent,
}

/// What a condition reads: the window's figures now and at baselines.
pub trait Figures {
    /// The metric over the window shifted back by `offset_ms`; `None` when
    /// there was no data (or no latency, or no gauge) there.
    fn metric(&self, metric: Metric, offset_ms: i64) -> Option<f64>;
    /// True when the group has no data in the current window.
    fn absent(&self) -> bool;
}

/// The verdict of a condition, with the comparison that decided it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// `Some(true)` holds, `Some(false)` does not, `None` unknown (a figure
    /// was missing).
    pub holds: Option<bool>,
    /// The left side of the deciding comparison.
    pub value: Option<f64>,
    /// The right side.
    pub threshold: Option<f64>,
}

impl Value {
    fn eval(&self, f: &dyn Figures) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            Value::Metric { metric, offset_ms } => f.metric(*metric, *offset_ms),
            Value::Neg(v) => v.eval(f).map(|x| -x),
            Value::Bin(a, op, b) => {
                let (a, b) = (a.eval(f)?, b.eval(f)?);
                let r = match op {
                    '+' => a + b,
                    '-' => a - b,
                    '*' => a * b,
                    _ => {
                        if b == 0.0 {
                            return None;
                        }
                        a / b
                    }
                };
                Some(r)
            }
        }
    }

    /// The first metric named, which decides how values are formatted.
    fn first_metric(&self) -> Option<Metric> {
        match self {
            Value::Number(_) => None,
            Value::Metric { metric, .. } => Some(*metric),
            Value::Neg(v) => v.first_metric(),
            Value::Bin(a, _, b) => a.first_metric().or_else(|| b.first_metric()),
        }
    }

    fn has_baseline(&self) -> bool {
        match self {
            Value::Number(_) => false,
            Value::Metric { offset_ms, .. } => *offset_ms != 0,
            Value::Neg(v) => v.has_baseline(),
            Value::Bin(a, _, b) => a.has_baseline() || b.has_baseline(),
        }
    }

    fn offsets(&self, out: &mut Vec<i64>) {
        match self {
            Value::Number(_) => {}
            Value::Metric { offset_ms, .. } => out.push(*offset_ms),
            Value::Neg(v) => v.offsets(out),
            Value::Bin(a, _, b) => {
                a.offsets(out);
                b.offsets(out);
            }
        }
    }
}

impl Expr {
    /// Evaluates with three-valued logic: unknown `and` false is false,
    /// unknown `or` true is true; otherwise unknown stays unknown.
    pub fn eval(&self, f: &dyn Figures) -> Verdict {
        match self {
            Expr::Absent => Verdict {
                holds: Some(f.absent()),
                value: None,
                threshold: None,
            },
            Expr::Compare(a, cmp, b) => {
                let (va, vb) = (a.eval(f), b.eval(f));
                Verdict {
                    holds: va.zip(vb).map(|(x, y)| cmp.holds(x, y)),
                    value: va,
                    threshold: vb,
                }
            }
            Expr::And(a, b) => {
                let (x, y) = (a.eval(f), b.eval(f));
                match (x.holds, y.holds) {
                    (Some(false), _) => x,
                    (_, Some(false)) => y,
                    (Some(true), Some(true)) => x,
                    (None, _) => x,
                    (_, None) => y,
                }
            }
            Expr::Or(a, b) => {
                let (x, y) = (a.eval(f), b.eval(f));
                match (x.holds, y.holds) {
                    (Some(true), _) => x,
                    (_, Some(true)) => y,
                    (Some(false), Some(false)) => x,
                    (None, _) => x,
                    (_, None) => y,
                }
            }
        }
    }

    /// The metric whose unit values of this condition are shown in.
    pub fn display_metric(&self) -> Option<Metric> {
        match self {
            Expr::Absent => None,
            Expr::Compare(a, _, b) => a.first_metric().or_else(|| b.first_metric()),
            Expr::And(a, b) | Expr::Or(a, b) => a.display_metric().or_else(|| b.display_metric()),
        }
    }

    /// True when the condition mentions `absent`: such a rule also looks
    /// at groups that went silent.
    pub fn uses_absent(&self) -> bool {
        match self {
            Expr::Absent => true,
            Expr::Compare(..) => false,
            Expr::And(a, b) | Expr::Or(a, b) => a.uses_absent() || b.uses_absent(),
        }
    }

    /// True when the condition compares with an earlier window.
    pub fn uses_baseline(&self) -> bool {
        match self {
            Expr::Absent => false,
            Expr::Compare(a, _, b) => a.has_baseline() || b.has_baseline(),
            Expr::And(a, b) | Expr::Or(a, b) => a.uses_baseline() || b.uses_baseline(),
        }
    }

    /// Every offset the condition reads (0 for the current window).
    pub fn offsets(&self) -> Vec<i64> {
        let mut out = Vec::new();
        self.collect_offsets(&mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn collect_offsets(&self, out: &mut Vec<i64>) {
        match self {
            Expr::Absent => {}
            Expr::Compare(a, _, b) => {
                a.offsets(out);
                b.offsets(out);
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.collect_offsets(out);
                b.collect_offsets(out);
            }
        }
    }
}

/// A parse error at a byte offset of the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset in the expression text.
    pub offset: usize,
    /// What was expected.
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at offset {}: {}", self.offset, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64, String),
    Word(String),
    Op(String),
    LParen,
    RParen,
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, ExprError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            let num: String = s[start..i].chars().filter(|c| *c != '_').collect();
            let n: f64 = num.parse().map_err(|_| ExprError {
                offset: start,
                message: format!("`{}` is not a number", &s[start..i]),
            })?;
            let ustart = i;
            while i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'%') {
                i += 1;
            }
            out.push((start, Tok::Num(n, s[ustart..i].to_owned())));
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((start, Tok::Word(s[start..i].to_owned())));
        } else if c == b'(' {
            out.push((i, Tok::LParen));
            i += 1;
        } else if c == b')' {
            out.push((i, Tok::RParen));
            i += 1;
        } else if matches!(c, b'>' | b'<' | b'=' | b'!') {
            let two = b.get(i + 1) == Some(&b'=');
            let op = if two { &s[i..i + 2] } else { &s[i..=i] };
            if op == "=" || op == "!" {
                return Err(ExprError {
                    offset: i,
                    message: format!("`{op}` is not an operator; expected `==` or `!=`"),
                });
            }
            out.push((i, Tok::Op(op.to_owned())));
            i += op.len();
        } else if matches!(c, b'+' | b'-' | b'*' | b'/') {
            out.push((i, Tok::Op((c as char).to_string())));
            i += 1;
        } else {
            let ch = s[i..].chars().next().unwrap_or('?');
            return Err(ExprError {
                offset: i,
                message: format!("unexpected `{ch}`"),
            });
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
    _src: &'a str,
}

const METRIC_NAMES: &str =
    "count, rate, errors, error_ratio, avg, p50, p90, p99, max, value, value_max";

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.len, |(o, _)| *o)
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, ExprError> {
        Err(ExprError {
            offset: self.offset(),
            message: message.into(),
        })
    }

    fn word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn expr(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.and()?;
        while self.word("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.unit()?;
        while self.word("and") {
            self.pos += 1;
            let right = self.unit()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unit(&mut self) -> Result<Expr, ExprError> {
        match self.peek() {
            Some(Tok::LParen) => {
                self.pos += 1;
                let e = self.expr()?;
                if self.peek() != Some(&Tok::RParen) {
                    return self.err("expected `)`");
                }
                self.pos += 1;
                Ok(e)
            }
            Some(Tok::Word(w)) if w == "absent" => {
                self.pos += 1;
                Ok(Expr::Absent)
            }
            None => self.err("expected a condition such as `error_ratio > 5%` or `absent`"),
            _ => {
                let left = self.sum()?;
                let cmp = match self.peek() {
                    Some(Tok::Op(op)) => match op.as_str() {
                        ">" => Cmp::Gt,
                        ">=" => Cmp::Ge,
                        "<" => Cmp::Lt,
                        "<=" => Cmp::Le,
                        "==" => Cmp::Eq,
                        "!=" => Cmp::Ne,
                        _ => {
                            return self
                                .err("expected a comparison (`>`, `>=`, `<`, `<=`, `==`, `!=`)");
                        }
                    },
                    _ => {
                        return self
                            .err("expected a comparison (`>`, `>=`, `<`, `<=`, `==`, `!=`)");
                    }
                };
                self.pos += 1;
                let right = self.sum()?;
                Ok(Expr::Compare(left, cmp, right))
            }
        }
    }

    fn sum(&mut self) -> Result<Value, ExprError> {
        let mut left = self.product()?;
        while let Some(Tok::Op(op)) = self.peek() {
            let op = match op.as_str() {
                "+" => '+',
                "-" => '-',
                _ => break,
            };
            self.pos += 1;
            let right = self.product()?;
            left = Value::Bin(Box::new(left), op, Box::new(right));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Value, ExprError> {
        let mut left = self.factor()?;
        while let Some(Tok::Op(op)) = self.peek() {
            let op = match op.as_str() {
                "*" => '*',
                "/" => '/',
                _ => break,
            };
            self.pos += 1;
            let right = self.factor()?;
            left = Value::Bin(Box::new(left), op, Box::new(right));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Value, ExprError> {
        let at = self.offset();
        match self.peek().cloned() {
            Some(Tok::Op(op)) if op == "-" => {
                self.pos += 1;
                Ok(Value::Neg(Box::new(self.factor()?)))
            }
            Some(Tok::Num(n, unit)) => {
                let scale = match unit.as_str() {
                    "" => 1.0,
                    "%" => 0.01,
                    "ms" => 1.0,
                    "s" => 1_000.0,
                    "m" => MINUTE_MS as f64,
                    "h" => HOUR_MS as f64,
                    "us" => 0.001,
                    other => {
                        return Err(ExprError {
                            offset: at,
                            message: format!(
                                "unknown unit `{other}`; expected %, us, ms, s, m or h"
                            ),
                        });
                    }
                };
                self.pos += 1;
                Ok(Value::Number(n * scale))
            }
            Some(Tok::Word(w)) => {
                let Some(metric) = Metric::parse(&w) else {
                    return self.err(format!(
                        "unknown metric `{w}`; expected one of {METRIC_NAMES}"
                    ));
                };
                self.pos += 1;
                let mut offset_ms = 0;
                if self.word("offset") {
                    self.pos += 1;
                    let dat = self.offset();
                    offset_ms = match self.peek().cloned() {
                        Some(Tok::Num(n, unit)) => {
                            let text = format!("{n}{unit}");
                            let d = parse_duration(&text).map_err(|m| ExprError {
                                offset: dat,
                                message: m,
                            })?;
                            if d <= 0 {
                                return Err(ExprError {
                                    offset: dat,
                                    message: "a baseline offset must be positive".into(),
                                });
                            }
                            d
                        }
                        _ => {
                            return self
                                .err("expected a duration after `offset`, such as `1d` or `1w`");
                        }
                    };
                    self.pos += 1;
                }
                Ok(Value::Metric { metric, offset_ms })
            }
            Some(Tok::LParen) => {
                self.err("parentheses group conditions, not numbers; write `2 * p99 offset 1w`")
            }
            _ => self.err(format!("expected a number or a metric ({METRIC_NAMES})")),
        }
    }
}

/// Parses a condition.
///
/// # Errors
/// Where (byte offset) and what was expected.
pub fn parse(s: &str) -> Result<Expr, ExprError> {
    let toks = lex(s)?;
    let mut p = Parser {
        toks,
        pos: 0,
        len: s.len(),
        _src: s,
    };
    let e = p.expr()?;
    if p.pos != p.toks.len() {
        return p.err("expected `and`, `or` or the end of the condition");
    }
    Ok(e)
}

/// Parses `10s`, `5m`, `2h`, `1d`, `1w`, `250ms` (a bare number is refused:
/// a unit-less duration is a guess waiting to go wrong).
///
/// # Errors
/// A message saying what was expected.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; expected e.g. 30s, 5m, 1h, 1d, 1w"))?;
    let scale = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => MINUTE_MS as f64,
        "h" => HOUR_MS as f64,
        "d" => DAY_MS as f64,
        "w" => (7 * DAY_MS) as f64,
        "" => return Err(format!("`{s}` needs a unit: ms, s, m, h, d or w")),
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}`; expected ms, s, m, h, d or w"
            ));
        }
    };
    Ok((n * scale).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct F {
        count: Option<f64>,
        ratio: Option<f64>,
        p99_now: Option<f64>,
        p99_week: Option<f64>,
    }

    impl Figures for F {
        fn metric(&self, m: Metric, off: i64) -> Option<f64> {
            match (m, off) {
                (Metric::Count, 0) => self.count,
                (Metric::ErrorRatio, 0) => self.ratio,
                (Metric::P99, 0) => self.p99_now,
                (Metric::P99, 604_800_000) => self.p99_week,
                _ => None,
            }
        }
        fn absent(&self) -> bool {
            self.count.is_none()
        }
    }

    fn f() -> F {
        F {
            count: Some(200.0),
            ratio: Some(0.08),
            p99_now: Some(900.0),
            p99_week: Some(300.0),
        }
    }

    #[test]
    fn units_and_precedence() {
        let e = parse("error_ratio > 5% and count >= 100").unwrap();
        let v = e.eval(&f());
        assert_eq!(v.holds, Some(true));
        assert_eq!(v.value, Some(0.08));
        assert_eq!(v.threshold, Some(0.05));
        let e = parse("p99 > 2 * p99 offset 1w").unwrap();
        let v = e.eval(&f());
        assert_eq!(v.holds, Some(true));
        assert_eq!(v.threshold, Some(600.0));
        assert!(e.uses_baseline());
        assert_eq!(e.offsets(), vec![0, 604_800_000]);
        assert_eq!(parse("p99 > 1.5s").unwrap().eval(&f()).holds, Some(false));
        assert_eq!(
            parse("count - 50 > 100 + 40").unwrap().eval(&f()).holds,
            Some(true)
        );
        // `and` binds tighter than `or`.
        let e = parse("count < 1 and count < 2 or error_ratio > 1%").unwrap();
        assert_eq!(e.eval(&f()).holds, Some(true));
        let e = parse("count < 1 and (count < 2 or error_ratio > 1%)").unwrap();
        assert_eq!(e.eval(&f()).holds, Some(false));
    }

    #[test]
    fn missing_figures_are_unknown_not_false() {
        let mut g = f();
        g.p99_now = None;
        assert_eq!(parse("p99 > 100").unwrap().eval(&g).holds, None);
        assert_eq!(
            parse("p99 > 100 and count > 1000").unwrap().eval(&g).holds,
            Some(false)
        );
        assert_eq!(
            parse("p99 > 100 or count > 10").unwrap().eval(&g).holds,
            Some(true)
        );
        g.count = None;
        assert_eq!(parse("absent").unwrap().eval(&g).holds, Some(true));
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let e = parse("error_ratio > 5 %% ").unwrap_err();
        assert!(e.offset >= 14, "{e}");
        let e = parse("eror_ratio > 5%").unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("unknown metric `eror_ratio`"), "{e}");
        let e = parse("p99 > 3 parsecs").unwrap_err();
        assert_eq!(e.offset, 8, "{e}");
        let e = parse("p99 > 3xs").unwrap_err();
        assert_eq!(e.offset, 6, "{e}");
        let e = parse("p99 = 3").unwrap_err();
        assert_eq!(e.offset, 4);
        let e = parse("count > 1 and").unwrap_err();
        assert_eq!(e.offset, 13);
        let e = parse("count offset 0s > 1").unwrap_err();
        assert_eq!(e.offset, 13);
        assert!(parse("").is_err());
    }

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("10s"), Ok(10_000));
        assert_eq!(parse_duration("1w"), Ok(604_800_000));
        assert_eq!(parse_duration("1.5m"), Ok(90_000));
        assert!(parse_duration("10").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("10y").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn formatting_reads_naturally() {
        assert_eq!(Metric::ErrorRatio.format(0.125), "12.5%");
        assert_eq!(Metric::P99.format(850.0), "850 ms");
        assert_eq!(Metric::Count.format(12.0), "12");
        assert_eq!(Metric::Rate.format(4.5678), "4.57/s");
    }
}
