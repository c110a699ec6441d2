//! Records moved as stored: the embedded store's capability for stages that forward
//! records without looking at them (copier, merger).
//!
//! A backend that keeps records in millrace's own batch format can hand a consumer the
//! stored bytes of each partition and append batches built from them, so a record is
//! neither decoded nor encoded on its way through. Only the embedded store does:
//! [`Broker::encoded`](crate::Broker::encoded) and
//! [`Consumer::encoded`](crate::Consumer::encoded) return `None` elsewhere, and a stage
//! then reads and writes records as every backend does. The types here are the store's
//! format (`docs/format.md`), which is why they live apart from the records of
//! [`api`](crate::api).

use std::time::Duration;

use async_trait::async_trait;

pub use millrace_store::{EncodedBatch, EncodedHeaders, EncodedRecord, EncodedRecords};

use crate::api::{Result, TopicPartition};

/// Records of one partition as stored, from [`EncodedConsumer::poll_encoded`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPoll {
    pub tp: TopicPartition,
    pub records: EncodedRecords,
}

/// Appends batches built from stored records.
#[async_trait]
pub trait EncodedBroker: Send + Sync {
    /// Appends a batch built from stored records ([`EncodedConsumer::poll_encoded`]) to
    /// one partition; returns the offset of its first record once the batch is durable.
    /// The batch is left as it was: the caller clears it to reuse its buffer.
    async fn produce_encoded(
        &self,
        topic: &str,
        partition: i32,
        batch: &mut EncodedBatch,
    ) -> Result<i64>;

    /// [`produce_encoded`](Self::produce_encoded) for several batches, each to its
    /// topic and partition, written in order; returns once all are durable. The
    /// embedded store acknowledges them together (one group commit of its journal,
    /// however many partitions they go to). The batches are left as they were.
    async fn produce_encoded_all(&self, batches: &mut [(&str, i32, EncodedBatch)]) -> Result<()>;
}

/// Reads records as stored.
#[async_trait]
pub trait EncodedConsumer: Send {
    /// [`Consumer::poll`](crate::Consumer::poll) for a stage that forwards records
    /// without looking at them: each partition's records as the store holds them, in
    /// runs of whole stored batches from the position on (so a poll may pass
    /// `max_records` by the rest of the batch it stops in, one per partition at most).
    async fn poll_encoded(
        &mut self,
        max_records: usize,
        timeout: Duration,
    ) -> Result<Vec<EncodedPoll>>;
}
