//! Opening the database file: pragmas, schema and its version.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

/// The schema version this release writes and understands, kept in
/// `PRAGMA user_version`. Bump it with a new step in [`migrate`].
pub(crate) const SCHEMA_VERSION: i64 = 1;

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

/// Opens (creating if needed) the database at `path` and brings its schema
/// to [`SCHEMA_VERSION`].
pub(crate) fn open(path: &Path) -> Result<Connection, StoreError> {
    let ctx = |what: &str, e: rusqlite::Error| {
        StoreError::Backend(format!("sqlite {}: {what}: {e}", path.display()))
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
        return Err(StoreError::Backend(format!(
            "sqlite {}: schema version {version} is newer than this release supports \
             ({SCHEMA_VERSION}); run a newer panorama or point it at another data directory",
            path.display()
        )));
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| ctx("cannot enable WAL journal", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "sqlite {}: journal mode stayed {mode:?}, expected WAL",
            path.display()
        )));
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
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}
