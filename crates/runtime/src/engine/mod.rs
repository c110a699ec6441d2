//! The stage engine: what the event-driven stage (`task`) and the coordinated stage
//! (`coordinated::task`) share — a stage's identity, inputs and outputs, and the steps
//! of its loop.
//!
//! Layout:
//! - `poll`: where the inputs start, a poll that gives way to stopping and to an
//!   unavailable broker, the wait for a continuous run's next batch.
//! - `produce`: outputs handed to the broker and acknowledged, with retries; the
//!   record size limit.
//! - `commit`: offsets committed once their outputs are durable, deferred across a
//!   rebalance.
//!
//! The two loops differ in what they do between a poll and a commit: an event-driven
//! stage processes each poll and keeps a few produces in flight; a coordinated stage
//! holds records until their batch ends and commits only past what it holds.

pub(crate) mod commit;
pub(crate) mod poll;
pub mod produce;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use millrace_broker::{Broker, Consumer, ConsumerConfig, OffsetReset, TopicPartition};
use tokio::sync::{mpsc, watch};

use crate::batch::Completion;
use crate::counters::StageCounters;
use crate::error::RuntimeError;

/// What every stage task has: its name and group, the topics it reads and writes, its
/// broker and counters, and where it stands with respect to batches.
pub struct Stage {
    pub pipeline: String,
    pub name: String,
    /// The topics read (the redrive topic among them for an event-driven stage).
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub dead_letter: String,
    pub counters: Arc<StageCounters>,
    pub broker: Arc<dyn Broker>,
    pub max_batch: usize,
    /// In `--batch` runs: when this stage is done.
    pub completion: Option<Completion>,
    /// Continuous runs with a batch policy: the batches to come, one after another.
    pub batches: Option<mpsc::UnboundedReceiver<Completion>>,
    pub stop: watch::Receiver<bool>,
}

/// A stage's consumer, joined to its group, with what the loop starts from.
pub(crate) struct Opened {
    pub consumer: Box<dyn Consumer>,
    /// Partition counts of the outputs and the dead-letter topic.
    pub partitions_of: HashMap<String, i32>,
    /// Where each input partition stands: the next offset to process.
    pub next: BTreeMap<TopicPartition, i64>,
}

impl Stage {
    /// The consumer group: one per stage of a pipeline.
    pub fn group(&self) -> String {
        format!("{}.{}", self.pipeline, self.name)
    }

    /// How long a poll waits for records that are not there yet.
    pub(crate) fn idle_wait(&self) -> Duration {
        poll::idle_wait(self.completion.is_some())
    }

    pub(crate) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// This stage is done with its batch: says so, and whether the task ends (no more
    /// batches come); otherwise the next batch is waited for.
    pub(crate) fn batch_ended(&mut self) -> bool {
        if let Some(c) = &self.completion {
            c.mark_done(&self.name);
        }
        if self.batches.is_none() {
            return true;
        }
        self.completion = None;
        false
    }

    /// Joins the group (`co_partitioned`: partition p of every input to one member,
    /// as joins by key and reduces need). The outputs' partition counts and where each
    /// input partition stands are asked for at the same time: on Kafka each is a few
    /// round trips.
    pub(crate) async fn open(&self, co_partitioned: bool) -> Result<Opened, RuntimeError> {
        let group = self.group();
        let mut config = ConsumerConfig::new(self.inputs.clone());
        config.group = Some(group.clone());
        config.offset_reset = OffsetReset::Earliest;
        config.co_partitioned = co_partitioned;
        let broker = self.broker.as_ref();
        let outputs = self
            .outputs
            .iter()
            .chain(std::iter::once(&self.dead_letter));
        let (consumer, partitions_of, next) = tokio::try_join!(
            async { Ok::<_, RuntimeError>(broker.consumer(config).await?) },
            produce::output_partitions(broker, outputs),
            poll::start_positions(broker, &group, &self.inputs),
        )?;
        Ok(Opened {
            consumer,
            partitions_of,
            next,
        })
    }
}
