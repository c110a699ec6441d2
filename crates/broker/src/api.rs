//! The broker interface: everything the CLI and the pipeline runtime ask of a backend.
//!
//! Names follow Kafka's: topics, partitions, offsets, consumer groups. An offset handed
//! to `commit` is the *next* offset to read, as in Kafka.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use millrace_store::{EncodedBatch, EncodedRecords, Header};

use crate::error::BrokerError;
use crate::hand_over::InFlight;

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

/// A topic and one of its partitions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Shared: stage tasks make one per record they track, so a copy is a reference
    /// count.
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// What `topics create` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Topic configs as Kafka names them (`retention.ms`, …) plus millrace's own
    /// (`durability`, `segment.bytes`, …).
    pub config: BTreeMap<String, String>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: 1,
            config: BTreeMap::new(),
        }
    }
}

/// One partition as `topics describe` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    /// First offset still stored (retention moves it forward).
    pub start_offset: i64,
    /// The offset the next record will get (Kafka's high watermark).
    pub end_offset: i64,
    pub leader: Option<i32>,
    pub replicas: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
    pub config: BTreeMap<String, String>,
}

impl TopicDescription {
    /// Records a group has not committed yet, over all partitions: end offset minus
    /// the committed offset (the start offset where nothing is committed).
    pub fn lag(&self, committed: &[(i32, Option<i64>)]) -> i64 {
        self.partitions
            .iter()
            .map(|p| {
                let c = committed_offset(committed, p.partition).unwrap_or(p.start_offset);
                (p.end_offset - c).max(0)
            })
            .sum()
    }
}

/// The committed offset of one partition in an answer of [`Broker::committed`].
pub fn committed_offset(committed: &[(i32, Option<i64>)], partition: i32) -> Option<i64> {
    committed
        .iter()
        .find(|(q, _)| *q == partition)
        .and_then(|(_, o)| *o)
}

/// A record to produce. `partition: None` lets the backend choose: murmur2 of the key
/// (as the Java client does) or, without a key, spread the records.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProduceRecord {
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<Header>,
    /// Milliseconds since the epoch; `None` means "now".
    pub timestamp: Option<i64>,
}

impl ProduceRecord {
    pub fn value(value: impl Into<Bytes>) -> Self {
        ProduceRecord {
            value: value.into(),
            ..Default::default()
        }
    }

    pub fn keyed(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        ProduceRecord {
            key: Some(key.into()),
            value: value.into(),
            ..Default::default()
        }
    }
}

/// Where an acknowledged record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// The acknowledgements of one [`Broker::send`]: resolves once every record is durable,
/// with the position of each, in order. Owns everything it needs (no borrow of the
/// records), so a writer can keep several in flight.
pub struct Acks(Pin<Box<dyn Future<Output = Result<Vec<Delivered>>> + Send + 'static>>);

impl Acks {
    pub fn new(f: impl Future<Output = Result<Vec<Delivered>>> + Send + 'static) -> Acks {
        Acks(Box::pin(f))
    }

    /// Acknowledgements already in hand.
    pub fn ready(r: Result<Vec<Delivered>>) -> Acks {
        Acks::new(std::future::ready(r))
    }
}

impl Future for Acks {
    type Output = Result<Vec<Delivered>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// A record as a consumer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Shared by every record of a poll: one reference count, not one allocation, per
    /// record.
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<Header>,
    pub timestamp: i64,
}

/// Records of one partition as stored, from [`Consumer::poll_encoded`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPoll {
    pub tp: TopicPartition,
    pub records: EncodedRecords,
}

/// Names shared by the records a consumer hands out (topics, header keys); the store
/// decodes header names with the same table.
pub use millrace_store::Names;

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

/// A consumer group's state, in Kafka's names (`kafka-consumer-groups` prints them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupState {
    /// No live members (only committed offsets, or nothing yet).
    Empty,
    /// A member joined or left: the members are rejoining.
    PreparingRebalance,
    /// The members rejoined and wait for the leader's assignment.
    CompletingRebalance,
    /// Every member has its partitions.
    Stable,
    /// Deleted, or never existed.
    Dead,
    /// A state this millrace does not know (a newer broker's).
    Unknown,
}

impl GroupState {
    pub const ALL: [GroupState; 5] = [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
    ];

    /// Kafka's name: `Stable`, `Empty`, `PreparingRebalance`, …
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
            GroupState::Unknown => "Unknown",
        }
    }

    /// The state Kafka names `name` (in any case); [`GroupState::Unknown`] for others.
    pub fn parse(name: &str) -> GroupState {
        GroupState::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name.trim()))
            .unwrap_or(GroupState::Unknown)
    }

    /// Whether a group in this state may have its offsets reset or be deleted: Kafka
    /// refuses both while members are live.
    pub fn is_inactive(self) -> bool {
        matches!(self, GroupState::Empty | GroupState::Dead)
    }
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One consumer group as `groups list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupListing {
    pub group: String,
    pub state: GroupState,
}

/// One live member of a consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    /// The id the coordinator gave it (Kafka's CONSUMER-ID).
    pub member_id: String,
    /// Its `group.instance.id`, for a static member (when the backend reports it).
    pub instance_id: Option<String>,
    pub client_id: String,
    /// Where it connects from, as Kafka shows it (`/127.0.0.1`).
    pub host: String,
    /// The partitions it owns, sorted; empty while the group rebalances, or when there
    /// are more members than partitions.
    pub assignment: Vec<TopicPartition>,
}

/// The partitions in a consumer's assignment bytes (the consumer protocol's
/// `ConsumerProtocolAssignment`, which every Kafka consumer's group leader writes),
/// sorted. Bytes that do not decode are the member's business: logged, read as none.
pub fn consumer_assignment(group: &str, member: &str, bytes: &[u8]) -> Vec<TopicPartition> {
    use millrace_server::group::consumer_protocol::Assignment;
    match Assignment::decode(bytes) {
        Ok(a) => a
            .topic_partitions()
            .into_iter()
            .map(|(t, p)| TopicPartition::new(t, p))
            .collect(),
        Err(e) => {
            tracing::warn!(%group, %member, error = %e, "a member's assignment does not decode");
            Vec::new()
        }
    }
}

/// One consumer group as `groups describe` shows it: its members and its committed
/// offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    pub state: GroupState,
    /// `consumer` for consumers (Kafka Connect's workers say `connect`).
    pub protocol_type: String,
    /// The assignor the members agreed on (`range`, `cooperative-sticky`, …); empty
    /// unless the group is Stable.
    pub protocol: String,
    pub members: Vec<MemberDescription>,
    /// The next offset to read of every partition the group committed for, sorted.
    pub offsets: Vec<(TopicPartition, i64)>,
}

/// A backend: the embedded store (held by this process), or Kafka (a cluster, or the
/// store held by another millrace process).
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// "embedded", "kafka", or the name of a store held by another process, for
    /// messages and `/api`.
    fn backend(&self) -> &'static str;

    async fn create_topic(&self, topic: &NewTopic) -> Result<()>;
    async fn list_topics(&self) -> Result<Vec<String>>;
    async fn describe_topic(&self, topic: &str) -> Result<TopicDescription>;

    /// The partitions of a topic, as [`describe_topic`](Self::describe_topic) gives them,
    /// without the topic's config: what stages ask for, many times as a run starts (on
    /// Kafka the config is a request of its own, through a client of its own).
    async fn partitions(&self, topic: &str) -> Result<Vec<PartitionInfo>> {
        Ok(self.describe_topic(topic).await?.partitions)
    }

    async fn delete_topic(&self, topic: &str) -> Result<()>;

    /// Produces a batch to one topic and returns once every record is acknowledged
    /// durable (as the topic's durability or Kafka's `acks=all` defines it), with the
    /// position of each record, in order. The records are borrowed: a caller that
    /// retries after a transient error still has them, and nothing is copied before
    /// the backend encodes them.
    async fn produce(&self, topic: &str, records: &[ProduceRecord]) -> Result<Vec<Delivered>>;

    /// The first half of [`produce`](Self::produce): hands the records to the backend,
    /// after every record sent before, and returns once they are queued; the [`Acks`]
    /// resolve when they are durable. Several sends may then be in flight at once,
    /// which hides the acknowledgement's round trip (Kafka's `acks=all`) without
    /// reordering anything. A backend that writes synchronously does the whole produce
    /// here, as the default does.
    async fn send(&self, topic: &str, records: &[ProduceRecord]) -> Result<Acks> {
        let delivered = self.produce(topic, records).await?;
        Ok(Acks::ready(Ok(delivered)))
    }

    /// How many sends a writer gains from having in flight at once: 1 where `send` is
    /// the whole produce.
    fn sends_in_flight(&self) -> usize {
        1
    }

    /// Whether [`produce_encoded`](Self::produce_encoded) is offered: the embedded
    /// store, where a forwarding stage appends records as stored.
    fn writes_encoded(&self) -> bool {
        false
    }

    /// Appends a batch built from stored records ([`Consumer::poll_encoded`]) to one
    /// partition; returns the offset of its first record once the batch is durable.
    /// The batch is left as it was: the caller clears it to reuse its buffer.
    async fn produce_encoded(
        &self,
        topic: &str,
        partition: i32,
        batch: &mut EncodedBatch,
    ) -> Result<i64> {
        let _ = (topic, partition, batch);
        Err(BrokerError::Invalid(format!(
            "the {} backend does not take encoded batches",
            self.backend()
        )))
    }

    /// [`produce_encoded`](Self::produce_encoded) for several batches, each to its
    /// topic and partition, written in order; returns once all are durable. The
    /// embedded store acknowledges them together (one group commit of its journal,
    /// however many partitions they go to). The batches are left as they were.
    async fn produce_encoded_all(&self, batches: &mut [(&str, i32, EncodedBatch)]) -> Result<()> {
        for (topic, partition, batch) in batches.iter_mut() {
            self.produce_encoded(topic, *partition, batch).await?;
        }
        Ok(())
    }

    async fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>>;

    /// Committed offsets of a group for a topic, one entry per partition
    /// (`None`: nothing committed).
    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<(i32, Option<i64>)>>;

    // Consumer groups, as `kafka-consumer-groups` manages them. A group is what has
    // live members or committed offsets; whoever its members are (millrace stages,
    // Kafka clients), it is one group.

    /// Every consumer group, sorted by name.
    async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        Err(groups_unsupported(self.backend()))
    }

    /// One group's state, members and committed offsets;
    /// [`BrokerError::UnknownGroup`] if it has neither members nor offsets.
    async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let _ = group;
        Err(groups_unsupported(self.backend()))
    }

    /// Every group [`list_groups`](Self::list_groups) lists, described, in name order
    /// (a group deleted meanwhile is left out). The default describes one at a time.
    async fn describe_groups(&self) -> Result<Vec<GroupDescription>> {
        let mut all = Vec::new();
        for l in self.list_groups().await? {
            match self.describe_group(&l.group).await {
                Ok(d) => all.push(d),
                Err(BrokerError::UnknownGroup(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(all)
    }

    /// Commits `offsets` (the next offset to read of each partition) for a group
    /// without live members, as Kafka's AlterConsumerGroupOffsets does; a group with
    /// live members refuses ([`BrokerError::GroupNotEmpty`]): they would overwrite the
    /// offsets with their own. Durable when it returns.
    async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<()> {
        let _ = (group, offsets);
        Err(groups_unsupported(self.backend()))
    }

    /// Deletes a group without live members and its committed offsets;
    /// [`BrokerError::GroupNotEmpty`] while it has members,
    /// [`BrokerError::UnknownGroup`] if there is no such group.
    async fn delete_group(&self, group: &str) -> Result<()> {
        let _ = group;
        Err(groups_unsupported(self.backend()))
    }
}

fn groups_unsupported(backend: &str) -> BrokerError {
    BrokerError::Invalid(format!(
        "consumer groups are not supported by the {backend} backend"
    ))
}

#[async_trait]
pub trait Consumer: Send {
    /// Waits up to `timeout` for records; returns early as soon as some arrive. An empty
    /// result is a timeout, not the end.
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>>;

    /// Whether [`poll_encoded`](Self::poll_encoded) is offered (the embedded store).
    fn reads_encoded(&self) -> bool {
        false
    }

    /// [`poll`](Self::poll) for a stage that forwards records without looking at them:
    /// each partition's records as the store holds them, in runs of whole stored
    /// batches from the position on (so a poll may pass `max_records` by the rest of
    /// the batch it stops in, one per partition at most).
    async fn poll_encoded(
        &mut self,
        max_records: usize,
        timeout: Duration,
    ) -> Result<Vec<EncodedPoll>> {
        let _ = (max_records, timeout);
        Err(BrokerError::Invalid(
            "this consumer does not read encoded records".into(),
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_start_where_nothing_is_committed() {
        let p = |partition, start_offset, end_offset| PartitionInfo {
            partition,
            start_offset,
            end_offset,
            leader: None,
            replicas: Vec::new(),
        };
        let d = TopicDescription {
            name: "t".into(),
            partitions: vec![p(0, 0, 10), p(1, 5, 8), p(2, 0, 4)],
            config: BTreeMap::new(),
        };
        let committed = [(0, Some(7)), (1, None), (2, Some(9))];
        assert_eq!(committed_offset(&committed, 0), Some(7));
        assert_eq!(committed_offset(&committed, 1), None);
        assert_eq!(committed_offset(&committed, 3), None);
        // 10-7, 8-5, and a commit past the end counts as no lag.
        assert_eq!(d.lag(&committed), 3 + 3);
    }
}
