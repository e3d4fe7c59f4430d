//! The vocabulary every Panorama crate speaks, and nothing else: no I/O lives here.
//!
//! **Owns** every fact two crates share: the event, layer, series key,
//! rollup, mergeable histogram, wire encodings and replies, the agent's
//! self-series names, time units, how query values are percent-encoded. **Must not** do I/O (files, sockets,
//! clocks beyond what a caller passes in).
//!
//! - [`Layer`] names the five layers a series belongs to.
//! - [`Event`] is one parsed log line or posted measurement.
//! - [`SeriesKey`] identifies a series; its [`SeriesKey::id`] is stable across
//!   processes and releases, because stores derive document ids from it.
//! - [`Rollup`] is one minute of one series as seen by one collector. Rollups
//!   merge (count, errors, latency [`Histogram`], gauge), so documents written
//!   by several collectors, or for several minutes, combine into correct
//!   percentiles; [`Point`] is what a merged rollup says to a reader.
//! - [`agent`] names the series an agent reports about itself (heartbeat,
//!   per-source figures), which the dashboard reads back.
//! - [`auth`] names the roles routes are checked against and the principal
//!   a checked request carries.
//! - [`live`] is the sub-minute view a collector keeps of its open minutes,
//!   which the rules engine reads without depending on the collector.
//! - [`ConfigError`] is the one error every configuration check returns,
//!   beside the [`FilePosition`] it names; [`ConfigSource`] says whether the
//!   values came from a file or from flags.
//! - [`url`] is the one percent-encoder of query values, so a link built by
//!   the rules engine and one built by the dashboard agree.
//! - [`wire`] holds the agent's binary batch encoding, the NDJSON format
//!   for third parties, and the collector's [`wire::IngestReply`].
//!
//! ```
//! use panorama_model::{Histogram, Rollup};
//! let mut h = Histogram::new();
//! for ms in [1.0, 2.0, 3.0, 400.0] {
//!     h.record(ms);
//! }
//! let p50 = h.quantile(0.5).unwrap();
//! assert!((p50 - 2.0).abs() / 2.0 <= 0.02);
//! # let _ = Rollup::default;
//! ```

pub mod agent;
pub mod auth;
mod config_error;
mod event;
mod histogram;
mod layer;
pub mod live;
mod position;
mod rollup;
mod series;
mod time;
pub mod url;
pub mod wire;

pub use auth::{Credential, Principal, Role};
pub use config_error::{ConfigError, ConfigSource};
pub use event::{Event, Outcome};
pub use histogram::{Histogram, MAX_TRACKABLE_MS, MIN_TRACKABLE_MS, RELATIVE_ACCURACY};
pub use layer::{Layer, ParseLayerError};
pub use position::FilePosition;
pub use rollup::{ErrorClass, Gauge, Point, Rollup, Sample, SampleKind};
pub use series::SeriesKey;
pub use time::{DAY_MS, HOUR_MS, MINUTE_MS, minute_of};
