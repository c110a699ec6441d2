//! The broker interface: everything the CLI and the pipeline runtime ask of a backend.
//!
//! Names follow Kafka's: topics, partitions, offsets, consumer groups. An offset handed
//! to `commit` is the *next* offset to read, as in Kafka.
//!
//! Layout: `records` (what is produced and consumed, and where it lands), `topics`
//! (topics and partitions as `topics describe` shows them), `groups` (consumer groups
//! as `groups describe` shows them), `broker` (the [`Broker`] trait), `consumer` (the
//! [`Consumer`] trait and its settings).

mod broker;
mod consumer;
mod groups;
mod records;
mod topics;

pub use broker::Broker;
pub use consumer::{Consumer, ConsumerConfig, OffsetReset, Rebalance, Seek};
pub use groups::{
    GroupDescription, GroupListing, GroupState, MemberDescription, consumer_assignment,
};
pub use records::{Acks, ConsumedRecord, Delivered, Header, Names, ProduceRecord, TopicPartition};
pub use topics::{NewTopic, PartitionInfo, TopicDescription, committed_offset};

use crate::error::BrokerError;

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
