//! Reading an hour of minute rollups for compaction: every document of a
//! daily index in one hour, merged as the pages arrive.
//!
//! Paging with `search_after` on the documents' ids made Elasticsearch
//! gather and sort every matching document again for each page: about a
//! second per page of 5,000, two minutes for an hour of 10,000 series
//! (`bench/dashboard.sh`). A point in time sorted by `_shard_doc` (index
//! order) lets each page start where the last one ended, and is a
//! consistent view, so documents written meanwhile neither repeat nor
//! shift a page. Whole sources are fetched (asking for two fields makes
//! Elasticsearch parse and re-serialise every source, which cost more than
//! the fetch) and decoded straight into rollups, not through a JSON tree.

use elasticsearch::http::response::Response;
use elasticsearch::{OpenPointInTimeParts, SearchParts};
use panorama_model::Rollup;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ElasticStore, PAGE, retry, truncate};
use crate::compact::HourMerger;
use crate::{Detail, StoreError};

/// How long the point in time is kept between two pages.
const KEEP_ALIVE: &str = "2m";

/// One page of a point-in-time search, as far as the scan reads it.
#[derive(Deserialize)]
struct Page {
    pit_id: Option<String>,
    /// Absent from a page without hits: `filter_path` leaves no empty objects.
    #[serde(default)]
    hits: Hits,
}

#[derive(Deserialize, Default)]
struct Hits {
    #[serde(default)]
    hits: Vec<Hit>,
}

#[derive(Deserialize)]
struct Hit {
    #[serde(rename = "_source")]
    source: Source,
    sort: Value,
}

#[derive(Deserialize)]
struct Source {
    body: Rollup,
}

impl ElasticStore {
    /// Merges every document of `index` matching `query` into hourly
    /// rollups of the hour starting at `hour_ms`. A missing index is an
    /// empty hour.
    pub(super) async fn merge_index_hour(
        &self,
        index: &str,
        query: Value,
        hour_ms: i64,
    ) -> Result<Vec<Rollup>, StoreError> {
        let mut merger = HourMerger::new(hour_ms);
        let Some(mut pit) = self.open_pit(index).await? else {
            return Ok(merger.finish());
        };
        let scanned = self.scan_pages(index, &query, &mut pit, &mut merger).await;
        // Closed whether or not the scan failed; an unclosed one expires.
        let _ = self
            .client
            .close_point_in_time()
            .body(json!({ "id": pit }))
            .send()
            .await;
        scanned?;
        Ok(merger.finish())
    }

    async fn scan_pages(
        &self,
        index: &str,
        query: &Value,
        pit: &mut String,
        merger: &mut HourMerger,
    ) -> Result<(), StoreError> {
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({
                "pit": {"id": pit.as_str(), "keep_alive": KEEP_ALIVE},
                "query": query,
                "sort": [{"_shard_doc": "asc"}],
                "size": PAGE,
                "track_total_hits": false,
            });
            if let Some(a) = after.take() {
                body["search_after"] = a;
            }
            let resp = self
                .client
                .search(SearchParts::None)
                // A page missing a failed shard's documents would end the
                // scan early and mark the hour with too few events.
                .allow_partial_search_results(false)
                .filter_path(&[
                    "pit_id",
                    "hits.hits._id",
                    "hits.hits._source.body",
                    "hits.hits.sort",
                ])
                .body(body)
                .send()
                .await
                .map_err(|e| unavailable(format!("search {index}: {e}"), e))?;
            let bytes = ok_bytes(resp, &format!("search {index}")).await?;
            let page: Page = match serde_json::from_slice(&bytes) {
                Ok(p) => p,
                Err(e) => return Err(unreadable_page(index, &bytes, e)),
            };
            if let Some(id) = page.pit_id {
                *pit = id;
            }
            let n = page.hits.hits.len();
            for hit in page.hits.hits {
                after = Some(hit.sort);
                merger.add(hit.source.body);
            }
            if n < PAGE {
                return Ok(());
            }
        }
    }

    /// Opens a point in time on `index`; `None` when the index does not exist.
    async fn open_pit(&self, index: &str) -> Result<Option<String>, StoreError> {
        let resp = self
            .client
            .open_point_in_time(OpenPointInTimeParts::Index(&[index]))
            .keep_alive(KEEP_ALIVE)
            .send()
            .await
            .map_err(|e| unavailable(format!("open a point in time on {index}: {e}"), e))?;
        if resp.status_code().as_u16() == 404 {
            return Ok(None);
        }
        let bytes = ok_bytes(resp, &format!("open a point in time on {index}")).await?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            StoreError::Backend(Detail::with_source(
                format!("open a point in time on {index}: unreadable answer: {e}"),
                e,
            ))
        })?;
        match v["id"].as_str() {
            Some(id) => Ok(Some(id.to_owned())),
            None => Err(StoreError::Backend(
                format!(
                    "open a point in time on {index}: no id in {}",
                    truncate(&v.to_string())
                )
                .into(),
            )),
        }
    }
}

fn unavailable(what: String, e: elasticsearch::Error) -> StoreError {
    StoreError::Unavailable(Detail::with_source(what, e))
}

/// The body of a successful answer; an error naming `what` otherwise
/// (`Unavailable` when a retry may help).
async fn ok_bytes(resp: Response, what: &str) -> Result<Vec<u8>, StoreError> {
    let status = resp.status_code().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| unavailable(format!("{what}: reading the answer: {e}"), e))?;
    if (200..300).contains(&status) {
        return Ok(bytes.to_vec());
    }
    let msg = format!(
        "{what}: status {status}: {}",
        truncate(&String::from_utf8_lossy(&bytes))
    );
    Err(if retry::status_is_retryable(status) {
        StoreError::Unavailable(msg.into())
    } else {
        StoreError::Backend(msg.into())
    })
}

/// The error for a page that did not decode: names the first document
/// whose body is not a rollup (read again as a JSON tree, only now).
fn unreadable_page(index: &str, bytes: &[u8], e: serde_json::Error) -> StoreError {
    let tree: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let culprit = tree["hits"]["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|h| {
            let body = &h["_source"]["body"];
            serde_json::from_value::<Rollup>(body.clone())
                .err()
                .map(|err| (h["_id"].as_str().unwrap_or("?").to_owned(), err))
        });
    let what = match culprit {
        Some((id, err)) => format!("document {id} in {index} has an unreadable body: {err}"),
        None => format!("a page of {index} is unreadable: {e}"),
    };
    StoreError::Backend(Detail::with_source(what, e))
}
