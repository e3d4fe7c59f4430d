//! The Elasticsearch backend: the production store and the scale-out path.
//!
//! - [`config`](ElasticConfig): where the cluster is, index prefix, retry policy.
//! - `template`: index templates installed by [`ElasticStore::connect`].
//! - `retry`: reads every item of a bulk response and decides, per document,
//!   done, retry or reject.
//! - `hour_scan`: reads an hour of minutes for the compactor through a
//!   point in time, merging as it reads.
//!
//! Documents go to daily indices named after the UTC day of their minute
//! (`{prefix}-rollups-2026.11.22`), so retention deletes whole indices and a
//! query over a range touches only the days it needs. The hourly tier has
//! monthly indices (`{prefix}-hourly-2026.11` for series,
//! `{prefix}-hourlayers-2026.11` for whole layers, `{prefix}-hourmarks-2026.11`
//! for the marks of compacted hours), with the same mapping as minutes, so
//! one search with a filter on `_index` reads both tiers at once. Only core
//! APIs are used (bulk, index templates, search, points in time, refresh,
//! cat indices, delete index): the minimal distribution without x-pack
//! features serves them all.

mod config;
mod hour_scan;
mod kept;
mod layer_pieces;
mod retry;
mod series_pieces;
mod template;

pub use config::{ElasticConfig, RetryPolicy};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use elasticsearch::cat::CatIndicesParts;
use elasticsearch::http::response::Response;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::indices::{
    IndicesDeleteIndexTemplateParts, IndicesDeleteParts, IndicesPutIndexTemplateParts,
    IndicesPutMappingParts, IndicesRefreshParts,
};
use elasticsearch::{BulkParts, Elasticsearch, Search, SearchParts};
use panorama_model::{DAY_MS, Layer, Point, Rollup, Sample, minute_of};
use serde_json::{Value, json};

use crate::merge::{rank, retention_cutoff_ms};
use crate::tier::{self, Plan};
use crate::totals::{rank_series, sort_layers, sort_seen};
use crate::{
    Detail, LayerTotals, Metric, Rejection, RetentionReport, SampleQuery, SeenSeries, SeriesQuery,
    SeriesTotals, SeriesTotalsQuery, Store, StoreError, TopEntry, TopQuery, Totals, TotalsQuery,
};
use retry::ItemOutcome;

/// Documents fetched per search page when reading a series.
const PAGE: usize = 5_000;

/// The stored fields a read decodes: the indexed copies of a document's
/// fields are left on the node, which halves what a long read transfers.
const BODY: &[&str] = &["doc_id", "body"];

/// Counters for `/metrics`: how often writes had to be retried and how many
/// documents were refused for good.
#[derive(Debug, Default)]
pub struct ElasticStats {
    /// Bulk attempts that were retried, whole or in part.
    pub retries: AtomicU64,
    /// Documents Elasticsearch refused for good.
    pub rejected_docs: AtomicU64,
    /// Documents written.
    pub written_docs: AtomicU64,
}

/// How long `connect` tries to install the templates before starting anyway.
const CONNECT_TRY: std::time::Duration = std::time::Duration::from_secs(5);

/// A [`Store`] on an Elasticsearch 8 cluster.
pub struct ElasticStore {
    client: Elasticsearch,
    cfg: ElasticConfig,
    stats: ElasticStats,
    /// Index templates are in place. A collector that starts while the
    /// cluster is down must still start (its WAL holds what it accepts), so
    /// templates are installed before the first write that finds them
    /// missing rather than only at connect.
    templates_ready: std::sync::atomic::AtomicBool,
    /// Series tables of stretches that no longer change (`kept`).
    series_kept: kept::Kept<Vec<SeriesTotals>>,
    /// Chart buckets' merged whole-layer rollups, likewise.
    points_kept: kept::Kept<Rollup>,
    /// The marks of hours, by range read.
    marks_kept: kept::Kept<Vec<crate::HourMark>>,
}

/// One document of a bulk request: target index, id and source.
struct Doc {
    index: String,
    id: String,
    source: String,
    /// An external version (`external_gte`): the write is refused (409)
    /// when the stored document has a higher one, which counts as done —
    /// a fuller document is already there. Hourly documents use their
    /// events, so they never shrink.
    version: Option<u64>,
}

/// How a search may answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// As Elasticsearch pleases: from any shard copy, partial results
    /// allowed (a page still shows what the healthy shards hold).
    Any,
    /// Whole or not at all, from the same shard copies as every other
    /// such search: for answers that are kept (`kept`), whose signature
    /// and documents must come from the same copy and be complete.
    Whole,
}

/// The `preference` of [`Read::Whole`] searches: a fixed string routes
/// them all to the same copy of each shard.
const KEPT_PREFERENCE: &str = "panorama-kept";

/// The index kinds of the hourly tier (monthly indices).
const HOURLY: &str = "hourly";
const HOURLY_LAYERS: &str = "hourlayers";
const HOUR_MARKS: &str = "hourmarks";
/// The collectors' partials of hours: daily indices, so the minutes'
/// retention deletes them with the minutes they stand for.
const HOUR_PARTIALS: &str = "hourparts";

impl ElasticStore {
    /// Connects and tries for a few seconds to install the index templates.
    /// A cluster that is down is not an error: the first write after it
    /// answers installs them, and writes before that fail as
    /// [`StoreError::Unavailable`], which the collector keeps in its WAL.
    ///
    /// # Errors
    /// [`StoreError::Backend`] for an invalid URL or refused templates.
    pub async fn connect(cfg: ElasticConfig) -> Result<ElasticStore, StoreError> {
        let url = cfg.url.parse().map_err(|e| {
            StoreError::Backend(Detail::with_source(
                format!("invalid Elasticsearch URL {:?}: {e}", cfg.url),
                e,
            ))
        })?;
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(cfg.request_timeout)
            .build()
            .map_err(|e| {
                StoreError::Backend(Detail::with_source(
                    format!("building the Elasticsearch client: {e}"),
                    e,
                ))
            })?;
        let store = ElasticStore {
            client: Elasticsearch::new(transport),
            cfg,
            stats: ElasticStats::default(),
            templates_ready: std::sync::atomic::AtomicBool::new(false),
            series_kept: kept::Kept::new(series_pieces::MAX_ROWS),
            points_kept: kept::Kept::new(layer_pieces::MAX_BUCKETS),
            marks_kept: kept::Kept::new(100_000),
        };
        // One short try: a cluster that is down at start is not a reason
        // for the collector not to start; writes install the templates
        // once it answers, and until then fail as Unavailable (kept in the WAL).
        match tokio::time::timeout(CONNECT_TRY, store.install_templates()).await {
            Ok(Ok(())) => store.templates_ready.store(true, Ordering::Relaxed),
            Ok(Err(StoreError::Unavailable(e))) => {
                tracing::warn!(error = %e, "Elasticsearch unavailable at start; index templates are installed when it answers")
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => tracing::warn!(
                "Elasticsearch did not answer within {} s at start; index templates are installed when it answers",
                CONNECT_TRY.as_secs()
            ),
        }
        Ok(store)
    }

    /// Installs the index templates if they are not known to be in place.
    async fn ensure_templates(&self) -> Result<(), StoreError> {
        if self.templates_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.install_templates().await?;
        self.templates_ready.store(true, Ordering::Relaxed);
        tracing::info!("Elasticsearch index templates installed");
        Ok(())
    }

    /// Write and retry counters.
    pub fn stats(&self) -> &ElasticStats {
        &self.stats
    }

    /// The configuration in use.
    pub fn config(&self) -> &ElasticConfig {
        &self.cfg
    }

    fn rollup_index(&self, minute_ms: i64) -> String {
        format!("{}-rollups-{}", self.cfg.index_prefix, day(minute_ms))
    }

    /// Writes rollups into the daily indices of `kind`: `rollups` for the
    /// series, `layers` for whole-layer rollups (same mapping, indices of
    /// their own so that no search over series ever sees them).
    async fn write_rollups_to(&self, rollups: &[Rollup], kind: &str) -> Result<(), StoreError> {
        self.ensure_templates().await?;
        let prefix = &self.cfg.index_prefix;
        let docs = rollups
            .iter()
            .map(|r| rollup_doc(r, format!("{prefix}-{kind}-{}", day(r.minute_ms))))
            .collect();
        self.bulk(docs).await
    }

    fn sample_index(&self, minute_ms: i64) -> String {
        format!("{}-samples-{}", self.cfg.index_prefix, day(minute_ms))
    }

    fn rollup_pattern(&self) -> String {
        format!("{}-rollups-*", self.cfg.index_prefix)
    }

    fn layer_pattern(&self) -> String {
        format!("{}-layers-*", self.cfg.index_prefix)
    }

    fn sample_pattern(&self) -> String {
        format!("{}-samples-*", self.cfg.index_prefix)
    }

    async fn install_templates(&self) -> Result<(), StoreError> {
        let templates = [
            (
                format!("{}-rollups", self.cfg.index_prefix),
                template::rollups(&self.cfg),
            ),
            (
                format!("{}-samples", self.cfg.index_prefix),
                template::samples(&self.cfg),
            ),
            (
                format!("{}-deadletter", self.cfg.index_prefix),
                template::dead_letters(&self.cfg),
            ),
            (
                format!("{}-{HOUR_MARKS}", self.cfg.index_prefix),
                template::hour_marks(&self.cfg),
            ),
            (
                format!("{}-{HOUR_PARTIALS}", self.cfg.index_prefix),
                template::hour_partials(&self.cfg),
            ),
        ];
        for (name, body) in templates {
            self.with_retry("install index template", || async {
                self.client
                    .indices()
                    .put_index_template(IndicesPutIndexTemplateParts::Name(&name))
                    .body(body.clone())
                    .send()
                    .await
            })
            .await?;
        }
        // Daily indices made before the totals fields existed get them
        // added (a mapping may grow, never change), so today's index keeps
        // accepting documents after an upgrade.
        let pattern = self.rollup_pattern();
        self.with_retry("extend rollup mappings", || async {
            self.client
                .indices()
                .put_mapping(IndicesPutMappingParts::Index(&[&pattern]))
                .allow_no_indices(true)
                .ignore_unavailable(true)
                .body(template::rollup_totals_fields())
                .send()
                .await
        })
        .await?;
        Ok(())
    }

    /// A search of `names` (missing indices are no error) that answers as
    /// `read` asks.
    fn search_in<'a, 'b>(&'a self, names: &'b [&'b str], read: Read) -> Search<'a, 'b, ()> {
        let search = self
            .client
            .search(SearchParts::Index(names))
            .ignore_unavailable(true)
            .allow_no_indices(true);
        match read {
            Read::Any => search,
            Read::Whole => search
                .allow_partial_search_results(false)
                .preference(KEPT_PREFERENCE),
        }
    }

    /// Runs a search of aggregations only and returns its `aggregations`.
    async fn aggregate(&self, index: &str, query: Value, aggs: Value) -> Result<Value, StoreError> {
        self.aggregate_as(index, query, aggs, Read::Any).await
    }

    /// [`Self::aggregate`] for an answer that is kept (`kept`).
    async fn aggregate_whole(
        &self,
        index: &str,
        query: Value,
        aggs: Value,
    ) -> Result<Value, StoreError> {
        self.aggregate_as(index, query, aggs, Read::Whole).await
    }

    async fn aggregate_as(
        &self,
        index: &str,
        query: Value,
        aggs: Value,
        read: Read,
    ) -> Result<Value, StoreError> {
        let body = json!({"size": 0, "track_total_hits": false, "query": query, "aggs": aggs});
        let names = [index];
        let search = self.search_in(&names, read).request_cache(true);
        let resp = search.body(body).send().await.map_err(|e| {
            StoreError::Unavailable(Detail::with_source(format!("aggregate {index}: {e}"), e))
        })?;
        let status = resp.status_code().as_u16();
        let mut body: Value = resp.json().await.map_err(|e| {
            StoreError::Unavailable(Detail::with_source(
                format!("reading aggregation response: {e}"),
                e,
            ))
        })?;
        if !(200..300).contains(&status) {
            let msg = format!(
                "aggregate {index}: status {status}: {}",
                truncate(&body.to_string())
            );
            return Err(if retry::status_is_retryable(status) {
                StoreError::Unavailable(msg.into())
            } else {
                StoreError::Backend(msg.into())
            });
        }
        Ok(body["aggregations"].take())
    }

    /// The filter of a totals query.
    fn totals_filter(q: &TotalsQuery) -> Value {
        let mut filter = vec![json!({"range": {"minute": {"gte": q.from_ms, "lt": q.to_ms}}})];
        if let Some(l) = q.layer {
            filter.push(json!({"term": {"layer": l}}));
        }
        push_term(&mut filter, "service", q.service.as_deref());
        push_term(&mut filter, "name", q.name.as_deref());
        push_term(&mut filter, "host", q.host.as_deref());
        if let Some(p) = &q.name_prefix {
            filter.push(json!({"prefix": {"name": p}}));
        }
        json!({"bool": {"filter": filter}})
    }

    /// The daily indices of `kind` (`rollups` or `layers`) a range touches,
    /// or the pattern when it spans many days: fewer shards searched for
    /// the common short ranges.
    fn daily_indices(&self, from_ms: i64, to_ms: i64, kind: &str) -> String {
        let prefix = &self.cfg.index_prefix;
        let (first, last) = (from_ms.div_euclid(DAY_MS), (to_ms - 1).div_euclid(DAY_MS));
        if last - first > 2 {
            return format!("{prefix}-{kind}-*");
        }
        (first..=last)
            .map(|d| format!("{prefix}-{kind}-{}", day(d * DAY_MS)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The rollups of `indices` matching `q`, oldest first.
    async fn read_rollups_in(
        &self,
        indices: &str,
        q: &SeriesQuery,
    ) -> Result<Vec<Rollup>, StoreError> {
        q.validate()?;
        let mut filter = vec![
            json!({"term": {"layer": q.layer}}),
            json!({"range": {"minute": {"gte": q.from_ms, "lt": q.to_ms}}}),
        ];
        push_term(&mut filter, "service", q.service.as_deref());
        push_term(&mut filter, "name", q.name.as_deref());
        push_term(&mut filter, "host", q.host.as_deref());
        for (k, v) in &q.dims {
            filter.push(json!({"term": {"dims_kv": format!("{k}={v}")}}));
        }
        let hits = self
            .search_all(
                indices,
                json!({"bool": {"filter": filter}}),
                json!([{"minute": "asc"}, {"doc_id": "asc"}]),
                None,
                BODY,
            )
            .await?;
        decode_bodies::<Rollup>(hits)
    }

    /// The whole-layer rollups of `indices` for `layer` in `[from, to)`.
    async fn read_layer_rollups_in(
        &self,
        indices: &str,
        layer: Layer,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, StoreError> {
        let filter = json!({"bool": {"filter": [
            {"term": {"layer": layer}},
            {"range": {"minute": {"gte": from_ms, "lt": to_ms}}},
        ]}});
        let hits = self
            .search_all(
                indices,
                filter,
                json!([{"minute": "asc"}, {"doc_id": "asc"}]),
                None,
                BODY,
            )
            .await?;
        decode_bodies::<Rollup>(hits)
    }

    /// Makes the documents of `indices` visible to searches.
    async fn refresh(&self, indices: &[&str]) -> Result<(), StoreError> {
        self.with_retry("refresh", || async {
            self.client
                .indices()
                .refresh(IndicesRefreshParts::Index(indices))
                .allow_no_indices(true)
                .ignore_unavailable(true)
                .send()
                .await
        })
        .await?;
        Ok(())
    }

    /// The monthly indices of hourly `kind` a range touches.
    fn monthly_indices(&self, from_ms: i64, to_ms: i64, kind: &str) -> Vec<String> {
        let prefix = &self.cfg.index_prefix;
        let mut out: Vec<String> = Vec::new();
        let mut at = tier::hour_of(from_ms);
        while at < to_ms {
            let name = format!("{prefix}-{kind}-{}", month(at));
            if out.last() != Some(&name) {
                out.push(name);
            }
            at += tier::HOUR_MS * 24;
        }
        let last = format!("{prefix}-{kind}-{}", month(to_ms - 1));
        if out.last() != Some(&last) {
            out.push(last);
        }
        out
    }

    /// The indices a tiered read searches and the clause that keeps, of
    /// each, only the documents of its segments: minute kinds (daily
    /// indices) over the plan's minute ranges, hourly kinds (monthly) over
    /// its hours; a kind paired with a layer keeps that layer only.
    fn tiered(
        &self,
        plan: &Plan,
        minute_kinds: &[(&str, Option<Layer>)],
        hour_kinds: &[(&str, Option<Layer>)],
    ) -> (String, Value) {
        let p = &self.cfg.index_prefix;
        let mut indices: Vec<String> = Vec::new();
        let mut should = Vec::new();
        for &(kind, only) in minute_kinds {
            for &(a, b) in &plan.minutes {
                for i in self.daily_indices(a, b, kind).split(',') {
                    if !indices.iter().any(|x| x == i) {
                        indices.push(i.to_owned());
                    }
                }
                should.push(segment_clause(&format!("{p}-{kind}-"), only, a, b));
            }
        }
        for &(kind, only) in hour_kinds {
            for &(a, b) in &plan.hours {
                for i in self.monthly_indices(a, b, kind) {
                    if !indices.contains(&i) {
                        indices.push(i);
                    }
                }
                should.push(segment_clause(&format!("{p}-{kind}-"), only, a, b));
            }
        }
        (
            indices.join(","),
            json!({"bool": {"minimum_should_match": 1, "should": should}}),
        )
    }

    /// Runs a non-bulk request, retrying transport errors and retryable
    /// statuses per the policy; returns the successful response.
    async fn with_retry<F, Fut>(&self, what: &str, mut send: F) -> Result<Response, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Response, elasticsearch::Error>>,
    {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let mut cause = None;
            let failure = match send().await {
                Ok(resp) if resp.status_code().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status_code().as_u16();
                    let text = resp.text().await.unwrap_or_default();
                    if !retry::status_is_retryable(status) {
                        return Err(StoreError::Backend(
                            format!("{what}: status {status}: {}", truncate(&text)).into(),
                        ));
                    }
                    format!("status {status}: {}", truncate(&text))
                }
                Err(e) => {
                    let failure = e.to_string();
                    cause = Some(e);
                    failure
                }
            };
            self.wait_or_give_up(what, &failure, cause, started, attempt)
                .await?;
            attempt += 1;
        }
    }

    /// Waits before the next attempt, or gives up once the policy's time is
    /// spent. `failure` describes the last attempt; `cause` is its transport
    /// error, if it had one, kept as the source of the error given up with.
    async fn wait_or_give_up(
        &self,
        what: &str,
        failure: &str,
        cause: Option<elasticsearch::Error>,
        started: Instant,
        attempt: u32,
    ) -> Result<(), StoreError> {
        if let Some(limit) = self.cfg.retry.max_elapsed
            && started.elapsed() >= limit
        {
            let message = format!(
                "{what}: gave up after {attempt} retries over {:?}: {failure}",
                started.elapsed()
            );
            return Err(StoreError::Unavailable(match cause {
                Some(e) => Detail::with_source(message, e),
                None => message.into(),
            }));
        }
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        let wait = self.cfg.retry.backoff(attempt);
        tracing::warn!(
            what,
            attempt,
            wait_ms = wait.as_millis() as u64,
            failure,
            "elasticsearch retry"
        );
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Sends documents with bulk `index` actions until every one is written
    /// or rejected for good, retrying only the documents that failed.
    async fn bulk(&self, docs: Vec<Doc>) -> Result<(), StoreError> {
        let mut rejected = Vec::new();
        for chunk in docs.chunks(self.cfg.bulk_max_docs.max(1)) {
            self.bulk_chunk(chunk, &mut rejected).await?;
        }
        if rejected.is_empty() {
            return Ok(());
        }
        self.stats
            .rejected_docs
            .fetch_add(rejected.len() as u64, Ordering::Relaxed);
        // Refused documents are kept, whole, where an operator can find
        // them: never dropped silently.
        let now = chrono::Utc::now().timestamp_millis();
        let by_id: std::collections::HashMap<&str, &Doc> =
            docs.iter().map(|d| (d.id.as_str(), d)).collect();
        let letters: Vec<Doc> = rejected
            .iter()
            .filter_map(|r| {
                let d = by_id.get(r.doc_id.as_str())?;
                let source = json!({
                    "doc_id": d.id,
                    "target_index": d.index,
                    "reason": r.reason,
                    "at": now,
                    "document": d.source,
                });
                Some(Doc {
                    index: format!("{}-deadletter-{}", self.cfg.index_prefix, day(now)),
                    id: format!("{}-{now}", d.id),
                    source: source.to_string(),
                    version: None,
                })
            })
            .collect();
        let mut unwritable = Vec::new();
        for chunk in letters.chunks(self.cfg.bulk_max_docs.max(1)) {
            self.bulk_chunk(chunk, &mut unwritable).await?;
        }
        if !unwritable.is_empty() {
            tracing::error!(count = unwritable.len(), first = %unwritable[0].reason, "dead-letter documents refused too");
        }
        Err(StoreError::Rejected(rejected))
    }

    /// The newest documents in the dead-letter indices: what the cluster
    /// refused for good, with why and where it was going.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<Value>, StoreError> {
        self.search_all(
            &format!("{}-deadletter-*", self.cfg.index_prefix),
            json!({"match_all": {}}),
            json!([{"at": "desc"}, {"doc_id": "asc"}]),
            Some(limit),
            &[],
        )
        .await
    }

    async fn bulk_chunk(
        &self,
        chunk: &[Doc],
        rejected: &mut Vec<Rejection>,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let mut pending: Vec<&Doc> = chunk.iter().collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            let mut lines = Vec::with_capacity(pending.len() * 2);
            for d in &pending {
                let action = match d.version {
                    Some(v) => json!({"index": {"_index": d.index, "_id": d.id,
                        "version": v, "version_type": "external_gte"}}),
                    None => json!({"index": {"_index": d.index, "_id": d.id}}),
                };
                lines.push(action.to_string());
                lines.push(d.source.clone());
            }
            let mut cause = None;
            let failure = match self
                .client
                .bulk(BulkParts::None)
                .filter_path(&["errors", "items.*.status", "items.*.error"])
                .body(lines)
                .send()
                .await
            {
                Err(e) => {
                    let failure = e.to_string();
                    cause = Some(e);
                    failure
                }
                Ok(resp) => {
                    let status = resp.status_code().as_u16();
                    match resp.bytes().await {
                        Err(e) => {
                            let failure = StoreError::Unavailable(
                                format!("reading bulk response: {e}").into(),
                            )
                            .to_string();
                            cause = Some(e);
                            failure
                        }
                        Ok(body) if (200..300).contains(&status) => {
                            let outcomes = retry::classify(&body, pending.len())
                                .map_err(|e| StoreError::Backend(e.into()))?;
                            let mut retry_reason = None;
                            let mut next = Vec::new();
                            for (doc, outcome) in pending.iter().zip(outcomes) {
                                match outcome {
                                    ItemOutcome::Done => {
                                        self.stats.written_docs.fetch_add(1, Ordering::Relaxed);
                                    }
                                    ItemOutcome::Conflict(_) if doc.version.is_some() => {
                                        // A document built from more events is there.
                                        self.stats.written_docs.fetch_add(1, Ordering::Relaxed);
                                    }
                                    ItemOutcome::Conflict(reason) => {
                                        rejected.push(Rejection {
                                            doc_id: doc.id.clone(),
                                            reason,
                                        });
                                    }
                                    ItemOutcome::Retry(why) => {
                                        retry_reason.get_or_insert(why);
                                        next.push(*doc);
                                    }
                                    ItemOutcome::Reject(reason) => {
                                        rejected.push(Rejection {
                                            doc_id: doc.id.clone(),
                                            reason,
                                        });
                                    }
                                }
                            }
                            pending = next;
                            match retry_reason {
                                None => continue,
                                Some(why) => {
                                    format!("{} of the bulk's documents: {why}", pending.len())
                                }
                            }
                        }
                        Ok(body) if retry::status_is_retryable(status) => {
                            format!(
                                "status {status}: {}",
                                truncate(&String::from_utf8_lossy(&body))
                            )
                        }
                        Ok(body) => {
                            return Err(StoreError::Backend(
                                format!(
                                    "bulk request refused with status {status}: {}",
                                    truncate(&String::from_utf8_lossy(&body))
                                )
                                .into(),
                            ));
                        }
                    }
                }
            };
            self.wait_or_give_up("bulk write", &failure, cause, started, attempt)
                .await?;
            attempt += 1;
        }
        Ok(())
    }

    /// Runs a search to completion with `search_after`, returning every hit's `_source`.
    async fn search_all(
        &self,
        index: &str,
        query: Value,
        sort: Value,
        limit: Option<usize>,
        source: &[&str],
    ) -> Result<Vec<Value>, StoreError> {
        self.search_all_as(index, (query, sort), limit, source, Read::Any)
            .await
    }

    /// [`Self::search_all`] for documents whose merge is kept (`kept`).
    async fn search_all_whole(
        &self,
        index: &str,
        query: Value,
        sort: Value,
        source: &[&str],
    ) -> Result<Vec<Value>, StoreError> {
        self.search_all_as(index, (query, sort), None, source, Read::Whole)
            .await
    }

    async fn search_all_as(
        &self,
        index: &str,
        (query, sort): (Value, Value),
        limit: Option<usize>,
        source: &[&str],
        read: Read,
    ) -> Result<Vec<Value>, StoreError> {
        let mut out = Vec::new();
        let mut after: Option<Value> = None;
        loop {
            let size = limit.map_or(PAGE, |l| (l - out.len()).min(PAGE));
            if size == 0 {
                break;
            }
            let mut body =
                json!({"query": query, "sort": sort, "size": size, "track_total_hits": false});
            if let Some(a) = &after {
                body["search_after"] = a.clone();
            }
            if !source.is_empty() {
                body["_source"] = json!(source);
            }
            let names = [index];
            let resp = self
                .search_in(&names, read)
                .body(body)
                .send()
                .await
                .map_err(|e| {
                    StoreError::Unavailable(Detail::with_source(format!("search {index}: {e}"), e))
                })?;
            let status = resp.status_code().as_u16();
            let body: Value = resp.json().await.map_err(|e| {
                StoreError::Unavailable(Detail::with_source(
                    format!("reading search response: {e}"),
                    e,
                ))
            })?;
            if !(200..300).contains(&status) {
                let err = StoreError::Backend(
                    format!(
                        "search {index}: status {status}: {}",
                        truncate(&body.to_string())
                    )
                    .into(),
                );
                return Err(if retry::status_is_retryable(status) {
                    StoreError::Unavailable(err.to_string().into())
                } else {
                    err
                });
            }
            let hits = body["hits"]["hits"].as_array().cloned().unwrap_or_default();
            let n = hits.len();
            for mut hit in hits {
                after = Some(hit["sort"].take());
                out.push(hit["_source"].take());
            }
            if n < size {
                break;
            }
        }
        Ok(out)
    }

    async fn index_names(&self) -> Result<Vec<String>, StoreError> {
        let p = &self.cfg.index_prefix;
        let patterns = [
            self.rollup_pattern(),
            self.layer_pattern(),
            self.sample_pattern(),
            format!("{p}-deadletter-*"),
            format!("{p}-{HOURLY}-*"),
            format!("{p}-{HOURLY_LAYERS}-*"),
            format!("{p}-{HOUR_MARKS}-*"),
            format!("{p}-{HOUR_PARTIALS}-*"),
        ];
        let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let resp = self
            .with_retry("list indices", || async {
                self.client
                    .cat()
                    .indices(CatIndicesParts::Index(&patterns))
                    .format("json")
                    .h(&["index"])
                    .send()
                    .await
            })
            .await?;
        let rows: Vec<Value> = resp.json().await.map_err(|e| {
            StoreError::Backend(Detail::with_source(format!("reading index list: {e}"), e))
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| r["index"].as_str().map(str::to_owned))
            .collect())
    }

    /// The query for the minutes of the hour starting at `hour_ms`, and
    /// the one daily index of series and of whole-layer rollups holding them.
    fn hour_of_minutes(&self, hour_ms: i64) -> (Value, String, String) {
        let p = &self.cfg.index_prefix;
        (
            json!({"bool": {"filter": [
                {"range": {"minute": {"gte": hour_ms, "lt": hour_ms + tier::HOUR_MS}}}
            ]}}),
            format!("{p}-rollups-{}", day(hour_ms)),
            format!("{p}-layers-{}", day(hour_ms)),
        )
    }

    /// Waits until the cluster runs no segment merges, up to `max`; returns
    /// how long it waited. For the benchmark: right after a bulk load of
    /// millions of documents the cluster merges for minutes, every merge
    /// voiding the request cache and taking a core, which a collector's
    /// steady trickle of writes does not cause.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    pub async fn wait_for_merges(
        &self,
        max: std::time::Duration,
    ) -> Result<std::time::Duration, StoreError> {
        let started = Instant::now();
        loop {
            let resp = self
                .with_retry("node stats", || async {
                    self.client
                        .nodes()
                        .stats(elasticsearch::nodes::NodesStatsParts::Metric(&["indices"]))
                        .send()
                        .await
                })
                .await?;
            let v: Value = resp.json().await.map_err(|e| {
                StoreError::Backend(Detail::with_source(format!("reading node stats: {e}"), e))
            })?;
            let running: u64 = v["nodes"]
                .as_object()
                .into_iter()
                .flat_map(|n| n.values())
                .map(|n| n["indices"]["merges"]["current"].as_u64().unwrap_or(0))
                .sum();
            if running == 0 || started.elapsed() >= max {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Bytes each tier's series rollups take on disk after a force merge to
    /// one segment (`_cat/indices` store size), and their documents. For
    /// the benchmark: a force merge rewrites every index.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    pub async fn footprint(&self) -> Result<crate::Footprint, StoreError> {
        let p = &self.cfg.index_prefix;
        let all = format!("{p}-*");
        self.with_retry("force merge", || async {
            self.client
                .indices()
                .forcemerge(elasticsearch::indices::IndicesForcemergeParts::Index(&[
                    &all,
                ]))
                .max_num_segments(1)
                // It answers when the merge is done: minutes for a few
                // million documents, far past the usual request timeout.
                .request_timeout(std::time::Duration::from_secs(30 * 60))
                .send()
                .await
        })
        .await?;
        let resp = self
            .with_retry("list index sizes", || async {
                self.client
                    .cat()
                    .indices(CatIndicesParts::Index(&[&all]))
                    .format("json")
                    .bytes(elasticsearch::params::Bytes::B)
                    .h(&["index", "docs.count", "store.size"])
                    .send()
                    .await
            })
            .await?;
        let rows: Vec<Value> = resp.json().await.map_err(|e| {
            StoreError::Backend(Detail::with_source(format!("reading index sizes: {e}"), e))
        })?;
        let mut f = crate::Footprint::default();
        let num = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        for r in rows {
            let name = r["index"].as_str().unwrap_or_default();
            let (docs, bytes) = (num(&r["docs.count"]), num(&r["store.size"]));
            f.total_bytes += bytes;
            if name.starts_with(&format!("{p}-rollups-")) {
                f.minute_bytes += bytes;
                f.minute_docs += docs;
            } else if name.starts_with(&format!("{p}-{HOURLY}-")) {
                f.hourly_bytes += bytes;
                f.hourly_docs += docs;
            }
        }
        Ok(f)
    }

    /// Deletes every index and template of this store's prefix. For tests
    /// and for operators tearing an installation down; never called by
    /// Panorama itself.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`].
    pub async fn delete_everything(&self) -> Result<(), StoreError> {
        self.delete_indices(&self.index_names().await?).await?;
        for name in [
            format!("{}-rollups", self.cfg.index_prefix),
            format!("{}-samples", self.cfg.index_prefix),
            format!("{}-deadletter", self.cfg.index_prefix),
            format!("{}-{HOUR_MARKS}", self.cfg.index_prefix),
            format!("{}-{HOUR_PARTIALS}", self.cfg.index_prefix),
        ] {
            self.client
                .indices()
                .delete_index_template(IndicesDeleteIndexTemplateParts::Name(&name))
                .send()
                .await
                .map_err(|e| StoreError::Unavailable(Detail::with_source(e.to_string(), e)))?;
        }
        Ok(())
    }

    async fn delete_indices(&self, names: &[String]) -> Result<(), StoreError> {
        // Named one by one in batches: the cluster refuses wildcard deletes.
        for batch in names.chunks(50) {
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            self.with_retry("delete indices", || async {
                self.client
                    .indices()
                    .delete(IndicesDeleteParts::Index(&refs))
                    .send()
                    .await
            })
            .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Store for ElasticStore {
    async fn write_rollups(&self, rollups: &[Rollup]) -> Result<(), StoreError> {
        self.write_rollups_to(rollups, "rollups").await
    }

    async fn write_layer_rollups(&self, rollups: &[Rollup]) -> Result<(), StoreError> {
        self.write_rollups_to(rollups, "layers").await
    }

    async fn read_layer_rollups(
        &self,
        layer: Layer,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, StoreError> {
        crate::query::check_range(from_ms, to_ms)?;
        self.read_layer_rollups_in(
            &self.daily_indices(from_ms, to_ms, "layers"),
            layer,
            from_ms,
            to_ms,
        )
        .await
    }

    async fn write_samples(&self, samples: &[Sample]) -> Result<(), StoreError> {
        self.ensure_templates().await?;
        let docs = samples
            .iter()
            .map(|s| {
                let source = json!({
                    "doc_id": s.doc_id(),
                    "minute": s.minute_ms,
                    "ts": s.ts_ms,
                    "layer": s.key.layer,
                    "service": s.key.service,
                    "host": s.key.host,
                    "name": s.key.name,
                    "kind": s.kind,
                    "kind_rank": s.kind.rank(),
                    "collector": s.collector,
                    "body": s,
                });
                Doc {
                    index: self.sample_index(s.minute_ms),
                    id: s.doc_id(),
                    source: source.to_string(),
                    version: None,
                }
            })
            .collect();
        self.bulk(docs).await
    }

    async fn read_rollups(&self, q: &SeriesQuery) -> Result<Vec<Rollup>, StoreError> {
        self.read_rollups_in(&self.rollup_pattern(), q).await
    }

    async fn layer_points(
        &self,
        layer: Layer,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<Point>, StoreError> {
        crate::query::check_bucket(bucket_ms)?;
        crate::query::check_range(from_ms, to_ms)?;
        self.layer_points_by_pieces(layer, from_ms, to_ms, bucket_ms)
            .await
    }

    async fn read_hourly_rollups(&self, q: &SeriesQuery) -> Result<Vec<Rollup>, StoreError> {
        q.validate()?;
        let indices = self.monthly_indices(q.from_ms, q.to_ms, HOURLY).join(",");
        self.read_rollups_in(&indices, q).await
    }

    async fn read_hourly_layer_rollups(
        &self,
        layer: Layer,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, StoreError> {
        crate::query::check_range(from_ms, to_ms)?;
        let indices = self
            .monthly_indices(from_ms, to_ms, HOURLY_LAYERS)
            .join(",");
        self.read_layer_rollups_in(&indices, layer, from_ms, to_ms)
            .await
    }

    async fn read_hour_minutes(
        &self,
        hour_ms: i64,
    ) -> Result<(Vec<Rollup>, Vec<Rollup>), StoreError> {
        // Sorted by the unique id, so paging neither skips nor repeats a
        // document while the index takes writes.
        let (range, si, li) = self.hour_of_minutes(hour_ms);
        let (series, layers) = tokio::join!(
            self.search_all(&si, range.clone(), json!([{"doc_id": "asc"}]), None, BODY,),
            self.search_all(&li, range.clone(), json!([{"doc_id": "asc"}]), None, BODY,),
        );
        Ok((decode_bodies(series?)?, decode_bodies(layers?)?))
    }

    async fn merge_hour_minutes(
        &self,
        hour_ms: i64,
    ) -> Result<(Vec<Rollup>, Vec<Rollup>), StoreError> {
        let (range, si, li) = self.hour_of_minutes(hour_ms);
        let (series, layers) = tokio::join!(
            self.merge_index_hour(&si, range.clone(), hour_ms),
            self.merge_index_hour(&li, range, hour_ms),
        );
        Ok((series?, layers?))
    }

    async fn write_hour(&self, hour: &crate::CompactedHour) -> Result<(), StoreError> {
        self.ensure_templates().await?;
        let p = &self.cfg.index_prefix;
        let at = month(hour.mark.hour_ms);
        let (series_index, layers_index, marks_index) = (
            format!("{p}-{HOURLY}-{at}"),
            format!("{p}-{HOURLY_LAYERS}-{at}"),
            format!("{p}-{HOUR_MARKS}-{at}"),
        );
        let versioned = |r: &Rollup, index: &str| {
            let mut d = rollup_doc(r, index.to_owned());
            d.version = Some(r.count);
            d
        };
        let docs: Vec<Doc> = hour
            .series
            .iter()
            .map(|r| versioned(r, &series_index))
            .chain(hour.layers.iter().map(|r| versioned(r, &layers_index)))
            .collect();
        self.bulk(docs).await?;
        // The mark only once the documents are visible: a reader that
        // sees it must find them.
        self.refresh(&[&series_index, &layers_index]).await?;
        let m = &hour.mark;
        self.bulk(vec![Doc {
            index: marks_index.clone(),
            id: m.hour_ms.to_string(),
            source: json!({
                "hour": m.hour_ms,
                "events": m.events,
                "series": m.series,
                "compacted_at": m.compacted_at_ms,
            })
            .to_string(),
            version: Some(m.events),
        }])
        .await?;
        self.refresh(&[&marks_index]).await
    }

    async fn write_hour_partial(&self, partial: &crate::HourPartial) -> Result<(), StoreError> {
        self.ensure_templates().await?;
        let index = format!(
            "{}-{HOUR_PARTIALS}-{}",
            self.cfg.index_prefix,
            day(partial.hour_ms)
        );
        let doc = |r: &Rollup, kind: &str| {
            let id = crate::tier::partial_doc_id(r);
            Doc {
                index: index.clone(),
                source: json!({
                    "doc_id": id,
                    "hour": partial.hour_ms,
                    "collector": partial.collector,
                    "kind": kind,
                    "body": r,
                })
                .to_string(),
                id,
                version: None,
            }
        };
        let docs = partial
            .series
            .iter()
            .map(|r| doc(r, "series"))
            .chain(partial.layers.iter().map(|r| doc(r, "layer")))
            .collect();
        // Documents of an earlier write of this partial that this one no
        // longer has stay behind; the compactor sees their events in the
        // documents' sum and does not use the hour's partials.
        self.bulk(docs).await?;
        // The mark only once the documents are visible.
        self.refresh(&[&index]).await?;
        let m = partial.mark();
        let id = format!("{}-{}-mark", m.hour_ms, m.collector);
        self.bulk(vec![Doc {
            index: index.clone(),
            source: json!({
                "doc_id": id,
                "hour": m.hour_ms,
                "collector": m.collector,
                "kind": "mark",
                "events": m.events,
            })
            .to_string(),
            id,
            version: None,
        }])
        .await?;
        self.refresh(&[&index]).await
    }

    async fn minute_events_by_collector(
        &self,
        hour_ms: i64,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        let (range, series_index, _) = self.hour_of_minutes(hour_ms);
        let aggs = json!({"c": {
            "terms": {"field": "collector", "size": 10_000},
            "aggs": {"count": {"sum": {"field": "count"}}},
        }});
        let res = self.aggregate(&series_index, range, aggs).await?;
        let mut out = std::collections::BTreeMap::new();
        for b in buckets(&res["c"]) {
            let n = b["count"]["value"].as_f64().unwrap_or_default().round() as u64;
            if let (Some(c), true) = (b["key"].as_str(), n > 0) {
                out.insert(c.to_owned(), n);
            }
        }
        Ok(out)
    }

    async fn read_hour_partials(&self, hour_ms: i64) -> Result<crate::HourPartials, StoreError> {
        let index = format!("{}-{HOUR_PARTIALS}-{}", self.cfg.index_prefix, day(hour_ms));
        let hits = self
            .search_all(
                &index,
                json!({"term": {"hour": hour_ms}}),
                json!([{"doc_id": "asc"}]),
                None,
                &["doc_id", "collector", "kind", "events", "body"],
            )
            .await?;
        let mut out = crate::HourPartials::default();
        let (mut series, mut layers) = (Vec::new(), Vec::new());
        for mut h in hits {
            match h["kind"].as_str() {
                Some("mark") => out.marks.push(crate::PartialMark {
                    hour_ms,
                    collector: h["collector"].as_str().unwrap_or_default().to_owned(),
                    events: h["events"].as_u64().unwrap_or_default(),
                }),
                Some("layer") => layers.push(h.take()),
                _ => series.push(h.take()),
            }
        }
        out.series = decode_bodies(series)?;
        out.layers = decode_bodies(layers)?;
        Ok(out)
    }

    async fn hour_marks(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<crate::HourMark>, StoreError> {
        if to_ms <= from_ms {
            return Ok(Vec::new());
        }
        // Every tiered read plans with the marks, and they change once an
        // hour: kept while their documents' signature (answered from
        // Elasticsearch's request cache) is unchanged.
        let indices = self.monthly_indices(from_ms, to_ms, HOUR_MARKS).join(",");
        let query = json!({"range": {"hour": {"gte": from_ms, "lt": to_ms}}});
        let key = kept::Key::whole("marks", from_ms, to_ms);
        let sig = if self.keeps_answers() {
            let sig = self.whole_signature(&indices, query.clone()).await?;
            if let Some(marks) = self.marks_kept.get(&key, sig) {
                return Ok(marks.to_vec());
            }
            Some(sig)
        } else {
            None
        };
        let hits = self
            .search_all_whole(&indices, query, json!([{"hour": "asc"}]), &[])
            .await?;
        let marks: Vec<crate::HourMark> = hits
            .iter()
            .map(|h| crate::HourMark {
                hour_ms: h["hour"].as_i64().unwrap_or_default(),
                events: h["events"].as_u64().unwrap_or_default(),
                series: h["series"].as_u64().unwrap_or_default(),
                compacted_at_ms: h["compacted_at"].as_i64().unwrap_or_default(),
            })
            .collect();
        if let Some(sig) = sig {
            let n = marks.len();
            self.marks_kept.put(key, sig, Arc::new(marks.clone()), n);
        }
        Ok(marks)
    }

    async fn minute_events_by_hour(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<std::collections::BTreeMap<i64, u64>, StoreError> {
        let mut out = std::collections::BTreeMap::new();
        if to_ms <= from_ms {
            return Ok(out);
        }
        // Whole daily indices named one by one and a body that never
        // changes: each shard's answer stays in its request cache until
        // the shard takes a write, so a pass over two weeks recomputes
        // only today (and days that got late minutes).
        let p = &self.cfg.index_prefix;
        let mut names = Vec::new();
        for d in from_ms.div_euclid(DAY_MS)..=(to_ms - 1).div_euclid(DAY_MS) {
            for kind in ["rollups", "layers"] {
                names.push(format!("{p}-{kind}-{}", day(d * DAY_MS)));
            }
        }
        let aggs = json!({"h": {
            "date_histogram": {"field": "minute", "fixed_interval": "1h", "min_doc_count": 1},
            "aggs": {"count": {"sum": {"field": "count"}}},
        }});
        let res = self
            .aggregate(&names.join(","), json!({"match_all": {}}), aggs)
            .await?;
        for b in buckets(&res["h"]) {
            let h = b["key"].as_f64().unwrap_or_default() as i64;
            let n = b["count"]["value"].as_f64().unwrap_or_default().round() as u64;
            if h >= from_ms && h < to_ms && n > 0 {
                out.insert(h, n);
            }
        }
        Ok(out)
    }

    async fn apply_hourly_retention(
        &self,
        now_ms: i64,
        keep_days: u32,
    ) -> Result<RetentionReport, StoreError> {
        let cutoff = retention_cutoff_ms(now_ms, keep_days);
        let cutoff_day = DateTime::<Utc>::from_timestamp_millis(cutoff)
            .map(|t| t.date_naive())
            .ok_or_else(|| StoreError::InvalidQuery(format!("time {now_ms} out of range")))?;
        let p = &self.cfg.index_prefix;
        let kinds = [HOURLY, HOURLY_LAYERS, HOUR_MARKS].map(|k| format!("{p}-{k}-"));
        // A month goes once its last day is past the cutoff.
        let old: Vec<String> = self
            .index_names()
            .await?
            .into_iter()
            .filter(|name| kinds.iter().any(|k| name.starts_with(k.as_str())))
            .filter(|name| index_month_end(name).is_some_and(|end| end <= cutoff_day))
            .collect();
        self.delete_indices(&old).await?;
        Ok(RetentionReport {
            dropped: old,
            deleted_docs: 0,
        })
    }

    async fn top(&self, q: &TopQuery) -> Result<Vec<TopEntry>, StoreError> {
        let minute = minute_of(q.minute_ms);
        let mut filter = vec![
            json!({"term": {"layer": q.layer}}),
            json!({"term": {"minute": minute}}),
        ];
        push_term(&mut filter, "service", q.service.as_deref());
        let hits = self
            .search_all(
                &self.rollup_index(minute),
                json!({"bool": {"filter": filter}}),
                json!([{"doc_id": "asc"}]),
                None,
                BODY,
            )
            .await?;
        Ok(rank(decode_bodies::<Rollup>(hits)?, q.by, q.limit))
    }

    async fn samples(&self, q: &SampleQuery) -> Result<Vec<Sample>, StoreError> {
        let minute = minute_of(q.minute_ms);
        let mut filter = vec![
            json!({"term": {"layer": q.layer}}),
            json!({"term": {"minute": minute}}),
        ];
        push_term(&mut filter, "service", q.service.as_deref());
        push_term(&mut filter, "name", q.name.as_deref());
        if let Some(kind) = q.kind {
            filter.push(json!({"term": {"kind": kind}}));
        }
        let hits = self
            .search_all(
                &self.sample_index(minute),
                json!({"bool": {"filter": filter}}),
                json!([{"kind_rank": "asc"}, {"ts": "asc"}, {"doc_id": "asc"}]),
                Some(q.limit),
                BODY,
            )
            .await?;
        decode_bodies(hits)
    }

    async fn layer_totals(&self, q: &TotalsQuery) -> Result<Vec<LayerTotals>, StoreError> {
        q.validate()?;
        let sums = if q.sums_only {
            json!({
                "count": {"sum": {"field": "count"}},
                "errors": {"sum": {"field": "errors"}},
                "latency_count": {"sum": {"field": "latency_count"}},
                "latency_sum_ms": {"sum": {"field": "latency_sum_ms"}},
            })
        } else {
            totals_aggs()
        };
        let inner = match q.bucket_ms {
            Some(b) => json!({"t": {
                "date_histogram": {"field": "minute", "fixed_interval": format!("{b}ms"), "min_doc_count": 1},
                "aggs": sums,
            }}),
            None => sums,
        };
        let aggs = json!({"layers": {"terms": {"field": "layer", "size": 16}, "aggs": inner}});
        let narrowed =
            q.service.is_some() || q.name.is_some() || q.host.is_some() || q.name_prefix.is_some();
        let plan = tier::plan_for(self, q.from_ms, q.to_ms, q.bucket_ms).await?;
        // Whole-layer documents for every layer that has them, the series'
        // own documents for infra: one search over both, in either tier.
        let (minute_kinds, hour_kinds): (&[(&str, Option<Layer>)], &[(&str, Option<Layer>)]) =
            if q.whole_layers && !narrowed {
                (
                    &[("layers", None), ("rollups", Some(Layer::Infra))],
                    &[(HOURLY_LAYERS, None), (HOURLY, Some(Layer::Infra))],
                )
            } else {
                (&[("rollups", None)], &[(HOURLY, None)])
            };
        let (indices, clause) = self.tiered(&plan, minute_kinds, hour_kinds);
        let mut filter = Self::totals_filter(q);
        if let Some(f) = filter["bool"]["filter"].as_array_mut() {
            f.push(clause);
        }
        let res = self.aggregate(&indices, filter, aggs).await?;
        let mut out = Vec::new();
        for lb in buckets(&res["layers"]) {
            let Some(layer) = lb["key"].as_str().and_then(|l| l.parse().ok()) else {
                continue;
            };
            match q.bucket_ms {
                Some(_) => {
                    for tb in buckets(&lb["t"]) {
                        let at = tb["key"].as_f64().unwrap_or_default() as i64;
                        out.push(LayerTotals {
                            layer,
                            totals: totals_of(tb, at),
                        });
                    }
                }
                None => out.push(LayerTotals {
                    layer,
                    totals: totals_of(lb, q.from_ms),
                }),
            }
        }
        sort_layers(&mut out);
        Ok(out)
    }

    async fn series_totals(&self, q: &SeriesTotalsQuery) -> Result<Vec<SeriesTotals>, StoreError> {
        q.range.validate()?;
        // One layer: its few thousand series in pieces, most of them kept.
        // Every layer (the overview's worst few): Elasticsearch ranks.
        if q.range.layer.is_some()
            && let Some(rows) = self.series_totals_by_pieces(q).await?
        {
            return Ok(rows);
        }
        let order_by = match q.order {
            Metric::Count => "count",
            Metric::Errors | Metric::ErrorRatio => "errors",
            Metric::P99Ms => "p99_ms",
        };
        let series = json!({"s": {
            "terms": {
                "field": "service_name",
                "size": q.limit.clamp(1, 10_000),
                "order": [{order_by: "desc"}, {"_key": "asc"}],
            },
            "aggs": totals_aggs(),
        }});
        let per_layer = if q.by_host {
            json!({"h": {"terms": {"field": "host", "size": 10_000}, "aggs": series}})
        } else {
            series
        };
        let aggs = json!({"layers": {"terms": {"field": "layer", "size": 16}, "aggs": per_layer}});
        let plan = tier::plan_for(self, q.range.from_ms, q.range.to_ms, None).await?;
        let (indices, clause) = self.tiered(&plan, &[("rollups", None)], &[(HOURLY, None)]);
        let mut filter = Self::totals_filter(&q.range);
        if let Some(f) = filter["bool"]["filter"].as_array_mut() {
            f.push(clause);
        }
        let res = self.aggregate(&indices, filter, aggs).await?;
        // Each layer's (and host's) top `limit`, chosen by Elasticsearch.
        let (rows, _) = series_pieces::series_rows(&res, q);
        Ok(rank_series(rows, q.order, q.limit))
    }

    async fn last_seen(&self, q: &TotalsQuery) -> Result<Vec<SeenSeries>, StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        let range = TotalsQuery {
            to_ms: now.max(q.from_ms) + 366 * DAY_MS,
            ..q.clone()
        };
        let aggs = json!({"l": {"terms": {"field": "layer", "size": 16}, "aggs": {
            "h": {"terms": {"field": "host", "size": 10_000}, "aggs": {
                "s": {"terms": {"field": "service_name", "size": 10_000}, "aggs": {
                    "last": {"max": {"field": "minute"}}
                }}
            }}
        }}});
        let res = self
            .aggregate(&self.rollup_pattern(), Self::totals_filter(&range), aggs)
            .await?;
        let mut out = Vec::new();
        for lb in buckets(&res["l"]) {
            let Some(layer) = lb["key"].as_str().and_then(|l| l.parse().ok()) else {
                continue;
            };
            for hb in buckets(&lb["h"]) {
                let host = hb["key"].as_str().unwrap_or_default();
                for sb in buckets(&hb["s"]) {
                    let key = sb["key"].as_str().unwrap_or_default();
                    let (service, name) = key.split_once('\u{1f}').unwrap_or(("", key));
                    out.push(SeenSeries {
                        layer,
                        service: service.to_owned(),
                        name: name.to_owned(),
                        host: host.to_owned(),
                        last_minute_ms: sb["last"]["value"].as_f64().unwrap_or_default() as i64,
                    });
                }
            }
        }
        sort_seen(&mut out);
        Ok(out)
    }

    async fn apply_retention(
        &self,
        now_ms: i64,
        keep_days: u32,
    ) -> Result<RetentionReport, StoreError> {
        let cutoff = retention_cutoff_ms(now_ms, keep_days);
        let cutoff_day = DateTime::<Utc>::from_timestamp_millis(cutoff)
            .map(|t| t.date_naive())
            .ok_or_else(|| StoreError::InvalidQuery(format!("time {now_ms} out of range")))?;
        let old: Vec<String> = self
            .index_names()
            .await?
            .into_iter()
            .filter(|name| index_day(name).is_some_and(|d| d < cutoff_day))
            .collect();
        self.delete_indices(&old).await?;
        Ok(RetentionReport {
            dropped: old,
            deleted_docs: 0,
        })
    }

    async fn sync(&self) -> Result<(), StoreError> {
        let p = &self.cfg.index_prefix;
        let patterns = [
            self.rollup_pattern(),
            self.layer_pattern(),
            self.sample_pattern(),
            format!("{p}-deadletter-*"),
            format!("{p}-{HOURLY}-*"),
            format!("{p}-{HOURLY_LAYERS}-*"),
            format!("{p}-{HOUR_MARKS}-*"),
            format!("{p}-{HOUR_PARTIALS}-*"),
        ];
        let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
        self.with_retry("refresh", || async {
            self.client
                .indices()
                .refresh(IndicesRefreshParts::Index(&patterns))
                .allow_no_indices(true)
                .ignore_unavailable(true)
                .send()
                .await
        })
        .await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "elasticsearch"
    }
}

/// The sub-aggregations every totals bucket carries; [`totals_of`] reads them.
/// A rollup as an Elasticsearch document for `index`: the fields queries
/// filter and sum on, and the whole rollup in `body`.
fn rollup_doc(r: &Rollup, index: String) -> Doc {
    let t = Totals::of(r);
    let source = json!({
        "doc_id": r.doc_id(),
        "minute": r.minute_ms,
        "layer": r.key.layer,
        "service": r.key.service,
        "host": r.key.host,
        "name": r.key.name,
        "dims_kv": r.key.dims_kv(),
        "series_id": r.key.id(),
        "collector": r.collector,
        "count": r.count,
        "errors": r.errors,
        "service_name": format!("{}\u{1f}{}", r.key.service, r.key.name),
        "latency_count": t.latency_count,
        "latency_sum_ms": t.latency_sum_ms,
        "latency_max_ms": t.latency_max_ms,
        "p99_ms": t.p99_max_ms,
        "value_sum": t.value_sum,
        "value_n": t.value_n,
        "value_max": t.value_max,
        "body": r,
    });
    Doc {
        index,
        id: r.doc_id(),
        source: source.to_string(),
        version: None,
    }
}

fn totals_aggs() -> Value {
    json!({
        "count": {"sum": {"field": "count"}},
        "errors": {"sum": {"field": "errors"}},
        "latency_count": {"sum": {"field": "latency_count"}},
        "latency_sum_ms": {"sum": {"field": "latency_sum_ms"}},
        "latency_max_ms": {"max": {"field": "latency_max_ms"}},
        "p99_ms": {"max": {"field": "p99_ms"}},
        "value_sum": {"sum": {"field": "value_sum"}},
        "value_n": {"sum": {"field": "value_n"}},
        "value_max": {"max": {"field": "value_max"}},
        "last_minute": {"max": {"field": "minute"}},
    })
}

/// Reads [`totals_aggs`] from one bucket. Sums come back as doubles; they
/// are exact for counts below 2^53.
fn totals_of(b: &Value, bucket_ms: i64) -> Totals {
    let num = |k: &str| b[k]["value"].as_f64();
    Totals {
        bucket_ms,
        count: num("count").unwrap_or_default().round() as u64,
        errors: num("errors").unwrap_or_default().round() as u64,
        latency_count: num("latency_count").unwrap_or_default().round() as u64,
        latency_sum_ms: num("latency_sum_ms").unwrap_or_default(),
        latency_max_ms: num("latency_max_ms"),
        p99_max_ms: num("p99_ms"),
        value_sum: num("value_sum").unwrap_or_default(),
        value_n: num("value_n").unwrap_or_default().round() as u64,
        value_max: num("value_max"),
        last_minute_ms: num("last_minute").unwrap_or_default() as i64,
    }
}

fn buckets(agg: &Value) -> &[Value] {
    agg["buckets"].as_array().map_or(&[], Vec::as_slice)
}

fn push_term(filter: &mut Vec<Value>, field: &str, value: Option<&str>) {
    if let Some(v) = value {
        filter.push(json!({"term": {field: v}}));
    }
}

fn decode_bodies<T: serde::de::DeserializeOwned>(
    sources: Vec<Value>,
) -> Result<Vec<T>, StoreError> {
    sources
        .into_iter()
        .map(|mut s| {
            let id = s["doc_id"].as_str().unwrap_or("?").to_owned();
            serde_json::from_value(s["body"].take()).map_err(|e| {
                StoreError::Backend(Detail::with_source(
                    format!("document {id} has an unreadable body: {e}"),
                    e,
                ))
            })
        })
        .collect()
}

/// A `should` clause of a tiered read: documents of the indices starting
/// with `index_prefix` (one kind), of `only` layer if given, with a minute
/// in `[from, to)`.
fn segment_clause(index_prefix: &str, only: Option<Layer>, from: i64, to: i64) -> Value {
    let mut f = vec![
        json!({"prefix": {"_index": index_prefix}}),
        json!({"range": {"minute": {"gte": from, "lt": to}}}),
    ];
    if let Some(l) = only {
        f.push(json!({"term": {"layer": l}}));
    }
    json!({"bool": {"filter": f}})
}

/// The UTC month of an hour, as monthly index names spell it.
fn month(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y.%m").to_string())
        .unwrap_or_else(|| "out-of-range".into())
}

/// The first day after the month a monthly index holds.
fn index_month_end(name: &str) -> Option<NaiveDate> {
    let suffix = name.rsplit('-').next()?;
    let first = NaiveDate::parse_from_str(&format!("{suffix}.01"), "%Y.%m.%d").ok()?;
    first.checked_add_months(chrono::Months::new(1))
}

/// The UTC day of a minute, as daily index names spell it.
fn day(minute_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(minute_ms)
        .map(|t| t.format("%Y.%m.%d").to_string())
        .unwrap_or_else(|| "out-of-range".into())
}

/// The day a daily index holds, from the suffix of its name.
fn index_day(name: &str) -> Option<NaiveDate> {
    let suffix = name.rsplit('-').next()?;
    NaiveDate::parse_from_str(suffix, "%Y.%m.%d").ok()
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(300) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_index_names() {
        assert_eq!(day(0), "1970.01.01");
        let ms = DateTime::parse_from_rfc3339("2026-11-22T23:59:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(day(ms), "2026.11.22");
        assert_eq!(
            index_day("panorama-rollups-2026.11.22"),
            NaiveDate::from_ymd_opt(2026, 11, 22)
        );
        assert_eq!(index_day("panorama-rollups-junk"), None);
    }
}
