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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use millrace_broker::{
    Acks, Broker, ConsumerConfig, Header, InFlight, OffsetReset, ProduceRecord, TopicPartition,
    committed_offset,
};
use tokio::sync::{oneshot, watch};

use crate::batch::Completion;
use crate::batch::{batch_header, stamp_batch};
use crate::counters::StageCounters;
use crate::error::RuntimeError;
use crate::lineage::{self, Lineage};
use crate::operator::{Emit, Operator, Outcome};

mod forward;
mod input;
mod redriven;

use input::Input;
use redriven::{Marks, Redrive, RedriveCounts};

/// Everything a stage task needs.
pub struct StageTask {
    pub pipeline: String,
    pub stage: String,
    /// The topics read, the redrive topic among them when `redrive` names it.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// The pipeline's redrive topic, when this stage reads it (see `redrive`).
    pub redrive: Option<String>,
    pub dead_letter: String,
    pub operator: Box<dyn Operator>,
    pub counters: Arc<StageCounters>,
    pub broker: Arc<dyn Broker>,
    pub max_batch: usize,
    /// In `--batch` runs: when this stage is done.
    pub completion: Option<Completion>,
    /// Continuous runs with a batch policy: the batches to come, one after another.
    pub batches: Option<tokio::sync::mpsc::UnboundedReceiver<Completion>>,
    pub stop: watch::Receiver<bool>,
    /// Whether outputs are stamped with their batch (`millrace.batch`) when they do not
    /// carry one yet: in batched runs of pipelines with a join or reduce, which count a
    /// record of an earlier batch under that batch (see `coordinated::reduce`).
    pub stamp_batch: bool,
    /// Whether a forwarding stage (copier, merger) may move records as stored where the
    /// backend offers it (`RunOptions::forward_encoded`).
    pub forward_encoded: bool,
}

impl StageTask {
    pub fn group(&self) -> String {
        format!("{}.{}", self.pipeline, self.stage)
    }

    /// How long a poll waits for records that are not there yet.
    fn idle_wait(&self) -> Duration {
        idle_wait(self.completion.is_some())
    }

    pub async fn run(mut self) -> Result<(), RuntimeError> {
        let group = self.group();
        let mut config = ConsumerConfig::new(self.inputs.clone());
        config.group = Some(group.clone());
        config.offset_reset = OffsetReset::Earliest;
        // Joining the group, the outputs' partition counts and where each input
        // partition stands (the next offset to process) are asked for at once: on
        // Kafka each is a few round trips.
        let broker = self.broker.as_ref();
        let outputs = self
            .outputs
            .iter()
            .chain(std::iter::once(&self.dead_letter));
        let (mut consumer, partitions_of, mut next) = tokio::try_join!(
            async { Ok::<_, RuntimeError>(broker.consumer(config).await?) },
            output_partitions(broker, outputs),
            start_positions(broker, &group, &self.inputs),
        )?;
        // A rebalance that takes partitions away waits for the batch in flight.
        let in_flight = InFlight::default();
        consumer.hand_over_after(in_flight.clone());

        let result = self
            .run_loop(consumer.as_mut(), &partitions_of, &mut next, &in_flight)
            .await;
        self.operator.shutdown().await;
        let _ = consumer.close().await;
        result
    }

    async fn run_loop(
        &mut self,
        consumer: &mut dyn millrace_broker::Consumer,
        partitions_of: &HashMap<String, i32>,
        next: &mut BTreeMap<TopicPartition, i64>,
        in_flight: &InFlight,
    ) -> Result<(), RuntimeError> {
        let assembly = Arc::new(Assembly {
            stage: self.stage.clone(),
            outputs: self.outputs.clone(),
            out_parts: self
                .outputs
                .iter()
                .map(|t| partitions_of.get(t).copied().unwrap_or(1).max(1))
                .collect(),
            dead_letter: self.dead_letter.clone(),
            buffers: forward::Buffers::default(),
        });
        // Earlier batches' produces run while the next batch is read and processed; each
        // is committed once it is durable. How many may be in flight is the backend's
        // call: one where a send is the whole produce (the embedded store), a few where
        // acknowledgements take a round trip (Kafka).
        let depth = self.broker.sends_in_flight().max(1);
        let mut out = Outgoing::new(Lineage::new(&self.stage));
        let redrive = self.redrive.as_ref().map(|topic| Redrive {
            topic: topic.clone(),
            stage: self.stage.clone(),
        });
        // Each input partition's offset after the last record read (polled, not yet
        // committed).
        let mut read_to: Vec<(TopicPartition, i64)> = Vec::new();
        // A copier or merger moves records as stored where the backend offers it, and
        // where nothing is added to them but the lineage (no batch stamp).
        let forwarding = self.operator.forwards()
            && !self.stamp_batch
            && self.forward_encoded
            && forward::offered(self.broker.as_ref(), consumer);
        loop {
            if *self.stop.borrow() {
                return out
                    .settle(&self.stage, &self.counters, consumer, next, true)
                    .await;
            }
            if out.inflight.is_empty()
                && let Some(c) = &self.completion
                && c.is_done(&consumer.assignment(), next).await?
            {
                c.mark_done(&self.stage);
                if self.batches.is_none() {
                    return Ok(());
                }
                self.completion = None;
            }
            match between_batches(&mut self.completion, &mut self.batches, &self.stop).await {
                Between::Work => {}
                Between::Again => continue,
                Between::Over => return Ok(()),
            }
            // A --batch run that has read its batch of every partition it owns waits for
            // what is in flight, not for records (a poll would wait `idle_wait` first).
            if !out.inflight.is_empty()
                && let Some(c) = &self.completion
                && read_all(c, &consumer.assignment(), next, &read_to)
            {
                out.settle(&self.stage, &self.counters, consumer, next, true)
                    .await?;
                continue;
            }
            let mut stop = self.stop.clone();
            let (max, wait) = (self.max_batch, self.idle_wait());
            let polled = if forwarding {
                // Bounded by bytes more than records (see the embedded store's
                // `POLL_BYTES`): small records come in polls of more of them.
                let max = max.saturating_mul(FORWARD_POLL_FACTOR);
                poll_or_stop(forward::poll(consumer, max, wait), &self.stage, &mut stop)
                    .await?
                    .map(Input::Encoded)
            } else {
                poll_or_stop(consumer.poll(max, wait), &self.stage, &mut stop)
                    .await?
                    .map(Input::Records)
            };
            let mut batch = match polled {
                Polled::Records(p) => p,
                Polled::Retry => continue,
                Polled::Stopped => {
                    return out
                        .settle(&self.stage, &self.counters, consumer, next, true)
                        .await;
                }
            };
            // Partitions lost were handed over once the batches in flight were durable
            // (`hand_over_after`); their commit is their new owner's now. (A poll
            // returns no record of a partition it revoked.)
            let rebalances = consumer.take_rebalances();
            for r in &rebalances {
                if let millrace_broker::Rebalance::Revoked(lost) = r {
                    out.forget(lost);
                    // Should they come back, they are read again from their commit.
                    read_to.retain(|(tp, _)| !lost.contains(tp));
                }
            }
            // Partitions gained may replay records whose outputs were written (by this
            // task before a crash, or by their previous owner): learn what is there.
            if rebalances
                .iter()
                .any(|r| matches!(r, millrace_broker::Rebalance::Assigned(_)))
            {
                // The lineage is with the batches in flight until they settle.
                out.settle(&self.stage, &self.counters, consumer, next, false)
                    .await?;
                let mut lineage = out.take_lineage(&self.stage).await;
                lineage.recover(self.broker.as_ref(), &self.outputs).await?;
                out.put_lineage(lineage);
            }
            // In a --batch run, records past the snapshot belong to the next run.
            if let Some(c) = &self.completion {
                batch.retain_within(c);
            }
            if batch.is_empty() {
                // Idle: whatever is durable gets committed.
                out.settle(&self.stage, &self.counters, consumer, next, true)
                    .await?;
                continue;
            }
            // Every record polled is committed, redriven ones passed over included.
            let offsets = batch.next_offsets();
            let marks = match &redrive {
                Some(r) => r.take(&mut batch, &offsets)?,
                None => Marks::default(),
            };
            self.counters.read(batch.len() as u64);
            let mut emits: Vec<Emit> = Vec::new();
            let mut outcomes = Vec::new();
            if let Input::Records(records) = &batch {
                emits.reserve(records.len());
                outcomes = self.operator.process(records, &mut emits).await;
                if outcomes.iter().any(|o| matches!(o, Outcome::Abandoned)) {
                    // Stopping mid-batch: nothing of it is produced or committed.
                    return out
                        .settle(&self.stage, &self.counters, consumer, next, true)
                        .await;
                }
            }
            for (tp, o) in &offsets {
                input::raise(&mut read_to, tp, *o);
            }
            // At most `depth` batches in flight: the oldest is waited for first (its
            // commit follows the new produce's start).
            while out.inflight.len() >= depth {
                out.settle_oldest(&self.stage, &self.counters).await?;
            }
            let broker = self.broker.clone();
            let assembly = Arc::clone(&assembly);
            // Outputs keep their order: a batch assembles and sends once the batch before
            // it has sent, which hands it the lineage.
            let (turn, lineage_next) = out.next_turn();
            // Assembled and produced on a thread of its own, not a task: a task spawned
            // here waits in this worker's LIFO slot, where no other worker may take it,
            // until this loop yields — the batches would take turns on one core instead
            // of overlapping. That thread takes the outputs' partitions and lineage, the
            // produce, and freeing the input batch; this loop reads and processes the
            // next batch meanwhile (on two cores, the two halves are about even).
            let runtime = tokio::runtime::Handle::current();
            let read = batch.len() as u64;
            let stamp = self
                .completion
                .as_ref()
                .filter(|_| self.stamp_batch)
                .map(|c| batch_header(c.batch_id()));
            // Counted until the produce is over, whatever its outcome.
            let in_flight = in_flight.begin();
            out.inflight.push_back(Producing {
                produce: tokio::task::spawn_blocking(move || {
                    let _in_flight = in_flight;
                    // A batch before this one that failed dropped the lineage: nothing
                    // more is written past the failed batch's missing outputs. The stage
                    // stops with that batch's error when it settles, and a replay
                    // writes what is missing.
                    let Ok(mut lineage) = turn.blocking_recv() else {
                        return Err(RuntimeError::Stage {
                            stage: assembly.stage.clone(),
                            message: "not produced: an earlier batch's produce failed".into(),
                        });
                    };
                    let (mut sends, forwarded, dead, counts) = match batch {
                        Input::Records(records) => {
                            let (out_batch, dead, counts) = assembly.assemble(
                                &records,
                                &outcomes,
                                emits,
                                &mut lineage,
                                stamp,
                                &marks,
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
                            let f = forward::assemble(&assembly, &polls, &mut lineage)?;
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
                    // In order per output partition; the backend that takes these
                    // writes them as they come and acknowledges them together (the
                    // embedded store: one journal sync for all the partitions).
                    if !forwarded.is_empty() {
                        let mut batches: Vec<(&str, i32, _)> = forwarded
                            .into_iter()
                            .map(|(output, q, b)| (assembly.outputs[output].as_str(), q, b))
                            .collect();
                        runtime.block_on(forward::produce(broker.as_ref(), &mut batches))?;
                        for (_, _, b) in batches {
                            assembly.buffers.give_back(b);
                        }
                    }
                    let acks = runtime.block_on(send_all(broker.as_ref(), &sends))?;
                    let _ = lineage_next.send(lineage);
                    runtime.block_on(acknowledged(broker.as_ref(), &sends, acks))?;
                    Ok(counts)
                }),
                offsets,
                read,
            });
            out.pending
                .commit_if_due(&self.counters, consumer, next, false)
                .await?;
        }
    }
}

/// What a stage's produce thread needs to turn a processed batch into output records.
struct Assembly {
    stage: String,
    outputs: Vec<String>,
    /// Partition counts of `outputs`.
    out_parts: Vec<i32>,
    dead_letter: String,
    /// A forwarding stage's output buffers, reused.
    buffers: forward::Buffers,
}

impl Assembly {
    /// The outputs of a processed batch — each with its partition fixed, those already
    /// written (lineage) left out — and its dead letters, with the counts
    /// `[out, filtered, dead-lettered, emitted]` and those of its redriven records.
    fn assemble(
        &self,
        batch: &[millrace_broker::ConsumedRecord],
        outcomes: &[Outcome],
        mut emits: Vec<Emit>,
        lineage: &mut Lineage,
        stamp: Option<Header>,
        marks: &Marks,
    ) -> (OutputBatch, Vec<ProduceRecord>, ([u64; 4], RedriveCounts)) {
        let out_parts = &self.out_parts;
        let mut out_batch = OutputBatch::new(self.outputs.len());
        let mut dead = Vec::new();
        let (mut outs, mut filtered, mut failed) = (0u64, 0u64, 0u64);
        let mut emitted = 0u64;
        // The next emit of the batch's outputs (in input order).
        let mut at = 0usize;
        // The origin of the records in hand, and its lineage prefix's number.
        let mut origin: (Option<TopicPartition>, String, usize) = (None, String::new(), 0);
        let mut redriven = RedriveCounts::default();
        for (i, (rec, outcome)) in batch.iter().zip(outcomes.iter()).enumerate() {
            let mark = marks.get(i);
            if mark.is_some() {
                redriven.redriven += 1;
            }
            match outcome {
                Outcome::Emitted(0) => filtered += 1,
                Outcome::Emitted(n) => {
                    let end = (at + *n).min(emits.len());
                    let mine = &mut emits[at..end];
                    at += mine.len();
                    if let Some(size) = mine
                        .iter()
                        .map(|e| record_bytes(&e.record))
                        .find(|s| *s > MAX_RECORD_BYTES)
                    {
                        // An oversize output is this record's error, not the stage's.
                        failed += 1;
                        let error = oversize(size);
                        dead.push(redriven::dead_letter(
                            &self.stage,
                            rec,
                            &error,
                            1,
                            mark,
                            &mut redriven,
                        ));
                        continue;
                    }
                    outs += 1;
                    // The lineage names a redriven record's outputs after its place in
                    // the redrive topic (its original place was passed long ago).
                    let (from_topic, from_partition, from_offset) = match mark {
                        Some(m) => (&m.topic, m.partition, m.offset),
                        None => (&rec.topic, rec.partition, rec.offset),
                    };
                    if !origin
                        .0
                        .as_ref()
                        .is_some_and(|tp| tp.partition == from_partition && tp.topic == *from_topic)
                    {
                        let o = lineage::origin_of(from_topic, from_partition);
                        let prefix = out_batch.prefix(lineage::prefix(&self.stage, &o));
                        let tp = TopicPartition::new(from_topic.clone(), from_partition);
                        origin = (Some(tp), o, prefix);
                    }
                    for (index, e) in mine.iter_mut().enumerate() {
                        emitted += 1;
                        let mut r = std::mem::take(&mut e.record);
                        let topic = &self.outputs[e.output];
                        let parts = out_parts[e.output];
                        // The output partition is fixed here, as the broker would
                        // choose it (murmur2 of the key, as Java's client does), so a
                        // replay finds its output where it was written. Unkeyed
                        // records stay with the input partition's records.
                        let q = lineage::output_partition(
                            r.partition,
                            r.key.as_deref(),
                            parts,
                            Some(rec.partition),
                        )
                        .unwrap_or(0);
                        r.partition = Some(q);
                        let index = u32::try_from(index).unwrap_or(u32::MAX);
                        if lineage.already_written(topic, q, &origin.1, from_offset, index) {
                            continue;
                        }
                        if let Some(h) = &stamp {
                            stamp_batch(&mut r.headers, h);
                        }
                        out_batch.push(e.output, r, (origin.2, from_offset, index));
                    }
                }
                Outcome::Abandoned => {}
                Outcome::Failed(err) => {
                    failed += 1;
                    tracing::debug!(stage = %self.stage, error = %err.error, "dead-lettering record");
                    dead.push(redriven::dead_letter(
                        &self.stage,
                        rec,
                        &err.error,
                        err.attempts,
                        mark,
                        &mut redriven,
                    ));
                }
            }
        }
        (
            out_batch,
            dead,
            ([outs, filtered, failed, emitted], redriven),
        )
    }
}

/// What a stage task has sent on: the batches whose outputs are being produced, and
/// the offsets whose outputs are durable but not committed yet.
struct Outgoing {
    /// Oldest first.
    inflight: VecDeque<Producing>,
    /// What this stage already wrote. Each batch's produce thread receives it here,
    /// assembles and sends, then passes it to the next batch's: the handing on is what
    /// orders the batches' sends. This is where the latest batch will leave it.
    lineage: oneshot::Receiver<Lineage>,
    /// Committed together every COMMIT_EVERY (and whenever the task idles or stops):
    /// fewer commits, each one fdatasync.
    pending: PendingCommit,
}

impl Outgoing {
    fn new(lineage: Lineage) -> Self {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(lineage);
        Outgoing {
            inflight: VecDeque::new(),
            lineage: rx,
            pending: PendingCommit::default(),
        }
    }

    /// For a new batch: where it receives the lineage, and where it passes it on.
    fn next_turn(&mut self) -> (oneshot::Receiver<Lineage>, oneshot::Sender<Lineage>) {
        let (tx, rx) = oneshot::channel();
        (std::mem::replace(&mut self.lineage, rx), tx)
    }

    /// The lineage, once every batch in flight has sent (after `settle`).
    async fn take_lineage(&mut self, stage: &str) -> Lineage {
        let (_, rx) = oneshot::channel();
        std::mem::replace(&mut self.lineage, rx)
            .await
            .unwrap_or_else(|_| Lineage::new(stage))
    }

    fn put_lineage(&mut self, lineage: Lineage) {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(lineage);
        self.lineage = rx;
    }

    /// Drops what would be committed for partitions this task no longer owns: their
    /// new owner commits them (and, reading the lineage, skips what was written).
    fn forget(&mut self, lost: &[TopicPartition]) {
        let kept = |(tp, _): &(TopicPartition, i64)| !lost.contains(tp);
        for f in &mut self.inflight {
            f.offsets.retain(kept);
        }
        self.pending.offsets.retain(kept);
        self.pending.deferred.retain(kept);
    }

    /// Waits for the oldest batch in flight to be durable; its input offsets then join
    /// the pending commit.
    async fn settle_oldest(
        &mut self,
        stage: &str,
        counters: &StageCounters,
    ) -> Result<(), RuntimeError> {
        let Some(f) = self.inflight.pop_front() else {
            return Ok(());
        };
        let counts = f.produce.await.map_err(|e| RuntimeError::Stage {
            stage: stage.to_string(),
            message: format!("produce task failed: {e}"),
        })??;
        let ([out, filtered, failed, emitted], redriven) = counts;
        counters.finish(out, filtered, failed, emitted);
        counters.redriven(redriven.redriven, redriven.failed);
        self.pending.add(f.offsets, f.read);
        Ok(())
    }

    /// Waits for every batch in flight to be durable; their input offsets then join the
    /// pending commit (committed now when `force`, else when due).
    async fn settle(
        &mut self,
        stage: &str,
        counters: &StageCounters,
        consumer: &mut dyn millrace_broker::Consumer,
        next: &mut BTreeMap<TopicPartition, i64>,
        force: bool,
    ) -> Result<(), RuntimeError> {
        while !self.inflight.is_empty() {
            self.settle_oldest(stage, counters).await?;
        }
        if force {
            self.pending
                .commit_if_due(counters, consumer, next, true)
                .await?;
        }
        Ok(())
    }
}

/// A batch's outputs per output topic, before their lineage headers. The headers are
/// added on the produce thread ([`OutputBatch::stamped`]): formatting them there keeps
/// that work off the stage loop, the busier side.
struct OutputBatch {
    records: Vec<Vec<ProduceRecord>>,
    /// Per record: its origin's prefix (an index into `prefixes`), input offset and
    /// output index.
    marks: Vec<Vec<(usize, i64, u32)>>,
    prefixes: Vec<Vec<u8>>,
}

impl OutputBatch {
    fn new(outputs: usize) -> Self {
        OutputBatch {
            records: vec![Vec::new(); outputs],
            marks: vec![Vec::new(); outputs],
            prefixes: Vec::new(),
        }
    }

    /// Keeps a lineage prefix; returns its number.
    fn prefix(&mut self, prefix: Vec<u8>) -> usize {
        self.prefixes.push(prefix);
        self.prefixes.len() - 1
    }

    fn push(&mut self, output: usize, record: ProduceRecord, mark: (usize, i64, u32)) {
        self.records[output].push(record);
        self.marks[output].push(mark);
    }

    /// The records with their lineage headers, per output topic that has any.
    fn stamped(self, outputs: &[String]) -> Vec<(String, Vec<ProduceRecord>)> {
        let mut headers = lineage::Headers::default();
        let mut sends = Vec::new();
        for ((mut recs, marks), topic) in self.records.into_iter().zip(self.marks).zip(outputs) {
            if recs.is_empty() {
                continue;
            }
            for (r, (prefix, offset, index)) in recs.iter_mut().zip(marks) {
                r.headers
                    .push(headers.with_prefix(&self.prefixes[prefix], offset, index));
            }
            sends.push((topic.clone(), recs));
        }
        sends
    }
}

/// A forwarding stage's polls take up to this many times `max_batch` records: they
/// are moved as stored, with no object per record, and the store bounds such polls by
/// bytes.
const FORWARD_POLL_FACTOR: usize = 4;

/// How often a busy stage commits.
const COMMIT_EVERY: Duration = Duration::from_millis(100);

/// Offsets whose outputs are durable but are not committed yet.
#[derive(Default)]
struct PendingCommit {
    offsets: Vec<(TopicPartition, i64)>,
    /// Offsets a rebalance refused, retried with the next commit.
    deferred: Vec<(TopicPartition, i64)>,
    records: u64,
    last: Option<std::time::Instant>,
}

impl PendingCommit {
    fn add(&mut self, offsets: Vec<(TopicPartition, i64)>, records: u64) {
        for (tp, o) in offsets {
            input::raise(&mut self.offsets, &tp, o);
        }
        self.records += records;
    }

    async fn commit_if_due(
        &mut self,
        counters: &StageCounters,
        consumer: &mut dyn millrace_broker::Consumer,
        next: &mut BTreeMap<TopicPartition, i64>,
        force: bool,
    ) -> Result<(), RuntimeError> {
        if self.offsets.is_empty() {
            return Ok(());
        }
        let due = force || self.last.is_none_or(|l| l.elapsed() >= COMMIT_EVERY);
        if !due {
            return Ok(());
        }
        let offsets = std::mem::take(&mut self.offsets);
        commit(consumer, &offsets, &mut self.deferred).await?;
        for (tp, o) in offsets {
            next.insert(tp, o);
        }
        counters.committed(std::mem::take(&mut self.records));
        self.last = Some(std::time::Instant::now());
        Ok(())
    }
}

/// Largest output record (key, value and headers) a stage writes; bigger outputs
/// dead-letter their input. Kafka's brokers refuse ~1 MiB by default
/// (`message.max.bytes`), so on Kafka the topic's own limit applies first.
pub const MAX_RECORD_BYTES: usize = 8 << 20;

/// The error an input is dead-lettered with when an output of `size` bytes is over
/// [`MAX_RECORD_BYTES`] (on the record path and the forwarding path alike).
fn oversize(size: usize) -> String {
    format!("an output of {size} bytes is over the {MAX_RECORD_BYTES}-byte record limit")
}

fn record_bytes(r: &ProduceRecord) -> usize {
    r.value.len()
        + r.key.as_ref().map_or(0, |k| k.len())
        + r.headers
            .iter()
            .map(|h| h.key.len() + h.value.len())
            .sum::<usize>()
}

/// A batch whose outputs are being assembled and produced; once they are durable, its
/// counts `[out, filtered, dead-lettered, emitted]` and those of its redriven records.
struct Producing {
    produce: tokio::task::JoinHandle<Result<([u64; 4], RedriveCounts), RuntimeError>>,
    offsets: Vec<(TopicPartition, i64)>,
    /// Records read.
    read: u64,
}

/// Partition counts of the topics a stage writes.
pub(crate) async fn output_partitions<'a>(
    broker: &dyn Broker,
    topics: impl Iterator<Item = &'a String>,
) -> Result<HashMap<String, i32>, RuntimeError> {
    let described = futures::future::join_all(topics.map(|t| async move {
        let d = broker.partitions(t).await?;
        Ok::<_, RuntimeError>((t.clone(), i32::try_from(d.len()).unwrap_or(1)))
    }))
    .await;
    described.into_iter().collect()
}

/// Where each input partition stands for a group: its committed offset, or the start
/// of the partition when nothing is committed.
pub(crate) async fn start_positions(
    broker: &dyn Broker,
    group: &str,
    inputs: &[String],
) -> Result<BTreeMap<TopicPartition, i64>, RuntimeError> {
    let mut next = BTreeMap::new();
    let looked_up = futures::future::join_all(inputs.iter().map(|t| async move {
        let (committed, d) = tokio::try_join!(broker.committed(group, t), broker.partitions(t))?;
        Ok::<_, RuntimeError>((t, committed, d))
    }))
    .await;
    for found in looked_up {
        let (t, committed, d) = found?;
        for p in &d {
            let c = committed_offset(&committed, p.partition).unwrap_or(p.start_offset);
            next.insert(
                TopicPartition::new(t.clone(), p.partition),
                c.max(p.start_offset),
            );
        }
    }
    Ok(next)
}

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

/// How long a stage keeps retrying a broker that is unavailable before it stops.
pub(crate) const RETRY_FOR: Duration = Duration::from_secs(120);

/// Produces to several topics concurrently and waits until all are acknowledged. A
/// broker that is unavailable for a while is retried with backoff (a retry can only
/// duplicate records, which at-least-once allows); past `RETRY_FOR` the error stands.
pub(crate) async fn produce_all(
    broker: &dyn Broker,
    sends: Vec<(String, Vec<ProduceRecord>)>,
) -> Result<(), RuntimeError> {
    let acks = send_all(broker, &sends).await?;
    acknowledged(broker, &sends, acks).await
}

/// The first half of [`produce_all`]: hands every topic's records to the broker (in
/// order after what was sent before) and returns their acknowledgements to come.
/// Transient errors are retried with backoff.
pub(crate) async fn send_all(
    broker: &dyn Broker,
    sends: &[(String, Vec<ProduceRecord>)],
) -> Result<Vec<Acks>, RuntimeError> {
    let results = futures::future::join_all(
        sends
            .iter()
            .map(|(t, recs)| async move { retrying(|| broker.send(t, recs)).await }),
    )
    .await;
    let mut acks = Vec::with_capacity(results.len());
    for r in results {
        acks.push(r?);
    }
    Ok(acks)
}

/// The second half: waits for the acknowledgements of [`send_all`]. A topic whose
/// records were not acknowledged for a transient reason is produced again whole (at
/// least once; the only case where a later batch's records may land first).
pub(crate) async fn acknowledged(
    broker: &dyn Broker,
    sends: &[(String, Vec<ProduceRecord>)],
    acks: Vec<Acks>,
) -> Result<(), RuntimeError> {
    for ((t, recs), a) in sends.iter().zip(acks) {
        match a.await {
            Ok(_) => {}
            Err(e) if e.is_transient() => {
                tracing::warn!("records to {t} not acknowledged, producing them again: {e}");
                retrying(|| broker.produce(t, recs)).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Runs a broker call, retrying transient failures with exponential backoff.
pub(crate) async fn retrying<T, F, Fut>(mut call: F) -> Result<T, millrace_broker::BrokerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, millrace_broker::BrokerError>>,
{
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        match call().await {
            Err(e) if e.is_transient() && start.elapsed() < RETRY_FOR => {
                tracing::warn!("broker unavailable, retrying in {pause:?}: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            r => return r,
        }
    }
}

/// Commits offsets. A commit refused because the group rebalanced is not an error: the
/// partitions' uncommitted records are delivered again to their new owner (at least
/// once), and this task learns of the new assignment on its next poll.
///
/// Offsets refused that way are kept in `deferred` and retried with the task's next
/// commit, for the partitions it still owns then (a cooperative rebalance keeps most).
pub(crate) async fn commit(
    consumer: &mut dyn millrace_broker::Consumer,
    offsets: &[(TopicPartition, i64)],
    deferred: &mut Vec<(TopicPartition, i64)>,
) -> Result<(), RuntimeError> {
    let owned = consumer.assignment();
    let mut offsets: BTreeMap<TopicPartition, i64> = offsets.iter().cloned().collect();
    for (tp, o) in std::mem::take(deferred) {
        if owned.contains(&tp) {
            let e = offsets.entry(tp).or_insert(o);
            *e = (*e).max(o);
        }
    }
    let offsets: Vec<(TopicPartition, i64)> = offsets.into_iter().collect();
    let offsets = offsets.as_slice();
    let start = std::time::Instant::now();
    let mut result = consumer.commit(offsets).await;
    while matches!(&result, Err(e) if e.is_transient()) && start.elapsed() < RETRY_FOR {
        tokio::time::sleep(Duration::from_millis(500)).await;
        result = consumer.commit(offsets).await;
    }
    match result {
        Ok(()) => Ok(()),
        Err(millrace_broker::BrokerError::Rebalanced(why)) => {
            tracing::info!("commit deferred, the group rebalanced ({why})");
            deferred.extend_from_slice(offsets);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// How long a stage's poll waits for records. Within a batch (`--batch`, or a
/// continuous run's micro-batch) nothing to read usually means the batch is done here,
/// which the stage learns only between polls: a long wait would add itself to every
/// batch's end (a fifth of a 2 M-record copier run at 200 ms).
pub(crate) fn idle_wait(in_batch: bool) -> Duration {
    if in_batch {
        Duration::from_millis(20)
    } else {
        Duration::from_millis(200)
    }
}

/// What a stage task's poll came back with.
pub(crate) enum Polled<T> {
    Records(T),
    /// The broker is unavailable for now; the loop goes round again after a pause.
    Retry,
    Stopped,
}

impl<T> Polled<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Polled<U> {
        match self {
            Polled::Records(r) => Polled::Records(f(r)),
            Polled::Retry => Polled::Retry,
            Polled::Stopped => Polled::Stopped,
        }
    }
}

/// Waits for a poll (`consumer.poll(…)` or `poll_encoded(…)`), or learns that the stage
/// is stopping. Transient broker errors pause and ask for another round instead of
/// failing the stage.
pub(crate) async fn poll_or_stop<T>(
    poll: impl std::future::Future<Output = Result<T, millrace_broker::BrokerError>>,
    stage: &str,
    stop: &mut watch::Receiver<bool>,
) -> Result<Polled<T>, RuntimeError> {
    tokio::select! {
        r = poll => match r {
            Ok(p) => Ok(Polled::Records(p)),
            Err(e) if e.is_transient() => {
                tracing::warn!(stage = %stage, "poll: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(Polled::Retry)
            }
            Err(e) => Err(e.into()),
        },
        _ = stop.changed() => Ok(Polled::Stopped),
    }
}

/// Where a stage task stands with respect to batches.
pub(crate) enum Between {
    /// A batch is in hand (or the run has no batches): work.
    Work,
    /// A new batch has arrived, or the run is stopping: go round the loop again.
    Again,
    /// A continuous run's batches have ended: the task is done.
    Over,
}

/// In a continuous run with batches, a task with no batch in hand waits for the next
/// one to be cut.
pub(crate) async fn between_batches(
    completion: &mut Option<Completion>,
    batches: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Completion>>,
    stop: &watch::Receiver<bool>,
) -> Between {
    let (None, Some(rx)) = (&completion, batches) else {
        return Between::Work;
    };
    let mut stop = stop.clone();
    tokio::select! {
        c = rx.recv() => match c {
            Some(c) => {
                *completion = Some(c);
                Between::Again
            }
            None => Between::Over,
        },
        _ = stop.changed() => Between::Again,
    }
}
