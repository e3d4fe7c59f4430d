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
use std::sync::{Arc, Mutex};
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
    seen: Seen,
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
///
/// The pipelines that parse one source's chunks side by side share one
/// cap ([`Cap::share`]): the source's families are capped once, not once
/// per thread. Each keeps the series it saw admitted in a set of its own,
/// so a line whose series is known (nearly every line) takes no lock; only
/// a series new to this pipeline, or one past the cap, asks the shared set.
#[derive(Debug)]
pub(crate) struct Cap {
    max: usize,
    seed: u64,
    known: [Seen; 5],
    families: Arc<Mutex<[Family; 5]>>,
}

type Seen = HashSet<u64, BuildHasherDefault<Passthrough>>;

impl Cap {
    pub(crate) fn new(max: usize) -> Cap {
        Cap {
            max,
            seed: rand::random(),
            known: Default::default(),
            families: Default::default(),
        }
    }

    /// Another handle on the same cap, for a pipeline parsing the same
    /// source on another thread.
    pub(crate) fn share(&self) -> Cap {
        Cap {
            max: self.max,
            seed: self.seed,
            known: Default::default(),
            families: Arc::clone(&self.families),
        }
    }

    /// Whether the series `key` (name and dims, see the caller) may keep its
    /// name; `false` means it goes to [`OTHER_SERIES`].
    pub(crate) fn admit(&mut self, layer: Layer, service: &str, key: &str) -> bool {
        let i = usize::from(layer.code());
        let hash = xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), self.seed);
        if self.known[i].contains(&hash) {
            return true;
        }
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let fam = &mut families[i];
        if fam.seen.contains(&hash) || fam.seen.len() < self.max {
            fam.seen.insert(hash);
            self.known[i].insert(hash);
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
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        families[usize::from(layer.code())].seen.len()
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

    #[test]
    fn shared_handles_cap_the_source_once_across_threads() {
        let first = Cap::new(50);
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let mut cap = first.share();
                std::thread::spawn(move || {
                    // Each thread offers 40 series, 20 of them offered by
                    // every thread: 20 + 4 × 20 = 100 distinct in all.
                    (0..40)
                        .map(|i| {
                            let key = if i < 20 {
                                format!("common{i}")
                            } else {
                                format!("t{t}-{i}")
                            };
                            (key.clone(), cap.admit(Layer::Url, "s", &key))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut admitted = HashSet::new();
        for h in handles {
            for (key, ok) in h.join().unwrap() {
                if ok {
                    admitted.insert(key);
                }
            }
        }
        assert_eq!(admitted.len(), 50, "exactly the cap, over all threads");
        assert_eq!(first.len(Layer::Url), 50);
        // A series one handle admitted stays admitted through another.
        let mut other = first.share();
        for key in &admitted {
            assert!(other.admit(Layer::Url, "s", key), "{key}");
        }
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
