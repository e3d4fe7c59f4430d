//! Rule files: what to watch, when to page, and whom.
//!
//! A rules directory holds TOML files with three kinds of tables:
//! `[[rule]]` (a condition over one layer's series), `[[receiver]]` (where
//! notices go) and `[[route]]` (which alerts go to which receivers, and how
//! they are batched), plus `[[depends]]` (a service's dependencies, added
//! to the incident graph). Everything is checked when loaded; every error names
//! file:line:col and what was expected, and a directory with any error is
//! refused as a whole so that a half-loaded rule set never runs.

pub mod explain;
pub mod expr;
mod load;
pub mod pattern;

use std::collections::BTreeMap;
use std::path::PathBuf;

use panorama_model::{FilePosition, HOUR_MS, Layer};

pub use expr::{Expr, Metric};
pub use load::{DEFAULT_EVERY_MS, DEFAULT_MIN_INTERVAL_MS, DEFAULT_WINDOW_MS};
pub use load::{LoadError, load_dir, parse_file};
pub use pattern::Pattern;

use crate::lifecycle::Timing;
use crate::notify::ChannelConfig;
use crate::notify::template::{AlertField, Template};
use crate::rota::{Person, Rota};

/// How urgent a rule's alerts are. Serialized (and written in rule files,
/// labels and notices) as `critical`, `warning` or `info`.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Page now.
    Critical,
    /// The default.
    #[default]
    Warning,
    /// For the record.
    Info,
}

impl Severity {
    /// Every severity with its name, most urgent first: the one list the
    /// loader, its error message and [`Severity::as_str`] read.
    pub const ALL: [(&'static str, Severity); 3] = [
        ("critical", Severity::Critical),
        ("warning", Severity::Warning),
        ("info", Severity::Info),
    ];

    /// As written in a rule file.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    /// The severity named `name`, if any.
    pub fn from_name(name: &str) -> Option<Severity> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one alert stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One alert per (service, series name), merged over hosts and dims.
    Series,
    /// One alert per host.
    Host,
    /// One alert per service.
    Service,
}

/// What a rule's `window` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    /// The last `window` of event time, ending now, at the live view's
    /// resolution (seconds) for this collector's data and whole minutes
    /// for the store's (the default).
    Sliding,
    /// Whole UTC minutes ending with the open one (`align = "minute"`):
    /// what a dashboard chart shows, and what rules meant before windows
    /// slid.
    Minute,
}

impl Align {
    /// As written in a rule file.
    pub fn as_str(self) -> &'static str {
        match self {
            Align::Sliding => "sliding",
            Align::Minute => "minute",
        }
    }
}

/// One rule, checked.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name across the directory.
    pub name: String,
    /// Where it was defined.
    pub at: FilePosition,
    /// Which layer it watches.
    pub layer: Layer,
    /// Service selector.
    pub service: Pattern,
    /// Series name selector.
    pub series: Pattern,
    /// Host selector.
    pub host: Pattern,
    /// Dimension selectors; a series lacking a selected dim does not match.
    pub dims: BTreeMap<String, Pattern>,
    /// What one alert stands for.
    pub group_by: GroupBy,
    /// The window the condition looks at, ending now.
    pub window_ms: i64,
    /// Whether the window slides with event time or snaps to minutes.
    pub align: Align,
    /// The longest time between two evaluations (absence and no-data are
    /// only noticed on this schedule).
    pub every_ms: i64,
    /// The shortest time between two evaluations: events arriving for the
    /// rule's series trigger one at most this often.
    pub min_interval_ms: i64,
    /// The condition, as written.
    pub when_text: String,
    /// The condition.
    pub when: Expr,
    /// An explicit recovery condition, as written.
    pub recover_text: Option<String>,
    /// An explicit recovery condition.
    pub recover: Option<Expr>,
    /// Fewer events than this in the window is not a breach (1 error in 2
    /// requests pages nobody).
    pub min_count: u64,
    /// How far back a silent group is still remembered by `absent`.
    pub absent_lookback_ms: i64,
    /// Lifecycle timings.
    pub timing: Timing,
    /// How urgent its alerts are.
    pub severity: Severity,
    /// Extra labels for routing and silences.
    pub labels: BTreeMap<String, String>,
    /// One-line summary template.
    pub summary: Template<AlertField>,
    /// Longer description template.
    pub description: Template<AlertField>,
}

/// A named channel.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// Its name, used by routes.
    pub name: String,
    /// Where it was defined.
    pub at: FilePosition,
    /// How it delivers.
    pub kind: ReceiverKind,
    /// Most notices per hour through this receiver; beyond, they are
    /// folded into one digest sent when the hour allows.
    pub budget_per_hour: Option<u32>,
}

/// What a receiver is.
#[derive(Debug, Clone)]
pub enum ReceiverKind {
    /// A channel that delivers.
    Channel(ChannelConfig),
    /// Whoever is on duty, reached through other receivers.
    Rota(Rota),
}

/// One escalation step of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    /// Unacknowledged this long after firing...
    pub after_ms: i64,
    /// ...these receivers are told too.
    pub receivers: Vec<String>,
    /// A voice receiver of this step calls each person up to this many times.
    pub repeat_call: Option<u32>,
}

/// Which alerts go to which receivers, batched how.
#[derive(Debug, Clone)]
pub struct Route {
    /// All must match the alert's labels.
    pub matchers: BTreeMap<String, Pattern>,
    /// Receiver names.
    pub receivers: Vec<String>,
    /// How long to wait after the first alert of a group, for others to join.
    pub group_wait_ms: i64,
    /// How long between two notices of one group.
    pub group_interval_ms: i64,
    /// How often a still-firing, unacknowledged group is notified again.
    pub repeat_interval_ms: i64,
    /// Keep looking at later routes after this one matched.
    pub continue_matching: bool,
    /// Where each receiver name was written (for errors).
    pub receiver_at: Vec<FilePosition>,
    /// Escalation steps, in order.
    pub escalate: Vec<Escalation>,
    /// Where each escalation receiver name was written (for errors).
    pub escalate_refs: Vec<(String, FilePosition)>,
    /// Where it was defined.
    pub at: FilePosition,
}

impl Route {
    /// True when every matcher matches `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers
            .iter()
            .all(|(k, p)| labels.get(k).is_some_and(|v| p.matches(v)))
    }
}

/// A whole rules directory, checked.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// The files read, sorted.
    pub files: Vec<PathBuf>,
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// Receivers by name.
    pub receivers: BTreeMap<String, Receiver>,
    /// Routes in file order; when none is given every alert goes to every receiver.
    pub routes: Vec<Route>,
    /// People rotas name, by name.
    pub people: BTreeMap<String, Person>,
    /// Where each person was defined.
    pub people_at: BTreeMap<String, FilePosition>,
    /// Dependencies declared with `[[depends]]`, added to the learned graph.
    pub depends: Vec<Depends>,
}

/// `[[depends]]`: a service depends on these, whatever the data says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depends {
    /// The dependent service.
    pub service: String,
    /// What it depends on: services or call targets, components
    /// (`mysql@db1`), or `host:NAME`.
    pub on: Vec<String>,
    /// Where it was written.
    pub at: FilePosition,
}

/// Default batching of a route, chosen for a pager: wait 10 s for a storm
/// to gather (rules are evaluated as events arrive, so the alerts of one
/// storm are all raised within a few seconds), then at most one notice per
/// group every minute, and a reminder every 4 hours. A longer
/// `group_interval` would hold back the page of the next, separate
/// incident of the same rule behind the last notice: with 5 minutes,
/// incidents a few minutes apart were paged minutes late.
pub const DEFAULT_GROUP_WAIT_MS: i64 = 10_000;
/// See [`DEFAULT_GROUP_WAIT_MS`].
pub const DEFAULT_GROUP_INTERVAL_MS: i64 = 60_000;
/// See [`DEFAULT_GROUP_WAIT_MS`].
pub const DEFAULT_REPEAT_INTERVAL_MS: i64 = 4 * HOUR_MS;

impl RuleSet {
    /// The routes an alert with these labels takes: the first matching
    /// route (and later ones while `continue` is set); every receiver with
    /// default batching when no route is configured.
    pub fn routes_for(&self, labels: &BTreeMap<String, String>) -> Vec<Route> {
        if self.routes.is_empty() {
            if self.receivers.is_empty() {
                return Vec::new();
            }
            return vec![Route {
                matchers: BTreeMap::new(),
                receivers: self.receivers.keys().cloned().collect(),
                group_wait_ms: DEFAULT_GROUP_WAIT_MS,
                group_interval_ms: DEFAULT_GROUP_INTERVAL_MS,
                repeat_interval_ms: DEFAULT_REPEAT_INTERVAL_MS,
                continue_matching: false,
                receiver_at: Vec::new(),
                escalate: Vec::new(),
                escalate_refs: Vec::new(),
                at: FilePosition {
                    path: PathBuf::from("(default route)"),
                    line: 0,
                    column: 0,
                },
            }];
        }
        let mut out = Vec::new();
        for r in &self.routes {
            if r.matches(labels) {
                out.push(r.clone());
                if !r.continue_matching {
                    break;
                }
            }
        }
        out
    }

    /// A rule by name.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}
