//! The per-family series cap: at most `max_series` distinct series per
//! (layer, service), the rest counted in one `(other)` series.
//!
//! The cap sits in the agent, before anything is shipped, so that a path
//! full of session tokens the route rules did not foresee costs one
//! `(other)` series instead of an index per token downstream. Events are
//! never dropped: overflow keeps its counts, latency and outcome, only its
//! name (and dims) are replaced. A pipeline serves one service, so a family
//! here is a layer.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use panorama_model::Layer;

/// The series name overflow goes to.
pub const OTHER_SERIES: &str = "(other)";

/// How often the overflow warning repeats while a family keeps overflowing.
const WARN_EVERY: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
struct Family {
    seen: HashSet<Box<str>>,
    overflowed: u64,
    last_warn: Option<Instant>,
}

/// Admits series keys up to the cap, per layer.
#[derive(Debug)]
pub(crate) struct Cap {
    max: usize,
    families: [Family; 5],
}

impl Cap {
    pub(crate) fn new(max: usize) -> Cap {
        Cap {
            max,
            families: Default::default(),
        }
    }

    /// Whether the series `key` (name and dims, see the caller) may keep its
    /// name; `false` means it goes to [`OTHER_SERIES`]. Allocates only the
    /// first time a key is seen.
    pub(crate) fn admit(&mut self, layer: Layer, service: &str, key: &str) -> bool {
        let fam = &mut self.families[usize::from(layer.code())];
        if fam.seen.contains(key) {
            return true;
        }
        if fam.seen.len() < self.max {
            fam.seen.insert(key.into());
            return true;
        }
        fam.overflowed += 1;
        let now = Instant::now();
        if fam
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            fam.last_warn = Some(now);
            tracing::warn!(
                layer = %layer,
                service,
                max_series = self.max,
                overflowed = fam.overflowed,
                example = key,
                "series cap reached, counting new series as (other)"
            );
        }
        false
    }

    /// Distinct series admitted in a layer.
    #[cfg(test)]
    pub(crate) fn len(&self, layer: Layer) -> usize {
        self.families[usize::from(layer.code())].seen.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn caps_each_layer_separately() {
        let mut cap = Cap::new(2);
        assert!(cap.admit(Layer::Url, "s", "a"));
        assert!(cap.admit(Layer::Url, "s", "b"));
        assert!(!cap.admit(Layer::Url, "s", "c"));
        assert!(cap.admit(Layer::Url, "s", "a"));
        assert!(cap.admit(Layer::Call, "s", "c"));
        assert_eq!(cap.len(Layer::Url), 2);
    }

    proptest! {
        #[test]
        fn never_more_than_max_plus_other(max in 0usize..20, names in prop::collection::vec("[a-z]{1,3}", 0..200)) {
            let mut cap = Cap::new(max);
            let mut out = HashSet::new();
            for n in &names {
                let name = if cap.admit(Layer::Url, "s", n) { n.as_str() } else { OTHER_SERIES };
                out.insert(name.to_owned());
            }
            prop_assert!(out.len() <= max + 1);
            prop_assert!(cap.len(Layer::Url) <= max);
        }
    }
}
