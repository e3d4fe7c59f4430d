//! Index templates: installed on start so that every daily index, created on
//! the first bulk write of its day, gets the same mapping.
//!
//! Only fields that queries filter, sort or aggregate on are indexed; the
//! whole rollup (histogram included) travels in `body`, stored but not
//! indexed, because readers merge histograms themselves and indexing them
//! would only cost disk and mapping fields.

use serde_json::{Value, json};

use super::ElasticConfig;

/// The index template for rollups.
pub(super) fn rollups(cfg: &ElasticConfig) -> Value {
    let mut t = json!({
        // Whole-layer rollups are rollups too, in indices of their own.
        // So are hourly rollups (monthly indices): one search reads both tiers.
        "index_patterns": [
            format!("{}-rollups-*", cfg.index_prefix),
            format!("{}-layers-*", cfg.index_prefix),
            format!("{}-hourly-*", cfg.index_prefix),
            format!("{}-hourlayers-*", cfg.index_prefix)
        ],
        "priority": 200,
        "template": {
            "settings": settings(cfg),
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "doc_id": {"type": "keyword"},
                    "minute": {"type": "date", "format": "epoch_millis"},
                    "layer": {"type": "keyword"},
                    "service": {"type": "keyword"},
                    "host": {"type": "keyword"},
                    "name": {"type": "keyword"},
                    "dims_kv": {"type": "keyword"},
                    "series_id": {"type": "keyword"},
                    "collector": {"type": "keyword"},
                    "count": {"type": "long"},
                    "errors": {"type": "long"},
                    "body": {"type": "object", "enabled": false}
                }
            }
        },
        "_meta": {"owner": "panorama", "schema": 2}
    });
    if let Some(p) = t["template"]["mappings"]["properties"].as_object_mut()
        && let Some(extra) = rollup_totals_fields()["properties"].as_object()
    {
        p.extend(extra.clone());
    }
    t
}

/// The fields the dashboard's aggregations sum and rank by (schema 2): put
/// into the template and, as a mapping update, into daily indices created
/// before them, whose strict mapping would otherwise refuse new documents.
pub(super) fn rollup_totals_fields() -> Value {
    json!({
        "properties": {
            "service_name": {"type": "keyword"},
            "latency_count": {"type": "long"},
            "latency_sum_ms": {"type": "double"},
            "latency_max_ms": {"type": "double"},
            "p99_ms": {"type": "double"},
            "value_sum": {"type": "double"},
            "value_n": {"type": "long"},
            "value_max": {"type": "double"}
        }
    })
}

/// The index template for the marks of compacted hours (monthly indices,
/// one small document per hour).
pub(super) fn hour_marks(cfg: &ElasticConfig) -> Value {
    json!({
        "index_patterns": [format!("{}-hourmarks-*", cfg.index_prefix)],
        "priority": 200,
        "template": {
            "settings": settings(cfg),
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "hour": {"type": "date", "format": "epoch_millis"},
                    "events": {"type": "long"},
                    "series": {"type": "long"},
                    "compacted_at": {"type": "date", "format": "epoch_millis"}
                }
            }
        },
        "_meta": {"owner": "panorama", "schema": 1}
    })
}

/// The index template for the collectors' partials of hours (daily
/// indices, deleted with the minutes they summarise): a partial's
/// documents carry their rollup in `body`, its mark carries `events`.
pub(super) fn hour_partials(cfg: &ElasticConfig) -> Value {
    json!({
        "index_patterns": [format!("{}-hourparts-*", cfg.index_prefix)],
        "priority": 200,
        "template": {
            "settings": settings(cfg),
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "doc_id": {"type": "keyword"},
                    "hour": {"type": "date", "format": "epoch_millis"},
                    "collector": {"type": "keyword"},
                    "kind": {"type": "keyword"},
                    "events": {"type": "long"},
                    "body": {"type": "object", "enabled": false}
                }
            }
        },
        "_meta": {"owner": "panorama", "schema": 1}
    })
}

/// The index template for drill-down samples.
pub(super) fn samples(cfg: &ElasticConfig) -> Value {
    json!({
        "index_patterns": [format!("{}-samples-*", cfg.index_prefix)],
        "priority": 200,
        "template": {
            "settings": settings(cfg),
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "doc_id": {"type": "keyword"},
                    "minute": {"type": "date", "format": "epoch_millis"},
                    "ts": {"type": "date", "format": "epoch_millis"},
                    "layer": {"type": "keyword"},
                    "service": {"type": "keyword"},
                    "host": {"type": "keyword"},
                    "name": {"type": "keyword"},
                    "kind": {"type": "keyword"},
                    "kind_rank": {"type": "byte"},
                    "collector": {"type": "keyword"},
                    "body": {"type": "object", "enabled": false}
                }
            }
        },
        "_meta": {"owner": "panorama", "schema": 1}
    })
}

/// The index template for documents the cluster refused for good: kept
/// whole (not indexed, so whatever broke the mapping cannot break this one).
pub(super) fn dead_letters(cfg: &ElasticConfig) -> Value {
    json!({
        "index_patterns": [format!("{}-deadletter-*", cfg.index_prefix)],
        "priority": 200,
        "template": {
            "settings": settings(cfg),
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "doc_id": {"type": "keyword"},
                    "target_index": {"type": "keyword"},
                    "reason": {"type": "text"},
                    "at": {"type": "date", "format": "epoch_millis"},
                    "document": {"type": "keyword", "index": false, "doc_values": false}
                }
            }
        },
        "_meta": {"owner": "panorama", "schema": 1}
    })
}

fn settings(cfg: &ElasticConfig) -> Value {
    json!({
        "number_of_shards": cfg.shards,
        "number_of_replicas": cfg.replicas,
        // Rollups arrive once a minute per series; a 5 s refresh keeps the
        // dashboard current without a segment per bulk request.
        "refresh_interval": "5s"
    })
}
