//! Batches: which records make one, and the header that names it.
//!
//! `--batch` runs: the batch is everything between the committed offsets and the end
//! offsets of the source topics snapshotted at start.
//!
//! A stage is done when, for every partition of each input topic, what has been
//! committed (by this process or by another instance of the same pipeline) reaches
//! that topic's target. A source topic's target is the start snapshot; a topic written
//! by stages gets its target when all of its writers are done — their outputs are
//! durable by then, so the end offsets at that moment hold the whole batch.
//!
//! In batched runs of a pipeline with a join or a reduce, outputs carry a
//! `millrace.batch` header with their batch's id ([`Completion::batch_id`]): a sink can
//! upsert by it, and a join or reduce that meets an item of an earlier batch (held over
//! from a run that died mid-release) counts it in that batch ([`own_batch`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use millrace_broker::{Broker, ConsumedRecord, Header, TopicPartition, committed_offset};

use crate::error::RuntimeError;

struct Shared {
    broker: Arc<dyn Broker>,
    /// Topic → stages that write it.
    writers: HashMap<String, Vec<String>>,
    /// Topic → end offset per partition (index = partition). A topic's target, once
    /// set, never changes.
    targets: Mutex<HashMap<String, Vec<i64>>>,
    /// Bumped after every insert into `targets`, so a stage's cache knows when a miss
    /// is worth looking up again.
    targets_version: AtomicU64,
    done: Mutex<HashSet<String>>,
    /// The source topics, whose snapshot defines the batch.
    sources: Vec<String>,
    /// Stages whose being done in this process does not mean they are done everywhere
    /// (joins and reduces finish per instance), with their consumer group and inputs:
    /// they are done once their group has committed every input partition up to its
    /// target, whichever instance did it.
    global: HashMap<String, (String, Vec<String>)>,
}

/// Shared by all stage tasks of one `--batch` run.
#[derive(Clone)]
pub struct Completion {
    shared: Arc<Shared>,
    group: String,
    inputs: Vec<String>,
    /// `within`'s per-record fast path: each input's target (index as in `inputs`),
    /// copied from `targets` once known, read without a lock.
    known: Arc<[OnceLock<Vec<i64>>]>,
    /// `targets_version` when `within` last looked up a target it did not find.
    missed_at: Arc<AtomicU64>,
}

/// Builds the completion tracker, snapshotting the source topics' end offsets now.
pub async fn start(
    broker: Arc<dyn Broker>,
    writers: HashMap<String, Vec<String>>,
    sources: &[String],
    global: HashMap<String, (String, Vec<String>)>,
) -> Result<Arc<CompletionRoot>, RuntimeError> {
    // Side by side: on Kafka each is a round trip or two.
    let ends = futures::future::join_all(sources.iter().map(|t| end_offsets(broker.as_ref(), t)));
    let mut targets = HashMap::new();
    for (t, ends) in sources.iter().zip(ends.await) {
        targets.insert(t.clone(), ends?);
    }
    Ok(Arc::new(CompletionRoot {
        shared: Arc::new(Shared {
            broker,
            writers,
            targets: Mutex::new(targets),
            targets_version: AtomicU64::new(0),
            done: Mutex::new(HashSet::new()),
            sources: sources.to_vec(),
            global,
        }),
    }))
}

pub struct CompletionRoot {
    shared: Arc<Shared>,
}

impl CompletionRoot {
    pub fn for_stage(&self, group: String, inputs: Vec<String>) -> Completion {
        Completion {
            shared: self.shared.clone(),
            group,
            known: inputs.iter().map(|_| OnceLock::new()).collect(),
            inputs,
            missed_at: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    /// Whether `stages` stages have marked this batch done.
    pub fn all_done(&self, stages: usize) -> bool {
        lock(&self.shared.done).len() >= stages
    }

    /// The source snapshot, for the run summary.
    pub fn targets(&self) -> HashMap<String, Vec<i64>> {
        lock(&self.shared.targets).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn end_offsets(broker: &dyn Broker, topic: &str) -> Result<Vec<i64>, RuntimeError> {
    let d = broker.partitions(topic).await?;
    let mut ends = vec![0; d.len()];
    for p in d {
        if let Some(slot) = usize::try_from(p.partition)
            .ok()
            .and_then(|i| ends.get_mut(i))
        {
            *slot = p.end_offset;
        }
    }
    Ok(ends)
}

impl Completion {
    /// The target of a topic, once it is known.
    async fn target(&self, topic: &str) -> Result<Option<Vec<i64>>, RuntimeError> {
        if let Some(t) = lock(&self.shared.targets).get(topic) {
            return Ok(Some(t.clone()));
        }
        let writers = self.shared.writers.get(topic).cloned().unwrap_or_default();
        for w in &writers {
            if !self.writer_done(w).await? {
                return Ok(None);
            }
        }
        let ends = end_offsets(self.shared.broker.as_ref(), topic).await?;
        let ends = lock(&self.shared.targets)
            .entry(topic.to_string())
            .or_insert(ends)
            .clone();
        self.shared.targets_version.fetch_add(1, Ordering::Release);
        Ok(Some(ends))
    }

    /// Whether a stage that writes a topic is done with the batch everywhere.
    fn writer_done<'a>(
        &'a self,
        stage: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, RuntimeError>> + Send + 'a>>
    {
        Box::pin(async move {
            let Some((group, inputs)) = self.shared.global.get(stage) else {
                // An event-driven stage is marked done only once its group has
                // committed every input partition up to its target.
                return Ok(lock(&self.shared.done).contains(stage));
            };
            for topic in inputs {
                let Some(target) = self.target(topic).await? else {
                    return Ok(false);
                };
                let committed = self.shared.broker.committed(group, topic).await?;
                for (p, end) in target.iter().enumerate() {
                    let p = i32::try_from(p).unwrap_or(i32::MAX);
                    let c = committed_offset(&committed, p).unwrap_or(0);
                    if c < *end {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })
    }

    /// True when every input partition has been processed up to its target.
    pub async fn is_done(
        &self,
        _assignment: &[TopicPartition],
        next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<bool, RuntimeError> {
        for topic in &self.inputs {
            let Some(target) = self.target(topic).await? else {
                return Ok(false);
            };
            let mut committed: Option<Vec<(i32, Option<i64>)>> = None;
            for (p, end) in target.iter().enumerate() {
                let tp = TopicPartition::new(topic.clone(), i32::try_from(p).unwrap_or(i32::MAX));
                if next.get(&tp).copied().unwrap_or(0) >= *end {
                    continue;
                }
                // Perhaps another instance of the pipeline owns the partition.
                if committed.is_none() {
                    committed = Some(self.shared.broker.committed(&self.group, topic).await?);
                }
                let c = committed
                    .as_deref()
                    .and_then(|c| committed_offset(c, tp.partition))
                    .unwrap_or(0);
                if c < *end {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Whether a record belongs to this run's batch.
    pub fn within(&self, rec: &ConsumedRecord) -> bool {
        rec.offset < self.limit(&rec.topic, rec.partition)
    }

    /// The offset where this run's batch ends in a partition: the snapshot's end
    /// offset, `i64::MAX` where the topic has no target (yet), 0 for a partition the
    /// snapshot did not have. Called per record: once a topic's target is known it is
    /// read from a per-stage cache, with no lock and no hashing; until then the shared
    /// map is consulted only when a target was added since.
    pub fn limit(&self, topic: &str, partition: i32) -> i64 {
        let end = |t: &[i64]| {
            usize::try_from(partition)
                .ok()
                .and_then(|p| t.get(p))
                .copied()
                .unwrap_or(0)
        };
        let Some(i) = self.inputs.iter().position(|t| **t == *topic) else {
            return lock(&self.shared.targets)
                .get(topic)
                .map_or(i64::MAX, |t| end(t));
        };
        if let Some(t) = self.known[i].get() {
            return end(t);
        }
        let version = self.shared.targets_version.load(Ordering::Acquire);
        if self.missed_at.load(Ordering::Acquire) == version {
            return i64::MAX;
        }
        let found = lock(&self.shared.targets).get(topic).cloned();
        match found {
            Some(t) => end(self.known[i].get_or_init(|| t)),
            None => {
                self.missed_at.store(version, Ordering::Release);
                i64::MAX
            }
        }
    }

    /// The id of this run's batch: the number of source records up to the snapshot
    /// (the sum of the source end offsets). Instances that start on the same data agree
    /// on it, and it grows with every batch that has new records.
    pub fn batch_id(&self) -> u64 {
        let sources = &self.shared.sources;
        let targets = lock(&self.shared.targets);
        sources
            .iter()
            .filter_map(|t| targets.get(t))
            .flat_map(|ends| ends.iter())
            .map(|e| u64::try_from(*e).unwrap_or(0))
            .sum()
    }

    /// True when every input topic has its target and each assigned partition has
    /// been read up to it (`next` = next offset to read). With nothing assigned, true
    /// once other instances have committed every partition up to its target.
    pub async fn inputs_read(
        &self,
        assignment: &[TopicPartition],
        next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<bool, RuntimeError> {
        for topic in &self.inputs {
            if self.target(topic).await?.is_none() {
                return Ok(false);
            }
        }
        if assignment.is_empty() {
            return self.is_done(assignment, next).await;
        }
        Ok(self.partitions_read(assignment, next).await? as usize == assignment.len())
    }

    /// How many assigned partitions have been read up to their topic's target.
    pub async fn partitions_read(
        &self,
        assignment: &[TopicPartition],
        next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<u32, RuntimeError> {
        let mut done = 0;
        for tp in assignment {
            let Some(target) = self.target(&tp.topic).await? else {
                continue;
            };
            let end = usize::try_from(tp.partition)
                .ok()
                .and_then(|p| target.get(p).copied())
                .unwrap_or(0);
            if next.get(tp).copied().unwrap_or(0) >= end {
                done += 1;
            }
        }
        Ok(done)
    }

    pub fn mark_done(&self, stage: &str) {
        lock(&self.shared.done).insert(stage.to_string());
    }
}

/// Header that names the batch of a released item.
pub const BATCH_HEADER: &str = "millrace.batch";

/// The batch a record came in, from its `millrace.batch` header.
pub fn batch_of(rec: &ConsumedRecord) -> Option<u64> {
    let h = rec.headers.iter().rev().find(|h| &*h.key == BATCH_HEADER)?;
    std::str::from_utf8(&h.value).ok()?.parse().ok()
}

/// The batch an item belongs to while `batch` is in hand: the one it came in when that
/// is an earlier one (held over from a run that died mid-release), else `batch`. A
/// record naming a later batch (which only topics deleted and made again could bring
/// back) counts in the batch in hand: a result is never named after a batch that has
/// not ended. The barrier and the reduce both go by this.
pub(crate) fn own_batch(rec: &ConsumedRecord, batch: u64) -> u64 {
    batch_of(rec).filter(|b| *b < batch).unwrap_or(batch)
}

/// The `millrace.batch` header naming `batch`.
pub fn batch_header(batch: u64) -> Header {
    Header::new(BATCH_HEADER, Bytes::from(batch.to_string()))
}

/// Adds `stamp` (a `millrace.batch` header) unless the headers already name a batch:
/// a record keeps the batch it came in.
pub fn stamp_batch(headers: &mut Vec<Header>, stamp: &Header) {
    if !headers.iter().any(|h| &*h.key == BATCH_HEADER) {
        headers.push(stamp.clone());
    }
}
