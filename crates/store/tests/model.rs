//! The log checked against a simple in-memory model (a Vec of records per partition)
//! under random appends, reads, rolls (small segments), retention, timestamp lookups,
//! reopens and power cuts (the store runs on `common/power_loss.rs`), at every
//! durability level: after a cut, `batch` and `interval` keep everything acknowledged
//! and seen, `none` a prefix of each partition (the model is cut to it) or a corrupt
//! middle, as docs/format.md says.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::power_loss::{PowerLoss, Tear};
use millrace_store::{Durability, Header, Record, StoreError, TopicConfig};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append(u32, Vec<Record>),
    Read {
        partition: u32,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    },
    ReadAll(u32),
    OffsetForTimestamp(u32, i64),
    Retention,
    Reopen,
    /// The power is cut; unsynced writes are lost (or, with `true`, partly kept and torn).
    PowerCut(bool),
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        proptest::collection::vec(any::<u8>(), 0..120),
        proptest::collection::vec(
            ("[a-c]{1,2}", proptest::collection::vec(any::<u8>(), 0..4)),
            0..3,
        ),
        0i64..100,
    )
        .prop_map(|(k, v, hs, ts)| Record {
            key: k.map(Bytes::from),
            value: Bytes::from(v),
            headers: hs.into_iter().map(|(n, v)| Header::new(n, v)).collect(),
            timestamp: ts,
        })
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..2, proptest::collection::vec(arb_record(), 1..6)).prop_map(|(p, r)| Op::Append(p, r)),
        3 => (0u32..2, 0u64..80, 1usize..40, 1usize..3000)
            .prop_map(|(partition, from, max_records, max_bytes)| Op::Read { partition, from, max_records, max_bytes }),
        1 => (0u32..2).prop_map(Op::ReadAll),
        1 => (0u32..2, -5i64..110).prop_map(|(p, ts)| Op::OffsetForTimestamp(p, ts)),
        1 => Just(Op::Retention),
        1 => Just(Op::Reopen),
        1 => any::<bool>().prop_map(Op::PowerCut),
    ]
}

fn arb_config() -> impl Strategy<Value = TopicConfig> {
    (
        64u64..2500,
        proptest::option::of(200u64..4000),
        prop_oneof![
            Just(Durability::None),
            Just(Durability::Batch),
            Just(Durability::Interval(Duration::from_millis(1))),
        ],
    )
        .prop_map(|(seg, ret, durability)| TopicConfig {
            durability,
            segment_bytes: seg,
            retention_bytes: ret,
            retention_ms: None,
        })
}

/// Encoded size of a record, as the store counts it for `max_bytes`.
fn size(r: &Record) -> usize {
    20 + r.key.as_ref().map_or(0, |k| k.len())
        + r.value.len()
        + r.headers
            .iter()
            .map(|h| 8 + h.key.len() + h.value.len())
            .sum::<usize>()
}

fn run(config: TopicConfig, ops: Vec<Op>, seed: u64) -> Result<(), TestCaseError> {
    let layer = PowerLoss::with_store(seed);
    let open = || layer.open().unwrap();
    let (mut store, _) = open();
    store.create_topic("m", 2, config.clone()).unwrap();
    let mut model: Vec<Vec<Record>> = vec![Vec::new(), Vec::new()];
    let mut starts = [0u64; 2];
    // A cut took unsynced records of the partition (durability none): it may now hold
    // less than retention.bytes although retention deleted segments before.
    let mut lost = [false; 2];
    for op in ops {
        let topic = store.topic("m").unwrap();
        match op {
            Op::Append(p, records) => {
                let part = topic.partition(p).unwrap();
                let base = part.append(&records).unwrap();
                prop_assert_eq!(base, model[p as usize].len() as u64);
                model[p as usize].extend(records);
                if matches!(config.durability, Durability::Interval(_)) {
                    // Readers see interval records once the flusher has synced them.
                    let end = model[p as usize].len() as u64;
                    prop_assert!(
                        part.wait_for(end - 1, Duration::from_secs(10)),
                        "never flushed"
                    );
                }
                prop_assert_eq!(part.end_offset(), model[p as usize].len() as u64);
            }
            Op::Read {
                partition,
                from,
                max_records,
                max_bytes,
            } => {
                let part = topic.partition(partition).unwrap();
                let m = &model[partition as usize];
                let got = part.read(from, max_records, max_bytes).unwrap();
                let first = from.max(part.start_offset());
                if first < m.len() as u64 {
                    prop_assert!(
                        !got.is_empty(),
                        "a read with data available returns at least one record"
                    );
                }
                prop_assert!(got.len() <= max_records);
                let bytes: usize = got.iter().map(|r| size(&r.record)).sum();
                prop_assert!(
                    got.len() <= 1 || bytes <= max_bytes,
                    "{} bytes > {}",
                    bytes,
                    max_bytes
                );
                for (i, r) in got.iter().enumerate() {
                    prop_assert_eq!(r.offset, first + i as u64);
                    prop_assert_eq!(&r.record, &m[r.offset as usize]);
                }
            }
            Op::ReadAll(p) => {
                let part = topic.partition(p).unwrap();
                let got = part.read(0, usize::MAX, usize::MAX).unwrap();
                let m = &model[p as usize];
                let start = part.start_offset() as usize;
                prop_assert_eq!(got.len(), m.len() - start);
                for r in &got {
                    prop_assert_eq!(&r.record, &m[r.offset as usize]);
                }
            }
            Op::OffsetForTimestamp(p, ts) => {
                let part = topic.partition(p).unwrap();
                let m = &model[p as usize];
                let start = part.start_offset() as usize;
                let expected = (start..m.len())
                    .find(|&i| m[i].timestamp >= ts)
                    .unwrap_or(m.len());
                prop_assert_eq!(part.offset_for_timestamp(ts).unwrap(), expected as u64);
            }
            Op::Retention => store.apply_retention().unwrap(),
            Op::Reopen => {
                drop(topic);
                drop(store);
                let (s, report) = open();
                prop_assert!(report.is_clean(), "{}", report);
                store = s;
            }
            Op::PowerCut(torn) => {
                layer.set_tear(if torn { Tear::Random } else { Tear::Nothing });
                layer.cut();
                drop(topic);
                drop(store);
                layer.reboot();
                store = match layer.open() {
                    Ok((s, _)) => s,
                    Err(StoreError::Corrupt { .. }) if config.durability == Durability::None => {
                        return Ok(());
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("open after a cut: {e}"))),
                };
                let topic = store.topic("m").unwrap();
                for p in 0..2u32 {
                    let part = topic.partition(p).unwrap();
                    let m = &mut model[p as usize];
                    let got = part.read(0, usize::MAX, usize::MAX).unwrap();
                    for r in &got {
                        prop_assert_eq!(Some(&r.record), m.get(r.offset as usize));
                    }
                    let end = part.end_offset();
                    if config.durability == Durability::None {
                        prop_assert!(end <= m.len() as u64);
                        m.truncate(end as usize);
                        lost[p as usize] = true;
                    } else {
                        prop_assert_eq!(end, m.len() as u64, "acknowledged records lost");
                    }
                    // A segment deleted by retention comes back if the cut came before
                    // its directory was fsynced: the start may move back (to records
                    // that are still right).
                    starts[p as usize] = part.start_offset();
                }
            }
        }
        // Invariants after every step.
        let topic = store.topic("m").unwrap();
        for p in 0..2u32 {
            let part = topic.partition(p).unwrap();
            let start = part.start_offset();
            prop_assert!(
                start >= starts[p as usize],
                "the start offset never moves back"
            );
            prop_assert!(start <= part.end_offset());
            prop_assert_eq!(part.end_offset(), model[p as usize].len() as u64);
            if config.retention_bytes.is_none() {
                prop_assert_eq!(start, 0);
            } else if let Some(limit) = config.retention_bytes {
                // What retention deleted was not needed to keep `limit` bytes.
                if start > 0 && !lost[p as usize] {
                    prop_assert!(
                        part.size_bytes() >= limit,
                        "{} < {}",
                        part.size_bytes(),
                        limit
                    );
                }
            }
            starts[p as usize] = start;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_in_memory_model(config in arb_config(), ops in proptest::collection::vec(arb_op(), 1..60), seed in any::<u64>()) {
        run(config, ops, seed)?;
    }
}
