//! What a Kafka server asks of the store besides appends and reads: deleting records
//! before an offset (a durable log start), altering a topic's config, adding
//! partitions, and being told when records become readable.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{config_pairs, open, rec};
use millrace_store::{AppendListener, Durability, StoreError};

#[test]
fn delete_records_moves_the_log_start_durably_and_drops_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let cfg = config_pairs(&[("durability", "none"), ("segment.bytes", "300")]);
    store.create_topic("t", 1, cfg).unwrap();
    let t = store.topic("t").unwrap();
    let p = t.partition(0).unwrap();
    for i in 0..40 {
        p.append(&[rec(i)]).unwrap();
    }
    let segments = p.segment_count();
    assert!(segments > 3, "{segments}");

    assert_eq!(p.delete_records_before(17).unwrap(), 17);
    assert_eq!(p.start_offset(), 17);
    assert_eq!(
        p.read(0, 1, 100).unwrap()[0].offset,
        17,
        "reads begin at the start"
    );
    assert!(
        p.segment_count() < segments,
        "segments before the start are removed"
    );
    assert_eq!(
        p.delete_records_before(5).unwrap(),
        17,
        "an earlier offset leaves the start where it is"
    );
    assert!(matches!(
        p.delete_records_before(41),
        Err(StoreError::InvalidArgument(_))
    ));
    drop(t);
    drop(store);

    let (store, report) = open(dir.path());
    assert!(report.is_clean());
    let t = store.topic("t").unwrap();
    let p = t.partition(0).unwrap();
    assert_eq!(p.start_offset(), 17, "the log start survives a reopen");
    assert_eq!(p.read(0, 1, 100).unwrap()[0].offset, 17);
    assert_eq!(p.end_offset(), 40);
    assert_eq!(
        p.delete_records_before(40).unwrap(),
        40,
        "deleting up to the end empties the log"
    );
    assert!(p.read(0, 10, 1000).unwrap().is_empty());
    p.append(&[rec(40)]).unwrap();
    assert_eq!(p.read(0, 10, 1000).unwrap()[0].offset, 40);
}

#[test]
fn a_log_start_past_a_tail_cut_by_recovery_is_held_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store
        .create_topic("t", 1, config_pairs(&[("durability", "none")]))
        .unwrap();
    let t = store.topic("t").unwrap();
    let p = t.partition(0).unwrap();
    for i in 0..10 {
        p.append(&[rec(i)]).unwrap();
    }
    p.delete_records_before(10).unwrap();
    drop(t);
    drop(store);
    // The last batch is torn off, as a crash mid-write would leave it.
    let seg = dir.path().join("topics/t/0/00000000000000000000.log");
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let (store, report) = open(dir.path());
    assert!(!report.is_clean());
    let t = store.topic("t").unwrap();
    let p = t.partition(0).unwrap();
    assert_eq!(p.end_offset(), 9);
    assert_eq!(p.start_offset(), 9);
}

#[test]
fn an_altered_config_applies_at_once_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store
        .create_topic("t", 2, config_pairs(&[("durability", "batch")]))
        .unwrap();
    let extra = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    let cfg = config_pairs(&[("durability", "none"), ("retention.ms", "60000")]);
    store
        .alter_topic_config("t", cfg.clone(), extra.clone())
        .unwrap();
    let t = store.topic("t").unwrap();
    assert_eq!(t.config(), cfg);
    assert_eq!(
        t.partition(1).unwrap().config().durability,
        Durability::None
    );
    assert_eq!(t.extra_config(), extra);
    assert!(matches!(
        store.alter_topic_config("nope", cfg.clone(), BTreeMap::new()),
        Err(StoreError::UnknownTopic(_))
    ));
    drop(t);
    drop(store);
    let (store, _) = open(dir.path());
    let t = store.topic("t").unwrap();
    assert_eq!(t.config(), cfg);
    assert_eq!(t.extra_config(), extra);
}

#[test]
fn added_partitions_take_appends_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store
        .create_topic("t", 2, config_pairs(&[("durability", "none")]))
        .unwrap();
    let old = store.topic("t").unwrap();
    old.partition(1).unwrap().append(&[rec(1)]).unwrap();
    // A directory left by an attempt that crashed before topic.json counted it.
    std::fs::create_dir(dir.path().join("topics/t/2")).unwrap();
    std::fs::write(dir.path().join("topics/t/2/junk"), b"x").unwrap();
    store.create_partitions("t", 4).unwrap();
    assert!(matches!(
        store.create_partitions("t", 3),
        Err(StoreError::InvalidArgument(_))
    ));
    let t = store.topic("t").unwrap();
    assert_eq!((old.partition_count(), t.partition_count()), (2, 4));
    assert_eq!(
        t.partition(1).unwrap().end_offset(),
        1,
        "old partitions are shared"
    );
    t.partition(3).unwrap().append(&[rec(3)]).unwrap();
    drop((old, t));
    drop(store);
    let (store, report) = open(dir.path());
    assert!(report.is_clean());
    let t = store.topic("t").unwrap();
    assert_eq!(t.partition_count(), 4);
    assert_eq!(t.partition(3).unwrap().end_offset(), 1);
    assert!(!dir.path().join("topics/t/2/junk").exists());
}

#[derive(Default)]
struct Seen(Mutex<Vec<(String, u32, u64)>>);

impl AppendListener for Seen {
    fn appended(&self, topic: &str, partition: u32, end_offset: u64) {
        self.0
            .lock()
            .unwrap()
            .push((topic.to_string(), partition, end_offset));
    }
}

#[test]
fn the_append_listener_hears_every_partition_become_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let seen = Arc::new(Seen::default());
    store.set_append_listener(seen.clone()).unwrap();
    assert!(store.set_append_listener(seen.clone()).is_err());
    store
        .create_topic("n", 1, config_pairs(&[("durability", "none")]))
        .unwrap();
    store
        .create_topic("b", 2, config_pairs(&[("durability", "batch")]))
        .unwrap();
    store
        .topic("n")
        .unwrap()
        .partition(0)
        .unwrap()
        .append(&[rec(0)])
        .unwrap();
    let b = store.topic("b").unwrap();
    b.partition(1).unwrap().append(&[rec(0), rec(1)]).unwrap();
    assert_eq!(
        *seen.0.lock().unwrap(),
        vec![("n".to_string(), 0, 1), ("b".to_string(), 1, 2)]
    );
    store.delete_topic("b").unwrap();
    let last = seen.0.lock().unwrap().len();
    assert_eq!(last, 4, "deleting a topic tells of each of its partitions");
}
