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
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use panorama_model::Layer;

/// The series name overflow goes to.
pub const OTHER_SERIES: &str = "(other)";

/// How often the overflow warning repeats while a family keeps overflowing.
const WARN_EVERY: Duration = Duration::from_secs(600);

/// The set of series seen holds 64-bit hashes of their keys, not the
/// keys: every line is looked up here, and comparing the stored string on
/// each hit (a pointer chase and a `memcmp`) was a few percent of the
/// access-log hot path. XXH3-64 under a per-cap random seed (keys come from
/// log content, so collisions cannot be aimed at): with at most a few
/// thousand series per family, the chance that two ever collide is below
/// 10^-12, and two that did would share one slot of the cap, nothing
/// worse. (XXH3-128 cost twice as much for no difference that shows.)
#[derive(Debug, Default)]
struct Family {
    seen: HashSet<u64, BuildHasherDefault<Passthrough>>,
    overflowed: u64,
    last_warn: Option<Instant>,
}

/// Hashes a `u64` that is already a good hash by passing it through.
#[derive(Default)]
struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; this keeps other input correct anyway.
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u64(&mut self, h: u64) {
        self.0 = h;
    }
}

/// Admits series keys up to the cap, per layer.
#[derive(Debug)]
pub(crate) struct Cap {
    max: usize,
    seed: u64,
    families: [Family; 5],
}

impl Cap {
    pub(crate) fn new(max: usize) -> Cap {
        Cap {
            max,
            seed: rand::random(),
            families: Default::default(),
        }
    }

    /// Whether the series `key` (name and dims, see the caller) may keep its
    /// name; `false` means it goes to [`OTHER_SERIES`].
    pub(crate) fn admit(&mut self, layer: Layer, service: &str, key: &str) -> bool {
        let fam = &mut self.families[usize::from(layer.code())];
        let hash = xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), self.seed);
        if fam.seen.contains(&hash) {
            return true;
        }
        if fam.seen.len() < self.max {
            fam.seen.insert(hash);
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
