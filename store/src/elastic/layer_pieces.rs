//! A layer's chart points from kept pieces (see `kept`): each chart
//! bucket's whole-layer documents merged into one rollup, kept while the
//! bucket's documents are unchanged. A day in five-minute buckets is
//! 1,440 documents of a kilobyte or two (histograms), fetched and decoded
//! twice per layer page (today and yesterday) without them; with them,
//! one aggregation of sequence numbers and the buckets still moving.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use panorama_model::{Layer, Point, Rollup};
use serde_json::{Value, json};

use super::kept::{Key, Piece, Tier, pieces, stretches};
use super::{BODY, ElasticStore, HOURLY_LAYERS, decode_bodies};
use crate::tier::{self, HOUR_MS};
use crate::{StoreError, merge};

/// Merged bucket rollups kept at most (a kilobyte or two each).
pub(super) const MAX_BUCKETS: usize = 50_000;

impl ElasticStore {
    /// [`Store::layer_points`](crate::Store::layer_points): the same
    /// documents read, the same merge, but a bucket whose documents did
    /// not change since an earlier read is not fetched again.
    pub(super) async fn layer_points_by_pieces(
        &self,
        layer: Layer,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<Point>, StoreError> {
        let plan = tier::plan_for(self, from_ms, to_ms, Some(bucket_ms)).await?;
        // Hourly buckets of the hourly tier are kept like settled minutes:
        // compaction rewrites their documents, which changes their
        // signature.
        let all = pieces(
            &plan,
            bucket_ms.max(HOUR_MS),
            bucket_ms,
            Utc::now().timestamp_millis(),
        );
        let keep = self.keeps_answers();
        let mut indices = Vec::new();
        let any = self.any_layer_piece(&all, &mut indices);
        let query = json!({"bool": {"filter": [{"term": {"layer": layer}}, any]}});
        let indices = indices.join(",");
        let signed = if keep {
            self.signatures(&indices, query, bucket_ms).await?
        } else {
            Default::default()
        };
        let shape = format!("points|{layer}|{bucket_ms}");
        let mut rollups = Vec::new();
        let mut fetch: Vec<(Piece, Option<u64>)> = Vec::new();
        for p in all {
            let bucket = p.from - p.from.rem_euclid(bucket_ms);
            // A bucket without documents has no signature and nothing to read.
            let Some(&sig) = signed.get(&bucket) else {
                if !keep {
                    fetch.push((p, None));
                }
                continue;
            };
            match self.points_kept.get(&Key::new(&shape, &p), sig) {
                Some(r) if p.kept => rollups.push((*r).clone()),
                _ => fetch.push((p, p.kept.then_some(sig))),
            }
        }
        if !fetch.is_empty() {
            let wanted: Vec<Piece> = fetch.iter().map(|(p, _)| *p).collect();
            let mut names = Vec::new();
            let any = self.any_layer_piece(&wanted, &mut names);
            let hits = self
                .search_all_whole(
                    &names.join(","),
                    json!({"bool": {"filter": [{"term": {"layer": layer}}, any]}}),
                    json!([{"minute": "asc"}, {"doc_id": "asc"}]),
                    BODY,
                )
                .await?;
            let mut merged: BTreeMap<usize, Rollup> = BTreeMap::new();
            for r in decode_bodies::<Rollup>(hits)? {
                let Some(i) = fetch.iter().position(|(p, _)| p.holds(r.minute_ms)) else {
                    continue;
                };
                match merged.get_mut(&i) {
                    Some(acc) => acc.merge(&r),
                    None => {
                        merged.insert(i, r);
                    }
                }
            }
            for (i, r) in merged {
                if let (p, Some(sig)) = &fetch[i] {
                    self.points_kept
                        .put(Key::new(&shape, p), *sig, Arc::new(r.clone()), 1);
                }
                rollups.push(r);
            }
        }
        Ok(merge::points_by_bucket(rollups, bucket_ms))
    }

    /// The clause that keeps the whole-layer documents of any of
    /// `pieces`, adding the indices they need to `indices`.
    fn any_layer_piece(&self, pieces: &[Piece], indices: &mut Vec<String>) -> Value {
        let p = &self.cfg.index_prefix;
        let mut should = Vec::new();
        for (tier, from, to) in stretches(pieces) {
            let (kind, names) = match tier {
                Tier::Minutes => (
                    "layers",
                    self.daily_indices(from, to, "layers")
                        .split(',')
                        .map(str::to_owned)
                        .collect(),
                ),
                Tier::Hours => (HOURLY_LAYERS, self.monthly_indices(from, to, HOURLY_LAYERS)),
            };
            for n in names {
                if !indices.contains(&n) {
                    indices.push(n);
                }
            }
            should.push(super::segment_clause(
                &format!("{p}-{kind}-"),
                None,
                from,
                to,
            ));
        }
        json!({"bool": {"minimum_should_match": 1, "should": should}})
    }
}
