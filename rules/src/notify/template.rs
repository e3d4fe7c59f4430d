//! The one `{{placeholder}}` language: a rule's `summary` and
//! `description`, and the URL and body of an SMS or voice gateway.
//!
//! Templates are parsed when the rules directory loads, against the list
//! of names their use allows, so a misspelt placeholder is a load error
//! with its position instead of a literal `{{txet}}` in a page at night;
//! rendering then cannot fail. Each use declares its names once, as a
//! [`Placeholder`] type: the parser, the error message and the renderer all
//! read that list.

use super::http;

/// The names one kind of template may use.
pub trait Placeholder: Copy + Eq + std::fmt::Debug + 'static {
    /// Every placeholder with its name: the one list of them.
    const ALL: &'static [(&'static str, Self)];
    /// Whether `{{name|json}}` and `{{name|url}}` are allowed; without
    /// filters, `|` is part of the name (and so an unknown placeholder).
    const FILTERS: bool;

    /// The names, in order.
    fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().map(|(n, _)| *n)
    }
}

/// How a value is written into the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Raw,
    /// A JSON string literal, quotes included.
    Json,
    /// Percent-encoded (RFC 3986).
    Url,
}

#[derive(Debug, Clone, PartialEq)]
enum Part<P> {
    Lit(String),
    Var(P, Filter),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template<P> {
    text: String,
    parts: Vec<Part<P>>,
}

impl<P> Default for Template<P> {
    fn default() -> Self {
        Template {
            text: String::new(),
            parts: Vec::new(),
        }
    }
}

/// What is wrong with a template; `offset` is the byte of its `{{`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{{` with no `}}` after it.
    #[error("`{{{{` without `}}}}`")]
    Unclosed {
        /// Byte offset of the `{{`.
        offset: usize,
    },
    /// A name not in the list.
    #[error("unknown placeholder `{name}`; expected one of {expected}")]
    UnknownPlaceholder {
        /// Byte offset of the `{{`.
        offset: usize,
        /// The name given.
        name: String,
        /// The names allowed, comma-separated.
        expected: String,
    },
    /// A filter other than `json` or `url`.
    #[error("unknown filter `{filter}`; expected json or url")]
    UnknownFilter {
        /// Byte offset of the `{{`.
        offset: usize,
        /// The filter given.
        filter: String,
    },
}

impl TemplateError {
    /// Byte offset of the offending `{{` in the template's text.
    pub fn offset(&self) -> usize {
        match self {
            TemplateError::Unclosed { offset }
            | TemplateError::UnknownPlaceholder { offset, .. }
            | TemplateError::UnknownFilter { offset, .. } => *offset,
        }
    }
}

impl<P: Placeholder> Template<P> {
    /// Parses `text`.
    ///
    /// # Errors
    /// The first problem found.
    pub fn parse(text: &str) -> Result<Template<P>, TemplateError> {
        let (template, mut errors) = Self::scan(text);
        if errors.is_empty() {
            Ok(template)
        } else {
            Err(errors.swap_remove(0))
        }
    }

    /// Parses `text`, reporting every problem (scanning stops at an
    /// unclosed `{{`, since nothing after it can be told apart).
    ///
    /// # Errors
    /// Every problem found, in order.
    pub fn parse_all(text: &str) -> Result<Template<P>, Vec<TemplateError>> {
        let (template, errors) = Self::scan(text);
        if errors.is_empty() {
            Ok(template)
        } else {
            Err(errors)
        }
    }

    fn scan(text: &str) -> (Template<P>, Vec<TemplateError>) {
        let mut parts = Vec::new();
        let mut errors = Vec::new();
        let mut base = 0;
        while let Some(open) = text[base..].find("{{").map(|o| base + o) {
            if open > base {
                parts.push(Part::Lit(text[base..open].to_owned()));
            }
            let Some(close) = text[open + 2..].find("}}").map(|c| open + 2 + c) else {
                errors.push(TemplateError::Unclosed { offset: open });
                base = text.len();
                break;
            };
            let inner = text[open + 2..close].trim();
            let (name, filter) = match inner.split_once('|') {
                Some((n, f)) if P::FILTERS => (n.trim(), f.trim()),
                _ => (inner, ""),
            };
            base = close + 2;
            let Some(var) = P::ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v) else {
                errors.push(TemplateError::UnknownPlaceholder {
                    offset: open,
                    name: name.to_owned(),
                    expected: P::names().collect::<Vec<_>>().join(", "),
                });
                continue;
            };
            let filter = match filter {
                "" => Filter::Raw,
                "json" => Filter::Json,
                "url" => Filter::Url,
                other => {
                    errors.push(TemplateError::UnknownFilter {
                        offset: open,
                        filter: other.to_owned(),
                    });
                    continue;
                }
            };
            parts.push(Part::Var(var, filter));
        }
        if base < text.len() {
            parts.push(Part::Lit(text[base..].to_owned()));
        }
        (
            Template {
                text: text.to_owned(),
                parts,
            },
            errors,
        )
    }

    /// The text it was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether it names `p` anywhere.
    pub fn uses(&self, p: P) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Var(x, _) if *x == p))
    }

    /// Fills in every placeholder with `value`'s answer, filtered.
    pub fn render(&self, value: impl Fn(P) -> String) -> String {
        let mut out = String::with_capacity(self.text.len());
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(p, f) => {
                    let v = value(*p);
                    match f {
                        Filter::Raw => out.push_str(&v),
                        Filter::Json => {
                            out.push_str(&serde_json::to_string(&v).unwrap_or_default())
                        }
                        Filter::Url => out.push_str(&http::percent_encode(&v)),
                    }
                }
            }
        }
        out
    }
}

/// What a rule's `summary` and `description` may name: the alert's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertField {
    /// The rule's name.
    Rule,
    /// The series' layer.
    Layer,
    /// The series' service.
    Service,
    /// The series' name.
    Series,
    /// The series' host.
    Host,
    /// The latest value, formatted.
    Value,
    /// The threshold, formatted.
    Threshold,
    /// The rule's severity.
    Severity,
    /// The drill-down link.
    Link,
}

impl Placeholder for AlertField {
    const ALL: &'static [(&'static str, AlertField)] = &[
        ("rule", AlertField::Rule),
        ("layer", AlertField::Layer),
        ("service", AlertField::Service),
        ("series", AlertField::Series),
        ("host", AlertField::Host),
        ("value", AlertField::Value),
        ("threshold", AlertField::Threshold),
        ("severity", AlertField::Severity),
        ("link", AlertField::Link),
    ];
    const FILTERS: bool = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_placed_at_its_braces() {
        let errors = Template::<AlertField>::parse_all("a {{rule}} {{nope}} {{value|json}} {{x")
            .unwrap_err();
        let offsets: Vec<usize> = errors.iter().map(TemplateError::offset).collect();
        assert_eq!(offsets, vec![11, 20, 35], "{errors:?}");
        assert!(errors[0].to_string().contains("unknown placeholder `nope`"));
        // Summaries take no filters: the bar is part of the name.
        assert!(errors[1].to_string().contains("`value|json`"));
        assert_eq!(errors[2], TemplateError::Unclosed { offset: 35 });
    }

    #[test]
    fn a_summary_renders_every_field_it_names() {
        let t = Template::<AlertField>::parse("{{ rule }}: {{value}} > {{threshold}}!").unwrap();
        let out = t.render(|f| format!("{f:?}"));
        assert_eq!(out, "Rule: Value > Threshold!");
        assert!(t.uses(AlertField::Value) && !t.uses(AlertField::Host));
        assert_eq!(t.text(), "{{ rule }}: {{value}} > {{threshold}}!");
    }
}
