//! How rule files select series: `login` (exact), `glob:POST /api/*`,
//! `re:^iPhone (1[4-6])`, or `*` for anything.
//!
//! Exact is the default because it is what people mean most of the time and
//! it lets the engine ask the store for one service instead of all of them.

use regex::Regex;

/// A compiled selector for one field.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Anything.
    Any,
    /// Exactly this.
    Exact(String),
    /// A shell glob (`*`, `?`, `[...]`).
    Glob(glob::Pattern),
    /// A regex, searched (anchor it with `^…$` for a whole match).
    Regex(Regex),
}

impl Pattern {
    /// Compiles `s`; the error says what was wrong and starts at the
    /// pattern's first character.
    ///
    /// # Errors
    /// A glob or regex that does not compile.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        if s == "*" {
            Ok(Pattern::Any)
        } else if let Some(g) = s.strip_prefix("glob:") {
            glob::Pattern::new(g)
                .map(Pattern::Glob)
                .map_err(|e| format!("invalid glob `{g}`: {e}"))
        } else if let Some(r) = s.strip_prefix("re:") {
            Regex::new(r)
                .map(Pattern::Regex)
                .map_err(|e| format!("invalid regex `{r}`: {e}"))
        } else {
            Ok(Pattern::Exact(s.to_owned()))
        }
    }

    /// True when `v` is selected.
    pub fn matches(&self, v: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(e) => e == v,
            Pattern::Glob(g) => g.matches(v),
            Pattern::Regex(r) => r.is_match(v),
        }
    }

    /// The one value selected, when exact: lets the store filter.
    pub fn exact(&self) -> Option<&str> {
        match self {
            Pattern::Exact(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert!(Pattern::parse("*").unwrap().matches("x"));
        assert!(Pattern::parse("login").unwrap().matches("login"));
        assert!(!Pattern::parse("login").unwrap().matches("login2"));
        assert!(
            Pattern::parse("glob:POST /api/*")
                .unwrap()
                .matches("POST /api/pay")
        );
        assert!(
            !Pattern::parse("glob:POST /api/*")
                .unwrap()
                .matches("GET /api/pay")
        );
        assert!(
            Pattern::parse("re:^iPhone 1[4-6]$")
                .unwrap()
                .matches("iPhone 15")
        );
        assert!(
            Pattern::parse("re:(")
                .unwrap_err()
                .contains("invalid regex")
        );
        assert!(
            Pattern::parse("glob:[")
                .unwrap_err()
                .contains("invalid glob")
        );
    }
}
