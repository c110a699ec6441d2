//! The stage task: read a batch, let the pattern process it, produce its outputs, wait
//! until they are durable, then commit the inputs.
//!
//! Invariants:
//! - an input offset is committed only after every output it caused (including its
//!   dead-letter record) is acknowledged durable — at-least-once;
//! - a stage has a few batches in flight at most (the one it processes, and the ones
//!   being produced: `Broker::sends_in_flight`), each of at most `max_batch` records,
//!   so memory is bounded and a slow stage slows its inputs (it simply reads less
//!   often);
//! - outputs are produced in input order per output topic, and records of one input
//!   partition without a key stay together in one output partition, so order per
//!   partition is kept.

use std::collections::BTreeMap;

use millrace_broker::{Consumer, InFlight, Rebalance, TopicPartition};

use crate::batch::{Completion, batch_header};
use crate::engine::commit::raise;
use crate::engine::poll::{Between, Polled};
use crate::engine::{Opened, Stage};
use crate::error::RuntimeError;
use crate::operator::{Emit, Operator, Outcome};

mod assemble;
mod forward;
mod input;
mod outgoing;
mod redriven;

use assemble::Assembly;
use input::Input;
use outgoing::{Outgoing, Processed};
use redriven::{Marks, Redrive};

/// Everything a stage task needs.
pub struct StageTask {
    /// Its inputs include the redrive topic when `redrive` names it.
    pub stage: Stage,
    /// The pipeline's redrive topic, when this stage reads it (see `redrive`).
    pub redrive: Option<String>,
    pub operator: Box<dyn Operator>,
    /// Whether outputs are stamped with their batch (`millrace.batch`) when they do not
    /// carry one yet: in batched runs of pipelines with a join or reduce, which count a
    /// record of an earlier batch under that batch (see `coordinated::reduce`).
    pub stamp_batch: bool,
    /// Whether a forwarding stage (copier, merger) may move records as stored where the
    /// backend offers it (`RunOptions::forward_encoded`).
    pub forward_encoded: bool,
}

/// What the stage loop keeps between polls besides the pattern.
struct Loop<'a> {
    consumer: &'a mut dyn Consumer,
    /// Where each input partition stands (committed).
    next: &'a mut BTreeMap<TopicPartition, i64>,
    /// Each input partition's offset after the last record read (polled, not yet
    /// committed).
    read_to: Vec<(TopicPartition, i64)>,
    out: Outgoing,
}

impl Loop<'_> {
    /// Waits for every batch in flight; commits what is durable (now, when `force`).
    async fn settle(&mut self, force: bool) -> Result<(), RuntimeError> {
        self.out.settle(self.consumer, self.next, force).await
    }
}

impl StageTask {
    pub fn group(&self) -> String {
        self.stage.group()
    }

    pub async fn run(mut self) -> Result<(), RuntimeError> {
        let Opened {
            mut consumer,
            partitions_of,
            mut next,
        } = self.stage.open(false).await?;
        // A rebalance that takes partitions away waits for the batch in flight.
        let in_flight = InFlight::default();
        consumer.hand_over_after(in_flight.clone());
        let assembly = Assembly {
            stage: self.stage.name.clone(),
            outputs: self.stage.outputs.clone(),
            out_parts: self
                .stage
                .outputs
                .iter()
                .map(|t| partitions_of.get(t).copied().unwrap_or(1).max(1))
                .collect(),
            dead_letter: self.stage.dead_letter.clone(),
            buffers: forward::Buffers::default(),
        };
        let out = Outgoing::new(
            self.stage.counters.clone(),
            self.stage.broker.clone(),
            assembly,
        );
        let mut l = Loop {
            consumer: consumer.as_mut(),
            next: &mut next,
            read_to: Vec::new(),
            out,
        };
        let result = self.run_loop(&mut l, &in_flight).await;
        self.operator.shutdown().await;
        let _ = consumer.close().await;
        result
    }

    /// Read, process, hand the batch to its produce thread, commit what is durable:
    /// until the stage stops or its batch is done.
    async fn run_loop(
        &mut self,
        l: &mut Loop<'_>,
        in_flight: &InFlight,
    ) -> Result<(), RuntimeError> {
        // Earlier batches' produces run while the next batch is read and processed; each
        // is committed once it is durable. How many may be in flight is the backend's
        // call: one where a send is the whole produce (the embedded store), a few where
        // acknowledgements take a round trip (Kafka).
        let depth = self.stage.broker.sends_in_flight().max(1);
        let redrive = self.redrive.as_ref().map(|topic| Redrive {
            topic: topic.clone(),
            stage: self.stage.name.clone(),
        });
        // A copier or merger moves records as stored where the backend offers it, and
        // where nothing is added to them but the lineage (no batch stamp).
        let forwarding = self.operator.forwards()
            && !self.stamp_batch
            && self.forward_encoded
            && forward::offered(self.stage.broker.as_ref(), &mut *l.consumer);
        loop {
            if self.stage.stopping() {
                return l.settle(true).await;
            }
            if self.batch_done(l).await? {
                return Ok(());
            }
            match self.stage.between_batches().await {
                Between::Work => {}
                Between::Again => continue,
                Between::Over => return Ok(()),
            }
            // A --batch run that has read its batch of every partition it owns waits for
            // what is in flight, not for records (a poll would wait `idle_wait` first).
            if l.out.in_flight() > 0
                && let Some(c) = &self.stage.completion
                && read_all(c, &l.consumer.assignment(), l.next, &l.read_to)
            {
                l.settle(true).await?;
                continue;
            }
            let mut batch = match poll(&self.stage, l.consumer, forwarding).await? {
                Polled::Records(p) => p,
                Polled::Retry => continue,
                Polled::Stopped => return l.settle(true).await,
            };
            self.rebalanced(l).await?;
            // In a --batch run, records past the snapshot belong to the next run.
            if let Some(c) = &self.stage.completion {
                batch.retain_within(c);
            }
            if batch.is_empty() {
                // Idle: whatever is durable gets committed.
                l.settle(true).await?;
                continue;
            }
            // Every record polled is committed, redriven ones passed over included.
            let offsets = batch.next_offsets();
            let marks = match &redrive {
                Some(r) => r.take(&mut batch, &offsets)?,
                None => Marks::default(),
            };
            self.stage.counters.read(batch.len() as u64);
            let Some((emits, outcomes)) = self.process(&batch).await else {
                // Stopping mid-batch: nothing of it is produced or committed.
                return l.settle(true).await;
            };
            for (tp, o) in &offsets {
                raise(&mut l.read_to, tp, *o);
            }
            // At most `depth` batches in flight: the oldest is waited for first (its
            // commit follows the new produce's start).
            while l.out.in_flight() >= depth {
                l.out.settle_oldest().await?;
            }
            let stamp = self
                .stage
                .completion
                .as_ref()
                .filter(|_| self.stamp_batch)
                .map(|c| batch_header(c.batch_id()));
            let processed = Processed {
                batch,
                outcomes,
                emits,
                marks,
                stamp,
                offsets,
            };
            l.out.start(processed, in_flight.begin());
            l.out.commit_if_due(l.consumer, l.next, false).await?;
        }
    }

    /// In a `--batch` run (or a continuous run's batch), whether this stage is done
    /// with nothing in flight: it says so, and the task ends unless more batches come.
    async fn batch_done(&mut self, l: &mut Loop<'_>) -> Result<bool, RuntimeError> {
        if l.out.in_flight() == 0
            && let Some(c) = &self.stage.completion
            && c.is_done(&l.consumer.assignment(), l.next).await?
        {
            return Ok(self.stage.batch_ended());
        }
        Ok(false)
    }

    /// What the poll's rebalances change. Partitions lost were handed over once the
    /// batches in flight were durable (`hand_over_after`); their commit is their new
    /// owner's now. (A poll returns no record of a partition it revoked.) Partitions
    /// gained may replay records whose outputs were written (by this task before a
    /// crash, or by their previous owner): the lineage learns what is there.
    async fn rebalanced(&mut self, l: &mut Loop<'_>) -> Result<(), RuntimeError> {
        let rebalances = l.consumer.take_rebalances();
        for r in &rebalances {
            if let Rebalance::Revoked(lost) = r {
                l.out.forget(lost);
                // Should they come back, they are read again from their commit.
                l.read_to.retain(|(tp, _)| !lost.contains(tp));
            }
        }
        if rebalances
            .iter()
            .any(|r| matches!(r, Rebalance::Assigned(_)))
        {
            // The lineage is with the batches in flight until they settle.
            l.settle(false).await?;
            let mut lineage = l.out.take_lineage().await;
            lineage
                .recover(self.stage.broker.as_ref(), &self.stage.outputs)
                .await?;
            l.out.put_lineage(lineage);
        }
        Ok(())
    }

    /// Lets the pattern process a poll's records: their outputs and what became of
    /// each. A forwarding stage's stored records are not looked at here. `None` when
    /// the pattern abandoned the batch because the stage is stopping.
    async fn process(&mut self, batch: &Input) -> Option<(Vec<Emit>, Vec<Outcome>)> {
        let Input::Records(records) = batch else {
            return Some((Vec::new(), Vec::new()));
        };
        let mut emits: Vec<Emit> = Vec::with_capacity(records.len());
        let outcomes = self.operator.process(records, &mut emits).await;
        if outcomes.iter().any(|o| matches!(o, Outcome::Abandoned)) {
            return None;
        }
        Some((emits, outcomes))
    }
}

/// Polls the inputs: as stored for a forwarding stage, else decoded. (Of the stage,
/// not the task: the task's operator is not `Sync`.)
async fn poll(
    stage: &Stage,
    consumer: &mut dyn Consumer,
    forwarding: bool,
) -> Result<Polled<Input>, RuntimeError> {
    let (max, wait) = (stage.max_batch, stage.idle_wait());
    Ok(if forwarding {
        // Bounded by bytes more than records (see the embedded store's `POLL_BYTES`):
        // small records come in polls of more of them.
        let max = max.saturating_mul(FORWARD_POLL_FACTOR);
        (stage.poll(forward::poll(consumer, max, wait)).await?).map(Input::Encoded)
    } else {
        (stage.poll(consumer.poll(max, wait)).await?).map(Input::Records)
    })
}

/// A forwarding stage's polls take up to this many times `max_batch` records: they
/// are moved as stored, with no object per record, and the store bounds such polls by
/// bytes.
const FORWARD_POLL_FACTOR: usize = 4;

/// Whether every partition in `assignment` has been read up to where this --batch run
/// ends (`next`: committed; `read_to`: read since). With no partition, nothing is known
/// to be read.
fn read_all(
    completion: &Completion,
    assignment: &[TopicPartition],
    next: &BTreeMap<TopicPartition, i64>,
    read_to: &[(TopicPartition, i64)],
) -> bool {
    !assignment.is_empty()
        && assignment.iter().all(|tp| {
            let read = read_to.iter().find(|(t, _)| t == tp).map(|(_, o)| *o);
            // `None` (nothing known) is below any offset.
            read.max(next.get(tp).copied())
                .is_some_and(|o| o >= completion.limit(&tp.topic, tp.partition))
        })
}
