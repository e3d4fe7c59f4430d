//! User regexes: any line layout, fields named by the regex's named captures.
//!
//! ```toml
//! format = "regex"
//! pattern = '^(?P<ts>\S+ \S+) \[(?P<level>\w+)\] call (?P<target>\S+) (?P<method>\w+) cost=(?P<latency_ms>\d+)ms ok=(?P<ok>\w+)'
//! layer = "call"
//! series = "{target} {method}"
//! ```
//!
//! The capture buffer is reused from line to line, so a match allocates nothing.

use regex::{CaptureLocations, Regex};

use super::map::{Record, Value};
use super::{ParseFailure, SpecError};

/// A compiled user pattern.
#[derive(Debug)]
pub(crate) struct UserRegex {
    re: Regex,
    locs: CaptureLocations,
    names: Vec<(String, usize)>,
}

/// A matched line: the captures, borrowed.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    line: &'a str,
    locs: &'a CaptureLocations,
    names: &'a [(String, usize)],
}

impl UserRegex {
    /// Compiles `pattern`, which must name at least one capture.
    pub(crate) fn new(pattern: &str) -> Result<UserRegex, SpecError> {
        let re = Regex::new(pattern).map_err(|e| SpecError::new("pattern", e.to_string()))?;
        let names: Vec<(String, usize)> = re
            .capture_names()
            .enumerate()
            .filter_map(|(i, n)| n.map(|n| (n.to_owned(), i)))
            .collect();
        if names.is_empty() {
            return Err(SpecError::new(
                "pattern",
                "no named captures: name the fields with (?P<name>...)".to_owned(),
            ));
        }
        let locs = re.capture_locations();
        Ok(UserRegex { re, locs, names })
    }

    /// Whether the pattern has a capture called `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.names.iter().any(|(n, _)| n == name)
    }

    /// The capture names, for error messages.
    pub(crate) fn names(&self) -> String {
        self.names
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Matches one line.
    pub(crate) fn parse<'a>(&'a mut self, line: &'a str) -> Result<Line<'a>, ParseFailure> {
        if self.re.captures_read(&mut self.locs, line).is_none() {
            return Err(ParseFailure::new(0, "a line matching `pattern`"));
        }
        Ok(Line {
            line,
            locs: &self.locs,
            names: &self.names,
        })
    }
}

impl Record for Line<'_> {
    fn get(&self, key: &str) -> Option<Value<'_>> {
        let (_, i) = self.names.iter().find(|(n, _)| n == key)?;
        let (s, e) = self.locs.get(*i)?;
        Some(Value::Str(&self.line[s..e]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_captures_are_fields() {
        let mut r = UserRegex::new(r"^(?P<a>\w+) (?P<b>\d+)?(?P<c>x)?").unwrap();
        assert!(r.has("b") && !r.has("z"));
        assert_eq!(r.names(), "a, b, c");
        let l = r.parse("hello 42").unwrap();
        assert_eq!(
            (l.get("a"), l.get("b"), l.get("c"), l.get("z")),
            (
                Some(Value::Str("hello")),
                Some(Value::Str("42")),
                None,
                None
            )
        );
        assert_eq!(r.parse("!").unwrap_err().at, 0);
    }

    #[test]
    fn bad_patterns() {
        assert!(
            UserRegex::new("(")
                .unwrap_err()
                .to_string()
                .starts_with("`pattern`")
        );
        assert!(
            UserRegex::new(r"\d+")
                .unwrap_err()
                .to_string()
                .contains("named captures")
        );
    }
}
