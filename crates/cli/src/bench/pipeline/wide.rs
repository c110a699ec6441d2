//! `millrace bench pipeline`'s wide-output rows: a copier and a sharder writing 1,000
//! output partitions with the default durability (batch), against the same pipeline
//! writing 10 partitions, in the same run.
//!
//! The input is `RECORDS` keyed 100 B JSON records in 10 partitions (durability=none,
//! appended before the clock starts); the copier routes each record by its key, the
//! sharder by `.user` into the output's partitions. Each case runs `ROUNDS` times, the
//! cases alternating, and keeps its best run. A run whose output does not hold every
//! input record, spread over every partition, fails the bench.

use std::sync::Arc;

use bytes::Bytes;
use millrace_broker::Broker;
use millrace_broker::embedded::EmbeddedBroker;
use millrace_store::{Durability, Record, TopicConfig};

use super::{run_batch, value};
use crate::bench::BenchRow;

const RECORDS: usize = 200_000;
const INPUT_PARTITIONS: u32 = 10;
const ROUNDS: usize = 2;
const WIDTHS: [u32; 2] = [10, 1_000];
/// Pattern name and its stage, `IN`, `OUT` and `SHARDS` standing for the input, the
/// output and its partition count.
const STAGES: [(&str, &str); 2] = [
    ("copier", "{kind: copier, from: IN, to: OUT}"),
    (
        "sharder",
        "{kind: sharder, from: IN, by: .user, to: OUT, shards: SHARDS}",
    ),
];

pub(super) async fn rows(
    embedded: &EmbeddedBroker,
    broker: &Arc<dyn Broker>,
) -> anyhow::Result<Vec<BenchRow>> {
    let input = "wide-in";
    load_keyed(embedded, input)?;
    // best[stage][width]
    let mut best = [[0f64; WIDTHS.len()]; STAGES.len()];
    for round in 0..ROUNDS {
        for (s, (name, stage)) in STAGES.iter().enumerate() {
            for (w, width) in WIDTHS.iter().enumerate() {
                let pipeline = format!("wide-{name}-{width}-{round}");
                let out = format!("{pipeline}-out");
                let stage = stage
                    .replace("SHARDS", &width.to_string())
                    .replace("IN", input)
                    .replace("OUT", &out);
                let yaml = format!(
                    "pipeline: {pipeline}\ndead_letter: {pipeline}.dlq\ntopics:\n  \
                     {input}: {{partitions: {INPUT_PARTITIONS}, config: {{durability: none}}}}\n  \
                     {pipeline}.dlq: {{partitions: 1}}\n  {out}: {{partitions: {width}}}\n\
                     stages:\n  {name}: {stage}\n"
                );
                let secs = run_batch(broker, &yaml).await?;
                check_spread(embedded, &out, *width)?;
                broker.delete_topic(&out).await?;
                best[s][w] = best[s][w].max(RECORDS as f64 / secs);
            }
        }
    }
    broker.delete_topic(input).await?;
    let mut rows = Vec::new();
    for (s, (name, _)) in STAGES.iter().enumerate() {
        let row = |width: u32, per_s: f64| BenchRow {
            name: format!("pipeline {name} 100B keyed to {width} partitions durability=batch"),
            records: RECORDS as u64,
            records_per_s: per_s,
            mb_per_s: per_s * 100.0 / 1e6,
            ..BenchRow::default()
        };
        rows.push(row(WIDTHS[0], best[s][0]));
        rows.push(row(WIDTHS[1], best[s][1]).against(
            &format!("the same {name} to {} partitions (same run)", WIDTHS[0]),
            best[s][0],
            0.5,
        ));
    }
    Ok(rows)
}

/// The input: `RECORDS` records keyed by their `.user`, round-robin over its partitions.
fn load_keyed(embedded: &EmbeddedBroker, topic: &str) -> anyhow::Result<()> {
    let store = embedded.store();
    let none = TopicConfig {
        durability: Durability::None,
        ..TopicConfig::default()
    };
    store.create_topic(topic, INPUT_PARTITIONS, none)?;
    let t = store.topic(topic)?;
    let mut batches: Vec<Vec<Record>> = vec![Vec::new(); INPUT_PARTITIONS as usize];
    for i in 0..RECORDS {
        let key = Bytes::from(format!("u{}", i % 10_000));
        batches[i % INPUT_PARTITIONS as usize].push(Record::new(Some(key), value(i, 100, 0), 0));
    }
    for (p, batch) in (0..INPUT_PARTITIONS).zip(&batches) {
        for chunk in batch.chunks(1000) {
            t.partition(p)?.append(chunk)?;
        }
    }
    Ok(())
}

/// Fails unless `topic` holds every input record and each of its partitions some.
fn check_spread(embedded: &EmbeddedBroker, topic: &str, partitions: u32) -> anyhow::Result<()> {
    let t = embedded.store().topic(topic)?;
    let ends = (0..partitions)
        .map(|p| t.partition(p).map(|part| part.end_offset()))
        .collect::<Result<Vec<_>, _>>()?;
    let total: u64 = ends.iter().sum();
    let empty = ends.iter().filter(|e| **e == 0).count();
    if total != RECORDS as u64 || empty > 0 {
        anyhow::bail!(
            "bench pipeline {topic}: {total} records of {RECORDS} written, {empty} of \
             {partitions} partitions empty"
        );
    }
    Ok(())
}
