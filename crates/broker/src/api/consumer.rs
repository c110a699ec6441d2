//! The [`Consumer`] trait and what a consumer is opened with.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use super::{ConsumedRecord, Result, TopicPartition};
use crate::encoded::EncodedConsumer;
use crate::hand_over::InFlight;

/// Where to move a consumer's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seek {
    Beginning,
    End,
    Offset(i64),
    /// The first record whose timestamp is at or after this (ms).
    Timestamp(i64),
}

/// Where a consumer starts on a partition its group has no committed offset for
/// (Kafka's `auto.offset.reset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OffsetReset {
    Earliest,
    #[default]
    Latest,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// `Some(group)`: join the consumer group, share partitions with its other members,
    /// resume from committed offsets. `None`: read every partition, commit nothing.
    pub group: Option<String>,
    pub topics: Vec<String>,
    pub offset_reset: OffsetReset,
    /// Extra client settings (Kafka properties); the embedded store ignores them.
    pub properties: BTreeMap<String, String>,
    /// Whether one group member takes partition p of every topic together, so that
    /// the records of one key in co-partitioned topics meet in one consumer (a join
    /// by key, a grouped reduce). Kafka uses its range assignor then, instead of the
    /// cooperative-sticky one; the embedded store always assigns so.
    pub co_partitioned: bool,
    /// Whether what this consumer reads is written already (a stage reading back its
    /// outputs): a fetch returns what there is instead of waiting for more.
    pub reads_written: bool,
}

impl ConsumerConfig {
    pub fn new(topics: Vec<String>) -> Self {
        ConsumerConfig {
            group: None,
            topics,
            offset_reset: OffsetReset::Latest,
            properties: BTreeMap::new(),
            co_partitioned: false,
            reads_written: false,
        }
    }
}

/// A change of the partitions a group consumer owns. Polling reports these before the
/// records of the new assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rebalance {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
}

#[async_trait]
pub trait Consumer: Send {
    /// Waits up to `timeout` for records; returns early as soon as some arrive. An empty
    /// result is a timeout, not the end.
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>>;

    /// The stored-bytes fast path, where the backend offers it (the embedded store):
    /// a forwarding stage reads records as stored (see [`encoded`](crate::encoded)).
    fn encoded(&mut self) -> Option<&mut dyn EncodedConsumer> {
        None
    }

    /// Partitions this consumer owns now.
    fn assignment(&self) -> Vec<TopicPartition>;

    /// Rebalances seen since the last call, oldest first.
    fn take_rebalances(&mut self) -> Vec<Rebalance>;

    /// Work the caller has in flight for records this consumer returned. A group
    /// consumer losing partitions in a rebalance waits for it (up to
    /// [`HAND_OVER_WAIT`](crate::hand_over::HAND_OVER_WAIT)) before another member may
    /// take them, so their next owner finds everything the old one wrote
    /// (see [`hand_over`](crate::hand_over)). A consumer without a group has nobody to
    /// hand over to, and ignores it.
    fn hand_over_after(&mut self, work: InFlight) {
        let _ = work;
    }

    /// Commits, for each partition, the next offset to read. Durable when it returns.
    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()>;

    async fn seek(&mut self, tp: &TopicPartition, to: Seek) -> Result<()>;

    /// Leaves the group (handing partitions to the other members) and releases resources.
    async fn close(self: Box<Self>) -> Result<()>;
}
