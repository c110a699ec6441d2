//! The task of a coordinated stage: like the event-driven stage task (read, process,
//! produce, wait, commit), except that records are held until their batch ends and a
//! partition's commit never passes the first record still held there.
//!
//! A `--batch` run ends the batch when every input topic is complete (all of its
//! writers are done, so its end offsets hold the whole batch) and this task has read
//! its partitions up to there; then the pattern releases the batch (`finish`), its
//! outputs are made durable, and only then is everything committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use millrace_broker::{ConsumedRecord, Consumer, ProduceRecord, Rebalance, TopicPartition};

use super::{Coordinated, FinishContext, Progress, Tally};
use crate::batch::{BATCH_HEADER, batch_header, stamp_batch};
use crate::dead_letter;
use crate::engine::commit::{Deferred, commit};
use crate::engine::poll::{Between, Polled, start_positions};
use crate::engine::produce::produce_all;
use crate::engine::{Opened, Stage};
use crate::error::RuntimeError;
use crate::lineage::{self, Lineage, LineageTag};
use crate::operator::{Emit, RecordError};

/// What the coordinated loop keeps between polls besides the pattern.
struct Held<'a> {
    consumer: &'a mut dyn Consumer,
    /// Partition counts of the outputs and the dead-letter topic.
    partitions_of: &'a HashMap<String, i32>,
    /// Where each input partition is read up to.
    next: &'a mut BTreeMap<TopicPartition, i64>,
    /// Outputs not produced yet, each with the name a replay finds it by (none for a
    /// partial result).
    emits: Vec<Emit>,
    tags: Vec<Option<LineageTag>>,
    dead: Vec<(ConsumedRecord, RecordError)>,
    lineage: Mutex<Lineage>,
    /// Per partition, the offset last committed.
    committed: BTreeMap<TopicPartition, i64>,
    deferred: Deferred,
}

pub struct CoordinatedTask {
    pub stage: Stage,
    pub op: Box<dyn Coordinated>,
}

impl CoordinatedTask {
    pub async fn run(mut self) -> Result<(), RuntimeError> {
        // Joins by key and reduces need partition p of every input in one consumer.
        let Opened {
            mut consumer,
            partitions_of,
            mut next,
        } = self.stage.open(true).await?;
        let outs: Vec<(String, i32)> = self
            .stage
            .outputs
            .iter()
            .map(|t| (t.clone(), partitions_of.get(t).copied().unwrap_or(1)))
            .collect();
        self.op.prepare(&outs);
        let mut held = Held {
            consumer: consumer.as_mut(),
            partitions_of: &partitions_of,
            next: &mut next,
            emits: Vec::new(),
            tags: Vec::new(),
            dead: Vec::new(),
            lineage: Mutex::new(Lineage::new(&self.stage.name)),
            committed: BTreeMap::new(),
            deferred: Deferred::default(),
        };
        let result = self.run_loop(&mut held).await;
        let _ = consumer.close().await;
        result
    }

    fn batch_id(&self) -> u64 {
        self.stage
            .completion
            .as_ref()
            .map(|c| c.batch_id())
            .unwrap_or(0)
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
        if let Some(c) = &self.stage.completion {
            p.done = c.partitions_read(assignment, next).await?;
        }
        Ok(p)
    }

    /// Read, absorb, produce what the pattern emits, commit up to what it holds; at a
    /// batch's end, release it: until the stage stops or its batches are over.
    async fn run_loop(&mut self, h: &mut Held<'_>) -> Result<(), RuntimeError> {
        loop {
            if self.stage.stopping() {
                // Held records stay uncommitted: the next run reads them again.
                return Ok(());
            }
            if self.end_batch(h).await? {
                return Ok(());
            }
            match self.stage.between_batches().await {
                Between::Work => {}
                Between::Again => continue,
                Between::Over => return Ok(()),
            }
            let (max, wait) = (self.stage.max_batch, self.stage.idle_wait());
            let mut batch = match self.stage.poll(h.consumer.poll(max, wait)).await? {
                Polled::Records(p) => p,
                Polled::Retry => continue,
                Polled::Stopped => return Ok(()),
            };
            self.rebalanced(h).await?;
            // Records past the batch's end wait for the next batch. (In place: nothing
            // moves when the whole poll is within the batch, as it nearly always is.)
            if let Some(c) = &self.stage.completion {
                batch.retain(|r| c.within(r));
            }
            let progress = self.progress(&h.consumer.assignment(), h.next).await?;
            if self.stage.completion.is_some() {
                self.stage
                    .counters
                    .barrier_at(progress.batch, progress.done, progress.of);
            }
            self.stage.counters.read(batch.len() as u64);
            let tally = self.absorb(h, &batch, progress);
            let emitted = h.emits.len() as u64 + tally.written;
            self.flush(h).await?;
            self.stage
                .counters
                .finish(tally.out, tally.filtered, tally.dead_lettered, emitted);
            // Commit up to the first record still held in each partition.
            let mut offsets = Vec::new();
            for tp in h.consumer.assignment() {
                let Some(read) = h.next.get(&tp).copied() else {
                    continue;
                };
                let upto = self.op.held_from(&tp).map_or(read, |held| held.min(read));
                if h.committed.get(&tp).is_none_or(|c| *c < upto) {
                    offsets.push((tp.clone(), upto));
                    h.committed.insert(tp, upto);
                }
            }
            if !offsets.is_empty() {
                commit(h.consumer, &offsets, &mut h.deferred).await?;
            }
        }
    }

    /// When every input partition this task owns has its part of the batch: the
    /// pattern releases the batch, its results are made durable, and everything read
    /// is committed. True when the task is then done (no more batches come).
    async fn end_batch(&mut self, h: &mut Held<'_>) -> Result<bool, RuntimeError> {
        let assignment = h.consumer.assignment();
        let Some(c) = self.stage.completion.clone() else {
            return Ok(false);
        };
        if !c.inputs_read(&assignment, h.next).await? {
            return Ok(false);
        }
        let progress = self.progress(&assignment, h.next).await?;
        self.stage
            .counters
            .barrier_at(progress.batch, progress.done, progress.of);
        let ctx = FinishContext {
            broker: self.stage.broker.as_ref(),
            stage: &self.stage.name,
            read_upto: h.next,
            lineage: &h.lineage,
        };
        let tally = self
            .op
            .finish(progress, &ctx, &mut h.emits, &mut h.dead)
            .await?;
        let emitted = h.emits.len() as u64 + tally.written;
        // Results of the batch's end, named so that a replay finds them.
        h.tags = match self.op.finish_tags() {
            Some(named) => named.into_iter().map(Some).collect(),
            None => names_of_results(&h.emits, progress.batch),
        };
        self.flush(h).await?;
        // The batch is released and durable: commit all that was read, except what the
        // pattern still holds (a zip's unpaired items).
        let offsets: Vec<(TopicPartition, i64)> = assignment
            .iter()
            .filter_map(|tp| {
                h.next.get(tp).map(|o| {
                    let upto = self.op.held_from(tp).map_or(*o, |held| held.min(*o));
                    (tp.clone(), upto)
                })
            })
            .collect();
        if !offsets.is_empty() {
            commit(h.consumer, &offsets, &mut h.deferred).await?;
        }
        self.stage
            .counters
            .finish(tally.out, tally.filtered, tally.dead_lettered, emitted);
        self.stage.counters.barrier_released();
        Ok(self.stage.batch_ended())
    }

    /// What the poll's rebalances change: partitions lost are forgotten by the
    /// pattern; partitions gained start again where the group committed them, with the
    /// lineage read afresh so that a replay skips what was written.
    async fn rebalanced(&mut self, h: &mut Held<'_>) -> Result<(), RuntimeError> {
        for r in h.consumer.take_rebalances() {
            match r {
                Rebalance::Revoked(tps) => {
                    let forgotten = self.op.revoke(&tps);
                    self.stage.counters.forget(forgotten);
                    for tp in &tps {
                        h.committed.remove(tp);
                    }
                }
                Rebalance::Assigned(tps) => {
                    // The lock is not held across the read.
                    let mut fresh = Lineage::new(&self.stage.name);
                    fresh
                        .recover(self.stage.broker.as_ref(), &self.stage.outputs)
                        .await?;
                    self.op.recovered(&fresh);
                    if let Ok(mut l) = h.lineage.lock() {
                        *l = fresh;
                    }
                    // A partition (re)gained starts where the group committed it: what
                    // this task read of it before is forgotten, not done.
                    let topics: Vec<String> = tps.iter().map(|tp| tp.topic.to_string()).collect();
                    let broker = self.stage.broker.as_ref();
                    let fresh = start_positions(broker, &self.stage.group(), &topics).await?;
                    for tp in &tps {
                        if let Some(o) = fresh.get(tp) {
                            h.next.insert(tp.clone(), *o);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Hands a poll's records to the pattern, naming each output after the record it
    /// came from; moves each partition's read position past its records.
    fn absorb(&mut self, h: &mut Held<'_>, batch: &[ConsumedRecord], progress: Progress) -> Tally {
        let mut tally = Tally::default();
        let before_all = h.emits.len();
        let mut named = Vec::new();
        let all = self
            .op
            .absorb_all(batch, progress, &mut h.emits, &mut h.dead, &mut named);
        if let Some(t) = all {
            tally.add(t);
            h.tags.resize(before_all, None);
            h.tags.extend(named.into_iter().map(Some));
            h.tags.resize(h.emits.len(), None);
        }
        for (k, rec) in batch.iter().enumerate() {
            let before = h.emits.len();
            if all.is_none() {
                tally.add(self.op.absorb(rec, progress, &mut h.emits, &mut h.dead));
            }
            if h.emits.len() > before {
                let origin = lineage::origin_of(&rec.topic, rec.partition);
                for i in 0..h.emits.len() - before {
                    h.tags.push(Some(LineageTag::new(
                        origin.clone(),
                        rec.offset,
                        u32::try_from(i).unwrap_or(u32::MAX),
                    )));
                }
            }
            // A poll returns each partition's records together, in order: the last of a
            // run is where the partition is read up to.
            let run_ends = batch
                .get(k + 1)
                .is_none_or(|n| n.partition != rec.partition || n.topic != rec.topic);
            if run_ends {
                h.next.insert(
                    TopicPartition::new(rec.topic.clone(), rec.partition),
                    rec.offset + 1,
                );
            }
        }
        tally.add(self.op.tick(progress, &mut h.emits, &mut h.dead));
        // Partial results are progress reports: no lineage, a replay may repeat them.
        h.tags.resize(h.emits.len(), None);
        tally
    }

    /// Produces what the pattern emitted and dead-lettered, and waits for durability.
    /// Outputs that a replay finds already written (their lineage) are skipped.
    async fn flush(&self, h: &mut Held<'_>) -> Result<(), RuntimeError> {
        let (emits, tags, dead, lineage) = (&mut h.emits, &mut h.tags, &mut h.dead, &h.lineage);
        let stamp = batch_header(self.batch_id());
        let mut per_topic: Vec<Vec<ProduceRecord>> = vec![Vec::new(); self.stage.outputs.len()];
        tags.resize(emits.len(), None);
        for (e, tag) in emits.drain(..).zip(tags.drain(..)) {
            let mut r = e.record;
            let Some(topic) = self.stage.outputs.get(e.output) else {
                continue;
            };
            let parts = h.partitions_of.get(topic).copied().unwrap_or(1).max(1);
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
                r.headers.push(tag.header(&self.stage.name));
            }
            // An output that names its batch (a reduce result of an earlier batch)
            // keeps it.
            if self.stage.completion.is_some() {
                stamp_batch(&mut r.headers, &stamp);
            }
            per_topic[e.output].push(r);
        }
        let mut sends: Vec<(String, Vec<ProduceRecord>)> = per_topic
            .into_iter()
            .enumerate()
            .filter(|(_, r)| !r.is_empty())
            .map(|(i, r)| (self.stage.outputs[i].clone(), r))
            .collect();
        if !dead.is_empty() {
            let recs = dead
                .drain(..)
                .map(|(rec, err)| {
                    dead_letter::record(&self.stage.name, &rec, &err.error, err.attempts)
                })
                .collect();
            sends.push((self.stage.dead_letter.clone(), recs));
        }
        produce_all(self.stage.broker.as_ref(), sends).await
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
