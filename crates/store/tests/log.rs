//! Behaviour of the log through the public API: append, read, roll, retention, reopen,
//! timestamps, tailing, offsets and groups.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::power_loss::PowerLoss;
use common::{config, config_pairs, open, rec};
use millrace_store::{Durability, StoreError, TopicConfig};

#[test]
fn appended_records_read_back_in_order_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, report) = open(dir.path());
        assert!(report.is_clean());
        store
            .create_topic("photos-topic", 3, TopicConfig::default())
            .unwrap();
        let t = store.topic("photos-topic").unwrap();
        let p = t.partition(1).unwrap();
        assert_eq!(p.append(&[rec(0), rec(1)]).unwrap(), 0);
        assert_eq!(p.append(&[rec(2)]).unwrap(), 2);
        assert_eq!(p.end_offset(), 3);
    }
    let (store, report) = open(dir.path());
    assert!(report.is_clean(), "{report}");
    assert_eq!(store.topic_names(), vec!["photos-topic"]);
    let t = store.topic("photos-topic").unwrap();
    assert_eq!(t.partition_count(), 3);
    let got = t.partition(1).unwrap().read(0, 100, 1 << 20).unwrap();
    assert_eq!(got.len(), 3);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.record, rec(i as u64));
    }
    assert_eq!(t.partition(0).unwrap().end_offset(), 0);
    assert!(matches!(
        t.partition(3),
        Err(StoreError::UnknownPartition { .. })
    ));
}

#[test]
fn reads_honour_from_max_records_and_max_bytes_but_always_return_one() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store
        .create_topic("t", 1, config(Durability::None, 300))
        .unwrap();
    let t = store.topic("t").unwrap();
    let p = t.partition(0).unwrap();
    for i in 0..50 {
        p.append(&[rec(i * 2), rec(i * 2 + 1)]).unwrap();
    }
    assert!(p.segment_count() > 5, "small segments roll");
    let got = p.read(37, 10, 1 << 20).unwrap();
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (37..47).collect::<Vec<_>>()
    );
    assert_eq!(p.read(37, 10, 1).unwrap().len(), 1);
    let all = p.read(0, usize::MAX, usize::MAX).unwrap();
    assert_eq!(all.len(), 100);
    assert!(p.read(100, 10, 1000).unwrap().is_empty());
}

#[test]
fn retention_by_size_deletes_oldest_segments_and_moves_start_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let cfg = config_pairs(&[
        ("durability", "none"),
        ("segment.bytes", "1000"),
        ("retention.bytes", "3000"),
    ]);
    store.create_topic("t", 1, cfg).unwrap();
    let t = store.topic("t").unwrap();
    let p = t.partition(0).unwrap();
    for i in 0..300 {
        p.append(&[rec(i)]).unwrap();
    }
    assert!(p.start_offset() > 0);
    // Kafka's rule: drop the oldest while the rest still hold retention.bytes; so the
    // partition keeps between the limit and the limit plus two segments (one sealed, one active).
    assert!(
        p.size_bytes() >= 3000 && p.size_bytes() <= 5000,
        "{}",
        p.size_bytes()
    );
    let got = p.read(0, 5, 1 << 20).unwrap();
    assert_eq!(
        got[0].offset,
        p.start_offset(),
        "reads before the start begin at the start"
    );
    drop(t);
    drop(store);
    let (store, _) = open(dir.path());
    let t = store.topic("t").unwrap();
    let p = t.partition(0).unwrap();
    // Retention runs again on open, so the start may only move forward.
    assert!(p.start_offset() >= got[0].offset);
    assert_eq!(p.read(0, 1, 100).unwrap()[0].offset, p.start_offset());
    assert_eq!(p.end_offset(), 300);
}

#[test]
fn retention_by_age_deletes_segments_whose_newest_record_is_old() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let cfg = config_pairs(&[
        ("durability", "none"),
        ("segment.bytes", "200"),
        ("retention.ms", "60000"),
    ]);
    store.create_topic("t", 1, cfg).unwrap();
    let t = store.topic("t").unwrap();
    let p = t.partition(0).unwrap();
    // rec() timestamps are in 1970: every sealed segment is past retention.
    for i in 0..20 {
        p.append(&[rec(i)]).unwrap();
    }
    store.apply_retention().unwrap();
    assert_eq!(p.segment_count(), 1);
    assert!(p.start_offset() > 10);
    assert_eq!(p.read(0, 1, 100).unwrap()[0].offset, p.start_offset());
    assert_eq!(p.end_offset(), 20);
}

#[test]
fn offset_for_timestamp_finds_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store
        .create_topic("t", 1, config(Durability::None, 500))
        .unwrap();
    let t = store.topic("t").unwrap();
    let p = t.partition(0).unwrap();
    for i in 0..100 {
        p.append(&[rec(i)]).unwrap(); // timestamp 1000 + i
    }
    assert_eq!(p.offset_for_timestamp(0).unwrap(), 0);
    assert_eq!(p.offset_for_timestamp(1042).unwrap(), 42);
    assert_eq!(p.offset_for_timestamp(1099).unwrap(), 99);
    assert_eq!(p.offset_for_timestamp(5000).unwrap(), 100);
}

#[test]
fn wait_for_wakes_promptly_when_another_thread_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store.create_topic("t", 1, TopicConfig::default()).unwrap();
    let t = store.topic("t").unwrap();
    let t2 = Arc::clone(&t);
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        t2.partition(0).unwrap().append(&[rec(0)]).unwrap();
        Instant::now()
    });
    let p = t.partition(0).unwrap();
    assert!(
        !p.wait_for(0, Duration::from_millis(20)),
        "times out with no data"
    );
    assert!(p.wait_for(0, Duration::from_secs(10)));
    let woke = Instant::now();
    let appended = writer.join().unwrap();
    assert!(
        woke.duration_since(appended) < Duration::from_millis(100),
        "woke {:?} after the append",
        woke - appended
    );
}

#[test]
fn interval_durability_makes_records_visible_after_the_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store
        .create_topic("t", 1, config_pairs(&[("durability", "interval:20")]))
        .unwrap();
    let t = store.topic("t").unwrap();
    let p = t.partition(0).unwrap();
    p.append(&[rec(0)]).unwrap();
    assert!(
        p.wait_for(0, Duration::from_secs(5)),
        "the flusher publishes within the interval"
    );
    assert_eq!(p.read(0, 10, 1000).unwrap().len(), 1);
}

#[test]
fn committed_offsets_survive_reopen_and_topic_deletion_forgets_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path());
        store.create_topic("a", 2, TopicConfig::default()).unwrap();
        store.create_topic("b", 1, TopicConfig::default()).unwrap();
        store.commit_offset("g", "a", 1, 7).unwrap();
        store.commit_offset("g", "a", 1, 9).unwrap();
        store.commit_offset("g", "b", 0, 3).unwrap();
        assert!(store.commit_offset("g", "a", 2, 1).is_err());
        assert!(matches!(
            store.commit_offset("g", "nope", 0, 1),
            Err(StoreError::UnknownTopic(_))
        ));
    }
    {
        let (store, _) = open(dir.path());
        assert_eq!(store.committed_offset("g", "a", 1), Some(9));
        assert_eq!(store.committed_offset("g", "b", 0), Some(3));
        assert_eq!(store.committed_offset("g", "a", 0), None);
        store.delete_topic("b").unwrap();
        store.create_topic("b", 1, TopicConfig::default()).unwrap();
    }
    let (store, _) = open(dir.path());
    assert_eq!(store.committed_offset("g", "b", 0), None);
    assert_eq!(store.committed_offset("g", "a", 1), Some(9));
}

#[test]
fn committed_offsets_journal_is_compacted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path());
        store.create_topic("a", 1, TopicConfig::default()).unwrap();
        for i in 0..1500 {
            store.commit_offset("g", "a", 0, i).unwrap();
        }
    }
    let len = std::fs::metadata(dir.path().join("offsets.log"))
        .unwrap()
        .len();
    assert!(len < 1500 * 20, "compacted while running: {len}");
    let (store, _) = open(dir.path());
    assert_eq!(store.committed_offset("g", "a", 0), Some(1499));
}

#[test]
fn group_members_split_partitions_and_rebalance_when_one_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store.create_topic("t", 4, TopicConfig::default()).unwrap();
    let topics = vec!["t".to_string()];
    let a = store.join_group("g", &topics).unwrap();
    let b = store.join_group("g", &topics).unwrap();
    let mut all: Vec<_> = a.assignment().into_iter().chain(b.assignment()).collect();
    all.sort();
    assert_eq!(
        all,
        (0..4).map(|p| ("t".to_string(), p)).collect::<Vec<_>>()
    );
    assert_eq!(a.assignment().len(), 2);
    let generation = a.generation();
    drop(b);
    assert!(a.generation() > generation);
    assert_eq!(a.assignment().len(), 4);
    assert!(matches!(
        store.join_group("g", &["x".to_string()]),
        Err(StoreError::UnknownTopic(_))
    ));
}

#[test]
fn delete_topic_removes_its_directory_and_refuses_appends_through_old_handles() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store
        .create_topic("gone", 2, TopicConfig::default())
        .unwrap();
    store
        .create_topic("kept", 1, TopicConfig::default())
        .unwrap();
    let t = store.topic("gone").unwrap();
    t.partition(0).unwrap().append(&[rec(1)]).unwrap();
    store.delete_topic("gone").unwrap();
    assert_eq!(store.topic_names(), vec!["kept"]);
    assert!(!dir.path().join("topics/gone").exists());
    assert!(matches!(
        t.partition(0).unwrap().append(&[rec(2)]),
        Err(StoreError::UnknownTopic(_))
    ));
    assert!(matches!(
        store.delete_topic("gone"),
        Err(StoreError::UnknownTopic(_))
    ));
    assert!(matches!(
        store.create_topic("kept", 1, TopicConfig::default()),
        Err(StoreError::TopicExists(_))
    ));
    assert!(matches!(
        store.create_topic("../x", 1, TopicConfig::default()),
        Err(StoreError::InvalidTopicName { .. })
    ));
}

#[test]
fn concurrent_batch_appenders_share_fsyncs_and_lose_nothing() {
    // On the power-loss layer: its syncs are counted, and a cut at the end keeps only
    // what they made durable.
    let layer = PowerLoss::with_store(7);
    // Each append writes its segment at once (no tail buffer), so the writes counted
    // below say how many appenders have reached the journal.
    layer.set_segment_buffer_bytes(1);
    let (store, _) = layer.open().unwrap();
    // One segment: a roll's own sync would count here too.
    store
        .create_topic("t", 1, config(Durability::Batch, 1 << 20))
        .unwrap();
    let t = store.topic("t").unwrap();
    const APPENDERS: u64 = 8;
    const ROUNDS: u64 = 25;
    // Each round every appender appends once; the round's first sync (the journal's)
    // waits until all of them have written their segments and its leader the journal,
    // so they find it running and share the next one.
    let before = layer.file_syncs();
    let mut worst = 0;
    for i in 0..ROUNDS {
        let round = layer.file_syncs();
        layer.gate_next_sync(APPENDERS as usize + 1);
        let (tx, rx) = std::sync::mpsc::channel();
        for w in 0..APPENDERS {
            let (t, tx) = (Arc::clone(&t), tx.clone());
            std::thread::spawn(move || {
                let _ = tx.send(t.partition(0).unwrap().append(&[rec(w * 1000 + i)]));
            });
        }
        for _ in 0..APPENDERS {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("an append never returned")
                .unwrap();
        }
        // The first leader's sync and one for everyone who waited behind it (one more
        // when a writer had not yet published its end as that leader began).
        worst = worst.max(layer.file_syncs() - round);
    }
    let syncs = layer.file_syncs() - before;
    let appends = APPENDERS * ROUNDS;
    assert!(
        worst <= 3 && syncs <= appends / 2,
        "{appends} appends took {syncs} fdatasyncs (at most {worst} in a round of {APPENDERS}): group commit shares them"
    );
    eprintln!("group commit: {appends} appends, {syncs} fdatasyncs");
    drop(t);
    layer.cut();
    drop(store);
    layer.reboot();
    let (store, _) = layer.open().unwrap();
    let t = store.topic("t").unwrap();
    let p = t.partition(0).unwrap();
    assert_eq!(
        p.end_offset(),
        appends,
        "every acknowledged append survives the cut"
    );
    let mut values: Vec<_> = p
        .read(0, 1000, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| r.record.value)
        .collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len() as u64, appends);
}

#[test]
fn data_directory_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _ = open(&data);
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

/// durability=none and interval appends are acknowledged before any sync, so they go
/// to the segment file (the page cache) at once, not to a tail buffer: a process crash
/// right after the acknowledgement keeps them.
#[test]
fn none_and_interval_appends_are_in_the_segment_file_when_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    for (topic, durability) in [
        ("n", Durability::None),
        ("i", Durability::Interval(Duration::from_secs(60))),
    ] {
        store
            .create_topic(topic, 1, config(durability, 1 << 20))
            .unwrap();
        let t = store.topic(topic).unwrap();
        let p = t.partition(0).unwrap();
        p.append(&[rec(0), rec(1)]).unwrap();
        let seg = common::segments(dir.path(), topic, 0).remove(0);
        assert!(
            std::fs::metadata(&seg).unwrap().len() > 0,
            "{topic}: the acknowledged batch is not in the segment file"
        );
    }
}

/// A durability=batch topic's appends wait in its segment's tail buffer (the journal
/// holds them); once the topic is changed to durability=none, whose appends a process
/// crash must not lose, the flusher writes what was buffered to the segment file
/// within a tick.
#[test]
fn a_topic_changed_from_batch_to_none_has_its_buffered_tail_written_within_a_tick() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store
        .create_topic("b", 1, config(Durability::Batch, 1 << 20))
        .unwrap();
    let t = store.topic("b").unwrap();
    t.partition(0).unwrap().append(&[rec(0), rec(1)]).unwrap();
    let seg = common::segments(dir.path(), "b", 0).remove(0);
    let len = || std::fs::metadata(&seg).unwrap().len();
    assert_eq!(
        len(),
        0,
        "a batch topic's append is buffered, not in the file yet"
    );
    store
        .alter_topic_config(
            "b",
            config(Durability::None, 1 << 20),
            std::collections::BTreeMap::new(),
        )
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while len() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(len() > 0, "the buffered batch was not written out");
}
