//! What every part of the coordinated bench does: load its input into the store
//! (durability none), run its pipeline in `--batch` mode as `millrace run` does, read
//! what the pipeline wrote, and remove its topics.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use millrace_broker::Broker;
use millrace_runtime::{RunOptions, Runtime};
use millrace_store::{Durability, Record, Store, TopicConfig};
use tokio::sync::watch;

/// Partitions of every input topic.
pub(super) const PARTITIONS: u32 = 2;
/// Records per append when loading inputs.
const APPEND_BATCH: usize = 1000;

fn none_config() -> TopicConfig {
    TopicConfig {
        durability: Durability::None,
        ..TopicConfig::default()
    }
}

/// Appends `values` to `topic` (created with [`PARTITIONS`] partitions, durability
/// none) in batches, alternating partitions.
pub(super) fn load<I: Iterator<Item = Bytes>>(
    store: &Store,
    topic: &str,
    values: I,
) -> anyhow::Result<u64> {
    store.create_topic(topic, PARTITIONS, none_config())?;
    let t = store.topic(topic)?;
    let parts = (0..PARTITIONS)
        .map(|p| t.partition(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut batch = Vec::with_capacity(APPEND_BATCH);
    let mut b = 0usize;
    let mut n = 0u64;
    for v in values {
        batch.push(Record::new(None, v, 1_700_000_000_000));
        if batch.len() == APPEND_BATCH {
            parts[b % parts.len()].append(&batch)?;
            n += batch.len() as u64;
            batch.clear();
            b += 1;
        }
    }
    if !batch.is_empty() {
        parts[b % parts.len()].append(&batch)?;
        n += batch.len() as u64;
    }
    Ok(n)
}

/// Every record of every partition of `topic`, in partition order.
pub(super) fn read_all(
    store: &Store,
    topic: &str,
    mut each: impl FnMut(&[u8]),
) -> anyhow::Result<u64> {
    let t = store.topic(topic)?;
    let mut n = 0u64;
    for p in 0..t.partition_count() {
        let part = t.partition(p)?;
        let mut from = part.start_offset();
        let end = part.end_offset();
        while from < end {
            let recs = part.read(from, 8192, 8 << 20)?;
            let Some(last) = recs.last() else { break };
            from = last.offset + 1;
            for r in &recs {
                each(&r.record.value);
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Runs a pipeline file in `--batch` mode; seconds taken. Fails on any dead letter.
pub(super) async fn run_batch(broker: &Arc<dyn Broker>, yaml: &str) -> anyhow::Result<f64> {
    let plan = millrace_pipeline::parse_str(yaml, "bench.yaml")
        .map_err(|d| anyhow::anyhow!("bench pipeline does not validate:\n{d}\n{yaml}"))?;
    let spec = millrace_runtime::build::from_plan(&plan)?;
    let (_stop_tx, stop) = watch::channel(false);
    let opts = RunOptions {
        batch: true,
        ..RunOptions::default()
    };
    let start = Instant::now();
    let summary = Runtime::new(spec).run(broker.clone(), opts, stop).await?;
    let secs = start.elapsed().as_secs_f64();
    for s in &summary.stages {
        if s.counters.dead_lettered > 0 {
            anyhow::bail!(
                "bench coordinated: stage {} dead-lettered {} records",
                s.name,
                s.counters.dead_lettered
            );
        }
    }
    Ok(secs)
}

pub(super) async fn delete_topics(broker: &Arc<dyn Broker>, prefix: &str) -> anyhow::Result<()> {
    for t in broker.list_topics().await? {
        if t.starts_with(prefix) {
            broker.delete_topic(&t).await?;
        }
    }
    Ok(())
}
