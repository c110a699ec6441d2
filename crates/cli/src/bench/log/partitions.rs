//! `millrace bench log`'s partition-count rows: durable appends of keyed 100 B records
//! spread over many partitions as `millrace produce` sends them (batches of 4,096
//! records, each split by key hash and acknowledged together), at 10, 1,000 and 5,000
//! partitions, against the same at 10 partitions and against durability=none at 1,000,
//! all in the same run; and one partition with the same batches, for the
//! single-partition durable rate.
//!
//! Each case runs `ROUNDS` times, the cases alternating, and the best run of each is
//! kept, so a slow moment of a shared disk does not land on one case only. The time is
//! the appends' and their acknowledgements'; checkpoints the appends cause run in the
//! background as in use, the closing one (every segment written synced) is not timed.

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use millrace_store::{Durability, Pending, Record, Store, StoreOptions, TopicConfig};

use crate::bench::BenchRow;

/// Keyed 100 B records per run.
const RECORDS: usize = 200_000;
/// Records per acknowledged batch: `millrace produce`'s.
const PRODUCE_BATCH: usize = 4096;
const ROUNDS: usize = 2;

/// A case: partitions and durability.
#[derive(Clone, Copy, PartialEq)]
struct Case(u32, Durability);

const CASES: [Case; 5] = [
    Case(10, Durability::Batch),
    Case(1_000, Durability::Batch),
    Case(1_000, Durability::None),
    Case(5_000, Durability::Batch),
    Case(1, Durability::Batch),
];

pub(super) fn rows(work: &Path) -> anyhow::Result<Vec<BenchRow>> {
    let (store, _) = Store::open(&work.join("partitions"), StoreOptions::default())?;
    let mut best = [0f64; CASES.len()];
    for round in 0..ROUNDS {
        for (i, case) in CASES.iter().enumerate() {
            let topic = format!("p{}-{i}-{round}", case.0);
            best[i] = best[i].max(produce_keyed(&store, &topic, *case)?);
            store.delete_topic(&topic)?;
        }
    }
    let rate = |c: Case| CASES.iter().position(|x| *x == c).map_or(0.0, |i| best[i]);
    let durable = |n: u32| rate(Case(n, Durability::Batch));
    let row = |n: u32, per_s: f64| {
        let label = if n == 1 {
            "1 partition".to_string()
        } else {
            format!("{n} partitions")
        };
        BenchRow {
            name: format!("append 100B keyed durability=batch to {label}"),
            records: RECORDS as u64,
            records_per_s: per_s,
            mb_per_s: per_s * 100.0 / 1e6,
            ..BenchRow::default()
        }
    };
    let ten = "the same to 10 partitions (same run)";
    Ok(vec![
        row(10, durable(10)),
        row(1_000, durable(1_000)).against(ten, durable(10), 0.5),
        row(1_000, durable(1_000)).against(
            "durability=none to 1000 partitions (same run)",
            rate(Case(1_000, Durability::None)),
            0.5,
        ),
        row(5_000, durable(5_000)).against(ten, durable(10), 1.0 / 3.0),
        row(1, durable(1)),
    ])
}

/// Appends `RECORDS` keyed records to a new topic of `case`'s partitions in batches of
/// `PRODUCE_BATCH`, each batch acknowledged once for all its partitions; records per
/// second.
fn produce_keyed(store: &Store, topic: &str, case: Case) -> anyhow::Result<f64> {
    let Case(partitions, durability) = case;
    let config = TopicConfig {
        durability,
        ..TopicConfig::default()
    };
    store.create_topic(topic, partitions, config)?;
    let t = store.topic(topic)?;
    let parts = (0..partitions)
        .map(|p| t.partition(p))
        .collect::<Result<Vec<_>, _>>()?;
    // Split by key outside the clock, as the producer's partitioner is not the store.
    let value = Bytes::from(vec![b'v'; 100]);
    let batches: Vec<Vec<(usize, Vec<Record>)>> = (0..RECORDS)
        .step_by(PRODUCE_BATCH)
        .map(|first| {
            let mut by_partition: Vec<Vec<Record>> = vec![Vec::new(); parts.len()];
            for i in first..(first + PRODUCE_BATCH).min(RECORDS) {
                let key = Bytes::from(format!("user-{i}"));
                let p = millrace_store::partition_for_key(&key, partitions);
                let r = Record::new(Some(key), value.clone(), 1_700_000_000_000);
                by_partition[usize::try_from(p).unwrap_or(0)].push(r);
            }
            by_partition
                .into_iter()
                .enumerate()
                .filter(|(_, rs)| !rs.is_empty())
                .collect()
        })
        .collect();
    let start = Instant::now();
    for batch in &batches {
        let mut pending = Pending::default();
        for (p, records) in batch {
            parts[*p].append_pending(records.iter().map(Record::as_ref), &mut pending)?;
        }
        pending.wait()?;
    }
    Ok(RECORDS as f64 / start.elapsed().as_secs_f64().max(1e-9))
}
