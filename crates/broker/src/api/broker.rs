//! The [`Broker`] trait: what the CLI and the runtime ask of a backend.

use async_trait::async_trait;

use super::{
    Acks, Consumer, ConsumerConfig, Delivered, GroupDescription, GroupListing, NewTopic,
    PartitionInfo, ProduceRecord, Result, TopicDescription, TopicPartition,
};
use crate::encoded::EncodedBroker;
use crate::error::BrokerError;

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

    /// The stored-bytes fast path, where the backend offers it (the embedded store):
    /// a forwarding stage appends records as stored (see [`encoded`](crate::encoded)).
    fn encoded(&self) -> Option<&dyn EncodedBroker> {
        None
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

fn groups_unsupported(backend: &'static str) -> BrokerError {
    BrokerError::Unsupported {
        backend,
        what: "consumer groups",
    }
}
