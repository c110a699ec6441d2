//! Idempotent outputs: a stage that replays input after a crash or a rebalance does not
//! write the same outputs twice.
//!
//! Every output record carries a lineage header, `millrace.from` =
//! `<stage>@<origin>#<offset>.<index>`: the stage that wrote it, where it came from
//! (`<topic>/<partition>` of the input record; for a result released at a batch's
//! end, `batch:<b>/<key>` when it has a key — a reduce's group — else `batch:<b>`),
//! the input offset (or sequence number) and its index among the outputs of that
//! input. When a stage (re)gains partitions it reads the tail of each output partition
//! and notes, per origin, every (offset, index) it finds there; while replaying it
//! skips exactly those, and everything older than the oldest one found (written before
//! the tail). An output missing in between is written again: a stage writes an
//! origin's outputs in ascending order, but with several batches in flight a failed
//! batch can leave a gap before a later batch's outputs (a Kafka produce that timed
//! out), and the replay fills it. Stages are deterministic functions of their input
//! (the exec worker's outputs are assumed to be), so a replayed output is the one
//! already written.
//!
//! The tail read is bounded (`WINDOW` records per partition): a topic written by
//! several stages is exact as long as the others write less than that between an
//! interruption and the restart; past it, delivery falls back to at least once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use millrace_broker::{Broker, ConsumerConfig, Header, OffsetReset, Seek, TopicPartition};

use crate::error::RuntimeError;

pub const HEADER: &str = "millrace.from";

/// Records read back from the end of each output partition.
pub const WINDOW: i64 = 65_536;

/// Where an output came from, as its lineage header names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineageTag {
    /// The input's `<topic>/<partition>` ([`origin_of`]), or `batch:<b>` and
    /// `batch:<b>/<key>` for a result released at a batch's end.
    pub origin: String,
    /// The input's offset (a batch's results: 0).
    pub offset: i64,
    /// The output's place among the outputs of that input.
    pub index: u32,
}

impl LineageTag {
    pub fn new(origin: impl Into<String>, offset: i64, index: u32) -> Self {
        LineageTag {
            origin: origin.into(),
            offset,
            index,
        }
    }

    /// The lineage header of an output of `stage` so tagged.
    pub fn header(&self, stage: &str) -> Header {
        header(stage, &self.origin, self.offset, self.index)
    }
}

/// What is already written, per (output topic, output partition, origin).
#[derive(Default)]
pub struct Lineage {
    stage: String,
    written: HashMap<(String, i32, String), Found>,
}

/// One origin's outputs found in a tail.
#[derive(Default)]
struct Found {
    /// The oldest found: anything older was written before the tail.
    oldest: (i64, u32),
    /// What a replay has not passed yet, ascending.
    ahead: VecDeque<(i64, u32)>,
}

/// The header name, shared by every output record.
static HEADER_NAME: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(HEADER));

/// The lineage header of an output.
pub fn header(stage: &str, origin: &str, offset: i64, index: u32) -> Header {
    Header {
        key: Arc::clone(&HEADER_NAME),
        value: Bytes::from(value(&prefix(stage, origin), offset, index)),
    }
}

/// `<stage>@<origin>#`: the part of a lineage header shared by one origin's outputs.
pub fn prefix(stage: &str, origin: &str) -> Vec<u8> {
    format!("{stage}@{origin}#").into_bytes()
}

/// A lineage value in pieces, `<prefix><offset>.<index>`, the offset and index in
/// decimal: for writers that copy the pieces where the value goes (the forwarding
/// path writes them straight into its output batch).
pub fn value_parts<'a>(prefix: &'a [u8], offset: &'a [u8], index: &'a [u8]) -> [&'a [u8]; 4] {
    [prefix, offset, b".", index]
}

/// A lineage value from [`prefix`]'s prefix.
fn value(prefix: &[u8], offset: i64, index: u32) -> Vec<u8> {
    let (mut o, mut i) = (itoa::Buffer::new(), itoa::Buffer::new());
    value_parts(
        prefix,
        o.format(offset).as_bytes(),
        i.format(index).as_bytes(),
    )
    .concat()
}

/// Makes the lineage headers of a stage's outputs. Every value is written into one
/// shared buffer and handed out as a slice of it: a reference count per record
/// instead of an allocation (a stage writes one header per output record).
#[derive(Default)]
pub struct Headers {
    buf: BytesMut,
}

/// Bytes reserved at a time for header values (a few thousand headers).
const HEADERS_CHUNK: usize = 64 << 10;

impl Headers {
    /// The lineage header from a prefix made by [`prefix`].
    pub fn with_prefix(&mut self, prefix: &[u8], offset: i64, index: u32) -> Header {
        let need = prefix.len() + 32;
        if self.buf.capacity() < need {
            self.buf.reserve(need.max(HEADERS_CHUNK));
        }
        let (mut o, mut i) = (itoa::Buffer::new(), itoa::Buffer::new());
        for part in value_parts(
            prefix,
            o.format(offset).as_bytes(),
            i.format(index).as_bytes(),
        ) {
            self.buf.put_slice(part);
        }
        Header {
            key: Arc::clone(&HEADER_NAME),
            value: self.buf.split().freeze(),
        }
    }
}

/// The partition an output goes to, fixed by the stage rather than the broker so that a
/// replay writes it where the first attempt did: the record's own partition if it has
/// one, murmur2 of its key as Java's client chooses, else `input_partition` (the
/// unkeyed output stays with its input partition's records) modulo the partition
/// count. `None` when the record has neither key nor input partition.
pub fn output_partition(
    partition: Option<i32>,
    key: Option<&[u8]>,
    partitions: i32,
    input_partition: Option<i32>,
) -> Option<i32> {
    let partitions = partitions.max(1);
    match (partition, key) {
        (Some(q), _) => Some(q),
        (None, Some(k)) => i32::try_from(millrace_broker::partitioner::partition_for_key(
            k,
            u32::try_from(partitions).unwrap_or(1),
        ))
        .ok(),
        (None, None) => input_partition.map(|p| p % partitions),
    }
}

/// The origin of an input record.
pub fn origin_of(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

fn parse(v: &[u8]) -> Option<(&str, &str, i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (stage, rest) = s.split_once('@')?;
    let (origin, pos) = rest.rsplit_once('#')?;
    let (offset, index) = pos.split_once('.')?;
    Some((stage, origin, offset.parse().ok()?, index.parse().ok()?))
}

impl Lineage {
    pub fn new(stage: &str) -> Self {
        Lineage {
            stage: stage.to_string(),
            written: HashMap::new(),
        }
    }

    /// Reads the tail of every partition of `outputs` and records what this stage
    /// already wrote there.
    pub async fn recover(
        &mut self,
        broker: &dyn Broker,
        outputs: &[String],
    ) -> Result<(), RuntimeError> {
        self.written.clear();
        // Every output's partitions at once; an output with nothing written has no tail
        // to read, and needs no reader (on Kafka a client of its own).
        let described =
            futures::future::join_all(outputs.iter().map(|t| broker.partitions(t))).await;
        for (topic, d) in outputs.iter().zip(described) {
            let d = d?;
            if d.iter().all(|p| p.end_offset <= p.start_offset) {
                continue;
            }
            let mut cfg = ConsumerConfig::new(vec![topic.clone()]);
            // Earliest: should a seek not take hold, reading more is slower but right.
            cfg.offset_reset = OffsetReset::Earliest;
            // The tail is there already: a fetch need not wait for more.
            cfg.reads_written = true;
            let mut reader = broker.consumer(cfg).await?;
            let mut upto: HashMap<i32, i64> = HashMap::new();
            for p in &d {
                if p.end_offset > p.start_offset {
                    let from = (p.end_offset - WINDOW).max(p.start_offset);
                    reader
                        .seek(
                            &TopicPartition::new(topic.clone(), p.partition),
                            Seek::Offset(from),
                        )
                        .await?;
                    upto.insert(p.partition, p.end_offset);
                }
            }
            // A remote broker may take a while to start fetching after a seek.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !upto.is_empty() && std::time::Instant::now() < deadline {
                let recs = reader.poll(10_000, Duration::from_millis(200)).await?;
                for r in recs {
                    if let Some(h) = r.headers.iter().rev().find(|h| &*h.key == HEADER)
                        && let Some((stage, origin, offset, index)) = parse(&h.value)
                        && stage == self.stage
                    {
                        self.written
                            .entry((topic.clone(), r.partition, origin.to_string()))
                            .or_default()
                            .ahead
                            .push_back((offset, index));
                    }
                    if upto
                        .get(&r.partition)
                        .is_some_and(|end| r.offset + 1 >= *end)
                    {
                        upto.remove(&r.partition);
                    }
                }
            }
            let _ = reader.close().await;
            if !upto.is_empty() {
                tracing::warn!(
                    stage = %self.stage,
                    "could not read the tail of {topic} partitions {:?} in time; replays there may repeat outputs (at least once)",
                    upto.keys().collect::<Vec<_>>()
                );
            }
        }
        self.settle_found();
        if !self.written.is_empty() {
            tracing::info!(
                stage = %self.stage,
                "replay protection: {} output partition/origin pairs already written",
                self.written.len()
            );
        }
        Ok(())
    }

    /// Orders what a tail read found, per origin (a retried batch may have written an
    /// origin's outputs out of order), and notes the oldest.
    fn settle_found(&mut self) {
        for found in self.written.values_mut() {
            let mut v = Vec::from(std::mem::take(&mut found.ahead));
            v.sort_unstable();
            v.dedup();
            found.oldest = v.first().copied().unwrap_or_default();
            found.ahead = v.into();
        }
    }

    /// True when this output was written before (so a replay must not write it again):
    /// it was found in the tail, or it is older than everything found there. Replays
    /// come in ascending order, so what they pass is dropped; once past the newest
    /// found, the origin's entry goes.
    /// Every offset found written, per origin (ascending, across output partitions):
    /// where a stage that writes at the end of input ranges cut them before.
    pub fn found_offsets(&self) -> HashMap<String, Vec<i64>> {
        let mut out: HashMap<String, Vec<i64>> = HashMap::new();
        for ((_, _, origin), f) in &self.written {
            let offsets = out.entry(origin.clone()).or_default();
            offsets.push(f.oldest.0);
            offsets.extend(f.ahead.iter().map(|(o, _)| *o));
        }
        for offsets in out.values_mut() {
            offsets.sort_unstable();
            offsets.dedup();
        }
        out
    }

    pub fn already_written(
        &mut self,
        topic: &str,
        partition: i32,
        origin: &str,
        offset: i64,
        index: u32,
    ) -> bool {
        if self.written.is_empty() {
            return false;
        }
        let key = (topic.to_string(), partition, origin.to_string());
        let Some(found) = self.written.get_mut(&key) else {
            return false;
        };
        let at = (offset, index);
        if at < found.oldest {
            // Before the tail: written (and not read back) before the interruption.
            return true;
        }
        let ahead = &mut found.ahead;
        while ahead.front().is_some_and(|f| *f < at) {
            ahead.pop_front();
        }
        let written = ahead.front() == Some(&at);
        if written {
            ahead.pop_front();
        }
        if ahead.is_empty() {
            self.written.remove(&key);
        }
        written
    }

    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = header("copy", "photos/3", 42, 7);
        assert_eq!(parse(&h.value), Some(("copy", "photos/3", 42, 7)));
        let h = header("count", "batch:120", 0, 3);
        assert_eq!(parse(&h.value), Some(("count", "batch:120", 0, 3)));
        // A reduce result is named by its batch and group key, whatever the key holds.
        let h = header("count", "batch:120/a#b.c@d", 0, 0);
        assert_eq!(parse(&h.value), Some(("count", "batch:120/a#b.c@d", 0, 0)));
        // Headers cut from one shared buffer, across a chunk boundary, stay intact.
        let mut hs = Headers::default();
        let p = prefix("copy", "photos/3");
        let made: Vec<Header> = (0..5000)
            .map(|i| hs.with_prefix(&p, -1 + i64::from(i) * 1_000_003, i))
            .collect();
        for (i, h) in (0u32..).zip(&made) {
            assert_eq!(&*h.key, HEADER);
            let want = Some(("copy", "photos/3", -1 + i64::from(i) * 1_000_003, i));
            assert_eq!(parse(&h.value), want);
        }
        assert_eq!(parse(b"garbage"), None);
        assert_eq!(parse(b"s@o#x.1"), None);
    }

    #[test]
    fn output_partition_is_explicit_then_key_hash_then_the_input_partition() {
        assert_eq!(
            output_partition(Some(2), Some(b"alice"), 4, Some(1)),
            Some(2)
        );
        let by_key = millrace_broker::partitioner::partition_for_key(b"alice", 4);
        assert_eq!(
            output_partition(None, Some(b"alice"), 4, Some(1)),
            i32::try_from(by_key).ok()
        );
        assert_eq!(output_partition(None, None, 4, Some(6)), Some(2));
        assert_eq!(output_partition(None, None, 4, None), None);
    }

    /// A lineage that found `read` (in the order read) for one origin of `out`/0.
    fn found(read: &[(i64, u32)]) -> Lineage {
        let mut l = Lineage::new("s");
        l.written.insert(
            ("out".into(), 0, "in/0".into()),
            Found {
                oldest: (0, 0),
                ahead: read.iter().copied().collect(),
            },
        );
        l.settle_found();
        l
    }

    #[test]
    fn replayed_outputs_found_in_the_tail_are_skipped_and_gaps_are_filled() {
        // The tail holds 7.0, 8.0, 8.1, then 10.0 and 10.1 (read out of order, one
        // twice): 9.0 is a gap, its batch failed after the next one was written.
        let mut l = found(&[(10, 1), (7, 0), (8, 0), (8, 1), (10, 0), (8, 0)]);
        assert!(
            l.already_written("out", 0, "in/0", 3, 0),
            "older than the tail"
        );
        assert!(l.already_written("out", 0, "in/0", 7, 0));
        assert!(l.already_written("out", 0, "in/0", 8, 0));
        assert!(l.already_written("out", 0, "in/0", 8, 1));
        assert!(
            !l.already_written("out", 0, "in/0", 9, 0),
            "the gap is written again"
        );
        assert!(l.already_written("out", 0, "in/0", 10, 0));
        assert!(
            !l.already_written("out", 0, "in/0", 10, 2),
            "past what was written"
        );
        assert!(l.is_empty(), "dropped once passed");
    }

    #[test]
    fn replayed_outputs_up_to_the_written_prefix_are_skipped() {
        let mut l = found(&[(9, 0), (9, 5), (10, 0), (10, 1)]);
        assert!(l.already_written("out", 0, "in/0", 9, 5));
        assert!(l.already_written("out", 0, "in/0", 10, 1));
        assert!(
            !l.already_written("out", 1, "in/0", 10, 0),
            "another partition"
        );
        assert!(
            !l.already_written("out", 0, "in/0", 10, 2),
            "past the prefix"
        );
        assert!(l.is_empty(), "dropped once passed");
    }
}
