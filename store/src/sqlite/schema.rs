//! Opening the database file: pragmas, schema and its version.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::{Detail, StoreError};

/// The schema version this release writes and understands, kept in
/// `PRAGMA user_version`. Bump it with a new step in [`migrate`].
pub(crate) const SCHEMA_VERSION: i64 = 7;

/// How long a statement waits for a lock held by another connection (a
/// second process on the same file, or an `sqlite3` shell) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Version 1: one row per document, the document itself as JSON in `body`,
/// and the fields queries filter on copied into indexed columns.
const V1: &str = "
CREATE TABLE IF NOT EXISTS rollups (
    doc_id    TEXT PRIMARY KEY NOT NULL,
    minute_ms INTEGER NOT NULL,
    layer     TEXT NOT NULL,
    service   TEXT NOT NULL,
    host      TEXT NOT NULL,
    name      TEXT NOT NULL,
    dims      TEXT NOT NULL,
    collector TEXT NOT NULL,
    body      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rollups_layer_minute
    ON rollups (layer, minute_ms);
CREATE INDEX IF NOT EXISTS rollups_layer_series_minute
    ON rollups (layer, service, name, minute_ms);
CREATE TABLE IF NOT EXISTS samples (
    doc_id    TEXT PRIMARY KEY NOT NULL,
    minute_ms INTEGER NOT NULL,
    layer     TEXT NOT NULL,
    service   TEXT NOT NULL,
    host      TEXT NOT NULL,
    name      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    ts_ms     INTEGER NOT NULL,
    body      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_layer_minute_series
    ON samples (layer, minute_ms, service, name);
";

/// Version 2: the sums a dashboard aggregates, copied out of `body` into
/// columns, with a covering index so totals per series over a range read
/// the index alone and never the wide rows with their bodies; per-layer
/// sums per minute (`layer_minutes`) and each series' newest minute
/// (`series_seen`), kept up to date by every write, so an overview of a
/// day reads a few thousand rows instead of millions. Rows of version 1 are filled in by [`backfill_v2`].
const V2: &str = "
ALTER TABLE rollups ADD COLUMN count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollups ADD COLUMN errors INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollups ADD COLUMN latency_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollups ADD COLUMN latency_sum_ms REAL NOT NULL DEFAULT 0;
ALTER TABLE rollups ADD COLUMN latency_max_ms REAL;
ALTER TABLE rollups ADD COLUMN p99_ms REAL;
ALTER TABLE rollups ADD COLUMN value_sum REAL NOT NULL DEFAULT 0;
ALTER TABLE rollups ADD COLUMN value_n INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollups ADD COLUMN value_max REAL;
CREATE TABLE IF NOT EXISTS layer_minutes (
    layer          TEXT NOT NULL,
    minute_ms      INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    errors         INTEGER NOT NULL,
    latency_count  INTEGER NOT NULL,
    latency_sum_ms REAL NOT NULL,
    latency_max_ms REAL,
    p99_ms         REAL,
    value_sum      REAL NOT NULL,
    value_n        INTEGER NOT NULL,
    value_max      REAL,
    last_minute_ms INTEGER NOT NULL,
    PRIMARY KEY (layer, minute_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series_seen (
    layer          TEXT NOT NULL,
    name           TEXT NOT NULL,
    host           TEXT NOT NULL,
    service        TEXT NOT NULL,
    last_minute_ms INTEGER NOT NULL,
    PRIMARY KEY (layer, name, host, service)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollups_layer_minute_totals
    ON rollups (layer, minute_ms, service, name, host, count, errors, latency_count,
                latency_sum_ms, latency_max_ms, p99_ms, value_sum, value_n, value_max);
";

/// Version 3: whole-layer rollups (every event of a layer in a minute, as
/// each collector counted it), apart from the series' rollups so no sum over
/// series sees them; the dashboard merges their histograms into the layer's
/// percentiles. Nothing to backfill: older minutes simply have none.
const V3: &str = "
CREATE TABLE IF NOT EXISTS layer_rollups (
    doc_id    TEXT PRIMARY KEY NOT NULL,
    layer     TEXT NOT NULL,
    minute_ms INTEGER NOT NULL,
    body      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS layer_rollups_layer_minute
    ON layer_rollups (layer, minute_ms);
";

/// Version 4: the hourly tier. Hourly rollups of series and of whole
/// layers in tables of their own (same columns as the minute tier's, so
/// the same queries read them), per-layer sums per hour (`layer_hours`,
/// what `layer_minutes` is for minutes: rebuilt from `hourly_rollups` by
/// each compaction of the hour, so it cannot drift), and the marks of
/// compacted hours. Whole-layer minute rollups gain a `count` column, so
/// the compactor's per-hour event sums read no bodies; filled from the
/// bodies here.
const V4: &str = "
CREATE TABLE IF NOT EXISTS hourly_rollups (
    doc_id         TEXT PRIMARY KEY NOT NULL,
    minute_ms      INTEGER NOT NULL,
    layer          TEXT NOT NULL,
    service        TEXT NOT NULL,
    host           TEXT NOT NULL,
    name           TEXT NOT NULL,
    dims           TEXT NOT NULL,
    collector      TEXT NOT NULL,
    body           TEXT NOT NULL,
    count          INTEGER NOT NULL DEFAULT 0,
    errors         INTEGER NOT NULL DEFAULT 0,
    latency_count  INTEGER NOT NULL DEFAULT 0,
    latency_sum_ms REAL NOT NULL DEFAULT 0,
    latency_max_ms REAL,
    p99_ms         REAL,
    value_sum      REAL NOT NULL DEFAULT 0,
    value_n        INTEGER NOT NULL DEFAULT 0,
    value_max      REAL
);
CREATE INDEX IF NOT EXISTS hourly_rollups_layer_series_minute
    ON hourly_rollups (layer, service, name, minute_ms);
CREATE INDEX IF NOT EXISTS hourly_rollups_layer_minute_totals
    ON hourly_rollups (layer, minute_ms, service, name, host, count, errors, latency_count,
                       latency_sum_ms, latency_max_ms, p99_ms, value_sum, value_n, value_max);
CREATE TABLE IF NOT EXISTS hourly_layer_rollups (
    doc_id    TEXT PRIMARY KEY NOT NULL,
    layer     TEXT NOT NULL,
    minute_ms INTEGER NOT NULL,
    count     INTEGER NOT NULL DEFAULT 0,
    body      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hourly_layer_rollups_layer_minute
    ON hourly_layer_rollups (layer, minute_ms);
CREATE TABLE IF NOT EXISTS layer_hours (
    layer          TEXT NOT NULL,
    minute_ms      INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    errors         INTEGER NOT NULL,
    latency_count  INTEGER NOT NULL,
    latency_sum_ms REAL NOT NULL,
    latency_max_ms REAL,
    p99_ms         REAL,
    value_sum      REAL NOT NULL,
    value_n        INTEGER NOT NULL,
    value_max      REAL,
    last_minute_ms INTEGER NOT NULL,
    PRIMARY KEY (layer, minute_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hour_marks (
    hour_ms         INTEGER PRIMARY KEY NOT NULL,
    events          INTEGER NOT NULL,
    series          INTEGER NOT NULL,
    compacted_at_ms INTEGER NOT NULL
);
ALTER TABLE layer_rollups ADD COLUMN count INTEGER NOT NULL DEFAULT 0;
UPDATE layer_rollups SET count = coalesce(json_extract(body, '$.count'), 0);
";

/// Version 5: per-series sums per UTC day, for ranking series over days
/// (the layer page over 7 days summed 336,000 hourly rows of the url
/// layer's 2,000 series; whole days make it 12,000). Built from the hourly
/// tier when the last hour of a day is compacted, rebuilt when one of its
/// hours is compacted again, and read only for days with a `day_marks`
/// row. Days compacted before this version have none and are read from
/// their hours.
const V5: &str = "
CREATE TABLE IF NOT EXISTS series_days (
    layer          TEXT NOT NULL,
    minute_ms      INTEGER NOT NULL,
    service        TEXT NOT NULL,
    name           TEXT NOT NULL,
    host           TEXT NOT NULL,
    count          INTEGER NOT NULL,
    errors         INTEGER NOT NULL,
    latency_count  INTEGER NOT NULL,
    latency_sum_ms REAL NOT NULL,
    latency_max_ms REAL,
    p99_ms         REAL,
    value_sum      REAL NOT NULL,
    value_n        INTEGER NOT NULL,
    value_max      REAL,
    PRIMARY KEY (layer, minute_ms, service, name, host)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS day_marks (
    day_ms INTEGER PRIMARY KEY NOT NULL,
    events INTEGER NOT NULL
);
";

/// Version 6: per-series sums per hour and per ten minutes of the minute
/// tier, kept up to date by every minute write like `layer_minutes`, so a
/// range ending now reads one row per series for each hour not compacted
/// yet (the current hour, and the last one while it is within the grace)
/// and for each ten minutes of a partial hour, instead of one per series
/// and minute: the url layer's 2,000 series have 120,000 minute rows an
/// hour. Read only for blocks a read covers whole, or whose minutes after
/// the read's end are all empty. Filled from the minutes already stored.
const V6: &str = "
CREATE TABLE IF NOT EXISTS series_hours (
    layer          TEXT NOT NULL,
    minute_ms      INTEGER NOT NULL,
    service        TEXT NOT NULL,
    name           TEXT NOT NULL,
    host           TEXT NOT NULL,
    count          INTEGER NOT NULL,
    errors         INTEGER NOT NULL,
    latency_count  INTEGER NOT NULL,
    latency_sum_ms REAL NOT NULL,
    latency_max_ms REAL,
    p99_ms         REAL,
    value_sum      REAL NOT NULL,
    value_n        INTEGER NOT NULL,
    value_max      REAL,
    last_minute_ms INTEGER NOT NULL,
    PRIMARY KEY (layer, minute_ms, service, name, host)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series_tens (
    layer          TEXT NOT NULL,
    minute_ms      INTEGER NOT NULL,
    service        TEXT NOT NULL,
    name           TEXT NOT NULL,
    host           TEXT NOT NULL,
    count          INTEGER NOT NULL,
    errors         INTEGER NOT NULL,
    latency_count  INTEGER NOT NULL,
    latency_sum_ms REAL NOT NULL,
    latency_max_ms REAL,
    p99_ms         REAL,
    value_sum      REAL NOT NULL,
    value_n        INTEGER NOT NULL,
    value_max      REAL,
    last_minute_ms INTEGER NOT NULL,
    PRIMARY KEY (layer, minute_ms, service, name, host)
) WITHOUT ROWID;
INSERT INTO series_hours (layer, minute_ms, service, name, host, count, errors, latency_count,
    latency_sum_ms, latency_max_ms, p99_ms, value_sum, value_n, value_max, last_minute_ms)
SELECT layer, minute_ms - ((minute_ms % 3600000) + 3600000) % 3600000 AS block, service, name,
    host, SUM(count), SUM(errors), SUM(latency_count), SUM(latency_sum_ms), MAX(latency_max_ms),
    MAX(p99_ms), SUM(value_sum), SUM(value_n), MAX(value_max), MAX(minute_ms)
FROM rollups GROUP BY layer, block, service, name, host;
INSERT INTO series_tens (layer, minute_ms, service, name, host, count, errors, latency_count,
    latency_sum_ms, latency_max_ms, p99_ms, value_sum, value_n, value_max, last_minute_ms)
SELECT layer, minute_ms - ((minute_ms % 600000) + 600000) % 600000 AS block, service, name,
    host, SUM(count), SUM(errors), SUM(latency_count), SUM(latency_sum_ms), MAX(latency_max_ms),
    MAX(p99_ms), SUM(value_sum), SUM(value_n), MAX(value_max), MAX(minute_ms)
FROM rollups GROUP BY layer, block, service, name, host;
";

/// Events per collector and hour of the series' minutes, kept by every
/// rollup write (version 7). Created before version 2's backfill too,
/// which writes through the same code.
const COLLECTOR_HOURS: &str = "
CREATE TABLE IF NOT EXISTS collector_hours (
    hour_ms   INTEGER NOT NULL,
    collector TEXT NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, collector)
) WITHOUT ROWID;
";

/// Version 7: each collector's own merge of an hour (its partial), written
/// once the hour is past, so compacting the hour merges one document per
/// series and collector instead of sixty (see `panorama_store::compact`),
/// and each collector's events per hour in the series' minutes, which the
/// partials are checked against. Kept as long as minutes are.
const V7: &str = "
CREATE TABLE IF NOT EXISTS hour_partials (
    doc_id      TEXT PRIMARY KEY NOT NULL,
    hour_ms     INTEGER NOT NULL,
    collector   TEXT NOT NULL,
    whole_layer INTEGER NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hour_partials_hour ON hour_partials (hour_ms, collector);
INSERT OR REPLACE INTO collector_hours (hour_ms, collector, count)
SELECT minute_ms - ((minute_ms % 3600000) + 3600000) % 3600000 AS h, collector, SUM(count)
FROM rollups GROUP BY h, collector;
CREATE TABLE IF NOT EXISTS partial_marks (
    hour_ms   INTEGER NOT NULL,
    collector TEXT NOT NULL,
    events    INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, collector)
) WITHOUT ROWID;
";

/// Opens (creating if needed) the database at `path` and brings its schema
/// to [`SCHEMA_VERSION`].
pub(crate) fn open(path: &Path) -> Result<Connection, StoreError> {
    let ctx = |what: &str, e: rusqlite::Error| {
        StoreError::Backend(Detail::with_source(
            format!("sqlite {}: {what}: {e}", path.display()),
            e,
        ))
    };
    let mut conn = Connection::open(path).map_err(|e| ctx("cannot open", e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| ctx("cannot set busy timeout", e))?;
    // Read the version before changing anything, so a file from a newer
    // release is left exactly as it was.
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| ctx("cannot read schema version", e))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(
            format!(
                "sqlite {}: schema version {version} is newer than this release supports \
                 ({SCHEMA_VERSION}); run a newer panorama or point it at another data directory",
                path.display()
            )
            .into(),
        ));
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| ctx("cannot enable WAL journal", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(
            format!(
                "sqlite {}: journal mode stayed {mode:?}, expected WAL",
                path.display()
            )
            .into(),
        ));
    }
    // With WAL, NORMAL loses at most the last transactions on power loss,
    // never consistency; the collector's WAL still holds what they carried.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| ctx("cannot set synchronous", e))?;
    migrate(&mut conn, version).map_err(|e| ctx("cannot create schema", e))?;
    Ok(conn)
}

/// Applies every step from `from` up to [`SCHEMA_VERSION`] in one transaction.
fn migrate(conn: &mut Connection, from: i64) -> Result<(), rusqlite::Error> {
    if from == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction()?;
    if from < 1 {
        tx.execute_batch(V1)?;
    }
    if from < 2 {
        tx.execute_batch(V2)?;
        tx.execute_batch(COLLECTOR_HOURS)?;
        backfill_v2(&tx)?;
    }
    if from < 3 {
        tx.execute_batch(V3)?;
    }
    if from < 4 {
        tx.execute_batch(V4)?;
    }
    if from < 5 {
        tx.execute_batch(V5)?;
    }
    if from < 6 {
        tx.execute_batch(V6)?;
    }
    if from < 7 {
        tx.execute_batch(COLLECTOR_HOURS)?;
        tx.execute_batch(V7)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// Copies the sums of rollups written before version 2 out of their bodies.
/// A body that does not decode keeps zeros here; reading it through
/// `read_rollups` still reports it as corrupt.
fn backfill_v2(tx: &rusqlite::Transaction<'_>) -> Result<(), rusqlite::Error> {
    let rows: Vec<(String, String)> = {
        let mut stmt = tx.prepare("SELECT doc_id, body FROM rollups")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut update = tx.prepare(
        "UPDATE rollups SET count = ?2, errors = ?3, latency_count = ?4, latency_sum_ms = ?5, \
         latency_max_ms = ?6, p99_ms = ?7, value_sum = ?8, value_n = ?9, value_max = ?10 \
         WHERE doc_id = ?1",
    )?;
    for (doc_id, body) in rows {
        let Ok(r) = serde_json::from_str::<panorama_model::Rollup>(&body) else {
            continue;
        };
        let t = crate::Totals::of(&r);
        super::add_to_summaries(tx, &r, &t, None)?;
        update.execute(rusqlite::params![
            doc_id,
            t.count as i64,
            t.errors as i64,
            t.latency_count as i64,
            t.latency_sum_ms,
            t.latency_max_ms,
            t.p99_max_ms,
            t.value_sum,
            t.value_n as i64,
            t.value_max
        ])?;
    }
    Ok(())
}
