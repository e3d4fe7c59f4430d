//! The write-ahead log on a real filesystem.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use panorama_collector::wal::{SegmentId, Wal, WalConfig, WalError, replay};

fn cfg(dir: &std::path::Path) -> WalConfig {
    WalConfig::new(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_group_committed_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(cfg(dir.path())).unwrap());
    let mut tasks = Vec::new();
    for t in 0..16u32 {
        let wal = wal.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..100u32 {
                wal.append(format!("{t}:{i}").into_bytes())
                    .await
                    .unwrap()
                    .settle();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let records = wal
        .stats()
        .records
        .load(std::sync::atomic::Ordering::Relaxed);
    let syncs = wal.stats().syncs.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(records, 1600);
    assert!(
        syncs < records,
        "no group commit: {syncs} syncs for {records} records"
    );
    drop(wal);

    let r = replay(dir.path()).unwrap();
    assert_eq!(r.records.len(), 1600);
    assert_eq!((r.torn_bytes, r.corrupt_bytes), (0, 0));
    // Each writer's records come back in the order it appended them.
    for t in 0..16u32 {
        let mine: Vec<u32> = r
            .records
            .iter()
            .filter_map(|(_, p)| {
                let s = String::from_utf8(p.clone()).unwrap();
                let (a, b) = s.split_once(':').unwrap();
                (a.parse::<u32>().unwrap() == t).then(|| b.parse().unwrap())
            })
            .collect();
        assert_eq!(mine, (0..100).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_earlier_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(cfg(dir.path())).unwrap();
    for i in 0..10 {
        wal.append(vec![i; 100]).await.unwrap().settle();
    }
    drop(wal);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A crash in the middle of a write: a length and half a payload.
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&100u32.to_le_bytes()).unwrap();
    f.write_all(&[0, 0, 0, 0, 7, 7, 7]).unwrap();
    drop(f);
    let r = replay(dir.path()).unwrap();
    assert_eq!(r.records.len(), 10);
    assert_eq!(r.torn_bytes, 11);
    // The tail is gone from disk, so appends after restart follow intact records.
    let again = replay(dir.path()).unwrap();
    assert_eq!((again.records.len(), again.torn_bytes), (10, 0));
}

#[tokio::test]
async fn segments_roll_over_and_are_deleted_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.segment_max_bytes = 1_000;
    let wal = Wal::open(c).unwrap();
    let mut ids = Vec::new();
    for _ in 0..30 {
        let a = wal.append(vec![1; 200]).await.unwrap();
        ids.push(a.segment());
        a.settle();
    }
    let first = ids[0];
    let last = *ids.last().unwrap();
    assert!(
        last.0 >= first.0 + 4,
        "expected several segments, got {first:?}..{last:?}"
    );
    let freed = wal.delete_through(SegmentId(last.0 - 1)).unwrap();
    assert!(freed > 0);
    drop(wal);
    let r = replay(dir.path()).unwrap();
    assert!(r.records.iter().all(|(id, _)| *id == last));
    assert_eq!(r.records.len(), ids.iter().filter(|i| **i == last).count());
}

#[tokio::test]
async fn over_the_cap_appends_are_refused_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.max_total_bytes = 2_000;
    let wal = Wal::open(c).unwrap();
    let mut refused = 0;
    for _ in 0..20 {
        match wal.append(vec![0; 300]).await {
            Ok(a) => a.settle(),
            Err(WalError::Full { .. }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused > 0);
    let accepted = 20 - refused;
    drop(wal);
    assert_eq!(replay(dir.path()).unwrap().records.len(), accepted);
}

#[tokio::test]
async fn reopening_appends_to_a_new_segment_after_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let a = Wal::open(cfg(dir.path()))
        .unwrap()
        .append(b"a".to_vec())
        .await
        .unwrap()
        .segment();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let b = Wal::open(cfg(dir.path()))
        .unwrap()
        .append(b"b".to_vec())
        .await
        .unwrap()
        .segment();
    assert!(b > a);
    let r = replay(dir.path()).unwrap();
    assert_eq!(
        r.records.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(),
        vec![b"a".to_vec(), b"b".to_vec()]
    );
}

#[tokio::test]
async fn a_receipt_pins_its_segment_until_settled_and_an_unsettled_one_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.segment_max_bytes = 100;
    let wal = Wal::open(c).unwrap();
    let first = wal.append(vec![1; 200]).await.unwrap();
    let second = wal.append(vec![2; 200]).await.unwrap();
    assert!(second.segment() > first.segment(), "rolled");
    assert_eq!(wal.first_pinned(), Some(first.segment()));
    first.settle();
    assert_eq!(wal.first_pinned(), Some(second.segment()));
    drop(second);
    assert_eq!(wal.first_pinned(), None);
    assert_eq!(
        wal.stats()
            .abandoned
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "a receipt dropped unsettled is data given up"
    );
}

#[tokio::test]
async fn numbering_starts_past_the_floor_when_the_directory_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open_after(cfg(dir.path()), SegmentId(41)).unwrap();
    let a = wal.append(b"x".to_vec()).await.unwrap();
    assert_eq!(a.segment(), SegmentId(42));
    a.settle();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_following_one_whose_write_failed_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    // The writer holds the failed group a while: the follower is submitted
    // meanwhile and lands in a later group, whose write would succeed.
    c.sync_delay = Duration::from_millis(200);
    c.fail_writes.store(1, std::sync::atomic::Ordering::Relaxed);
    let wal = Wal::open(c).unwrap();
    let first = wal.submit(b"first".to_vec(), None).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let follower = wal
        .submit(b"follower".to_vec(), Some(first.epoch()))
        .unwrap();
    let alone = wal.submit(b"alone".to_vec(), None).unwrap();
    assert!(matches!(first.durable().await, Err(WalError::Io(_))));
    assert!(
        matches!(follower.durable().await, Err(WalError::PredecessorFailed)),
        "written without the record it follows"
    );
    // Submitted after the failure, following nothing: written.
    alone.durable().await.unwrap().settle();
    wal.append(b"again".to_vec()).await.unwrap().settle();
    let back = replay(dir.path()).unwrap();
    let payloads: Vec<&[u8]> = back.records.iter().map(|(_, p)| p.as_slice()).collect();
    assert_eq!(payloads, vec![b"alone".as_slice(), b"again".as_slice()]);
}
