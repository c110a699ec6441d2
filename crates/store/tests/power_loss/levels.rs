//! What `interval:<ms>` and `none` keep after a power cut, and that neither waits for
//! an `fdatasync` to acknowledge.

use std::time::Duration;

use millrace_store::{Durability, Record, StoreError};

use crate::common::config;
use crate::common::power_loss::{PowerLoss, Tear, read_partition};
use crate::{reopen, store_with, value};

#[test]
fn interval_loses_only_records_not_yet_flushed_never_one_readers_saw() {
    let layer = PowerLoss::with_store(11);
    let (store, _) = layer.open().unwrap();
    // An interval the test never reaches: acknowledged at write(2), never flushed.
    store
        .create_topic(
            "slow",
            1,
            config(Durability::Interval(Duration::from_secs(3600)), 1 << 20),
        )
        .unwrap();
    let slow = store.topic("slow").unwrap();
    let before = layer.file_syncs();
    for i in 0..10 {
        slow.partition(0).unwrap().append(&[value("s", i)]).unwrap();
    }
    assert_eq!(
        layer.file_syncs(),
        before,
        "interval appends do not wait for fdatasync"
    );
    assert_eq!(
        slow.partition(0).unwrap().end_offset(),
        0,
        "readers see only flushed records"
    );

    store
        .create_topic(
            "fast",
            1,
            config(Durability::Interval(Duration::from_millis(20)), 1 << 20),
        )
        .unwrap();
    let fast = store.topic("fast").unwrap();
    let p = fast.partition(0).unwrap();
    for i in 0..10 {
        p.append(&[value("f", i)]).unwrap();
    }
    // The flusher makes them durable within its interval; a reader then sees them and
    // commits what it read.
    assert!(
        p.wait_for(9, Duration::from_secs(10)),
        "the flusher never flushed"
    );
    store.commit_offset("g", "fast", 0, 10).unwrap();
    for i in 10..15 {
        p.append(&[value("f", i)]).unwrap();
    }
    let seen = p.end_offset();
    layer.cut();
    drop((slow, fast));
    let store = reopen(&layer, store, "interval");
    assert!(
        read_partition(&store, "slow", 0).is_empty(),
        "nothing was flushed, so nothing survives (Tear::Nothing keeps no unsynced byte)"
    );
    let got = read_partition(&store, "fast", 0);
    assert!(
        got.len() as u64 >= seen && got.len() <= 15,
        "LOST records readers saw: {} survived, {seen} were visible",
        got.len()
    );
    for r in &got {
        assert_eq!(r.record, value("f", r.offset));
    }
    assert_eq!(store.committed_offset("g", "fast", 0), Some(10));
}

#[test]
fn none_keeps_a_prefix_or_reports_a_corrupt_middle_after_a_power_cut() {
    let (mut opened, mut corrupt, mut survived) = (0, 0, 0);
    for round in 0..24u64 {
        let tear = if round % 4 == 0 {
            Tear::Nothing
        } else {
            Tear::Random
        };
        let (layer, store) = store_with(round * 31 + 5, tear, "n", 1, Durability::None, 300);
        let p = store.topic("n").unwrap();
        let before = layer.file_syncs();
        let mut written = Vec::new();
        for i in 0..20 + round * 3 {
            let records: Vec<Record> = (0..1 + i % 3).map(|k| value("n", i * 10 + k)).collect();
            p.partition(0).unwrap().append(&records).unwrap();
            written.extend(records);
        }
        assert_eq!(
            layer.file_syncs(),
            before,
            "durability=none never calls fdatasync"
        );
        assert_eq!(
            p.partition(0).unwrap().end_offset(),
            written.len() as u64,
            "readers see writes at once"
        );
        drop(p);
        layer.cut();
        drop(store);
        layer.reboot();
        match layer.open() {
            Ok((store, _)) => {
                let got = read_partition(&store, "n", 0);
                for (i, r) in got.iter().enumerate() {
                    assert_eq!(r.offset, i as u64);
                    assert_eq!(
                        Some(&r.record),
                        written.get(i),
                        "round {round}: a record not written there"
                    );
                }
                opened += 1;
                survived += got.len();
            }
            Err(StoreError::Corrupt { .. }) => corrupt += 1,
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    eprintln!(
        "durability=none after a cut: {opened} opened ({survived} records kept), {corrupt} reported a corrupt middle"
    );
    assert!(opened > 0);
}
