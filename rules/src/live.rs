//! Evaluation as events arrive.
//!
//! The engine reads sub-minute data through a
//! [`LiveView`](panorama_model::live::LiveView) (defined in the model, kept
//! by the collector in the same process, handed over with
//! [`Engine::attach_live`](crate::engine::Engine::attach_live)). The view
//! wakes the engine after every durable batch; the engine asks which series
//! moved, marks the sliding rules that watch them, and evaluates each at
//! once unless it was evaluated less than its `min_interval` ago (then as
//! soon as that has passed). `every` stays the longest time between two
//! evaluations: absence and no-data are noticed on that schedule, because
//! no event says that events stopped.
//!
//! Rules with `align = "minute"` read the store only, which an ingest does
//! not change, so ingest does not wake them.
//!
//! An engine without a live view (beside several collectors, say) reads
//! everything from the store, which sees an open minute when the collector
//! upserts it (every 5 s by default): see the README for the latency that
//! gives.

use std::collections::{BTreeMap, BTreeSet};

use panorama_model::SeriesKey;

use crate::eval;
use crate::rule::{Align, Rule, RuleSet};

/// The sliding rules that watch any of `touched`.
pub fn touched_rules(set: &RuleSet, touched: &[SeriesKey]) -> Vec<String> {
    set.rules
        .iter()
        .filter(|r| r.align == Align::Sliding && touched.iter().any(|k| eval::selects(r, k)))
        .map(|r| r.name.clone())
        .collect()
}

/// Whether `rule` is evaluated at `now_ms`: never yet, `every` elapsed, or
/// its series moved (`wanted`) and `min_interval` elapsed.
pub fn due(last_ms: Option<i64>, wanted: bool, rule: &Rule, now_ms: i64) -> bool {
    match last_ms {
        None => true,
        Some(t) => now_ms - t >= rule.every_ms || (wanted && now_ms - t >= rule.min_interval_ms),
    }
}

/// How long until the first wanted rule may be evaluated (0: now), or
/// `None` when no rule is wanted.
pub fn next_wanted(
    set: &RuleSet,
    wanted: &BTreeSet<String>,
    last_eval: &BTreeMap<String, i64>,
    now_ms: i64,
) -> Option<i64> {
    wanted
        .iter()
        .filter_map(|name| set.rule(name))
        .map(|r| match last_eval.get(&r.name) {
            None => 0,
            Some(t) => (t + r.min_interval_ms - now_ms).max(0),
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn set(text: &str) -> RuleSet {
        crate::rule::parse_file(Path::new("r.toml"), text).unwrap()
    }

    fn key(name: &str) -> SeriesKey {
        SeriesKey {
            layer: panorama_model::Layer::Url,
            service: "shop".into(),
            host: "web1".into(),
            name: name.into(),
            dims: BTreeMap::new(),
        }
    }

    #[test]
    fn events_wake_the_sliding_rules_that_watch_them_at_most_once_per_min_interval() {
        let s = set(r#"
[[rule]]
name = "pay"
layer = "url"
series = "GET /pay"
window = "1m"
min_interval = "2s"
when = "error_ratio > 5%"

[[rule]]
name = "calendar"
layer = "url"
window = "1m"
align = "minute"
when = "error_ratio > 5%"

[[rule]]
name = "other"
layer = "url"
series = "GET /cart"
window = "1m"
when = "error_ratio > 5%"
"#);
        assert_eq!(
            touched_rules(&s, &[key("GET /pay")]),
            vec!["pay".to_owned()]
        );
        let pay = s.rule("pay").unwrap();
        assert_eq!((pay.min_interval_ms, pay.every_ms), (2_000, 10_000));
        assert!(due(None, false, pay, 0), "first evaluation");
        assert!(!due(Some(0), true, pay, 1_999), "debounced");
        assert!(due(Some(0), true, pay, 2_000));
        assert!(!due(Some(0), false, pay, 9_999), "nothing moved");
        assert!(due(Some(0), false, pay, 10_000), "every is the longest gap");
        let wanted: BTreeSet<String> = ["pay".to_owned()].into();
        let last: BTreeMap<String, i64> = [("pay".to_owned(), 1_000)].into();
        assert_eq!(next_wanted(&s, &wanted, &last, 1_500), Some(1_500));
        assert_eq!(next_wanted(&s, &wanted, &last, 3_500), Some(0));
        assert_eq!(next_wanted(&s, &BTreeSet::new(), &last, 3_500), None);
    }

    #[test]
    fn min_interval_longer_than_every_is_refused_with_its_position() {
        let e = crate::rule::parse_file(
            Path::new("r.toml"),
            "[[rule]]\nname = \"r\"\nlayer = \"url\"\nevery = \"5s\"\nmin_interval = \"10s\"\nwhen = \"count > 1\"\n",
        )
        .unwrap_err();
        assert_eq!(e[0].at.line, 5, "{e:?}");
        assert!(e[0].message.contains("min_interval"), "{e:?}");
        let e = crate::rule::parse_file(
            Path::new("r.toml"),
            "[[rule]]\nname = \"r\"\nlayer = \"url\"\nalign = \"hour\"\nwhen = \"count > 1\"\n",
        )
        .unwrap_err();
        assert_eq!((e[0].at.line, e[0].at.column), (4, 10), "{e:?}");
        assert!(e[0].message.contains("sliding or minute"), "{e:?}");
    }
}
