//! `millrace bench kafka`: produce and consume throughput through millrace's Kafka
//! backend, each against librdkafka used directly in the same run (same records, same
//! producer settings, no millrace layer). The abstraction should cost almost nothing:
//! target ratio 0.9.
//!
//! Rows (ratio = millrace / rdkafka, records per second), for 100 B and 1 KiB values:
//! - produce: `KafkaBroker::produce` in batches of `BATCH`, `IN_FLIGHT` batches at once,
//!   vs one `FutureProducer` sending every record and awaiting every delivery;
//! - consume: a group-less `KafkaConsumer` polling from the beginning vs a
//!   `StreamConsumer` assigned the same partitions, reading the same records.
//!
//! Each side runs twice, alternating, and its best run counts. Each size uses fresh
//! topics (deleted at the end); the whole run stays well under a minute against a local
//! broker. Produce and consume are timed without connecting: producers send one warm-up
//! record first, consumers start the clock at their first record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use millrace_broker::kafka::rdkafka::consumer::{Consumer as _, StreamConsumer};
use millrace_broker::kafka::rdkafka::message::Message as _;
use millrace_broker::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use millrace_broker::kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use millrace_broker::kafka::{CONSUMER_DEFAULTS, KafkaBroker, PRODUCER_DEFAULTS};
use millrace_broker::{Broker, ConsumerConfig, NewTopic, OffsetReset, ProduceRecord};
use tokio::task::JoinSet;

use super::BenchRow;

const PARTITIONS: i32 = 4;
/// Records per `produce` call.
const BATCH: usize = 5_000;
/// `produce` calls in flight at once, as a pipeline stage keeps several.
const IN_FLIGHT: usize = 8;
const TARGET: f64 = 0.9;
/// Runs per side; the best counts.
pub(super) const ROUNDS: usize = 2;

pub async fn run(bootstrap: &str) -> anyhow::Result<Vec<BenchRow>> {
    let broker = Arc::new(
        KafkaBroker::connect(bootstrap, BTreeMap::new(), Duration::from_secs(10))
            .await
            .with_context(|| format!("bench kafka: cannot reach {bootstrap}"))?,
    );
    let mut rows = Vec::new();
    for (label, size, count) in [("100 B", 100usize, 300_000usize), ("1 KiB", 1024, 60_000)] {
        rows.extend(one_size(&broker, bootstrap, label, size, count).await?);
    }
    Ok(rows)
}

async fn one_size(
    broker: &Arc<KafkaBroker>,
    bootstrap: &str,
    label: &str,
    size: usize,
    count: usize,
) -> anyhow::Result<Vec<BenchRow>> {
    let stamp = std::process::id();
    let base_topic = format!("millrace-bench-rdkafka-{size}-{stamp}");
    let ours_topic = format!("millrace-bench-millrace-{size}-{stamp}");
    for t in [&base_topic, &ours_topic] {
        // A topic left by an interrupted earlier run is replaced.
        let _ = broker.delete_topic(t).await;
        broker
            .create_topic(&NewTopic::new(t.as_str(), PARTITIONS))
            .await?;
    }
    let records = make_records(size, count);
    let bytes = (count * size) as f64;

    // Each side runs twice, alternating with the other, and keeps its best time: a
    // first run on a fresh topic or a fresh client is noisy (fetch sessions, JIT on the
    // broker), and on two shared cores so is any single run.
    let (mut base_secs, mut ours_secs) = (f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        base_secs = base_secs.min(produce_rdkafka(bootstrap, &base_topic, &records).await?);
        ours_secs = ours_secs.min(produce_millrace(broker, &ours_topic, &records).await?);
    }
    // Both read the records millrace wrote: the first `count` after the first record.
    let (mut base_read_secs, mut ours_read_secs) = (f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        base_read_secs = base_read_secs.min(consume_rdkafka(bootstrap, &ours_topic, count).await?);
        ours_read_secs = ours_read_secs.min(consume_millrace(broker, &ours_topic, count).await?);
    }

    for t in [&base_topic, &ours_topic] {
        let _ = broker.delete_topic(t).await;
    }
    let row = |what: &str, secs: f64, base: f64, baseline: &str| {
        BenchRow {
            name: format!("kafka {what} {label}"),
            records: count as u64,
            records_per_s: count as f64 / secs,
            mb_per_s: bytes / secs / 1e6,
            ..Default::default()
        }
        .against(baseline, count as f64 / base, TARGET)
    };
    Ok(vec![
        row("produce", ours_secs, base_secs, "rdkafka FutureProducer"),
        row(
            "consume",
            ours_read_secs,
            base_read_secs,
            "rdkafka StreamConsumer",
        ),
    ])
}

/// Keyed records (so both paths run the murmur2 partitioner) with incompressible-ish
/// values of `size` bytes.
pub(super) fn make_records(size: usize, count: usize) -> Vec<(Bytes, Bytes)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count)
        .map(|i| {
            let value: Vec<u8> = (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()[0]
                })
                .collect();
            (
                Bytes::from(format!("key-{}", i % 10_000)),
                Bytes::from(value),
            )
        })
        .collect()
}

async fn produce_rdkafka(
    bootstrap: &str,
    topic: &str,
    records: &[(Bytes, Bytes)],
) -> anyhow::Result<f64> {
    let mut cfg = ClientConfig::new();
    for (k, v) in PRODUCER_DEFAULTS {
        cfg.set(*k, *v);
    }
    cfg.set("bootstrap.servers", bootstrap);
    let producer: FutureProducer = cfg.create()?;
    // One record first, so connecting and the topic's metadata are not timed.
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(topic).payload(&b"warm-up"[..]),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::with_capacity(records.len());
    for (key, value) in records {
        let mut record = FutureRecord::to(topic).key(&key[..]).payload(&value[..]);
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    pending.push_back(f);
                    break;
                }
                Err((_, back)) => {
                    // Queue full: wait for the oldest delivery, then retry.
                    record = back;
                    if let Some(f) = pending.pop_front() {
                        f.await?.map_err(|(e, _)| e)?;
                    }
                }
            }
        }
    }
    for f in pending {
        f.await?.map_err(|(e, _)| e)?;
    }
    Ok(started.elapsed().as_secs_f64())
}

pub(super) async fn produce_millrace(
    broker: &Arc<KafkaBroker>,
    topic: &str,
    records: &[(Bytes, Bytes)],
) -> anyhow::Result<f64> {
    broker
        .produce(topic, &[ProduceRecord::value("warm-up")])
        .await?;
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for chunk in records.chunks(BATCH) {
        if tasks.len() >= IN_FLIGHT
            && let Some(done) = tasks.join_next().await
        {
            done??;
        }
        let batch: Vec<ProduceRecord> = chunk
            .iter()
            .map(|(k, v)| ProduceRecord::keyed(k.clone(), v.clone()))
            .collect();
        let b = broker.clone();
        let t = topic.to_string();
        tasks.spawn(async move { b.produce(&t, &batch).await.map(|_| ()) });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn consume_millrace(
    broker: &Arc<KafkaBroker>,
    topic: &str,
    count: usize,
) -> anyhow::Result<f64> {
    let mut c = broker
        .consumer(ConsumerConfig {
            group: None,
            topics: vec![topic.to_string()],
            offset_reset: OffsetReset::Earliest,
            properties: BTreeMap::new(),
            co_partitioned: false,
            reads_written: false,
        })
        .await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    let mut seen = 0usize;
    while seen < count {
        anyhow::ensure!(
            Instant::now() < deadline,
            "millrace consumer read {seen} of {count}"
        );
        seen += c.poll(10_000, Duration::from_secs(1)).await?.len();
    }
    let secs = started.elapsed().as_secs_f64();
    c.close().await?;
    Ok(secs)
}

async fn consume_rdkafka(bootstrap: &str, topic: &str, count: usize) -> anyhow::Result<f64> {
    let mut cfg = ClientConfig::new();
    for (k, v) in CONSUMER_DEFAULTS {
        cfg.set(*k, *v);
    }
    let consumer: StreamConsumer = cfg
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("millrace-bench-{}", std::process::id()))
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    let mut seen = 0usize;
    let mut bytes = 0usize;
    while seen < count {
        anyhow::ensure!(
            Instant::now() < deadline,
            "rdkafka consumer read {seen} of {count}"
        );
        if let Ok(m) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            let m = m?;
            bytes += m.payload().map(<[u8]>::len).unwrap_or(0);
            seen += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    Ok(secs)
}
