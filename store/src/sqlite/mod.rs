//! The embedded default backend: one SQLite file in the data directory.
//!
//! Each rollup and sample is one row keyed by its deterministic document id,
//! so a rewrite replaces (`INSERT OR REPLACE`). The document itself is kept
//! as JSON in `body`; the fields queries select on (minute, layer, service,
//! host, name, and kind for samples) are copied into indexed columns. Reads
//! fetch the matching bodies and merge them with the same code as the
//! Elasticsearch backend, so both answer alike.

mod schema;

use std::collections::BTreeSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use panorama_model::{DAY_MS, HOUR_MS, Layer, MINUTE_MS, Rollup, Sample, SampleKind, minute_of};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, ErrorCode, params, params_from_iter};
use serde::de::DeserializeOwned;

use crate::merge::{rank, retention_cutoff_ms};
use crate::totals::{rank_series, sort_layers, sort_seen};
use crate::{
    Detail, LayerTotals, Rejection, RetentionReport, SampleQuery, SeenSeries, SeriesQuery,
    SeriesTotals, SeriesTotalsQuery, Store, StoreError, TopEntry, TopQuery, Totals, TotalsQuery,
};

/// The embedded SQLite store.
///
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct SqliteStore {
    // One connection behind a mutex, used only from `spawn_blocking`:
    // SQLite calls block (disk I/O, fsync at checkpoints, the busy timeout),
    // so they must not run on an async worker thread. `spawn_blocking` needs
    // a `'static` handle, hence the `Arc`; `rusqlite::Connection` is `Send`
    // but not `Sync`, hence the `Mutex`. SQLite admits a single writer per
    // file anyway, and reads here are short indexed scans, so a pool would
    // add little besides more WAL readers to reason about.
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The database's file name inside the data directory.
    pub const FILE_NAME: &'static str = "panorama.sqlite3";

    /// Opens the store in `data_dir`, creating the directory, the file
    /// [`SqliteStore::FILE_NAME`] and the schema as needed. The file uses
    /// WAL journaling with `synchronous=NORMAL`, and its schema version is
    /// kept in `PRAGMA user_version`.
    ///
    /// This blocks briefly; call it at startup, not from a busy task.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the directory or file cannot be created
    /// or opened, or when the file was written by a newer release (its
    /// schema version is higher than this release knows).
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Backend(Detail::with_source(
                format!("cannot create data directory {}: {e}", data_dir.display()),
                e,
            ))
        })?;
        let path = data_dir.join(Self::FILE_NAME);
        let conn = schema::open(&path)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes each tier's series rollups take in the file (their tables and
    /// indices, from SQLite's `dbstat`), after a checkpoint, and the file's
    /// size. For the benchmark; it reads every page, so it is slow on a big file.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database cannot be read.
    pub async fn footprint(&self) -> Result<crate::Footprint, StoreError> {
        let path = self.path.clone();
        self.with_conn(move |conn| {
            const WHAT: &str = "measure footprint";
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(db_err(WHAT))?;
            let bytes = |table: &str| -> Result<u64, StoreError> {
                conn.query_row(
                    "SELECT coalesce(SUM(pgsize), 0) FROM dbstat WHERE name = ?1 \
                     OR name IN (SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1)",
                    [table],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n.max(0) as u64)
                .map_err(db_err(WHAT))
            };
            let rows = |table: &str| -> Result<u64, StoreError> {
                conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n.max(0) as u64)
                .map_err(db_err(WHAT))
            };
            Ok(crate::Footprint {
                minute_bytes: bytes("rollups")?,
                minute_docs: rows("rollups")?,
                hourly_bytes: bytes("hourly_rollups")?,
                hourly_docs: rows("hourly_rollups")?,
                total_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            })
        })
        .await
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while the lock was held unwound through any open
            // `Transaction`, whose drop rolled it back, so the connection is
            // still consistent: take it back rather than fail forever.
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| {
            StoreError::Backend(Detail::with_source(format!("sqlite task failed: {e}"), e))
        })?
    }
}

/// Maps a SQLite error to a store error, with what we were doing. A database
/// still locked after the busy timeout is worth retrying; the rest is not.
fn db_err(what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(Detail::with_source(format!("sqlite: {what}: {e}"), e))
        }
        _ => StoreError::Backend(Detail::with_source(format!("sqlite: {what}: {e}"), e)),
    }
}

/// Decodes a stored body, naming the document when it does not decode.
fn decode<T: DeserializeOwned>(table: &str, doc_id: &str, body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| {
        StoreError::Backend(Detail::with_source(
            format!("sqlite: corrupt {table} document {doc_id:?}: {e}"),
            e,
        ))
    })
}

/// Decodes a rollup of `table` (`rollups` or `layer_rollups`).
fn decode_rollup(table: &str, doc_id: &str, body: &str) -> Result<Rollup, StoreError> {
    let r: Rollup = decode(table, doc_id, body)?;
    r.histogram.validate().map_err(|why| {
        StoreError::Backend(format!("sqlite: corrupt {table} document {doc_id:?}: {why}").into())
    })?;
    Ok(r)
}

/// Runs a `SELECT doc_id, body …` and returns the pairs.
fn select_bodies(
    conn: &Connection,
    sql: &str,
    args: Vec<Value>,
    what: &'static str,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err(what))?;
    let rows = stmt
        .query_map(params_from_iter(args), |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(db_err(what))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err(what))
}

/// A `WHERE` clause under construction, with its positional arguments.
struct Filter {
    sql: String,
    args: Vec<Value>,
}

impl Filter {
    fn new(select: &str) -> Filter {
        Filter {
            sql: format!("{select} WHERE 1 = 1"),
            args: Vec::new(),
        }
    }

    fn and(&mut self, clause: &str, arg: impl Into<Value>) {
        self.args.push(arg.into());
        self.sql
            .push_str(&format!(" AND {clause} ?{}", self.args.len()));
    }

    fn and_opt(&mut self, clause: &str, arg: Option<&String>) {
        if let Some(a) = arg {
            self.and(clause, a.clone());
        }
    }
}

/// The sums a stored rollup row holds, if the row exists: what a rewrite
/// must take back out of the per-layer sums before adding the new ones.
fn old_totals(tx: &rusqlite::Transaction<'_>, doc_id: &str) -> rusqlite::Result<Option<Totals>> {
    let mut stmt = tx.prepare_cached(
        "SELECT count, errors, latency_count, latency_sum_ms, value_sum, value_n, p99_ms \
         FROM rollups WHERE doc_id = ?1",
    )?;
    let mut rows = stmt.query([doc_id])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    Ok(Some(Totals {
        count: row.get::<_, i64>(0)?.max(0) as u64,
        errors: row.get::<_, i64>(1)?.max(0) as u64,
        latency_count: row.get::<_, i64>(2)?.max(0) as u64,
        latency_sum_ms: row.get(3)?,
        value_sum: row.get(4)?,
        value_n: row.get::<_, i64>(5)?.max(0) as u64,
        p99_max_ms: row.get(6)?,
        ..Totals::default()
    }))
}

/// The `SET` of an upsert into a table of sums: the new row's sums
/// (deltas, for a rewrite) added, maxima raised (`NULL` means none).
const ADD_EXCLUDED: &str = "\
    count = count + excluded.count, errors = errors + excluded.errors, \
    latency_count = latency_count + excluded.latency_count, \
    latency_sum_ms = latency_sum_ms + excluded.latency_sum_ms, \
    latency_max_ms = max(coalesce(latency_max_ms, excluded.latency_max_ms), \
                         coalesce(excluded.latency_max_ms, latency_max_ms)), \
    p99_ms = max(coalesce(p99_ms, excluded.p99_ms), coalesce(excluded.p99_ms, p99_ms)), \
    value_sum = value_sum + excluded.value_sum, value_n = value_n + excluded.value_n, \
    value_max = max(coalesce(value_max, excluded.value_max), \
                    coalesce(excluded.value_max, value_max))";

/// Adds a rollup to `layer_minutes` and `series_seen`, less what the row it
/// replaces (`old`) had added. Maxima only grow: a rewritten rollup holds
/// every event of the one it replaces and more (late events), so its
/// maxima are never lower.
pub(super) fn add_to_summaries(
    tx: &rusqlite::Transaction<'_>,
    r: &Rollup,
    t: &Totals,
    old: Option<&Totals>,
) -> rusqlite::Result<()> {
    let o = old.cloned().unwrap_or_default();
    let d = |new: u64, old: u64| new as i64 - old as i64;
    tx.prepare_cached(&format!(
        "INSERT INTO layer_minutes (layer, minute_ms, count, errors, latency_count, \
         latency_sum_ms, latency_max_ms, p99_ms, value_sum, value_n, value_max, last_minute_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?2) \
         ON CONFLICT (layer, minute_ms) DO UPDATE SET {ADD_EXCLUDED}"
    ))?
    .execute(params![
        r.key.layer.as_str(),
        r.minute_ms,
        d(t.count, o.count),
        d(t.errors, o.errors),
        d(t.latency_count, o.latency_count),
        t.latency_sum_ms - o.latency_sum_ms,
        t.latency_max_ms,
        t.p99_max_ms,
        t.value_sum - o.value_sum,
        d(t.value_n, o.value_n),
        t.value_max
    ])?;
    tx.prepare_cached(
        "INSERT INTO collector_hours (hour_ms, collector, count) VALUES (?1, ?2, ?3) \
         ON CONFLICT (hour_ms, collector) DO UPDATE SET count = count + excluded.count",
    )?
    .execute(params![
        crate::tier::hour_of(r.minute_ms),
        r.collector,
        d(t.count, o.count)
    ])?;
    tx.prepare_cached(
        "INSERT INTO series_seen (layer, name, host, service, last_minute_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (layer, name, host, service) DO UPDATE SET \
         last_minute_ms = max(last_minute_ms, excluded.last_minute_ms)",
    )?
    .execute(params![
        r.key.layer.as_str(),
        r.key.name,
        r.key.host,
        r.key.service,
        r.minute_ms
    ])?;
    Ok(())
}

/// Adds a minute rollup (already written to `rollups`) to its series' sums
/// for the block of `width_ms` holding it in `table` (`series_hours`,
/// `series_tens`), less what the row it replaces (`old`) had added. Maxima
/// of latency and value only grow, as in [`add_to_summaries`]; the worst
/// p99 can fall (late fast events lower a minute's p99), so when the row
/// replaced held the block's worst p99 and the new one is lower, the block
/// takes the worst p99 of its minutes again.
fn add_to_series_block(
    tx: &rusqlite::Transaction<'_>,
    sums: OpenSums,
    r: &Rollup,
    t: &Totals,
    old: Option<&Totals>,
) -> rusqlite::Result<()> {
    let o = old.cloned().unwrap_or_default();
    let d = |new: u64, old: u64| new as i64 - old as i64;
    tx.prepare_cached(&format!(
        "INSERT INTO {} (layer, minute_ms, service, name, host, count, errors, \
         latency_count, latency_sum_ms, latency_max_ms, p99_ms, value_sum, value_n, value_max, \
         last_minute_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
         ON CONFLICT (layer, minute_ms, service, name, host) DO UPDATE SET {ADD_EXCLUDED}, \
         last_minute_ms = max(last_minute_ms, excluded.last_minute_ms)",
        sums.rows.table
    ))?
    .execute(params![
        r.key.layer.as_str(),
        r.minute_ms - r.minute_ms.rem_euclid(sums.width_ms),
        r.key.service,
        r.key.name,
        r.key.host,
        d(t.count, o.count),
        d(t.errors, o.errors),
        d(t.latency_count, o.latency_count),
        t.latency_sum_ms - o.latency_sum_ms,
        t.latency_max_ms,
        t.p99_max_ms,
        t.value_sum - o.value_sum,
        d(t.value_n, o.value_n),
        t.value_max,
        r.minute_ms
    ])?;
    let Some(old_p99) = old.and_then(|o| o.p99_max_ms) else {
        return Ok(());
    };
    if t.p99_max_ms.is_some_and(|new| new >= old_p99) {
        return Ok(());
    }
    let start = r.minute_ms - r.minute_ms.rem_euclid(sums.width_ms);
    tx.prepare_cached(&format!(
        "UPDATE {} SET p99_ms = (SELECT MAX(p99_ms) FROM rollups \
         WHERE layer = ?1 AND service = ?3 AND name = ?4 AND minute_ms >= ?2 \
         AND minute_ms < ?6 AND host = ?5) \
         WHERE layer = ?1 AND minute_ms = ?2 AND service = ?3 AND name = ?4 AND host = ?5 \
         AND p99_ms = ?7",
        sums.rows.table
    ))?
    .execute(params![
        r.key.layer.as_str(),
        start,
        r.key.service,
        r.key.name,
        r.key.host,
        start + sums.width_ms,
        old_p99
    ])?;
    Ok(())
}

/// The `WHERE` of a totals query. `name_prefix` is a range on `name`
/// (`>= p AND < p + U+10FFFF`) rather than `LIKE`, so the index can serve it
/// and `%` or `_` in a series name mean nothing special.
fn totals_filter(select: &str, q: &TotalsQuery) -> Filter {
    let mut f = Filter::new(select);
    if let Some(l) = q.layer {
        f.and("layer =", l.as_str().to_owned());
    }
    f.and("minute_ms >=", q.from_ms);
    f.and("minute_ms <", q.to_ms);
    f.and_opt("service =", q.service.as_ref());
    f.and_opt("name =", q.name.as_ref());
    f.and_opt("host =", q.host.as_ref());
    if let Some(p) = &q.name_prefix {
        f.and("name >=", p.clone());
        f.and("name <", format!("{p}\u{10FFFF}"));
    }
    f
}

/// The tables of one tier: series rollups, whole-layer rollups, per-layer
/// sums, and the covering index totals read.
#[derive(Clone, Copy)]
struct Tables {
    rollups: &'static str,
    layers: &'static str,
    sums: &'static str,
    /// Totals read the covering index alone; named, because without table
    /// statistics the planner may take the narrower (layer, minute) index
    /// and then read every wide row.
    totals_index: &'static str,
}

const MINUTES: Tables = Tables {
    rollups: "rollups",
    layers: "layer_rollups",
    sums: "layer_minutes",
    totals_index: "INDEXED BY rollups_layer_minute_totals",
};

const HOURS: Tables = Tables {
    rollups: "hourly_rollups",
    layers: "hourly_layer_rollups",
    sums: "layer_hours",
    totals_index: "INDEXED BY hourly_rollups_layer_minute_totals",
};

/// Where the per-series sums of a segment are read: a table of rows with
/// the totals columns, and the index named for the scan (if any).
#[derive(Clone, Copy)]
struct SeriesRows {
    table: &'static str,
    index: &'static str,
    /// The column with the newest minute a row holds.
    last: &'static str,
}

impl Tables {
    fn series_rows(self) -> SeriesRows {
        SeriesRows {
            table: self.rollups,
            index: self.totals_index,
            last: "minute_ms",
        }
    }
}

/// Per-series sums per day (schema version 5), for whole marked days.
const DAY_ROWS: SeriesRows = SeriesRows {
    table: "series_days",
    index: "",
    last: "minute_ms",
};

/// Per-series sums of the minute tier per block of minutes (schema
/// version 6), kept by every minute write.
#[derive(Clone, Copy)]
struct OpenSums {
    rows: SeriesRows,
    width_ms: i64,
}

/// Hours first, then ten minutes: a range ending now reads one row per
/// series for each whole hour, up to six for the rest of a partial hour,
/// and minutes only for the ragged minutes at its start.
const OPEN_SUMS: [OpenSums; 2] = [
    OpenSums {
        rows: SeriesRows {
            table: "series_hours",
            index: "",
            last: "last_minute_ms",
        },
        width_ms: HOUR_MS,
    },
    OpenSums {
        rows: SeriesRows {
            table: "series_tens",
            index: "",
            last: "last_minute_ms",
        },
        width_ms: 10 * MINUTE_MS,
    },
];

/// Where the per-series sums of each minute segment are read: each block
/// of [`OPEN_SUMS`] (hours, then ten minutes of what is left) the segment
/// covers from its start is read as one row per series when the segment
/// covers it whole, or covers it up to its end and the layer has no minute
/// after that in the block (a range ending now: the minutes not written
/// yet cannot differ); the rest from minutes.
fn with_open_sums(
    conn: &Connection,
    layer: Layer,
    segments: Vec<(SeriesRows, i64, i64)>,
) -> rusqlite::Result<Vec<(SeriesRows, i64, i64)>> {
    let mut parts = segments;
    for sums in OPEN_SUMS {
        let mut out = Vec::new();
        for (rows, from, to) in parts {
            if rows.table == MINUTES.rollups {
                cover_with_blocks(conn, layer, sums, (rows, from, to), &mut out)?;
            } else {
                out.push((rows, from, to));
            }
        }
        parts = out;
    }
    Ok(parts)
}

/// Splits one minute segment into the blocks of `sums` it may read and
/// the minutes around them.
fn cover_with_blocks(
    conn: &Connection,
    layer: Layer,
    sums: OpenSums,
    (rows, from, to): (SeriesRows, i64, i64),
    out: &mut Vec<(SeriesRows, i64, i64)>,
) -> rusqlite::Result<()> {
    let w = sums.width_ms;
    let mut cursor = from;
    let mut b = from + (w - from.rem_euclid(w)) % w;
    while b < to {
        let Some(end) = b.checked_add(w) else {
            break;
        };
        if end > to && layer_has_minutes(conn, layer, to, end)? {
            break;
        }
        if cursor < b {
            out.push((rows, cursor, b));
        }
        // Neighbouring blocks are one read.
        match out.last_mut() {
            Some((prev, _, prev_to)) if prev.table == sums.rows.table && *prev_to == b => {
                *prev_to = end.min(to);
            }
            _ => out.push((sums.rows, b, end.min(to))),
        }
        cursor = end.min(to);
        b = end;
    }
    if cursor < to {
        out.push((rows, cursor, to));
    }
    Ok(())
}

/// Whether any series of `layer` has a minute rollup in `[from, to)`,
/// asked of the per-layer sums.
fn layer_has_minutes(
    conn: &Connection,
    layer: Layer,
    from: i64,
    to: i64,
) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM layer_minutes \
         WHERE layer = ?1 AND minute_ms >= ?2 AND minute_ms < ?3)",
    )?;
    stmt.query_row(params![layer.as_str(), from, to], |r| r.get(0))
}

/// The segments of a plan, each with its tier's tables.
fn segments(plan: crate::tier::Plan) -> Vec<(Tables, i64, i64)> {
    let m = plan.minutes.into_iter().map(|(a, b)| (MINUTES, a, b));
    let h = plan.hours.into_iter().map(|(a, b)| (HOURS, a, b));
    m.chain(h).collect()
}

/// Reads the rollups of `table` matching `q`, oldest first.
fn read_rollups_in(
    conn: &Connection,
    table: &str,
    q: &SeriesQuery,
) -> Result<Vec<Rollup>, StoreError> {
    let mut f = Filter::new(&format!("SELECT doc_id, body FROM {table}"));
    f.and("layer =", q.layer.as_str().to_owned());
    f.and_opt("service =", q.service.as_ref());
    f.and_opt("name =", q.name.as_ref());
    f.and_opt("host =", q.host.as_ref());
    f.and("minute_ms >=", q.from_ms);
    f.and("minute_ms <", q.to_ms);
    let rows = select_bodies(conn, &f.sql, f.args, "read series")?;
    let mut rollups = Vec::with_capacity(rows.len());
    for (doc_id, body) in rows {
        let r = decode_rollup(table, &doc_id, &body)?;
        if q.dims.iter().all(|(k, v)| r.key.dims.get(k) == Some(v)) {
            rollups.push(r);
        }
    }
    rollups.sort_by_key(|r| r.minute_ms);
    Ok(rollups)
}

/// Once every hour of the UTC day holding `hour_ms` is compacted, (re)builds
/// the day's per-series sums from its hourly rollups and marks the day:
/// once a day, and again whenever one of its hours is compacted again, in
/// the transaction that wrote the hour, so a marked day always equals its
/// hours. Maxima are the hours' maxima, as a range read from hours gives.
fn rebuild_day_if_complete(tx: &rusqlite::Transaction<'_>, hour_ms: i64) -> rusqlite::Result<()> {
    let day = hour_ms.div_euclid(DAY_MS) * DAY_MS;
    let (hours, events): (i64, i64) = tx.query_row(
        "SELECT COUNT(*), coalesce(SUM(events), 0) FROM hour_marks \
         WHERE hour_ms >= ?1 AND hour_ms < ?2",
        params![day, day + DAY_MS],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if hours < 24 {
        return Ok(());
    }
    let mut delete =
        tx.prepare_cached("DELETE FROM series_days WHERE layer = ?1 AND minute_ms = ?2")?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO series_days (layer, minute_ms, service, name, host, count, errors, \
         latency_count, latency_sum_ms, latency_max_ms, p99_ms, value_sum, value_n, value_max) \
         SELECT layer, ?2, service, name, host, SUM(count), SUM(errors), SUM(latency_count), \
         SUM(latency_sum_ms), MAX(latency_max_ms), MAX(p99_ms), SUM(value_sum), SUM(value_n), \
         MAX(value_max) FROM hourly_rollups INDEXED BY hourly_rollups_layer_minute_totals \
         WHERE layer = ?1 AND minute_ms >= ?2 AND minute_ms < ?3 \
         GROUP BY service, name, host",
    )?;
    for layer in Layer::ALL {
        delete.execute(params![layer.as_str(), day])?;
        insert.execute(params![layer.as_str(), day, day + DAY_MS])?;
    }
    tx.execute(
        "INSERT INTO day_marks (day_ms, events) VALUES (?1, ?2) \
         ON CONFLICT (day_ms) DO UPDATE SET events = excluded.events",
        params![day, events],
    )?;
    Ok(())
}

/// The days in `[from, to)` whose per-series sums are built.
fn marked_days(conn: &Connection, from_ms: i64, to_ms: i64) -> rusqlite::Result<BTreeSet<i64>> {
    let mut stmt =
        conn.prepare_cached("SELECT day_ms FROM day_marks WHERE day_ms >= ?1 AND day_ms < ?2")?;
    let rows = stmt.query_map(params![from_ms, to_ms], |r| r.get(0))?;
    rows.collect()
}

/// Where the per-series sums of each segment are read: whole, marked days
/// inside the hourly ranges from [`DAY_ROWS`], the rest from its tier.
fn with_days(
    segments: Vec<(Tables, i64, i64)>,
    days: &BTreeSet<i64>,
) -> Vec<(SeriesRows, i64, i64)> {
    let mut out = Vec::new();
    for (t, from, to) in segments {
        if t.rollups != HOURS.rollups {
            out.push((t.series_rows(), from, to));
            continue;
        }
        let mut cursor = from;
        let mut day = from.div_euclid(DAY_MS) * DAY_MS;
        if day < from {
            day += DAY_MS;
        }
        while day + DAY_MS <= to {
            if days.contains(&day) {
                if cursor < day {
                    out.push((HOURS.series_rows(), cursor, day));
                }
                out.push((DAY_ROWS, day, day + DAY_MS));
                cursor = day + DAY_MS;
            }
            day += DAY_MS;
        }
        if cursor < to {
            out.push((HOURS.series_rows(), cursor, to));
        }
    }
    out
}

/// Merges the rollups of `table` with a minute in `[from, to)` (one hour)
/// as they are read. The rows are fetched in table order: going through
/// the (layer, minute) index row by row visits the table's pages once per
/// layer and in no order (2.3 s per hour of 10,000 series, most of it
/// reading pages), while the index's row ids, sorted first, visit each page
/// once, in file order (1.35 s).
fn merge_hour_in(
    conn: &Connection,
    table: &str,
    index: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<Rollup>, StoreError> {
    const WHAT: &str = "read an hour's minutes";
    let layers = Layer::ALL
        .iter()
        .map(|l| format!("'{}'", l.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT doc_id, body FROM {table} WHERE rowid IN \
         (SELECT rowid FROM {table} INDEXED BY {index} \
          WHERE layer IN ({layers}) AND minute_ms >= ?1 AND minute_ms < ?2)"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db_err(WHAT))?;
    let mut rows = stmt.query(params![from_ms, to_ms]).map_err(db_err(WHAT))?;
    let mut merger = crate::compact::HourMerger::new(from_ms);
    while let Some(row) = rows.next().map_err(db_err(WHAT))? {
        let text = |i: usize| -> Result<&str, StoreError> {
            row.get_ref(i)
                .and_then(|v| v.as_str().map_err(rusqlite::Error::from))
                .map_err(db_err(WHAT))
        };
        merger.add(decode_rollup(table, text(0)?, text(1)?)?);
    }
    Ok(merger.finish())
}

/// Reads the whole-layer rollups of `table` for `layer` in `[from, to)`.
fn read_layer_rollups_in(
    conn: &Connection,
    table: &str,
    layer: Layer,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<Rollup>, StoreError> {
    let rows = select_bodies(
        conn,
        &format!(
            "SELECT doc_id, body FROM {table} \
             WHERE layer = ?1 AND minute_ms >= ?2 AND minute_ms < ?3 \
             ORDER BY minute_ms, doc_id"
        ),
        vec![
            layer.as_str().to_owned().into(),
            from_ms.into(),
            to_ms.into(),
        ],
        "read layer rollups",
    )?;
    rows.iter()
        .map(|(doc_id, body)| decode_rollup(table, doc_id, body))
        .collect()
}

/// Sums of one layer (`q.layer` is set) over one tier's segment.
fn layer_totals_in(
    conn: &Connection,
    t: Tables,
    q: &TotalsQuery,
) -> Result<Vec<LayerTotals>, StoreError> {
    // Bucket arithmetic in SQL keeps one row per layer and bucket; with
    // one bucket it is the constant `from`.
    let bucket = match q.bucket_ms {
        Some(b) => format!("(minute_ms - ((minute_ms % {b}) + {b}) % {b})"),
        None => q.from_ms.to_string(),
    };
    let unfiltered =
        q.service.is_none() && q.name.is_none() && q.host.is_none() && q.name_prefix.is_none();
    let table = if unfiltered {
        t.sums.to_owned()
    } else {
        format!("{} {}", t.rollups, t.totals_index)
    };
    let mut f = totals_filter(
        &format!("SELECT layer, {bucket} AS bucket, {TOTALS_COLUMNS} FROM {table}"),
        q,
    );
    f.sql.push_str(" GROUP BY layer, bucket");
    const WHAT: &str = "sum layers";
    let mut stmt = conn.prepare_cached(&f.sql).map_err(db_err(WHAT))?;
    let rows = stmt
        .query_map(params_from_iter(f.args), |row| {
            let layer = parse_layer(&row.get::<_, String>(0)?)?;
            Ok(LayerTotals {
                layer,
                totals: totals_row(row, 2, row.get(1)?)?,
            })
        })
        .map_err(db_err(WHAT))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err(WHAT))
}

/// Per-series sums being added up, keyed by the bytes of (service, name,
/// host). A layer page over an hour adds 120,000 index rows; building a
/// `String` key and SipHashing it for each, and reading every column
/// through rusqlite's checked conversions, cost as much as SQLite's own
/// scan. Here the key is the row's bytes (UTF-8 checked once per series)
/// hashed with XXH3, and columns are read as raw values.
#[derive(Default)]
struct SeriesGroups {
    index: std::collections::HashMap<Box<[u8]>, usize, BuildHasherDefault<KeyHasher>>,
    rows: Vec<SeriesTotals>,
}

/// One XXH3 call per key (the keys come from our own index, not from
/// clients, so resistance to crafted collisions is not needed).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
}

/// A column as i64: integers as stored, anything else (a real written by
/// hand, NULL) converted or 0, as SQLite's own SUM would treat it.
fn int_of(v: ValueRef<'_>) -> i64 {
    match v {
        ValueRef::Integer(i) => i,
        ValueRef::Real(f) => f as i64,
        _ => 0,
    }
}

/// A column as f64, `None` for NULL.
fn real_of(v: ValueRef<'_>) -> Option<f64> {
    match v {
        ValueRef::Real(f) => Some(f),
        ValueRef::Integer(i) => Some(i as f64),
        _ => None,
    }
}

/// A text column's bytes, unchecked (checked once per series, when kept).
fn text_bytes(v: ValueRef<'_>) -> Result<&[u8], StoreError> {
    v.as_bytes()
        .map_err(|e| db_err("sum series")(rusqlite::Error::from(e)))
}

/// Adds the per-series sums of one segment into `groups`, keyed by
/// service, name and host (`''` unless `by_host`).
fn series_totals_in(
    conn: &Connection,
    rows_of: SeriesRows,
    q: &TotalsQuery,
    by_host: bool,
    bucket_ms: i64,
    groups: &mut SeriesGroups,
) -> Result<(), StoreError> {
    let host = if by_host { "host" } else { "''" };
    let f = totals_filter(
        &format!(
            "SELECT service, name, {host}, count, errors, latency_count, latency_sum_ms, \
             latency_max_ms, p99_ms, value_sum, value_n, value_max, {} \
             FROM {} {}",
            rows_of.last, rows_of.table, rows_of.index
        ),
        q,
    );
    let layer = q.layer.unwrap_or(Layer::Url);
    const WHAT: &str = "sum series";
    let mut stmt = conn.prepare_cached(&f.sql).map_err(db_err(WHAT))?;
    let mut rows = stmt.query(params_from_iter(f.args)).map_err(db_err(WHAT))?;
    let mut key: Vec<u8> = Vec::new();
    while let Some(row) = rows.next().map_err(db_err(WHAT))? {
        let mut cols = [ValueRef::Null; 13];
        for (i, c) in cols.iter_mut().enumerate() {
            *c = row.get_ref(i).map_err(db_err(WHAT))?;
        }
        let (service, name, h) = (
            text_bytes(cols[0])?,
            text_bytes(cols[1])?,
            text_bytes(cols[2])?,
        );
        key.clear();
        for part in [service, name, h] {
            key.extend_from_slice(part);
            key.push(0x1f);
        }
        let count = |i: usize| int_of(cols[i]).max(0) as u64;
        let t = Totals {
            bucket_ms,
            count: count(3),
            errors: count(4),
            latency_count: count(5),
            latency_sum_ms: real_of(cols[6]).unwrap_or(0.0),
            latency_max_ms: real_of(cols[7]),
            p99_max_ms: real_of(cols[8]),
            value_sum: real_of(cols[9]).unwrap_or(0.0),
            value_n: count(10),
            value_max: real_of(cols[11]),
            last_minute_ms: int_of(cols[12]),
        };
        match groups.index.get(key.as_slice()) {
            Some(&i) => groups.rows[i].totals.add(&t),
            None => {
                let text = |b: &[u8]| -> Result<String, StoreError> {
                    String::from_utf8(b.to_vec())
                        .map_err(|e| db_err(WHAT)(rusqlite::Error::Utf8Error(e.utf8_error())))
                };
                groups.rows.push(SeriesTotals {
                    layer,
                    service: text(service)?,
                    name: text(name)?,
                    host: text(h)?,
                    totals: t,
                });
                groups
                    .index
                    .insert(key.clone().into_boxed_slice(), groups.rows.len() - 1);
            }
        }
    }
    Ok(())
}

/// Writes one rollup row into `table` (`rollups` or `hourly_rollups`):
/// the statement both tiers share. `guarded` keeps a stored row built
/// from more events (hourly documents never shrink).
fn upsert_rollup_sql(table: &str, guarded: bool) -> String {
    let cols = "doc_id, minute_ms, layer, service, host, name, dims, collector, body, \
                count, errors, latency_count, latency_sum_ms, latency_max_ms, p99_ms, \
                value_sum, value_n, value_max";
    let values = "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18";
    if !guarded {
        return format!("INSERT OR REPLACE INTO {table} ({cols}) VALUES ({values})");
    }
    let set = cols
        .split(", ")
        .map(str::trim)
        .filter(|c| *c != "doc_id")
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} ({cols}) VALUES ({values}) ON CONFLICT (doc_id) DO UPDATE SET {set} \
         WHERE excluded.count >= {table}.count"
    )
}

/// Binds a [`RollupRow`] to [`upsert_rollup_sql`]'s statement.
fn execute_rollup_row(
    stmt: &mut rusqlite::CachedStatement<'_>,
    r: &RollupRow,
) -> rusqlite::Result<usize> {
    stmt.execute(params![
        r.doc_id,
        r.minute_ms,
        r.layer,
        r.service,
        r.host,
        r.name,
        r.dims,
        r.collector,
        r.body,
        r.totals.count as i64,
        r.totals.errors as i64,
        r.totals.latency_count as i64,
        r.totals.latency_sum_ms,
        r.totals.latency_max_ms,
        r.totals.p99_max_ms,
        r.totals.value_sum,
        r.totals.value_n as i64,
        r.totals.value_max
    ])
}

/// Encodes rollups for their rows.
fn rollup_rows(rollups: &[Rollup]) -> Result<Vec<RollupRow>, StoreError> {
    rollups
        .iter()
        .map(|r| {
            let doc_id = r.doc_id();
            Ok(RollupRow {
                minute_ms: r.minute_ms,
                layer: r.key.layer.as_str(),
                service: r.key.service.clone(),
                host: r.key.host.clone(),
                name: r.key.name.clone(),
                dims: to_json(&doc_id, &r.key.dims)?,
                collector: r.collector.clone(),
                totals: Totals::of(r),
                rollup: r.clone(),
                body: to_json(&doc_id, r)?,
                doc_id,
            })
        })
        .collect()
}

/// The aggregate columns every totals query selects, in [`totals_row`]'s order.
const TOTALS_COLUMNS: &str = "SUM(count), SUM(errors), SUM(latency_count), SUM(latency_sum_ms), \
     MAX(latency_max_ms), MAX(p99_ms), SUM(value_sum), SUM(value_n), MAX(value_max), MAX(minute_ms)";

/// Reads [`TOTALS_COLUMNS`] starting at column `at`.
fn totals_row(row: &rusqlite::Row<'_>, at: usize, bucket_ms: i64) -> rusqlite::Result<Totals> {
    Ok(Totals {
        bucket_ms,
        count: row.get::<_, i64>(at)?.max(0) as u64,
        errors: row.get::<_, i64>(at + 1)?.max(0) as u64,
        latency_count: row.get::<_, i64>(at + 2)?.max(0) as u64,
        latency_sum_ms: row.get(at + 3)?,
        latency_max_ms: row.get(at + 4)?,
        p99_max_ms: row.get(at + 5)?,
        value_sum: row.get(at + 6)?,
        value_n: row.get::<_, i64>(at + 7)?.max(0) as u64,
        value_max: row.get(at + 8)?,
        last_minute_ms: row.get(at + 9)?,
    })
}

fn parse_layer(s: &str) -> rusqlite::Result<Layer> {
    s.parse().map_err(|e: panorama_model::ParseLayerError| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Ranks sample kinds in SQL as [`SampleKind`] orders them.
fn kind_order_sql() -> String {
    let mut s = String::from("CASE kind");
    for (i, k) in [SampleKind::Error, SampleKind::Slow, SampleKind::ParseError]
        .into_iter()
        .enumerate()
    {
        s.push_str(&format!(" WHEN '{}' THEN {i}", k.as_str()));
    }
    s.push_str(" ELSE 99 END");
    s
}

fn to_json<T: serde::Serialize>(doc_id: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| {
        StoreError::Rejected(vec![Rejection {
            doc_id: doc_id.to_owned(),
            reason: format!("cannot encode as JSON: {e}"),
        }])
    })
}

/// A rollup encoded for its row.
struct RollupRow {
    doc_id: String,
    minute_ms: i64,
    layer: &'static str,
    service: String,
    host: String,
    name: String,
    dims: String,
    collector: String,
    totals: Totals,
    rollup: Rollup,
    body: String,
}

/// One whole-layer rollup's row: id, layer, minute, count, body.
type LayerRow = (String, &'static str, i64, i64, String);

/// Whole-layer rollups encoded for their rows.
fn layer_rows(rollups: &[Rollup]) -> Result<Vec<LayerRow>, StoreError> {
    rollups
        .iter()
        .map(|r| {
            let doc_id = r.doc_id();
            let body = to_json(&doc_id, r)?;
            Ok((
                doc_id,
                r.key.layer.as_str(),
                r.minute_ms,
                r.count as i64,
                body,
            ))
        })
        .collect()
}

/// A sample encoded for its row.
struct SampleRow {
    doc_id: String,
    minute_ms: i64,
    layer: &'static str,
    service: String,
    host: String,
    name: String,
    kind: &'static str,
    ts_ms: i64,
    body: String,
}

#[async_trait]
impl Store for SqliteStore {
    async fn write_rollups(&self, rollups: &[Rollup]) -> Result<(), StoreError> {
        if rollups.is_empty() {
            return Ok(());
        }
        let rows = rollup_rows(rollups)?;
        self.with_conn(move |conn| {
            const WHAT: &str = "write rollups";
            let tx = conn.transaction().map_err(db_err(WHAT))?;
            {
                let mut stmt = tx
                    .prepare_cached(&upsert_rollup_sql("rollups", false))
                    .map_err(db_err(WHAT))?;
                for r in &rows {
                    // Row by row, so a document twice in one batch is
                    // taken back out of the sums before it is added again.
                    let old = old_totals(&tx, &r.doc_id).map_err(db_err(WHAT))?;
                    add_to_summaries(&tx, &r.rollup, &r.totals, old.as_ref())
                        .map_err(db_err(WHAT))?;
                    execute_rollup_row(&mut stmt, r).map_err(db_err(WHAT))?;
                    for sums in OPEN_SUMS {
                        add_to_series_block(&tx, sums, &r.rollup, &r.totals, old.as_ref())
                            .map_err(db_err(WHAT))?;
                    }
                }
            }
            tx.commit().map_err(db_err(WHAT))
        })
        .await
    }

    async fn write_layer_rollups(&self, rollups: &[Rollup]) -> Result<(), StoreError> {
        if rollups.is_empty() {
            return Ok(());
        }
        let rows = layer_rows(rollups)?;
        self.with_conn(move |conn| {
            const WHAT: &str = "write layer rollups";
            let tx = conn.transaction().map_err(db_err(WHAT))?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO layer_rollups (doc_id, layer, minute_ms, count, body) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(db_err(WHAT))?;
                for (doc_id, layer, minute_ms, count, body) in &rows {
                    stmt.execute(params![doc_id, layer, minute_ms, count, body])
                        .map_err(db_err(WHAT))?;
                }
            }
            tx.commit().map_err(db_err(WHAT))
        })
        .await
    }

    async fn read_layer_rollups(
        &self,
        layer: Layer,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, StoreError> {
        crate::query::check_range(from_ms, to_ms)?;
        self.with_conn(move |conn| {
            read_layer_rollups_in(conn, MINUTES.layers, layer, from_ms, to_ms)
        })
        .await
    }

    async fn read_hourly_layer_rollups(
        &self,
        layer: Layer,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, StoreError> {
        crate::query::check_range(from_ms, to_ms)?;
        self.with_conn(move |conn| read_layer_rollups_in(conn, HOURS.layers, layer, from_ms, to_ms))
            .await
    }

    async fn write_samples(&self, samples: &[Sample]) -> Result<(), StoreError> {
        if samples.is_empty() {
            return Ok(());
        }
        let rows = samples
            .iter()
            .map(|s| {
                let doc_id = s.doc_id();
                Ok(SampleRow {
                    minute_ms: s.minute_ms,
                    layer: s.key.layer.as_str(),
                    service: s.key.service.clone(),
                    host: s.key.host.clone(),
                    name: s.key.name.clone(),
                    kind: s.kind.as_str(),
                    ts_ms: s.ts_ms,
                    body: to_json(&doc_id, s)?,
                    doc_id,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.with_conn(move |conn| {
            const WHAT: &str = "write samples";
            let tx = conn.transaction().map_err(db_err(WHAT))?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO samples \
                         (doc_id, minute_ms, layer, service, host, name, kind, ts_ms, body) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )
                    .map_err(db_err(WHAT))?;
                for s in &rows {
                    stmt.execute(params![
                        s.doc_id,
                        s.minute_ms,
                        s.layer,
                        s.service,
                        s.host,
                        s.name,
                        s.kind,
                        s.ts_ms,
                        s.body
                    ])
                    .map_err(db_err(WHAT))?;
                }
            }
            tx.commit().map_err(db_err(WHAT))
        })
        .await
    }

    async fn read_rollups(&self, q: &SeriesQuery) -> Result<Vec<Rollup>, StoreError> {
        q.validate()?;
        let q = q.clone();
        self.with_conn(move |conn| read_rollups_in(conn, MINUTES.rollups, &q))
            .await
    }

    async fn read_hourly_rollups(&self, q: &SeriesQuery) -> Result<Vec<Rollup>, StoreError> {
        q.validate()?;
        let q = q.clone();
        self.with_conn(move |conn| read_rollups_in(conn, HOURS.rollups, &q))
            .await
    }

    async fn merge_hour_minutes(
        &self,
        hour_ms: i64,
    ) -> Result<(Vec<Rollup>, Vec<Rollup>), StoreError> {
        let to_ms = hour_ms + crate::HOUR_MS;
        self.with_conn(move |conn| {
            Ok((
                merge_hour_in(conn, "rollups", "rollups_layer_minute", hour_ms, to_ms)?,
                merge_hour_in(
                    conn,
                    "layer_rollups",
                    "layer_rollups_layer_minute",
                    hour_ms,
                    to_ms,
                )?,
            ))
        })
        .await
    }

    async fn write_hour(&self, hour: &crate::CompactedHour) -> Result<(), StoreError> {
        let series = rollup_rows(&hour.series)?;
        let layers = layer_rows(&hour.layers)?;
        let mark = hour.mark.clone();
        self.with_conn(move |conn| {
            const WHAT: &str = "write hourly rollups";
            // One transaction: the documents, the hour's layer sums rebuilt
            // from whatever the table now holds, and the mark, visible together.
            let tx = conn.transaction().map_err(db_err(WHAT))?;
            {
                let mut stmt = tx
                    .prepare_cached(&upsert_rollup_sql("hourly_rollups", true))
                    .map_err(db_err(WHAT))?;
                for r in &series {
                    execute_rollup_row(&mut stmt, r).map_err(db_err(WHAT))?;
                }
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO hourly_layer_rollups (doc_id, layer, minute_ms, count, body) \
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (doc_id) DO UPDATE SET \
                         count = excluded.count, body = excluded.body \
                         WHERE excluded.count >= hourly_layer_rollups.count",
                    )
                    .map_err(db_err(WHAT))?;
                for (doc_id, layer, minute_ms, count, body) in &layers {
                    stmt.execute(params![doc_id, layer, minute_ms, count, body])
                        .map_err(db_err(WHAT))?;
                }
            }
            tx.execute(
                "DELETE FROM layer_hours WHERE minute_ms = ?1",
                params![mark.hour_ms],
            )
            .map_err(db_err(WHAT))?;
            tx.execute(
                &format!(
                    "INSERT INTO layer_hours (layer, minute_ms, count, errors, latency_count, \
                     latency_sum_ms, latency_max_ms, p99_ms, value_sum, value_n, value_max, \
                     last_minute_ms) \
                     SELECT layer, minute_ms, {TOTALS_COLUMNS} FROM hourly_rollups \
                     WHERE minute_ms = ?1 GROUP BY layer, minute_ms"
                ),
                params![mark.hour_ms],
            )
            .map_err(db_err(WHAT))?;
            tx.execute(
                "INSERT INTO hour_marks (hour_ms, events, series, compacted_at_ms) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (hour_ms) DO UPDATE SET \
                 events = excluded.events, series = excluded.series, \
                 compacted_at_ms = excluded.compacted_at_ms \
                 WHERE excluded.events >= hour_marks.events",
                params![
                    mark.hour_ms,
                    mark.events as i64,
                    mark.series as i64,
                    mark.compacted_at_ms
                ],
            )
            .map_err(db_err(WHAT))?;
            rebuild_day_if_complete(&tx, mark.hour_ms).map_err(db_err(WHAT))?;
            tx.commit().map_err(db_err(WHAT))
        })
        .await
    }

    async fn write_hour_partial(&self, partial: &crate::HourPartial) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(partial.series.len() + partial.layers.len());
        for (whole, docs) in [(0i64, &partial.series), (1, &partial.layers)] {
            for r in docs {
                let id = crate::tier::partial_doc_id(r);
                let body = to_json(&id, r)?;
                rows.push((id, whole, body));
            }
        }
        let mark = partial.mark();
        self.with_conn(move |conn| {
            const WHAT: &str = "write an hour's partial";
            // One transaction, the old partial of the same collector gone:
            // a partial written again never mixes with its earlier self.
            let tx = conn.transaction().map_err(db_err(WHAT))?;
            for table in ["hour_partials", "partial_marks"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE hour_ms = ?1 AND collector = ?2"),
                    params![mark.hour_ms, mark.collector],
                )
                .map_err(db_err(WHAT))?;
            }
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO hour_partials (doc_id, hour_ms, collector, whole_layer, body) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(db_err(WHAT))?;
                for (id, whole, body) in &rows {
                    stmt.execute(params![id, mark.hour_ms, mark.collector, whole, body])
                        .map_err(db_err(WHAT))?;
                }
            }
            tx.execute(
                "INSERT INTO partial_marks (hour_ms, collector, events) VALUES (?1, ?2, ?3)",
                params![mark.hour_ms, mark.collector, mark.events as i64],
            )
            .map_err(db_err(WHAT))?;
            tx.commit().map_err(db_err(WHAT))
        })
        .await
    }

    async fn minute_events_by_collector(
        &self,
        hour_ms: i64,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        self.with_conn(move |conn| {
            const WHAT: &str = "sum an hour's events per collector";
            let mut stmt = conn
                .prepare_cached(
                    "SELECT collector, count FROM collector_hours WHERE hour_ms = ?1 AND count > 0",
                )
                .map_err(db_err(WHAT))?;
            let rows = stmt
                .query_map(params![hour_ms], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })
                .map_err(db_err(WHAT))?;
            rows.collect::<Result<_, _>>().map_err(db_err(WHAT))
        })
        .await
    }

    async fn read_hour_partials(&self, hour_ms: i64) -> Result<crate::HourPartials, StoreError> {
        self.with_conn(move |conn| {
            const WHAT: &str = "read an hour's partials";
            let mut out = crate::HourPartials::default();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT collector, events FROM partial_marks WHERE hour_ms = ?1 \
                     ORDER BY collector",
                )
                .map_err(db_err(WHAT))?;
            let marks = stmt
                .query_map(params![hour_ms], |r| {
                    Ok(crate::PartialMark {
                        hour_ms,
                        collector: r.get(0)?,
                        events: r.get::<_, i64>(1)?.max(0) as u64,
                    })
                })
                .map_err(db_err(WHAT))?;
            out.marks = marks.collect::<Result<_, _>>().map_err(db_err(WHAT))?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT doc_id, whole_layer, body FROM hour_partials WHERE hour_ms = ?1",
                )
                .map_err(db_err(WHAT))?;
            let mut rows = stmt.query(params![hour_ms]).map_err(db_err(WHAT))?;
            while let Some(row) = rows.next().map_err(db_err(WHAT))? {
                let text = |i: usize| -> Result<&str, StoreError> {
                    row.get_ref(i)
                        .and_then(|v| v.as_str().map_err(rusqlite::Error::from))
                        .map_err(db_err(WHAT))
                };
                let r = decode_rollup("hour_partials", text(0)?, text(2)?)?;
                let whole: i64 = row.get(1).map_err(db_err(WHAT))?;
                if whole == 0 {
                    out.series.push(r);
                } else {
                    out.layers.push(r);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn hour_marks(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<crate::HourMark>, StoreError> {
        self.with_conn(move |conn| {
            const WHAT: &str = "read hour marks";
            let mut stmt = conn
                .prepare_cached(
                    "SELECT hour_ms, events, series, compacted_at_ms FROM hour_marks \
                     WHERE hour_ms >= ?1 AND hour_ms < ?2 ORDER BY hour_ms",
                )
                .map_err(db_err(WHAT))?;
            let rows = stmt
                .query_map(params![from_ms, to_ms], |r| {
                    Ok(crate::HourMark {
                        hour_ms: r.get(0)?,
                        events: r.get::<_, i64>(1)?.max(0) as u64,
                        series: r.get::<_, i64>(2)?.max(0) as u64,
                        compacted_at_ms: r.get(3)?,
                    })
                })
                .map_err(db_err(WHAT))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err(WHAT))
        })
        .await
    }

    async fn minute_events_by_hour(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<std::collections::BTreeMap<i64, u64>, StoreError> {
        self.with_conn(move |conn| {
            const WHAT: &str = "sum events per hour";
            let mut out = std::collections::BTreeMap::new();
            // `layer_minutes` holds the series' sums per layer and minute;
            // whole-layer rollups carry their count in a column.
            for table in ["layer_minutes", "layer_rollups"] {
                let sql = format!(
                    "SELECT minute_ms - ((minute_ms % 3600000) + 3600000) % 3600000 AS h, \
                     SUM(count) FROM {table} WHERE layer = ?1 AND minute_ms >= ?2 \
                     AND minute_ms < ?3 GROUP BY h"
                );
                let mut stmt = conn.prepare_cached(&sql).map_err(db_err(WHAT))?;
                for layer in Layer::ALL {
                    let rows = stmt
                        .query_map(params![layer.as_str(), from_ms, to_ms], |r| {
                            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                        })
                        .map_err(db_err(WHAT))?;
                    for row in rows {
                        let (h, n) = row.map_err(db_err(WHAT))?;
                        *out.entry(h).or_insert(0u64) += n.max(0) as u64;
                    }
                }
            }
            out.retain(|_, n| *n > 0);
            Ok(out)
        })
        .await
    }

    async fn apply_hourly_retention(
        &self,
        now_ms: i64,
        keep_days: u32,
    ) -> Result<RetentionReport, StoreError> {
        let cutoff = retention_cutoff_ms(now_ms, keep_days);
        self.with_conn(move |conn| {
            const WHAT: &str = "apply hourly retention";
            let tx = conn.transaction().map_err(db_err(WHAT))?;
            let mut deleted = 0u64;
            for table in ["hourly_rollups", "hourly_layer_rollups", "layer_hours"] {
                let sql = format!("DELETE FROM {table} WHERE layer = ?1 AND minute_ms < ?2");
                let mut stmt = tx.prepare_cached(&sql).map_err(db_err(WHAT))?;
                for layer in Layer::ALL {
                    deleted += stmt
                        .execute(params![layer.as_str(), cutoff])
                        .map_err(db_err(WHAT))? as u64;
                }
            }
            tx.execute("DELETE FROM hour_marks WHERE hour_ms < ?1", params![cutoff])
                .map_err(db_err(WHAT))?;
            let mut stmt = tx
                .prepare_cached("DELETE FROM series_days WHERE layer = ?1 AND minute_ms < ?2")
                .map_err(db_err(WHAT))?;
            for layer in Layer::ALL {
                stmt.execute(params![layer.as_str(), cutoff])
                    .map_err(db_err(WHAT))?;
            }
            drop(stmt);
            tx.execute("DELETE FROM day_marks WHERE day_ms < ?1", params![cutoff])
                .map_err(db_err(WHAT))?;
            tx.commit().map_err(db_err(WHAT))?;
            Ok(RetentionReport {
                dropped: Vec::new(),
                deleted_docs: deleted,
            })
        })
        .await
    }

    async fn top(&self, q: &TopQuery) -> Result<Vec<TopEntry>, StoreError> {
        let mut f = Filter::new("SELECT doc_id, body FROM rollups");
        f.and("layer =", q.layer.as_str().to_owned());
        f.and("minute_ms =", minute_of(q.minute_ms));
        f.and_opt("service =", q.service.as_ref());
        let (by, limit) = (q.by, q.limit);
        self.with_conn(move |conn| {
            let rows = select_bodies(conn, &f.sql, f.args, "rank series")?;
            let rollups = rows
                .iter()
                .map(|(doc_id, body)| decode_rollup("rollups", doc_id, body))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rank(rollups, by, limit))
        })
        .await
    }

    async fn samples(&self, q: &SampleQuery) -> Result<Vec<Sample>, StoreError> {
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let mut f = Filter::new("SELECT doc_id, body FROM samples");
        f.and("layer =", q.layer.as_str().to_owned());
        f.and("minute_ms =", minute_of(q.minute_ms));
        f.and_opt("service =", q.service.as_ref());
        f.and_opt("name =", q.name.as_ref());
        if let Some(kind) = q.kind {
            f.and("kind =", kind.as_str().to_owned());
        }
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        f.args.push(limit.into());
        f.sql.push_str(&format!(
            " ORDER BY {}, ts_ms, doc_id LIMIT ?{}",
            kind_order_sql(),
            f.args.len()
        ));
        self.with_conn(move |conn| {
            let rows = select_bodies(conn, &f.sql, f.args, "read samples")?;
            rows.iter()
                .map(|(doc_id, body)| decode("samples", doc_id, body))
                .collect()
        })
        .await
    }

    async fn layer_totals(&self, q: &TotalsQuery) -> Result<Vec<LayerTotals>, StoreError> {
        q.validate()?;
        if q.layer.is_none() {
            // One query per layer, so each reads its range of the covering
            // index (which starts with the layer) instead of the table.
            let mut out = Vec::new();
            for layer in Layer::ALL {
                out.extend(self.layer_totals(&q.clone().layer(layer)).await?);
            }
            return Ok(out);
        }
        let plan = crate::tier::plan_for(self, q.from_ms, q.to_ms, q.bucket_ms).await?;
        let q = q.clone();
        self.with_conn(move |conn| {
            let mut rows = Vec::new();
            for (t, from_ms, to_ms) in segments(plan) {
                let part = TotalsQuery {
                    from_ms,
                    to_ms,
                    ..q.clone()
                };
                rows.extend(layer_totals_in(conn, t, &part)?);
            }
            let mut out = crate::totals::merge_layer_rows(rows, &q);
            sort_layers(&mut out);
            Ok(out)
        })
        .await
    }

    async fn series_totals(&self, q: &SeriesTotalsQuery) -> Result<Vec<SeriesTotals>, StoreError> {
        q.range.validate()?;
        if q.range.layer.is_none() {
            let mut out = Vec::new();
            for layer in Layer::ALL {
                let mut one = q.clone();
                one.range.layer = Some(layer);
                out.extend(self.series_totals(&one).await?);
            }
            return Ok(out);
        }
        // Grouped here rather than with SQL's GROUP BY: SQLite sorts the
        // whole range into a temporary B-tree first, while one pass over the
        // covering index into a hash map costs about half as much.
        let plan = crate::tier::plan_for(self, q.range.from_ms, q.range.to_ms, None).await?;
        let q = q.clone();
        self.with_conn(move |conn| {
            let mut groups = SeriesGroups::default();
            let days = marked_days(conn, q.range.from_ms, q.range.to_ms)
                .map_err(db_err("read day marks"))?;
            let layer = q.range.layer.unwrap_or(Layer::Url);
            let parts = with_open_sums(conn, layer, with_days(segments(plan), &days))
                .map_err(db_err("plan series sums"))?;
            for (t, from_ms, to_ms) in parts {
                let part = TotalsQuery {
                    from_ms,
                    to_ms,
                    ..q.range.clone()
                };
                series_totals_in(conn, t, &part, q.by_host, q.range.from_ms, &mut groups)?;
            }
            Ok(rank_series(groups.rows, q.order, q.limit))
        })
        .await
    }

    async fn last_seen(&self, q: &TotalsQuery) -> Result<Vec<SeenSeries>, StoreError> {
        // `series_seen` is keyed (layer, name, host, service): a name or a
        // name prefix reads a range of it.
        let mut f =
            Filter::new("SELECT layer, service, name, host, last_minute_ms FROM series_seen");
        if let Some(l) = q.layer {
            f.and("layer =", l.as_str().to_owned());
        }
        f.and("last_minute_ms >=", q.from_ms);
        f.and_opt("service =", q.service.as_ref());
        f.and_opt("name =", q.name.as_ref());
        f.and_opt("host =", q.host.as_ref());
        if let Some(p) = &q.name_prefix {
            f.and("name >=", p.clone());
            f.and("name <", format!("{p}\u{10FFFF}"));
        }
        self.with_conn(move |conn| {
            const WHAT: &str = "list seen series";
            let mut stmt = conn.prepare_cached(&f.sql).map_err(db_err(WHAT))?;
            let rows = stmt
                .query_map(params_from_iter(f.args), |row| {
                    Ok(SeenSeries {
                        layer: parse_layer(&row.get::<_, String>(0)?)?,
                        service: row.get(1)?,
                        name: row.get(2)?,
                        host: row.get(3)?,
                        last_minute_ms: row.get(4)?,
                    })
                })
                .map_err(db_err(WHAT))?;
            let mut out = rows.collect::<Result<Vec<_>, _>>().map_err(db_err(WHAT))?;
            sort_seen(&mut out);
            Ok(out)
        })
        .await
    }

    async fn apply_retention(
        &self,
        now_ms: i64,
        keep_days: u32,
    ) -> Result<RetentionReport, StoreError> {
        let cutoff = retention_cutoff_ms(now_ms, keep_days);
        self.with_conn(move |conn| {
            const WHAT: &str = "apply retention";
            let tx = conn.transaction().map_err(db_err(WHAT))?;
            let mut deleted = 0u64;
            for table in [
                "rollups",
                "layer_rollups",
                "samples",
                "layer_minutes",
                "series_hours",
                "series_tens",
            ] {
                // One delete per layer, so each uses the index that starts
                // with (layer, minute_ms) instead of scanning the table.
                let sql = format!("DELETE FROM {table} WHERE layer = ?1 AND minute_ms < ?2");
                let mut stmt = tx.prepare_cached(&sql).map_err(db_err(WHAT))?;
                for layer in Layer::ALL {
                    let n = stmt
                        .execute(params![layer.as_str(), cutoff])
                        .map_err(db_err(WHAT))?;
                    deleted += n as u64;
                }
            }
            tx.execute(
                "DELETE FROM series_seen WHERE last_minute_ms < ?1",
                params![cutoff],
            )
            .map_err(db_err(WHAT))?;
            // Partials serve compaction only, which needs the minutes too.
            for table in ["hour_partials", "partial_marks", "collector_hours"] {
                deleted += tx
                    .execute(
                        &format!("DELETE FROM {table} WHERE hour_ms < ?1"),
                        params![cutoff],
                    )
                    .map_err(db_err(WHAT))? as u64;
            }
            tx.commit().map_err(db_err(WHAT))?;
            Ok(RetentionReport {
                dropped: Vec::new(),
                deleted_docs: deleted,
            })
        })
        .await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        // A committed transaction is visible to the next read on this
        // connection; there is nothing to refresh.
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_order_follows_the_enum() {
        let sql = kind_order_sql();
        assert!(sql.contains("WHEN 'error' THEN 0"), "{sql}");
        assert!(sql.contains("WHEN 'slow' THEN 1"), "{sql}");
        assert!(sql.contains("WHEN 'parse_error' THEN 2"), "{sql}");
    }
}
