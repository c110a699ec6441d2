//! The task of a coordinated stage: like the event-driven stage task (read, process,
//! produce, wait, commit), except that records are held until their batch ends and a
//! partition's commit never passes the first record still held there.
//!
//! A `--batch` run ends the batch when every input topic is complete (all of its
//! writers are done, so its end offsets hold the whole batch) and this task has read
//! its partitions up to there; then the pattern releases the batch (`finish`), its
//! outputs are made durable, and only then is everything committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use millrace_broker::{
    Broker, ConsumedRecord, ConsumerConfig, OffsetReset, ProduceRecord, Rebalance, TopicPartition,
};
use tokio::sync::watch;

use super::{Coordinated, FinishContext, Progress, Tally};
use crate::batch::Completion;
use crate::batch::{BATCH_HEADER, batch_header, stamp_batch};
use crate::counters::StageCounters;
use crate::dead_letter;
use crate::error::RuntimeError;
use crate::lineage::{self, Lineage, LineageTag};
use crate::operator::{Emit, RecordError};
use crate::task::{
    Between, Polled, between_batches, commit, output_partitions, poll_or_stop, produce_all,
    start_positions,
};

pub struct CoordinatedTask {
    pub pipeline: String,
    pub stage: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub dead_letter: String,
    pub op: Box<dyn Coordinated>,
    pub counters: Arc<StageCounters>,
    pub broker: Arc<dyn Broker>,
    pub max_batch: usize,
    pub completion: Option<Completion>,
    /// Continuous runs with a batch policy: the batches to come, one after another.
    pub batches: Option<tokio::sync::mpsc::UnboundedReceiver<Completion>>,
    pub stop: watch::Receiver<bool>,
}

impl CoordinatedTask {
    pub async fn run(mut self) -> Result<(), RuntimeError> {
        let group = format!("{}.{}", self.pipeline, self.stage);
        let mut config = ConsumerConfig::new(self.inputs.clone());
        config.group = Some(group.clone());
        config.offset_reset = OffsetReset::Earliest;
        // Joins by key and reduces need partition p of every input in one consumer.
        config.co_partitioned = true;
        let mut consumer = self.broker.consumer(config).await?;
        let partitions_of = output_partitions(
            self.broker.as_ref(),
            self.outputs
                .iter()
                .chain(std::iter::once(&self.dead_letter)),
        )
        .await?;
        let outs: Vec<(String, i32)> = self
            .outputs
            .iter()
            .map(|t| (t.clone(), partitions_of.get(t).copied().unwrap_or(1)))
            .collect();
        self.op.prepare(&outs);
        let mut next = start_positions(self.broker.as_ref(), &group, &self.inputs).await?;
        let result = self
            .run_loop(consumer.as_mut(), &partitions_of, &mut next)
            .await;
        let _ = consumer.close().await;
        result
    }

    fn batch_id(&self) -> u64 {
        self.completion.as_ref().map(|c| c.batch_id()).unwrap_or(0)
    }

    /// How many of this task's partitions have their part of the batch.
    async fn progress(
        &self,
        assignment: &[TopicPartition],
        next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<Progress, RuntimeError> {
        let mut p = Progress {
            batch: self.batch_id(),
            done: 0,
            of: u32::try_from(next.len()).unwrap_or(u32::MAX),
        };
        if let Some(c) = &self.completion {
            p.done = c.partitions_read(assignment, next).await?;
        }
        Ok(p)
    }

    async fn run_loop(
        &mut self,
        consumer: &mut dyn millrace_broker::Consumer,
        partitions_of: &HashMap<String, i32>,
        next: &mut BTreeMap<TopicPartition, i64>,
    ) -> Result<(), RuntimeError> {
        let mut emits: Vec<Emit> = Vec::new();
        // Where each emit came from, for its lineage.
        let mut tags: Vec<Option<LineageTag>> = Vec::new();
        let lineage = std::sync::Mutex::new(Lineage::new(&self.stage));
        let mut dead: Vec<(ConsumedRecord, RecordError)> = Vec::new();
        let mut committed: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        // Offsets a rebalance refused, retried with the next commit.
        let mut deferred = Vec::new();
        loop {
            if *self.stop.borrow() {
                // Held records stay uncommitted: the next run reads them again.
                return Ok(());
            }
            let assignment = consumer.assignment();
            if let Some(c) = self.completion.clone()
                && c.inputs_read(&assignment, next).await?
            {
                let progress = self.progress(&assignment, next).await?;
                self.counters
                    .barrier_at(progress.batch, progress.done, progress.of);
                let ctx = FinishContext {
                    broker: self.broker.as_ref(),
                    stage: &self.stage,
                    read_upto: next,
                    lineage: &lineage,
                };
                let tally = self
                    .op
                    .finish(progress, &ctx, &mut emits, &mut dead)
                    .await?;
                let emitted = emits.len() as u64 + tally.written;
                // Results of the batch's end, named so that a replay finds them.
                tags = match self.op.finish_tags() {
                    Some(named) => named.into_iter().map(Some).collect(),
                    None => names_of_results(&emits, progress.batch),
                };
                self.flush(partitions_of, &mut emits, &mut tags, &mut dead, &lineage)
                    .await?;
                // The batch is released and durable: commit all that was read, except
                // what the pattern still holds (a zip's unpaired items).
                let offsets: Vec<(TopicPartition, i64)> = assignment
                    .iter()
                    .filter_map(|tp| {
                        next.get(tp).map(|o| {
                            let upto = self.op.held_from(tp).map_or(*o, |h| h.min(*o));
                            (tp.clone(), upto)
                        })
                    })
                    .collect();
                if !offsets.is_empty() {
                    commit(consumer, &offsets, &mut deferred).await?;
                }
                self.counters
                    .finish(tally.out, tally.filtered, tally.dead_lettered, emitted);
                self.counters.barrier_released();
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
            let mut stop = self.stop.clone();
            let wait = crate::task::idle_wait(self.completion.is_some());
            let polled =
                match poll_or_stop(consumer.poll(self.max_batch, wait), &self.stage, &mut stop)
                    .await?
                {
                    Polled::Records(p) => p,
                    Polled::Retry => continue,
                    Polled::Stopped => return Ok(()),
                };
            for r in consumer.take_rebalances() {
                match r {
                    Rebalance::Revoked(tps) => {
                        let forgotten = self.op.revoke(&tps);
                        self.counters.forget(forgotten);
                        for tp in &tps {
                            committed.remove(tp);
                        }
                    }
                    Rebalance::Assigned(tps) => {
                        // The lock is not held across the read.
                        let mut fresh = Lineage::new(&self.stage);
                        fresh.recover(self.broker.as_ref(), &self.outputs).await?;
                        self.op.recovered(&fresh);
                        if let Ok(mut l) = lineage.lock() {
                            *l = fresh;
                        }
                        // A partition (re)gained starts where the group committed it:
                        // what this task read of it before is forgotten, not done.
                        let group = format!("{}.{}", self.pipeline, self.stage);
                        let topics: Vec<String> =
                            tps.iter().map(|tp| tp.topic.to_string()).collect();
                        let fresh = start_positions(self.broker.as_ref(), &group, &topics).await?;
                        for tp in &tps {
                            if let Some(o) = fresh.get(tp) {
                                next.insert(tp.clone(), *o);
                            }
                        }
                    }
                }
            }
            // Records past the batch's end wait for the next batch. (In place: nothing
            // moves when the whole poll is within the batch, as it nearly always is.)
            let mut batch = polled;
            if let Some(c) = &self.completion {
                batch.retain(|r| c.within(r));
            }
            let progress = self.progress(&consumer.assignment(), next).await?;
            if self.completion.is_some() {
                self.counters
                    .barrier_at(progress.batch, progress.done, progress.of);
            }
            let mut tally = Tally::default();
            self.counters.read(batch.len() as u64);
            let before_all = emits.len();
            let mut named = Vec::new();
            let all = self
                .op
                .absorb_all(&batch, progress, &mut emits, &mut dead, &mut named);
            if let Some(t) = all {
                tally.add(t);
                tags.resize(before_all, None);
                tags.extend(named.into_iter().map(Some));
                tags.resize(emits.len(), None);
            }
            for (k, rec) in batch.iter().enumerate() {
                let before = emits.len();
                if all.is_none() {
                    tally.add(self.op.absorb(rec, progress, &mut emits, &mut dead));
                }
                if emits.len() > before {
                    let origin = lineage::origin_of(&rec.topic, rec.partition);
                    for i in 0..emits.len() - before {
                        tags.push(Some(LineageTag::new(
                            origin.clone(),
                            rec.offset,
                            u32::try_from(i).unwrap_or(u32::MAX),
                        )));
                    }
                }
                // A poll returns each partition's records together, in order: the
                // last of a run is where the partition is read up to.
                let run_ends = batch
                    .get(k + 1)
                    .is_none_or(|n| n.partition != rec.partition || n.topic != rec.topic);
                if run_ends {
                    next.insert(
                        TopicPartition::new(rec.topic.clone(), rec.partition),
                        rec.offset + 1,
                    );
                }
            }
            tally.add(self.op.tick(progress, &mut emits, &mut dead));
            // Partial results are progress reports: no lineage, a replay may repeat them.
            tags.resize(emits.len(), None);
            let emitted = emits.len() as u64 + tally.written;
            self.flush(partitions_of, &mut emits, &mut tags, &mut dead, &lineage)
                .await?;
            self.counters
                .finish(tally.out, tally.filtered, tally.dead_lettered, emitted);
            // Commit up to the first record still held in each partition.
            let mut offsets = Vec::new();
            for tp in consumer.assignment() {
                let Some(read) = next.get(&tp).copied() else {
                    continue;
                };
                let upto = self.op.held_from(&tp).map_or(read, |h| h.min(read));
                if committed.get(&tp).is_none_or(|c| *c < upto) {
                    offsets.push((tp.clone(), upto));
                    committed.insert(tp, upto);
                }
            }
            if !offsets.is_empty() {
                commit(consumer, &offsets, &mut deferred).await?;
            }
        }
    }

    /// Produces what the pattern emitted and dead-lettered, and waits for durability.
    /// Outputs that a replay finds already written (their lineage) are skipped.
    async fn flush(
        &self,
        partitions_of: &HashMap<String, i32>,
        emits: &mut Vec<Emit>,
        tags: &mut Vec<Option<LineageTag>>,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
        lineage: &std::sync::Mutex<Lineage>,
    ) -> Result<(), RuntimeError> {
        let stamp = batch_header(self.batch_id());
        let mut per_topic: Vec<Vec<ProduceRecord>> = vec![Vec::new(); self.outputs.len()];
        tags.resize(emits.len(), None);
        for (e, tag) in emits.drain(..).zip(tags.drain(..)) {
            let mut r = e.record;
            let Some(topic) = self.outputs.get(e.output) else {
                continue;
            };
            let parts = partitions_of.get(topic).copied().unwrap_or(1).max(1);
            let q = lineage::output_partition(r.partition, r.key.as_deref(), parts, None);
            if let (Some(q), Some(tag)) = (q, &tag) {
                r.partition = Some(q);
                let written = lineage
                    .lock()
                    .map(|mut l| l.already_written(topic, q, &tag.origin, tag.offset, tag.index))
                    .unwrap_or(false);
                if written {
                    continue;
                }
                r.headers.push(tag.header(&self.stage));
            }
            // An output that names its batch (a reduce result of an earlier batch)
            // keeps it.
            if self.completion.is_some() {
                stamp_batch(&mut r.headers, &stamp);
            }
            per_topic[e.output].push(r);
        }
        let mut sends: Vec<(String, Vec<ProduceRecord>)> = per_topic
            .into_iter()
            .enumerate()
            .filter(|(_, r)| !r.is_empty())
            .map(|(i, r)| (self.outputs[i].clone(), r))
            .collect();
        if !dead.is_empty() {
            let recs = dead
                .drain(..)
                .map(|(rec, err)| dead_letter::record(&self.stage, &rec, &err.error, err.attempts))
                .collect();
            sends.push((self.dead_letter.clone(), recs));
        }
        produce_all(self.broker.as_ref(), sends).await
    }
}

/// The lineage names of a batch's results. A keyed result (a reduce's group) is named
/// by its batch and key, so whichever instance writes it — the one that finished the
/// batch, or the one a rebalance handed the partition to — finds it written. Unkeyed
/// results are numbered within their batch. A result of an earlier batch (a reduce's
/// or a barrier's replay) is named after that batch, as when it was first written.
fn names_of_results(emits: &[Emit], batch: u64) -> Vec<Option<LineageTag>> {
    let mut numbered: HashMap<String, u32> = HashMap::new();
    emits
        .iter()
        .map(|e| {
            let own = e.record.headers.iter().find(|h| &*h.key == BATCH_HEADER);
            let origin = match own {
                Some(h) => format!("batch:{}", String::from_utf8_lossy(&h.value)),
                None => format!("batch:{batch}"),
            };
            Some(match &e.record.key {
                Some(k) => {
                    LineageTag::new(format!("{origin}/{}", String::from_utf8_lossy(k)), 0, 0)
                }
                None => {
                    let n = numbered.entry(origin.clone()).or_default();
                    *n += 1;
                    LineageTag::new(origin, 0, *n - 1)
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use millrace_broker::Header;

    use super::*;

    #[test]
    fn results_are_named_by_their_own_batch_and_numbered_within_it() {
        let result = |key: Option<&'static str>, batch: Option<&'static str>| {
            let mut e = super::super::emit_json(0, key.map(|k| k.as_bytes().to_vec()), &1.into());
            if let Some(b) = batch {
                e.record
                    .headers
                    .push(Header::new(BATCH_HEADER, Bytes::from_static(b.as_bytes())));
            }
            e
        };
        let emits = [
            result(None, Some("5")),
            result(None, None),
            result(Some("w"), None),
            result(Some("w"), Some("5")),
            result(None, None),
        ];
        let names: Vec<LineageTag> = names_of_results(&emits, 9).into_iter().flatten().collect();
        let want = [
            ("batch:5", 0),
            ("batch:9", 0),
            ("batch:9/w", 0),
            ("batch:5/w", 0),
            ("batch:9", 1),
        ];
        let want: Vec<LineageTag> = want
            .iter()
            .map(|(o, i)| LineageTag::new(*o, 0, *i))
            .collect();
        assert_eq!(names, want);
    }
}
