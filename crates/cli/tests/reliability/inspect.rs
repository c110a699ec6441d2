//! Looking at a backend directly, through millrace's broker API rather than through the
//! `millrace` binary under test: what a consumer group committed, and every record of a
//! topic with its headers. A test then sees a commit itself (not what lineage skipping
//! makes of a missing one) and a record written twice (not what an upserting reader makes
//! of it). On the embedded store these open the data directory: call them only while no
//! `millrace` process holds it.

#![allow(dead_code)] // each test binary that includes this uses part of it

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use millrace_broker::embedded::EmbeddedBroker;
use millrace_broker::kafka::KafkaBroker;
use millrace_broker::{Broker, ConsumedRecord, ConsumerConfig, OffsetReset};

use crate::common::Backend;

/// The lineage header every stage output carries: `<stage>@<origin>#<offset>.<index>`.
pub const LINEAGE: &str = "millrace.from";

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

async fn connect(b: &Backend) -> Box<dyn Broker> {
    match &b.bootstrap {
        None => Box::new(EmbeddedBroker::open(b.data_dir()).expect("open the data directory")),
        Some(bootstrap) => Box::new(
            KafkaBroker::connect(bootstrap, BTreeMap::new(), Duration::from_secs(10))
                .await
                .expect("connect to Kafka"),
        ),
    }
}

/// What `group` committed for each partition of `topic` (`None`: nothing yet).
pub fn committed(b: &Backend, group: &str, topic: &str) -> Vec<(i32, Option<i64>)> {
    block_on(async {
        let broker = connect(b).await;
        broker
            .committed(group, topic)
            .await
            .expect("committed offsets")
    })
}

/// The sum of what `group` committed over `topic`'s partitions.
pub fn committed_total(b: &Backend, group: &str, topic: &str) -> i64 {
    committed(b, group, topic)
        .iter()
        .map(|(_, o)| o.unwrap_or(0))
        .sum()
}

/// Every record of `topic`, ordered by partition and offset.
pub fn records(b: &Backend, topic: &str) -> Vec<ConsumedRecord> {
    block_on(async {
        let broker = connect(b).await;
        let d = broker.describe_topic(topic).await.expect("describe");
        let total: i64 = d
            .partitions
            .iter()
            .map(|p| p.end_offset - p.start_offset)
            .sum();
        let mut cfg = ConsumerConfig::new(vec![topic.to_string()]);
        cfg.offset_reset = OffsetReset::Earliest;
        let mut c = broker.consumer(cfg).await.expect("consumer");
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while (out.len() as i64) < total {
            assert!(
                Instant::now() < deadline,
                "{topic}: read {} of {total} records in 120 s",
                out.len()
            );
            out.extend(
                c.poll(10_000, Duration::from_millis(300))
                    .await
                    .expect("poll"),
            );
        }
        let _ = c.close().await;
        out.sort_by_key(|r| (r.partition, r.offset));
        out
    })
}

/// A record's lineage: which stage wrote it, from which input record.
pub fn lineage(r: &ConsumedRecord) -> Option<String> {
    r.headers
        .iter()
        .find(|h| &*h.key == LINEAGE)
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
}

/// Outputs written more than once to `topic` (the same lineage twice), with their
/// counts; every record must carry a lineage (`topic` is written by stages only).
pub fn written_twice(b: &Backend, topic: &str) -> (usize, Vec<(String, usize)>) {
    let recs = records(b, topic);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &recs {
        let l = lineage(r).unwrap_or_else(|| {
            panic!(
                "{topic}/{}@{}: an output without its lineage header",
                r.partition, r.offset
            )
        });
        *seen.entry(l).or_insert(0) += 1;
    }
    let mut twice: Vec<(String, usize)> = seen.into_iter().filter(|(_, n)| *n > 1).collect();
    twice.sort();
    (recs.len(), twice)
}

/// Fails when any of `topics` holds an output written twice; returns the records
/// checked.
pub fn assert_no_duplicates(b: &Backend, topics: &[&str], what: &str) -> usize {
    let mut checked = 0;
    for t in topics {
        let (n, twice) = written_twice(b, t);
        checked += n;
        assert!(
            twice.is_empty(),
            "{what}: {} outputs written more than once to {t}, e.g. {:?}",
            twice.len(),
            &twice[..twice.len().min(5)]
        );
    }
    checked
}
