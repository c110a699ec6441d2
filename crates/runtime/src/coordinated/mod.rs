//! The coordinated patterns: join (a barrier) and reduce. Unlike the event-driven
//! patterns they hold records until their batch is complete, so they run in a task of
//! their own ([`task`]) that knows when a batch ends and commits only what is no
//! longer held: a held record holds back its partition's committed offset, and a
//! crash replays it instead of losing it.
//!
//! - `join/`: barrier (release a batch once all of it is there), by key (combine
//!   equal keys from every input), zip (pair items by arrival order), a file each.
//! - `reduce`: count, sum, min, max, mean, histogram, collect and custom jq reducers,
//!   per group key, with partial results as items arrive and the final result at the
//!   batch's end.
//! - `combine`: a map that pre-aggregates for a reduce downstream (`combine: true`).
//! - `key`: group keys as the reduce and the combiner index them.
//! - `task`: the stage task that runs them.

pub mod combine;
pub mod join;
pub mod key;
pub mod reduce;
pub mod task;

use std::collections::BTreeMap;

use async_trait::async_trait;
use millrace_broker::{Broker, ConsumedRecord, ProduceRecord, TopicPartition};

use crate::error::RuntimeError;
use crate::lineage::LineageTag;
use crate::operator::{Emit, RecordError};

/// How many input records ended where, reported by a coordinated pattern so the task
/// keeps the stage's counters conserved (held records are "in flight").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub out: u64,
    pub filtered: u64,
    pub dead_lettered: u64,
    /// Output records the pattern produced itself instead of handing them over in
    /// `emits` (a barrier reads its held items back and produces them): they count as
    /// emitted with the others.
    pub written: u64,
}

impl Tally {
    pub fn add(&mut self, o: Tally) {
        self.out += o.out;
        self.filtered += o.filtered;
        self.dead_lettered += o.dead_lettered;
        self.written += o.written;
    }
}

/// How far a batch has come: input partitions whose part of the batch is complete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub batch: u64,
    pub done: u32,
    pub of: u32,
}

/// What a coordinated pattern may use while finishing a batch.
pub struct FinishContext<'a> {
    pub broker: &'a dyn Broker,
    pub stage: &'a str,
    /// Next offset to read, per assigned input partition: the batch's records of a
    /// partition all lie before it.
    pub read_upto: &'a BTreeMap<TopicPartition, i64>,
    /// What this stage already wrote (a replayed release skips it).
    pub lineage: &'a std::sync::Mutex<crate::lineage::Lineage>,
}

#[async_trait]
pub trait Coordinated: Send + Sync {
    /// Whether finishing a batch commits all of it (true but for a zip, whose unpaired
    /// items stay held across batches).
    fn commits_at_finish(&self) -> bool {
        true
    }

    /// Learns the stage's output topics and their partition counts before the first record.
    fn prepare(&mut self, _outputs: &[(String, i32)]) {}

    /// Whether the run has batches (`--batch`, or a batch policy): without them no
    /// batch ever ends, so nothing should wait for one.
    fn batched(&mut self, _batched: bool) {}

    /// Takes in one record. Outputs that are ready now (a key join's match, a zip pair,
    /// a partial result) go to `emits`; records to dead-letter with their reason to
    /// `dead`. Returns what became of input records (this one or earlier held ones).
    fn absorb(
        &mut self,
        rec: &ConsumedRecord,
        progress: Progress,
        emits: &mut Vec<Emit>,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Tally;

    /// Takes in a whole poll at once, for a pattern that spreads it over threads and
    /// names its outputs itself: `tags` gets the lineage of each output pushed onto
    /// `emits`. `None`: the task calls `absorb` per record.
    fn absorb_all(
        &mut self,
        _batch: &[ConsumedRecord],
        _progress: Progress,
        _emits: &mut Vec<Emit>,
        _dead: &mut Vec<(ConsumedRecord, RecordError)>,
        _tags: &mut Vec<LineageTag>,
    ) -> Option<Tally> {
        None
    }

    /// What the stage found already written when it (re)gained partitions.
    fn recovered(&mut self, _lineage: &crate::lineage::Lineage) {}

    /// Called between polls: time-based partial results and timeouts.
    fn tick(
        &mut self,
        _progress: Progress,
        _emits: &mut Vec<Emit>,
        _dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Tally {
        Tally::default()
    }

    /// The batch is complete on every input partition this task owns: release it.
    async fn finish(
        &mut self,
        progress: Progress,
        ctx: &FinishContext<'_>,
        emits: &mut Vec<Emit>,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Result<Tally, RuntimeError>;

    /// The lineage of the last `finish`'s emits, when the
    /// pattern names them itself; else they are named after the batch.
    fn finish_tags(&mut self) -> Option<Vec<LineageTag>> {
        None
    }

    /// The lowest offset of `tp` still held (not to be committed), if any.
    fn held_from(&self, tp: &TopicPartition) -> Option<i64>;

    /// Partitions moved to another instance: forget what is held of them (it was not
    /// committed, so the new owner reads it again).
    fn revoke(&mut self, tps: &[TopicPartition]) -> u64;
}

/// The partition a record was read from.
pub fn tp_of(rec: &ConsumedRecord) -> TopicPartition {
    TopicPartition::new(rec.topic.clone(), rec.partition)
}

/// A record emitted by a coordinated pattern: a JSON value with a key.
pub fn emit_json(output: usize, key: Option<Vec<u8>>, value: &serde_json::Value) -> Emit {
    Emit {
        output,
        record: ProduceRecord {
            partition: None,
            key: key.map(bytes::Bytes::from),
            value: bytes::Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
            headers: Vec::new(),
            timestamp: None,
        },
    }
}
