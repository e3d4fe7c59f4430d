//! One evaluation of one rule: read its window (and baselines) from the
//! store, group the documents the rule's way, and say of each group whether
//! it breaches.
//!
//! The window ends now and includes the open minute, which the collector
//! upserts every few seconds. Because the open minute is partial, rates
//! divide by the time actually elapsed in the window, and baseline counts
//! (whose windows are complete) are scaled by the same fraction, so that
//! "count < 50% * count offset 1w" does not fire just because the current
//! minute is young.

use std::collections::BTreeMap;

use panorama_model::{Layer, Rollup, minute_of};
use panorama_store::{SeriesQuery, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::lifecycle::Observation;
use crate::rule::expr::Figures;
use crate::rule::{GroupBy, Metric, Rule};

/// What one alert of a rule stands for, and how it is labelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Stable key within the rule (`service/series`, a host, or a service).
    pub key: String,
    /// Layer.
    pub layer: Layer,
    /// Service (empty when grouping by host across services).
    pub service: String,
    /// Series name (empty unless grouping by series).
    pub series: String,
    /// Host (empty unless grouping by host).
    pub host: String,
}

impl Group {
    fn of(rule: &Rule, r: &Rollup) -> Group {
        let k = &r.key;
        match rule.group_by {
            GroupBy::Series => Group {
                key: format!("{}/{}", k.service, k.name),
                layer: k.layer,
                service: k.service.clone(),
                series: k.name.clone(),
                host: String::new(),
            },
            GroupBy::Host => Group {
                key: k.host.clone(),
                layer: k.layer,
                service: String::new(),
                series: String::new(),
                host: k.host.clone(),
            },
            GroupBy::Service => Group {
                key: k.service.clone(),
                layer: k.layer,
                service: k.service.clone(),
                series: String::new(),
                host: String::new(),
            },
        }
    }

    /// The labels routes and silences match: the rule's, then the group's.
    pub fn labels(&self, rule: &Rule) -> BTreeMap<String, String> {
        let mut l = rule.labels.clone();
        l.insert("alertname".into(), rule.name.clone());
        l.insert("rule".into(), rule.name.clone());
        l.insert("severity".into(), rule.severity.clone());
        l.insert("layer".into(), self.layer.as_str().into());
        for (k, v) in [
            ("service", &self.service),
            ("series", &self.series),
            ("host", &self.host),
        ] {
            if !v.is_empty() {
                l.insert(k.into(), v.clone());
            }
        }
        l
    }
}

/// The verdict on one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Which group.
    pub group: Group,
    /// What the lifecycle is told.
    pub observation: Observation,
    /// Events in the window (0 when absent).
    pub count: u64,
}

/// The window `[start, end)` a rule looks at when evaluated at `now_ms`:
/// whole minutes back from (and including) the open one.
///
/// For its first [`OPEN_MINUTE_LAG_MS`] a minute is not yet in the store
/// (agents ship every second, the collector upserts open minutes every 5 s),
/// so until then the window still ends with the previous minute: otherwise
/// every minute would begin with a moment of "no data".
pub fn window(rule: &Rule, now_ms: i64, lag_ms: i64) -> (i64, i64) {
    let end = minute_of(now_ms - lag_ms) + 60_000;
    (end - rule.window_ms, end)
}

/// How long a new minute takes to reach the store, by default.
pub const OPEN_MINUTE_LAG_MS: i64 = 15_000;

fn selected(rule: &Rule, r: &Rollup) -> bool {
    let k = &r.key;
    rule.service.matches(&k.service)
        && rule.series.matches(&k.name)
        && rule.host.matches(&k.host)
        && rule
            .dims
            .iter()
            .all(|(d, p)| k.dims.get(d).is_some_and(|v| p.matches(v)))
}

async fn grouped(
    rule: &Rule,
    store: &dyn Store,
    from_ms: i64,
    to_ms: i64,
) -> Result<BTreeMap<String, (Group, Rollup)>, StoreError> {
    // Exact selectors narrow the read; globs, regexes and dims are applied
    // to what comes back.
    let q = SeriesQuery {
        layer: rule.layer,
        service: rule.service.exact().map(str::to_owned),
        name: rule.series.exact().map(str::to_owned),
        host: rule.host.exact().map(str::to_owned),
        dims: BTreeMap::new(),
        from_ms,
        to_ms,
    };
    let docs = store.read_rollups(&q).await?;
    let mut out: BTreeMap<String, (Group, Rollup)> = BTreeMap::new();
    for r in docs.iter().filter(|r| selected(rule, r)) {
        let g = Group::of(rule, r);
        match out.get_mut(&g.key) {
            Some((_, acc)) => acc.merge(r),
            None => {
                out.insert(g.key.clone(), (g, r.clone()));
            }
        }
    }
    Ok(out)
}

struct GroupFigures<'a> {
    now: Option<&'a Rollup>,
    baselines: &'a BTreeMap<i64, Option<Rollup>>,
    elapsed_s: f64,
    window_s: f64,
}

impl Figures for GroupFigures<'_> {
    fn metric(&self, metric: Metric, offset_ms: i64) -> Option<f64> {
        let (r, scale, seconds) = if offset_ms == 0 {
            (self.now?, 1.0, self.elapsed_s)
        } else {
            let r = self.baselines.get(&offset_ms)?.as_ref()?;
            (r, self.elapsed_s / self.window_s, self.window_s)
        };
        figure(r, metric, scale, seconds)
    }

    fn absent(&self) -> bool {
        self.now.is_none()
    }
}

fn figure(r: &Rollup, metric: Metric, scale: f64, seconds: f64) -> Option<f64> {
    let q = |p: f64| {
        let v = r.histogram.quantile(p)?;
        let lo = r.latency_min_ms.unwrap_or(v);
        let hi = r.latency_max_ms.unwrap_or(v);
        Some(v.clamp(lo.min(hi), hi))
    };
    match metric {
        Metric::Count => Some(r.count as f64 * scale),
        Metric::Errors => Some(r.errors as f64 * scale),
        Metric::Rate => Some(r.count as f64 / seconds.max(1.0)),
        Metric::ErrorRatio => Some(if r.count == 0 {
            0.0
        } else {
            r.errors as f64 / r.count as f64
        }),
        Metric::Avg => (r.latency_count > 0).then(|| r.latency_sum_ms / r.latency_count as f64),
        Metric::P50 => q(0.5),
        Metric::P90 => q(0.9),
        Metric::P99 => q(0.99),
        Metric::Max => r.latency_max_ms,
        Metric::Value => r.gauge.as_ref().map(|g| g.sum / g.n.max(1) as f64),
        Metric::ValueMax => r.gauge.as_ref().map(|g| g.max),
    }
}

/// Evaluates `rule` at `now_ms`. `known` are groups that must be judged
/// even without data (alerts of this rule that are active, and groups an
/// `absent` rule remembers), so that silence becomes "no data" or an
/// absence breach instead of being overlooked.
///
/// # Errors
/// The store could not be read; the caller keeps every alert as it is.
pub async fn evaluate(
    rule: &Rule,
    store: &dyn Store,
    now_ms: i64,
    lag_ms: i64,
    known: &[Group],
) -> Result<Vec<Verdict>, StoreError> {
    let (start, end) = window(rule, now_ms, lag_ms);
    let current = grouped(rule, store, start, end).await?;
    let mut offsets: Vec<i64> = rule.when.offsets();
    if let Some(r) = &rule.recover {
        offsets.extend(r.offsets());
    }
    offsets.retain(|o| *o != 0);
    offsets.sort_unstable();
    offsets.dedup();
    let mut baselines: BTreeMap<i64, BTreeMap<String, (Group, Rollup)>> = BTreeMap::new();
    for off in &offsets {
        baselines.insert(*off, grouped(rule, store, start - off, end - off).await?);
    }
    let elapsed_s = ((now_ms - start) as f64 / 1000.0).clamp(1.0, rule.window_ms as f64 / 1000.0);
    let window_s = rule.window_ms as f64 / 1000.0;

    let mut groups: BTreeMap<String, Group> = current
        .iter()
        .map(|(k, (g, _))| (k.clone(), g.clone()))
        .collect();
    for g in known {
        groups.entry(g.key.clone()).or_insert_with(|| g.clone());
    }
    let mut out = Vec::with_capacity(groups.len());
    for (key, group) in groups {
        let now = current.get(&key).map(|(_, r)| r);
        let base: BTreeMap<i64, Option<Rollup>> = baselines
            .iter()
            .map(|(off, m)| (*off, m.get(&key).map(|(_, r)| r.clone())))
            .collect();
        let f = GroupFigures {
            now,
            baselines: &base,
            elapsed_s,
            window_s,
        };
        let count = now.map_or(0, |r| r.count);
        let observation = judge(rule, &f, count);
        out.push(Verdict {
            group,
            observation,
            count,
        });
    }
    Ok(out)
}

fn judge(rule: &Rule, f: &GroupFigures<'_>, count: u64) -> Observation {
    let v = rule.when.eval(f);
    match v.holds {
        Some(true) => {
            if !f.absent() && count < rule.min_count {
                // Too few events to mean anything: not a breach, and not a
                // recovery either if the alert already fires.
                return Observation::Between {
                    value: v.value.unwrap_or(0.0),
                };
            }
            Observation::Breach {
                value: v.value.unwrap_or(0.0),
                threshold: v.threshold.unwrap_or(0.0),
            }
        }
        Some(false) => match &rule.recover {
            Some(r) if r.eval(f).holds != Some(true) => match v.value {
                Some(value) => Observation::Between { value },
                None => Observation::Ok { value: None },
            },
            _ => Observation::Ok { value: v.value },
        },
        None if f.absent() => Observation::NoData,
        None => Observation::Ok { value: None },
    }
}

/// The groups an `absent` rule should remember at start: those with data
/// in the lookback before its window.
///
/// # Errors
/// The store could not be read.
pub async fn lookback_groups(
    rule: &Rule,
    store: &dyn Store,
    now_ms: i64,
    lag_ms: i64,
) -> Result<Vec<Group>, StoreError> {
    let (start, _) = window(rule, now_ms, lag_ms);
    let from = start - rule.absent_lookback_ms;
    Ok(grouped(rule, store, from, start)
        .await?
        .into_values()
        .map(|(g, _)| g)
        .collect())
}

/// Groups seen in the current window, for an `absent` rule to remember.
pub fn seen(verdicts: &[Verdict]) -> impl Iterator<Item = &Group> {
    verdicts.iter().filter(|v| v.count > 0).map(|v| &v.group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_young_minute_is_left_out_of_the_window_until_it_can_be_in_the_store() {
        let set = crate::rule::parse_file(
            std::path::Path::new("r.toml"),
            "[[rule]]\nname = \"r\"\nlayer = \"url\"\nwindow = \"2m\"\nwhen = \"count > 1\"\n",
        )
        .unwrap();
        let rule = &set.rules[0];
        let t0 = 1_795_352_400_000; // a minute boundary
        assert_eq!(
            window(rule, t0 + 10_000, OPEN_MINUTE_LAG_MS),
            (t0 - 120_000, t0),
            "10 s into the minute: the two minutes before it"
        );
        assert_eq!(
            window(rule, t0 + 20_000, OPEN_MINUTE_LAG_MS),
            (t0 - 60_000, t0 + 60_000),
            "20 s in: the open minute counts"
        );
        assert_eq!(window(rule, t0 + 10_000, 0), (t0 - 60_000, t0 + 60_000));
    }
}
