//! One conformance suite, the same test code for every backend (the embedded store, and
//! Kafka when `MILLRACE_TEST_BOOTSTRAP` is set; see `common`). Each test runs its
//! scenario once per backend and names the backend in every failure.
//!
//! Parts, by area (under `conformance/`): `records`, `groups` (consumer groups and
//! committed offsets), `positions` (offset reset, polls, seeks), `topics` (admin).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, WAIT, backends, poll_for, poll_n, poll_until, sorted, unique};
use millrace_broker::{
    BrokerError, ConsumedRecord, ConsumerConfig, Header, NewTopic, OffsetReset, ProduceRecord,
    Rebalance, Seek, TopicPartition,
};

/// Runs `scenario` against every backend.
macro_rules! conformance {
    ($name:ident, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            for b in backends().await {
                eprintln!("{}: {}", stringify!($name), b.name);
                tokio::time::timeout(Duration::from_secs(120), $scenario(&b))
                    .await
                    .unwrap_or_else(|_| panic!("{}: {} timed out", stringify!($name), b.name));
            }
        }
    };
}

async fn topic(b: &Backend, prefix: &str, partitions: i32) -> String {
    let name = unique(prefix);
    b.broker
        .create_topic(&NewTopic::new(&name, partitions))
        .await
        .unwrap_or_else(|e| panic!("{}: create {name}: {e}", b.name));
    name
}

fn group_config(group: &str, topic: &str, reset: OffsetReset) -> ConsumerConfig {
    ConsumerConfig {
        group: Some(group.to_string()),
        topics: vec![topic.to_string()],
        offset_reset: reset,
        properties: BTreeMap::new(),
        co_partitioned: false,
        reads_written: false,
    }
}

fn all_config(topic: &str, reset: OffsetReset) -> ConsumerConfig {
    ConsumerConfig {
        group: None,
        topics: vec![topic.to_string()],
        offset_reset: reset,
        properties: BTreeMap::new(),
        co_partitioned: false,
        reads_written: false,
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn to_partition(p: i32, value: String) -> ProduceRecord {
    ProduceRecord {
        partition: Some(p),
        ..ProduceRecord::value(value)
    }
}

#[path = "conformance/groups.rs"]
mod groups;
#[path = "conformance/positions.rs"]
mod positions;
#[path = "conformance/records.rs"]
mod records;
#[path = "conformance/topics.rs"]
mod topics;
