//! The SQLite backend: the shared conformance suite, plus what only a file
//! on disk can show (reopening, schema versions, damaged rows).

use async_trait::async_trait;
use panorama_model::{Event, Layer, Rollup};
use panorama_store::conformance::Harness;
use panorama_store::sqlite::SqliteStore;
use panorama_store::{SeriesQuery, Store, StoreError};
use tempfile::TempDir;

/// A fresh store in its own temporary directory.
struct SqliteHarness {
    store: SqliteStore,
    dir: TempDir,
}

#[async_trait]
impl Harness for SqliteHarness {
    fn store(&self) -> &dyn Store {
        &self.store
    }

    async fn teardown(self) {
        drop(self.store);
        if let Err(e) = self.dir.close() {
            panic!("cannot remove the case's directory: {e}");
        }
    }
}

async fn open(case: &str) -> SqliteHarness {
    let dir = tempfile::Builder::new()
        .prefix(&format!("panorama-sqlite-{case}-"))
        .tempdir()
        .expect("temporary directory");
    let store = SqliteStore::open(dir.path()).expect("open the store");
    SqliteHarness { store, dir }
}

panorama_store::conformance_tests!(open);

const MINUTE: i64 = 1_795_168_800_000; // 2026-11-20T10:00:00Z

fn rollup(n: usize) -> Rollup {
    let e = {
        let mut e = Event::new(
            MINUTE + 1_000,
            Layer::Url,
            "login",
            "web1",
            "GET /api/login",
        );
        e.latency_ms = Some(12.5);
        e
    };
    let mut r = Rollup::empty(MINUTE, e.series_key(), "c1");
    for _ in 0..n {
        r.add(&e);
    }
    r
}

fn login_query() -> SeriesQuery {
    SeriesQuery::layer(Layer::Url, MINUTE, MINUTE + 60_000)
        .service("login")
        .name("GET /api/login")
}

#[tokio::test]
async fn creates_the_directory_and_reports_its_name() {
    let tmp = TempDir::new().unwrap();
    let data_dir = tmp.path().join("a").join("b");
    let store = SqliteStore::open(&data_dir).unwrap();
    assert_eq!(store.backend(), "sqlite");
    assert_eq!(store.path(), data_dir.join("panorama.sqlite3"));
    assert!(store.path().is_file(), "database file created");
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let tmp = TempDir::new().unwrap();
    {
        let store = SqliteStore::open(tmp.path()).unwrap();
        store.write_rollups(&[rollup(7)]).await.unwrap();
    }
    let store = SqliteStore::open(tmp.path()).unwrap();
    let points = store.read_series(&login_query()).await.unwrap();
    assert_eq!(points.len(), 1, "{points:?}");
    assert_eq!(points[0].count, 7);

    // Reopening again (schema already there) and rewriting still replaces.
    drop(store);
    let store = SqliteStore::open(tmp.path()).unwrap();
    store.write_rollups(&[rollup(9)]).await.unwrap();
    let points = store.read_series(&login_query()).await.unwrap();
    assert_eq!(points[0].count, 9);
}

#[tokio::test]
async fn refuses_a_newer_schema_version() {
    let tmp = TempDir::new().unwrap();
    let path = SqliteStore::open(tmp.path()).unwrap().path().to_owned();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    match SqliteStore::open(tmp.path()) {
        Err(StoreError::Backend(msg)) => {
            assert!(msg.contains("schema version 99"), "{msg}");
            assert!(msg.contains("newer"), "{msg}");
        }
        other => panic!("want a Backend error, got {other:?}"),
    }
    // The file was left alone.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, 99);
}

#[tokio::test]
async fn uses_wal_and_records_the_schema_version() {
    let tmp = TempDir::new().unwrap();
    let path = SqliteStore::open(tmp.path()).unwrap().path().to_owned();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    // 7: collectors' partials of hours and events per collector and hour
    // (6: per-series sums per hour and ten minutes of minutes; 5: per-series sums per day;
    // 4: the hourly tier; 3: whole-layer rollups beside the series'; 2: the
    // covering index behind the dashboard's totals).
    assert_eq!(v, 7);
}

#[tokio::test]
async fn a_corrupt_body_is_an_error_naming_the_document() {
    let tmp = TempDir::new().unwrap();
    let store = SqliteStore::open(tmp.path()).unwrap();
    let r = rollup(3);
    store.write_rollups(std::slice::from_ref(&r)).await.unwrap();
    {
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        conn.execute(
            "UPDATE rollups SET body = '{\"minute_ms\": 1' WHERE doc_id = ?1",
            [r.doc_id()],
        )
        .unwrap();
    }
    match store.read_series(&login_query()).await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains(&r.doc_id()), "{msg}"),
        other => panic!("want a Backend error naming the doc, got {other:?}"),
    }
}

/// A file of schema version 3 (before the hourly tier) is migrated in
/// place: its whole-layer rollups get their `count` column filled from
/// their bodies, so the compactor's per-hour sums see them, and its hours
/// compact.
#[tokio::test]
async fn migrates_a_version_3_file_to_the_hourly_tier() {
    let tmp = TempDir::new().unwrap();
    let r = rollup(4);
    let mut whole = Rollup::empty(
        MINUTE,
        panorama_model::SeriesKey::whole_layer(Layer::Url),
        "c1",
    );
    whole.merge(&r);
    {
        let store = SqliteStore::open(tmp.path()).unwrap();
        store.write_rollups(std::slice::from_ref(&r)).await.unwrap();
        store.write_layer_rollups(&[whole]).await.unwrap();
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        // Back to what version 3 had.
        conn.execute_batch(
            "DROP TABLE hourly_rollups; DROP TABLE hourly_layer_rollups; DROP TABLE layer_hours; \
             DROP TABLE hour_marks; ALTER TABLE layer_rollups DROP COLUMN count; \
             DROP TABLE series_days; DROP TABLE day_marks; DROP TABLE series_hours; \
             DROP TABLE series_tens; \
             PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(tmp.path()).unwrap();
    let hour = MINUTE - MINUTE % 3_600_000;
    let sums = store
        .minute_events_by_hour(hour, hour + 3_600_000)
        .await
        .unwrap();
    assert_eq!(
        sums.get(&hour),
        Some(&8),
        "4 series events + 4 whole-layer events"
    );
    let (mark, _) = panorama_store::compact::compact_hour(&store, hour, MINUTE)
        .await
        .unwrap();
    assert_eq!((mark.events, mark.series), (8, 1));
    let q = SeriesQuery::layer(Layer::Url, hour, hour + 3_600_000);
    assert_eq!(store.read_hourly_rollups(&q).await.unwrap()[0].count, 4);
}

/// A day is summed per series once its 24th hour is compacted, and reads of
/// whole days take those sums: with the day's hourly rows taken away behind
/// the store's back, the day's total is still there. A day with an hour not
/// compacted has no sums and is read from its hours.
#[tokio::test]
async fn a_compacted_day_is_read_from_its_day_sums() {
    use panorama_store::{Metric, SeriesTotalsQuery, TotalsQuery};
    const DAY: i64 = 86_400_000;
    let tmp = TempDir::new().unwrap();
    let store = SqliteStore::open(tmp.path()).unwrap();
    let day = MINUTE - MINUTE.rem_euclid(DAY) + DAY;
    let template = rollup(3);
    let at = |h: i64| {
        let mut r = template.clone();
        r.minute_ms = day + h * 3_600_000 + 5 * 60_000;
        r
    };
    // Two days of one series, 3 events in one minute of each hour.
    let minutes: Vec<Rollup> = (0..48).map(at).collect();
    store.write_rollups(&minutes).await.unwrap();
    for h in 0..47 {
        panorama_store::compact::compact_hour(&store, day + h * 3_600_000, day + 3 * DAY)
            .await
            .unwrap();
    }
    let days = |conn: &rusqlite::Connection| -> Vec<i64> {
        let mut stmt = conn
            .prepare("SELECT day_ms FROM day_marks ORDER BY day_ms")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    assert_eq!(days(&conn), vec![day], "the second day lacks its last hour");
    let total = |from: i64, to: i64| {
        let store = store.clone();
        async move {
            let q = SeriesTotalsQuery {
                range: TotalsQuery::range(from, to).layer(Layer::Url),
                by_host: false,
                order: Metric::Count,
                limit: 10,
            };
            store.series_totals(&q).await.unwrap()[0].totals.count
        }
    };
    assert_eq!(total(day, day + 2 * DAY).await, 48 * 3);
    conn.execute(
        "DELETE FROM hourly_rollups WHERE minute_ms >= ?1 AND minute_ms < ?2",
        [day, day + DAY],
    )
    .unwrap();
    assert_eq!(
        total(day, day + 2 * DAY).await,
        48 * 3,
        "the first day from its sums, the second from hours and minutes"
    );
    // A range starting an hour into the first day cannot use its sums:
    // it reads the (now missing) hours, which shows the sums are only used
    // for whole days.
    assert_eq!(total(day + 3_600_000, day + 2 * DAY).await, 24 * 3);
}

/// The series' sums of one range, read through `series_totals`.
async fn url_total(store: &SqliteStore, from: i64, to: i64) -> u64 {
    use panorama_store::{Metric, SeriesTotalsQuery, TotalsQuery};
    let q = SeriesTotalsQuery {
        range: TotalsQuery::range(from, to).layer(Layer::Url),
        by_host: false,
        order: Metric::Count,
        limit: 10,
    };
    let rows = store.series_totals(&q).await.unwrap();
    rows.iter().map(|r| r.totals.count).sum()
}

/// Minutes not compacted yet are summed per series, per hour and per ten
/// minutes, as they are written, and a range ending now reads those sums:
/// with the minute rows taken away behind the store's back, the totals are
/// still there. A range that ends before a minute a block holds, or starts
/// inside the block, reads that block's minutes, and does.
#[tokio::test]
async fn open_hours_and_ten_minutes_are_read_from_their_series_sums() {
    const M: i64 = 60_000;
    let tmp = TempDir::new().unwrap();
    let store = SqliteStore::open(tmp.path()).unwrap();
    let hour = MINUTE - MINUTE.rem_euclid(3_600_000);
    let at = |m: i64, n: usize| {
        let mut r = rollup(n);
        r.minute_ms = hour + m * M;
        r
    };
    store
        .write_rollups(&[at(1, 1), at(2, 1), at(3, 1), at(12, 1), at(13, 1)])
        .await
        .unwrap();
    // Written again with more events (late ones): the sums take the old
    // row out before adding the new one.
    store.write_rollups(&[at(1, 2)]).await.unwrap();
    let total = |from: i64, to: i64| url_total(&store, hour + from * M, hour + to * M);
    assert_eq!(total(0, 14).await, 6);
    assert_eq!(total(0, 13).await, 5, "minute 13 is after the range's end");
    assert_eq!(total(0, 2).await, 2, "minutes 2 and 3 come after the end");
    assert_eq!(total(2, 4).await, 2);
    assert_eq!(total(10, 14).await, 2);
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    conn.execute("DELETE FROM rollups", []).unwrap();
    assert_eq!(
        total(0, 14).await,
        6,
        "a range ending after the hour's last minute reads its sums"
    );
    assert_eq!(total(-60, 60).await, 6);
    assert_eq!(
        total(10, 14).await,
        2,
        "ten minutes read up to their last minute from their sums"
    );
    assert_eq!(
        total(0, 13).await,
        4,
        "the first ten minutes from their sums, minutes 10-12 from the (now missing) rows"
    );
    assert_eq!(
        total(2, 4).await,
        0,
        "a range starting inside ten minutes reads their (now missing) minutes"
    );
}

/// A file of schema version 5 gains the per-series hour sums of the
/// minutes it already holds.
#[tokio::test]
async fn migrates_a_version_5_file_to_hour_sums() {
    let tmp = TempDir::new().unwrap();
    let hour = MINUTE - MINUTE.rem_euclid(3_600_000);
    {
        let store = SqliteStore::open(tmp.path()).unwrap();
        let mut later = rollup(2);
        later.minute_ms = MINUTE + 60_000;
        store.write_rollups(&[rollup(3), later]).await.unwrap();
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        conn.execute_batch(
            "DROP TABLE series_hours; DROP TABLE series_tens; PRAGMA user_version = 5;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(tmp.path()).unwrap();
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let (at, count, last): (i64, i64, i64) = conn
        .query_row(
            "SELECT minute_ms, count, last_minute_ms FROM series_hours",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((at, count, last), (hour, 5, MINUTE + 60_000));
    let tens: i64 = conn
        .query_row("SELECT SUM(count) FROM series_tens", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tens, 5);
    conn.execute("DELETE FROM rollups", []).unwrap();
    assert_eq!(url_total(&store, hour, MINUTE + 120_000).await, 5);
}

/// Version 7 fills each collector's events per hour from the minutes a
/// version 6 file holds, and keeps them with every write after: what the
/// compactor checks collectors' partials against.
#[tokio::test]
async fn migrates_a_version_6_file_to_events_per_collector_and_hour() {
    let tmp = TempDir::new().unwrap();
    let hour = MINUTE - MINUTE.rem_euclid(3_600_000);
    {
        let store = SqliteStore::open(tmp.path()).unwrap();
        let mut other = rollup(2);
        other.collector = "c2".into();
        store.write_rollups(&[rollup(3), other]).await.unwrap();
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        conn.execute_batch(
            "DROP TABLE collector_hours; DROP TABLE hour_partials; DROP TABLE partial_marks; \
             PRAGMA user_version = 6;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(tmp.path()).unwrap();
    let by = store.minute_events_by_collector(hour).await.unwrap();
    assert_eq!(
        by.into_iter().collect::<Vec<_>>(),
        vec![("c1".to_owned(), 3), ("c2".to_owned(), 2)]
    );
    // A rewrite of the same minute with more events counts the difference.
    store.write_rollups(&[rollup(5)]).await.unwrap();
    assert_eq!(
        store
            .minute_events_by_collector(hour)
            .await
            .unwrap()
            .get("c1"),
        Some(&5)
    );
}

/// A minute written again with late fast events has a lower p99; the
/// worst p99 of its hour and ten minutes falls with it (maxima of latency
/// only grow, a quantile does not), as summing the minute rows would give.
#[tokio::test]
async fn a_rewrite_that_lowers_a_minutes_p99_lowers_its_blocks_worst_p99() {
    use panorama_store::{Metric, SeriesTotalsQuery, Totals, TotalsQuery};
    let tmp = TempDir::new().unwrap();
    let store = SqliteStore::open(tmp.path()).unwrap();
    let hour = MINUTE - MINUTE.rem_euclid(3_600_000);
    let minute = |slow: usize, fast: usize| {
        let mut r = Rollup::empty(hour + 60_000, rollup(1).key, "c1");
        for i in 0..slow + fast {
            let mut e = Event::new(hour + 61_000, Layer::Url, "login", "web1", "GET /api/login");
            e.latency_ms = Some(if i < slow { 500.0 } else { 2.0 });
            r.add(&e);
        }
        r
    };
    let worst = || async {
        let q = SeriesTotalsQuery {
            range: TotalsQuery::range(hour, hour + 120_000).layer(Layer::Url),
            by_host: false,
            order: Metric::Count,
            limit: 10,
        };
        store.series_totals(&q).await.unwrap()[0].totals.p99_max_ms
    };
    store.write_rollups(&[minute(1, 0)]).await.unwrap();
    assert!(worst().await.is_some_and(|p| p > 400.0));
    let later = minute(1, 199);
    store
        .write_rollups(std::slice::from_ref(&later))
        .await
        .unwrap();
    let want = Totals::of(&later).p99_max_ms;
    assert!(want.is_some_and(|p| p < 10.0), "{want:?}");
    assert_eq!(worst().await, want);
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    for table in ["series_hours", "series_tens"] {
        let p: Option<f64> = conn
            .query_row(&format!("SELECT p99_ms FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(p, want, "{table}");
    }
}

/// A range at the end of time (a hand-typed custom range) answers at once:
/// the blocks of the open-hour sums stop where time stops.
#[tokio::test]
async fn a_range_at_the_end_of_time_answers() {
    use panorama_store::{Metric, SeriesTotalsQuery, TotalsQuery};
    let tmp = TempDir::new().unwrap();
    let store = SqliteStore::open(tmp.path()).unwrap();
    store.write_rollups(&[rollup(2)]).await.unwrap();
    let q = SeriesTotalsQuery {
        range: TotalsQuery::range(i64::MAX - 86_400_000, i64::MAX).layer(Layer::Url),
        by_host: false,
        order: Metric::Count,
        limit: 10,
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), store.series_totals(&q))
        .await
        .expect("answered within 10 s");
    assert!(answer.is_ok_and(|rows| rows.is_empty()));
}
