//! Where rollups and samples live, behind one trait with two backends.
//!
//! **Owns** the [`Store`] trait, its Elasticsearch and SQLite backends,
//! tiers and retention, and the one conformance suite both pass. **Must
//! not** know about HTTP ingest, agents or alerting: callers hand it
//! rollups and queries.
//!
//! - [`Store`] is the only way the collector writes and the dashboard, rules
//!   engine and query API read. Writes are idempotent by deterministic
//!   document id ([`panorama_model::Rollup::doc_id`]); reads merge the
//!   documents of every collector (and of every host and dim set the query
//!   leaves open) into one [`panorama_model::Point`] per minute.
//! - [`elastic::ElasticStore`] is the production backend: daily indices, an
//!   index template installed on start, bulk writes whose per-item failures
//!   and 429s are retried, and retention by deleting whole daily indices. It
//!   uses core APIs only, so it runs on the minimal distribution.
//! - [`sqlite::SqliteStore`] is the embedded default: one file in the data
//!   directory, so a laptop runs the whole system with one command.
//! - `conformance` is the suite both backends must pass; each backend's
//!   tests call it. It is test code, so it sits behind the `conformance`
//!   feature, which only those tests enable.
//! - Two tiers: minute rollups as collectors write them, and hourly
//!   rollups compacted from them ([`compact`]). [`tier`] decides, in one
//!   place, which tier a read takes: reads in whole-hour buckets (or one
//!   bucket over their range) take compacted whole hours from the hourly
//!   tier and the rest from minutes, so their answers equal the minute
//!   tier's. Each tier has its own retention.

pub mod compact;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod elastic;
mod error;
mod merge;
mod query;
pub mod sqlite;
pub mod tier;
mod totals;

pub use compact::{CompactPolicy, CompactReport};
pub use error::{Detail, Rejection, StoreError};
pub use query::{Metric, RetentionReport, SampleQuery, SeriesQuery, TopEntry, TopQuery};
pub use tier::{
    CompactedHour, Footprint, HOUR_MS, HourMark, HourPartial, HourPartials, PartialMark,
};
pub use totals::{LayerTotals, SeenSeries, SeriesTotals, SeriesTotalsQuery, Totals, TotalsQuery};

use async_trait::async_trait;
use panorama_model::{Layer, Point, Rollup, Sample};

/// The storage contract shared by every backend.
///
/// Implementations must make a write visible to reads once [`Store::sync`]
/// returns, accept the same document twice without double counting, and
/// never return a partially applied write as success.
#[async_trait]
pub trait Store: Send + Sync {
    /// Writes rollups, replacing any document with the same
    /// [`Rollup::doc_id`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the backend could not be reached
    /// within the retry policy (the caller keeps the rollups and tries again);
    /// [`StoreError::Rejected`] for documents the backend refuses for good.
    async fn write_rollups(&self, rollups: &[Rollup]) -> Result<(), StoreError>;

    /// Writes drill-down samples, replacing any with the same [`Sample::doc_id`].
    ///
    /// # Errors
    /// As for [`Store::write_rollups`].
    async fn write_samples(&self, samples: &[Sample]) -> Result<(), StoreError>;

    /// Per-minute points of every series matching the query, merged across
    /// collectors (and hosts and dims the query leaves open), oldest first.
    /// Minutes with no document are absent, not zero.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn read_series(&self, q: &SeriesQuery) -> Result<Vec<Point>, StoreError> {
        Ok(merge::points_by_minute(self.read_rollups(q).await?))
    }

    /// Every stored rollup document matching the query, unmerged, oldest
    /// minute first. Readers that group series their own way (the rules
    /// engine: per series, host or service, with glob and regex selectors)
    /// merge them with [`Rollup::merge`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn read_rollups(&self, q: &SeriesQuery) -> Result<Vec<Rollup>, StoreError>;

    /// Writes whole-layer rollups (key [`SeriesKey::whole_layer`]: every
    /// event of a layer in one minute, counted by the collector alongside
    /// the series' rollups), replacing any with the same
    /// [`Rollup::doc_id`]. They are kept apart from the series' documents,
    /// so no read of series sees them; what they add is the layer's merged
    /// histogram — layer-wide p50/p90/p99 — which sums over series cannot
    /// give and which merging every series' histogram at read time would
    /// take seconds to compute.
    ///
    /// # Errors
    /// As for [`Store::write_rollups`].
    ///
    /// [`SeriesKey::whole_layer`]: panorama_model::SeriesKey::whole_layer
    async fn write_layer_rollups(&self, rollups: &[Rollup]) -> Result<(), StoreError>;

    /// The whole-layer rollups of `layer` with a minute in
    /// `[from_ms, to_ms)`, unmerged, oldest minute first.
    ///
    /// # Errors
    /// [`StoreError::InvalidQuery`] for an empty range;
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn read_layer_rollups(
        &self,
        layer: Layer,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, StoreError>;

    /// The layer over `[from_ms, to_ms)` in buckets of `bucket_ms` (aligned
    /// to the Unix epoch), one point per bucket with documents, oldest
    /// first: every collector's whole-layer rollups of the bucket merged,
    /// so its percentiles are the layer's own.
    ///
    /// # Errors
    /// As for [`Store::read_layer_rollups`], and [`StoreError::InvalidQuery`]
    /// for a bucket that is not whole minutes.
    async fn layer_points(
        &self,
        layer: Layer,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<Point>, StoreError> {
        query::check_bucket(bucket_ms)?;
        query::check_range(from_ms, to_ms)?;
        let plan = tier::plan_for(self, from_ms, to_ms, Some(bucket_ms)).await?;
        let mut rollups = Vec::new();
        for (from, to) in plan.minutes {
            rollups.extend(self.read_layer_rollups(layer, from, to).await?);
        }
        for (from, to) in plan.hours {
            rollups.extend(self.read_hourly_layer_rollups(layer, from, to).await?);
        }
        Ok(merge::points_by_bucket(rollups, bucket_ms))
    }

    /// The series matching `q` in buckets of `bucket_ms` (aligned to the
    /// Unix epoch), one point per bucket with documents, oldest first,
    /// each the merge of every document of the bucket (so its percentiles
    /// are the bucket's own). Buckets of whole hours read compacted hours
    /// from the hourly tier ([`tier`]); the answer is the minute tier's.
    ///
    /// # Errors
    /// As for [`Store::read_series`], and [`StoreError::InvalidQuery`] for
    /// a bucket that is not whole minutes.
    async fn series_points(
        &self,
        q: &SeriesQuery,
        bucket_ms: i64,
    ) -> Result<Vec<Point>, StoreError> {
        query::check_bucket(bucket_ms)?;
        q.validate()?;
        let plan = tier::plan_for(self, q.from_ms, q.to_ms, Some(bucket_ms)).await?;
        let mut rollups = Vec::new();
        let part = |from_ms, to_ms| SeriesQuery {
            from_ms,
            to_ms,
            ..q.clone()
        };
        for (from, to) in plan.minutes {
            rollups.extend(self.read_rollups(&part(from, to)).await?);
        }
        for (from, to) in plan.hours {
            rollups.extend(self.read_hourly_rollups(&part(from, to)).await?);
        }
        Ok(merge::points_by_bucket(rollups, bucket_ms))
    }

    /// The hourly series rollups matching `q` (one per series and compacted
    /// hour, minute = the hour's start), unmerged, oldest first.
    ///
    /// # Errors
    /// As for [`Store::read_rollups`].
    async fn read_hourly_rollups(&self, q: &SeriesQuery) -> Result<Vec<Rollup>, StoreError>;

    /// The hourly whole-layer rollups of `layer` with an hour in `[from_ms, to_ms)`.
    ///
    /// # Errors
    /// As for [`Store::read_layer_rollups`].
    async fn read_hourly_layer_rollups(
        &self,
        layer: Layer,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, StoreError>;

    /// Every minute rollup of the hour starting at `hour_ms`: the series'
    /// (every layer) and the whole layers', unmerged. What compaction reads.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn read_hour_minutes(
        &self,
        hour_ms: i64,
    ) -> Result<(Vec<Rollup>, Vec<Rollup>), StoreError> {
        let (from, to) = (hour_ms, hour_ms + HOUR_MS);
        let mut series = Vec::new();
        let mut layers = Vec::new();
        for layer in Layer::ALL {
            series.extend(
                self.read_rollups(&SeriesQuery::layer(layer, from, to))
                    .await?,
            );
            layers.extend(self.read_layer_rollups(layer, from, to).await?);
        }
        Ok((series, layers))
    }

    /// The hour starting at `hour_ms` merged per series: its series' and
    /// whole layers' hourly rollups, as [`compact::merge_hour`] makes them
    /// from [`Store::read_hour_minutes`]. Backends that can stream the
    /// hour's documents merge them as they read (see
    /// [`compact::HourMerger`]), so the hour's minutes are never all held.
    ///
    /// # Errors
    /// As for [`Store::read_hour_minutes`].
    async fn merge_hour_minutes(
        &self,
        hour_ms: i64,
    ) -> Result<(Vec<Rollup>, Vec<Rollup>), StoreError> {
        let (series, layers) = self.read_hour_minutes(hour_ms).await?;
        Ok((
            compact::merge_hour(hour_ms, series),
            compact::merge_hour(hour_ms, layers),
        ))
    }

    /// Writes a compacted hour: its hourly documents, replacing those of the
    /// same id unless they were built from more events, then its mark, once
    /// the documents are visible to reads.
    ///
    /// # Errors
    /// As for [`Store::write_rollups`].
    async fn write_hour(&self, hour: &CompactedHour) -> Result<(), StoreError>;

    /// Writes one collector's partial of an hour: its documents, then its
    /// mark, once they are visible to reads. Written again, it replaces
    /// itself (the ids name the hour, series and collector).
    ///
    /// # Errors
    /// As for [`Store::write_rollups`].
    async fn write_hour_partial(&self, partial: &HourPartial) -> Result<(), StoreError>;

    /// Events in the series' minute rollups of the hour starting at
    /// `hour_ms`, per collector (collectors without any absent): what each
    /// collector's partial must hold to be used.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn minute_events_by_collector(
        &self,
        hour_ms: i64,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError>;

    /// Every collector's partial of the hour starting at `hour_ms` (none
    /// when no collector wrote one).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn read_hour_partials(&self, hour_ms: i64) -> Result<HourPartials, StoreError>;

    /// The marks of compacted hours starting in `[from_ms, to_ms)`, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn hour_marks(&self, from_ms: i64, to_ms: i64) -> Result<Vec<HourMark>, StoreError>;

    /// Events in the minute tier (series' and whole-layer rollups) per hour
    /// starting in `[from_ms, to_ms)`; hours without documents are absent.
    /// The compactor compares it with the marks to find new and late hours.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn minute_events_by_hour(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<std::collections::BTreeMap<i64, u64>, StoreError>;

    /// Deletes the hourly tier (documents and marks) older than `keep_days`
    /// whole UTC days before `now_ms`; Elasticsearch drops whole monthly
    /// indices, so up to a month more stays.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn apply_hourly_retention(
        &self,
        now_ms: i64,
        keep_days: u32,
    ) -> Result<RetentionReport, StoreError>;

    /// The series of one minute ranked by a metric, merged across collectors
    /// and hosts, each identified by `(service, name)`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn top(&self, q: &TopQuery) -> Result<Vec<TopEntry>, StoreError>;

    /// Samples of one minute of the matching series, ordered by kind, then
    /// event time.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn samples(&self, q: &SampleQuery) -> Result<Vec<Sample>, StoreError>;

    /// Sums per layer (and per time bucket) of the matching rollups, ordered
    /// by layer, then bucket; buckets without documents are absent. The
    /// backend aggregates, so the cost does not grow with the documents'
    /// size: this is what a dashboard overview over days reads.
    ///
    /// # Errors
    /// [`StoreError::InvalidQuery`] for an empty range or a bucket that is
    /// not whole minutes; [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn layer_totals(&self, q: &TotalsQuery) -> Result<Vec<LayerTotals>, StoreError>;

    /// Sums per series — `(layer, service, name)`, and host when asked — over
    /// the query's range, the `limit` highest per layer by `order`, ordered
    /// by layer, then highest first.
    ///
    /// # Errors
    /// As for [`Store::layer_totals`].
    async fn series_totals(&self, q: &SeriesTotalsQuery) -> Result<Vec<SeriesTotals>, StoreError>;

    /// Every series matching the query's layer, service, name, name prefix
    /// and host with a document since `from_ms`, and its newest minute,
    /// ordered by layer, name, host, service: which hosts still beat, and
    /// since when the others are silent. `to_ms` and buckets are ignored.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn last_seen(&self, q: &TotalsQuery) -> Result<Vec<SeenSeries>, StoreError>;

    /// Deletes the minute tier (series' and whole-layer minute rollups,
    /// samples) older than `keep_days` whole UTC days before `now_ms`; the
    /// hourly tier has its own ([`Store::apply_hourly_retention`]).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn apply_retention(
        &self,
        now_ms: i64,
        keep_days: u32,
    ) -> Result<RetentionReport, StoreError>;

    /// Makes every acknowledged write visible to reads (a refresh, for
    /// Elasticsearch). The collector does not need it; tests and the
    /// end-to-end checks do.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    async fn sync(&self) -> Result<(), StoreError>;

    /// A short name for logs and `/health`: `elasticsearch` or `sqlite`.
    fn backend(&self) -> &'static str;
}
