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
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use panorama_model::Layer;

/// The series name overflow goes to.
pub const OTHER_SERIES: &str = "(other)";

/// How often the overflow warning repeats while a family keeps overflowing.
const WARN_EVERY: Duration = Duration::from_secs(600);

/// Hashes series keys with XXH3 under a per-pipeline random seed.
///
/// Every line is looked up here, and SipHash (the std default) was a few
/// percent of the access-log hot path on these short keys. The keys come
/// from log content, so the seed is random rather than fixed; and a family
/// never holds more than `max_series` keys, which bounds what colliding
/// keys could cost anyway.
#[derive(Debug, Clone, Copy)]
struct SeededXxh3(u64);

impl Default for SeededXxh3 {
    fn default() -> SeededXxh3 {
        SeededXxh3(rand::random())
    }
}

impl BuildHasher for SeededXxh3 {
    type Hasher = Xxh3Hasher;

    fn build_hasher(&self) -> Xxh3Hasher {
        Xxh3Hasher(self.0)
    }
}

struct Xxh3Hasher(u64);

impl Hasher for Xxh3Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u8(&mut self, b: u8) {
        // `str` hashing appends a 0xff terminator; fold it in cheaply.
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[derive(Debug, Default)]
struct Family {
    seen: HashSet<Box<str>, SeededXxh3>,
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
