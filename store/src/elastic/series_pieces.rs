//! A layer's series table from kept pieces (see `kept`): whole UTC days
//! of the hourly tier and settled ten-minute blocks of minutes, each
//! signed by its documents; the rest of the range is summed on every
//! read.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use panorama_model::{DAY_MS, Layer};
use serde_json::{Value, json};

use super::kept::{BLOCK_MS, Key, Piece, Tier, pieces, stretches};
use super::{ElasticStore, HOURLY, buckets, totals_aggs, totals_of};
use crate::tier::{self, Plan};
use crate::totals::rank_series;
use crate::{SeriesTotals, SeriesTotalsQuery, StoreError, TotalsQuery};

/// Pieces summed in one search at most (with the moving part): a search
/// may answer 65,536 buckets, and a piece of a layer has one per series,
/// up to 10,000.
const PIECES_PER_SEARCH: usize = 4;

/// Ten-minute blocks of one read kept at most (a day of minutes): beyond,
/// hours the compactor has not reached, read in one search.
const MAX_BLOCKS: usize = 144;

/// Series rows kept at most (about 200 bytes each): a week of one layer
/// of 2,000 series is about 15 pieces.
pub(super) const MAX_ROWS: usize = 1_000_000;

/// One piece's table and whether it holds every series (a terms
/// aggregation returns 10,000 at most).
type Table = (Vec<SeriesTotals>, bool);

/// Sums by series (and host).
type Sums = HashMap<(Layer, String, String, String), SeriesTotals>;

impl ElasticStore {
    /// [`Store::series_totals`](crate::Store::series_totals) of one layer,
    /// from kept pieces where their signatures allow, the rest from
    /// Elasticsearch; every series of every piece, ranked here. `None`
    /// when a piece has more series than one search returns: then only
    /// Elasticsearch's own ranking can choose the top ones.
    pub(super) async fn series_totals_by_pieces(
        &self,
        q: &SeriesTotalsQuery,
    ) -> Result<Option<Vec<SeriesTotals>>, StoreError> {
        let (from, to) = (q.range.from_ms, q.range.to_ms);
        let plan = tier::plan_for(self, from, to, None).await?;
        let keep = self.keeps_answers();
        let r = &q.range;
        let shape = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{}",
            r.layer, r.service, r.name, r.name_prefix, r.host, q.by_host
        );
        let mut days = Vec::new();
        let mut blocks = Vec::new();
        let mut live = Vec::new();
        for p in pieces(&plan, DAY_MS, BLOCK_MS, Utc::now().timestamp_millis()) {
            match (keep && p.kept, p.tier) {
                (false, _) => live.push(p),
                (true, Tier::Minutes) => blocks.push(p),
                (true, Tier::Hours) => days.push(p),
            }
        }
        if blocks.len() > MAX_BLOCKS {
            // Days of minutes nobody compacted: more blocks than are worth
            // keeping; one search sums them.
            return Ok(None);
        }
        // The signatures of the kept pieces, read beside the sum of what
        // moves; then the pieces whose signature changed are summed.
        let filter = Self::totals_filter(r);
        // A signature's search names only its pieces' span, not the read's
        // range: the same body until the pieces change, so Elasticsearch's
        // request cache answers it while their indices are not written.
        let sign = |ps: Vec<Piece>, width: i64| async move {
            let (Some(first), Some(last)) = (
                ps.iter().map(|p| p.from).min(),
                ps.iter().map(|p| p.to).max(),
            ) else {
                return Ok(HashMap::new());
            };
            let span = TotalsQuery {
                from_ms: first,
                to_ms: last,
                ..r.clone()
            };
            let (indices, query) = self.pieces_query(&Self::totals_filter(&span), &ps);
            self.signatures(&indices, query, width).await
        };
        let (by_day, by_block, summed) = tokio::join!(
            sign(days.clone(), DAY_MS),
            sign(blocks.clone(), BLOCK_MS),
            self.piece_tables(q, &filter, &live, &[]),
        );
        let (moving, _) = summed?;
        if !moving.1 {
            return Ok(None);
        }
        let mut acc = Sums::new();
        merge_into(&mut acc, &moving.0);
        let mut missed = Vec::new();
        for (ps, signed, width) in [(&days, by_day?, DAY_MS), (&blocks, by_block?, BLOCK_MS)] {
            for p in ps {
                // A piece without documents has no signature: nothing to add.
                let Some(&sig) = signed.get(&(p.from - p.from.rem_euclid(width))) else {
                    continue;
                };
                match self.series_kept.get(&Key::new(&shape, p), sig) {
                    Some(rows) => merge_into(&mut acc, &rows),
                    None => missed.push((*p, sig)),
                }
            }
        }
        if !missed.is_empty() {
            let to_sum: Vec<Piece> = missed.iter().map(|(p, _)| *p).collect();
            let (_, summed) = self.piece_tables(q, &filter, &[], &to_sum).await?;
            if !self.keep_tables(&shape, &missed, summed, &mut acc) {
                return Ok(None);
            }
        }
        let rows = acc
            .into_values()
            .map(|mut s| {
                s.totals.bucket_ms = from;
                s
            })
            .collect();
        Ok(Some(rank_series(rows, q.order, q.limit)))
    }

    /// Adds the tables summed for `pieces` (with their signatures) to
    /// `acc` and keeps them; `false` if one is not whole.
    fn keep_tables(
        &self,
        shape: &str,
        pieces: &[(Piece, u64)],
        tables: Vec<Table>,
        acc: &mut Sums,
    ) -> bool {
        for ((p, sig), (rows, whole)) in pieces.iter().zip(tables) {
            if !whole {
                return false;
            }
            merge_into(acc, &rows);
            let n = rows.len();
            self.series_kept
                .put(Key::new(shape, p), *sig, Arc::new(rows), n);
        }
        true
    }

    /// The indices of `pieces` and `filter` narrowed to their documents.
    fn pieces_query(&self, filter: &Value, pieces: &[Piece]) -> (String, Value) {
        let mut indices = Vec::new();
        let any = self.any_piece_clause(pieces, &mut indices);
        let mut query = filter.clone();
        if let Some(f) = query["bool"]["filter"].as_array_mut() {
            f.push(any);
        }
        (indices.join(","), query)
    }

    /// The clause that keeps the documents of any of `pieces`.
    fn any_piece_clause(&self, pieces: &[Piece], indices: &mut Vec<String>) -> Value {
        let should: Vec<Value> = stretches(pieces)
            .into_iter()
            .map(|(tier, from, to)| {
                let p = Piece {
                    tier,
                    from,
                    to,
                    kept: false,
                };
                self.piece_clause(&p, indices)
            })
            .collect();
        json!({"bool": {"minimum_should_match": 1, "should": should}})
    }

    /// Sums `live` as one table and each of `pieces` as its own, in as
    /// few searches as the bucket limit allows.
    async fn piece_tables(
        &self,
        q: &SeriesTotalsQuery,
        filter: &Value,
        live: &[Piece],
        pieces: &[Piece],
    ) -> Result<(Table, Vec<Table>), StoreError> {
        let mut moving = (Vec::new(), true);
        let mut tables = Vec::new();
        let mut chunks: Vec<&[Piece]> = pieces.chunks(PIECES_PER_SEARCH).collect();
        if chunks.is_empty() && !live.is_empty() {
            chunks.push(&[]);
        }
        for (n, chunk) in chunks.into_iter().enumerate() {
            let live = if n == 0 { live } else { &[] };
            let all: Vec<Piece> = live.iter().chain(chunk).copied().collect();
            let (indices, query) = self.pieces_query(filter, &all);
            let mut named = serde_json::Map::new();
            if !live.is_empty() {
                named.insert("live".into(), self.any_piece_clause(live, &mut Vec::new()));
            }
            for (i, p) in chunk.iter().enumerate() {
                named.insert(format!("p{i}"), self.piece_clause(p, &mut Vec::new()));
            }
            let aggs =
                json!({"t": {"filters": {"filters": named}, "aggs": series_aggs(q.by_host)}});
            let res = self.aggregate_whole(&indices, query, aggs).await?;
            let got = &res["t"]["buckets"];
            if !live.is_empty() {
                moving = series_rows(&got["live"], q);
            }
            for i in 0..chunk.len() {
                tables.push(series_rows(&got[format!("p{i}")], q));
            }
        }
        Ok((moving, tables))
    }

    /// The clause that keeps a piece's documents (its tier's indices, its
    /// range), adding the indices it needs to `indices`.
    fn piece_clause(&self, p: &Piece, indices: &mut Vec<String>) -> Value {
        let plan = match p.tier {
            Tier::Minutes => Plan::minutes_only(p.from, p.to),
            Tier::Hours => Plan {
                minutes: Vec::new(),
                hours: vec![(p.from, p.to)],
            },
        };
        let (names, clause) = self.tiered(&plan, &[("rollups", None)], &[(HOURLY, None)]);
        for n in names.split(',') {
            if !indices.iter().any(|x| x == n) {
                indices.push(n.to_owned());
            }
        }
        clause
    }
}

/// Adds `rows` into `acc`.
fn merge_into(acc: &mut Sums, rows: &[SeriesTotals]) {
    for r in rows {
        let k = (r.layer, r.service.clone(), r.name.clone(), r.host.clone());
        match acc.get_mut(&k) {
            Some(t) => t.totals.add(&r.totals),
            None => {
                acc.insert(k, r.clone());
            }
        }
    }
}

/// Every series of a piece (hosts apart if asked), with their sums.
fn series_aggs(by_host: bool) -> Value {
    let series = json!({"s": {
        "terms": {"field": "service_name", "size": 10_000},
        "aggs": totals_aggs(),
    }});
    let per_layer = if by_host {
        json!({"h": {"terms": {"field": "host", "size": 10_000}, "aggs": series}})
    } else {
        series
    };
    json!({"layers": {"terms": {"field": "layer", "size": 16}, "aggs": per_layer}})
}

/// Reads [`series_aggs`] from one piece's bucket (or the same shape at the
/// top of an answer); `false` when a terms aggregation left some out.
pub(super) fn series_rows(piece: &Value, q: &SeriesTotalsQuery) -> Table {
    let mut out = Vec::new();
    let mut whole = true;
    let left_out = |agg: &Value| agg["sum_other_doc_count"].as_u64().unwrap_or(0) > 0;
    for lb in buckets(&piece["layers"]) {
        let Some(layer) = lb["key"].as_str().and_then(|l| l.parse::<Layer>().ok()) else {
            continue;
        };
        let hosts: Vec<(String, &Value)> = if q.by_host {
            whole &= !left_out(&lb["h"]);
            buckets(&lb["h"])
                .iter()
                .map(|hb| (hb["key"].as_str().unwrap_or_default().to_owned(), hb))
                .collect()
        } else {
            vec![(String::new(), lb)]
        };
        for (host, hb) in hosts {
            whole &= !left_out(&hb["s"]);
            for sb in buckets(&hb["s"]) {
                let key = sb["key"].as_str().unwrap_or_default();
                let (service, name) = key.split_once('\u{1f}').unwrap_or(("", key));
                out.push(SeriesTotals {
                    layer,
                    service: service.to_owned(),
                    name: name.to_owned(),
                    host: host.clone(),
                    totals: totals_of(sb, q.range.from_ms),
                });
            }
        }
    }
    (out, whole)
}
