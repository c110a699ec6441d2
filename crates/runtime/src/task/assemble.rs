//! Turning a processed batch into output records, on the produce thread: each output's
//! partition fixed as the broker would choose it, outputs already written (the
//! lineage) left out, oversize outputs and failed records dead-lettered, and the
//! lineage headers added last.

use millrace_broker::{ConsumedRecord, Header, ProduceRecord, TopicPartition};

use super::forward;
use super::redriven::{self, Marks, RedriveCounts};
use crate::batch::stamp_batch;
use crate::engine::produce::{MAX_RECORD_BYTES, oversize, record_bytes};
use crate::lineage::{self, Lineage};
use crate::operator::{Emit, Outcome};

/// What a stage's produce thread needs to turn a processed batch into output records.
pub(super) struct Assembly {
    pub stage: String,
    pub outputs: Vec<String>,
    /// Partition counts of `outputs`.
    pub out_parts: Vec<i32>,
    pub dead_letter: String,
    /// A forwarding stage's output buffers, reused.
    pub buffers: forward::Buffers,
}

impl Assembly {
    /// The outputs of a processed batch — each with its partition fixed, those already
    /// written (lineage) left out — and its dead letters, with the counts
    /// `[out, filtered, dead-lettered, emitted]` and those of its redriven records.
    pub(super) fn assemble(
        &self,
        batch: &[ConsumedRecord],
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

/// A batch's outputs per output topic, before their lineage headers. The headers are
/// added on the produce thread ([`OutputBatch::stamped`]): formatting them there keeps
/// that work off the stage loop, the busier side.
pub(super) struct OutputBatch {
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
    pub(super) fn stamped(self, outputs: &[String]) -> Vec<(String, Vec<ProduceRecord>)> {
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
