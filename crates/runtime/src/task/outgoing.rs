//! What a stage task has sent on: the batches whose outputs are being assembled and
//! produced, each on a thread of its own, and the offsets whose outputs are durable but
//! not committed yet.
//!
//! Outputs keep their order: a batch assembles and sends once the batch before it has
//! sent, which hands it the lineage (what this stage already wrote).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use millrace_broker::{Broker, Consumer, Header, InFlightGuard, TopicPartition};
use tokio::sync::oneshot;

use super::assemble::Assembly;
use super::forward;
use super::input::Input;
use super::redriven::{Marks, RedriveCounts};
use crate::counters::StageCounters;
use crate::engine::commit::PendingCommit;
use crate::engine::produce::{acknowledged, send_all};
use crate::error::RuntimeError;
use crate::lineage::Lineage;
use crate::operator::{Emit, Outcome};

/// A processed batch, ready to be assembled into outputs and produced.
pub(super) struct Processed {
    pub batch: Input,
    /// Per record (on the record path), what the pattern did with it.
    pub outcomes: Vec<Outcome>,
    pub emits: Vec<Emit>,
    pub marks: Marks,
    /// The batch header its outputs carry, in batched runs that stamp them.
    pub stamp: Option<Header>,
    /// The offset after the last record of each input partition.
    pub offsets: Vec<(TopicPartition, i64)>,
}

/// A batch whose outputs are being assembled and produced; once they are durable, its
/// counts `[out, filtered, dead-lettered, emitted]` and those of its redriven records.
struct Producing {
    produce: tokio::task::JoinHandle<Result<([u64; 4], RedriveCounts), RuntimeError>>,
    offsets: Vec<(TopicPartition, i64)>,
    /// Records read.
    read: u64,
}

pub(super) struct Outgoing {
    stage: String,
    counters: Arc<StageCounters>,
    broker: Arc<dyn Broker>,
    assembly: Arc<Assembly>,
    /// Oldest first.
    inflight: VecDeque<Producing>,
    /// What this stage already wrote. Each batch's produce thread receives it here,
    /// assembles and sends, then passes it to the next batch's: the handing on is what
    /// orders the batches' sends. This is where the latest batch will leave it.
    lineage: oneshot::Receiver<Lineage>,
    pub pending: PendingCommit,
}

impl Outgoing {
    pub(super) fn new(
        counters: Arc<StageCounters>,
        broker: Arc<dyn Broker>,
        assembly: Assembly,
    ) -> Self {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Lineage::new(&assembly.stage));
        Outgoing {
            stage: assembly.stage.clone(),
            counters,
            broker,
            assembly: Arc::new(assembly),
            inflight: VecDeque::new(),
            lineage: rx,
            pending: PendingCommit::default(),
        }
    }

    /// How many batches are being produced.
    pub(super) fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Starts assembling and producing a batch, after those in flight.
    ///
    /// On a thread of its own, not a task: a task spawned here waits in this worker's
    /// LIFO slot, where no other worker may take it, until the stage loop yields — the
    /// batches would take turns on one core instead of overlapping. That thread takes
    /// the outputs' partitions and lineage, the produce, and freeing the input batch;
    /// the loop reads and processes the next batch meanwhile (on two cores, the two
    /// halves are about even).
    pub(super) fn start(&mut self, mut p: Processed, in_flight: InFlightGuard) {
        let (pass_on, next_turn) = oneshot::channel();
        let turn = std::mem::replace(&mut self.lineage, next_turn);
        let read = p.batch.len() as u64;
        let offsets = std::mem::take(&mut p.offsets);
        let broker = self.broker.clone();
        let assembly = Arc::clone(&self.assembly);
        let runtime = tokio::runtime::Handle::current();
        let produce = tokio::task::spawn_blocking(move || {
            // Counted until the produce is over, whatever its outcome.
            let _in_flight = in_flight;
            // A batch before this one that failed dropped the lineage: nothing more is
            // written past the failed batch's missing outputs. The stage stops with
            // that batch's error when it settles, and a replay writes what is missing.
            let Ok(lineage) = turn.blocking_recv() else {
                return Err(RuntimeError::EarlierProduceFailed {
                    stage: assembly.stage.clone(),
                });
            };
            produce(&runtime, broker.as_ref(), &assembly, p, lineage, pass_on)
        });
        self.inflight.push_back(Producing {
            produce,
            offsets,
            read,
        });
    }

    /// The lineage, once every batch in flight has sent (after `settle`).
    pub(super) async fn take_lineage(&mut self) -> Lineage {
        let (_, rx) = oneshot::channel();
        std::mem::replace(&mut self.lineage, rx)
            .await
            .unwrap_or_else(|_| Lineage::new(&self.stage))
    }

    pub(super) fn put_lineage(&mut self, lineage: Lineage) {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(lineage);
        self.lineage = rx;
    }

    /// Drops what would be committed for partitions this task no longer owns: their
    /// new owner commits them (and, reading the lineage, skips what was written).
    pub(super) fn forget(&mut self, lost: &[TopicPartition]) {
        for f in &mut self.inflight {
            f.offsets.retain(|(tp, _)| !lost.contains(tp));
        }
        self.pending.forget(lost);
    }

    /// Waits for the oldest batch in flight to be durable; its input offsets then join
    /// the pending commit.
    pub(super) async fn settle_oldest(&mut self) -> Result<(), RuntimeError> {
        let Some(f) = self.inflight.pop_front() else {
            return Ok(());
        };
        let counts = f.produce.await.map_err(|source| RuntimeError::Panicked {
            stage: self.stage.clone(),
            what: "produce thread",
            source,
        })??;
        let ([out, filtered, failed, emitted], redriven) = counts;
        self.counters.finish(out, filtered, failed, emitted);
        self.counters.redriven(redriven.redriven, redriven.failed);
        self.pending.add(f.offsets, f.read);
        Ok(())
    }

    /// Waits for every batch in flight to be durable; their input offsets then join the
    /// pending commit (committed now when `force`, else when due).
    pub(super) async fn settle(
        &mut self,
        consumer: &mut dyn Consumer,
        next: &mut BTreeMap<TopicPartition, i64>,
        force: bool,
    ) -> Result<(), RuntimeError> {
        while !self.inflight.is_empty() {
            self.settle_oldest().await?;
        }
        if force {
            self.commit_if_due(consumer, next, true).await?;
        }
        Ok(())
    }

    /// Commits what is durable, when it is due (or now, when `force`).
    pub(super) async fn commit_if_due(
        &mut self,
        consumer: &mut dyn Consumer,
        next: &mut BTreeMap<TopicPartition, i64>,
        force: bool,
    ) -> Result<(), RuntimeError> {
        self.pending
            .commit_if_due(&self.counters, consumer, next, force)
            .await
    }
}

/// The produce thread's work for one batch: assembles its outputs, sends them, passes
/// the lineage on to the next batch, and waits for the acknowledgements.
fn produce(
    runtime: &tokio::runtime::Handle,
    broker: &dyn Broker,
    assembly: &Assembly,
    p: Processed,
    mut lineage: Lineage,
    pass_on: oneshot::Sender<Lineage>,
) -> Result<([u64; 4], RedriveCounts), RuntimeError> {
    let (mut sends, forwarded, dead, counts) = match p.batch {
        Input::Records(records) => {
            let (out_batch, dead, counts) = assembly.assemble(
                &records,
                &p.outcomes,
                p.emits,
                &mut lineage,
                p.stamp,
                &p.marks,
            );
            drop(records);
            (
                out_batch.stamped(&assembly.outputs),
                Vec::new(),
                dead,
                counts,
            )
        }
        Input::Encoded(polls) => {
            let f = forward::assemble(assembly, &polls, &mut lineage)?;
            drop(polls);
            (
                Vec::new(),
                f.batches,
                f.dead,
                (f.counts, RedriveCounts::default()),
            )
        }
    };
    if !dead.is_empty() {
        sends.push((assembly.dead_letter.clone(), dead));
    }
    // In order per output partition; the backend that takes these writes them as they
    // come and acknowledges them together (the embedded store: one journal sync for
    // all the partitions).
    if !forwarded.is_empty() {
        let mut batches: Vec<(&str, i32, _)> = forwarded
            .into_iter()
            .map(|(output, q, b)| (assembly.outputs[output].as_str(), q, b))
            .collect();
        runtime.block_on(super::forward::produce(broker, &mut batches))?;
        for (_, _, b) in batches {
            assembly.buffers.give_back(b);
        }
    }
    let acks = runtime.block_on(send_all(broker, &sends))?;
    let _ = pass_on.send(lineage);
    runtime.block_on(acknowledged(broker, &sends, acks))?;
    Ok(counts)
}
