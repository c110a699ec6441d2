//! Forwarding stages (copier, merger) on a backend that hands out records as stored:
//! each input record is copied, as its stored bytes plus the lineage header, into a
//! batch per output partition, with no record object built on either side. What the
//! record path does per record (the output partition, the lineage check on replays,
//! the size limit, the counts) is done here the same way; a test compares the two.

use std::sync::Mutex;
use std::time::Duration;

use millrace_broker::encoded::{EncodedBatch, EncodedPoll};
use millrace_broker::{Broker, BrokerError, Consumer, Names, ProduceRecord};

use super::assemble::Assembly;
use crate::dead_letter;
use crate::engine::produce::{MAX_RECORD_BYTES, oversize};
use crate::error::RuntimeError;
use crate::lineage::{self, Lineage};

/// Whether the backend moves records as stored on both sides (the embedded store's
/// capability, see `millrace_broker::encoded`): the one place the copy path asks.
pub(super) fn offered(broker: &dyn Broker, consumer: &mut dyn Consumer) -> bool {
    broker.encoded().is_some() && consumer.encoded().is_some()
}

/// Polls records as stored, from a consumer [`offered`] said reads them.
pub(super) async fn poll(
    consumer: &mut dyn Consumer,
    max_records: usize,
    timeout: Duration,
) -> Result<Vec<EncodedPoll>, BrokerError> {
    match consumer.encoded() {
        Some(c) => c.poll_encoded(max_records, timeout).await,
        None => Err(BrokerError::Invalid(
            "this consumer does not read records as stored".into(),
        )),
    }
}

/// Appends forwarded batches, in order, to a backend [`offered`] said takes them.
pub(super) async fn produce(
    broker: &dyn Broker,
    batches: &mut [(&str, i32, EncodedBatch)],
) -> Result<(), BrokerError> {
    match broker.encoded() {
        Some(b) => b.produce_encoded_all(batches).await,
        None => Err(BrokerError::Unsupported {
            backend: broker.backend(),
            what: "records as stored",
        }),
    }
}

/// A batch is sent once it holds this much: a write of a size the store handles well
/// (its own appends are batches of about this size), well under its batch limit, and a
/// bound on the buffers a stage keeps.
const BATCH_BYTES: usize = 1 << 20;

/// Output batches' buffers, kept from one poll to the next. A copier's batches run to
/// megabytes; a fresh buffer each time is page faults and zeroing as it grows, which
/// cost the 1 KiB copier more than the copying itself.
#[derive(Default)]
pub(super) struct Buffers(Mutex<Vec<EncodedBatch>>);

/// Buffers kept at most, and the largest kept (a buffer a big record grew past that is
/// dropped).
const KEEP: usize = 4;
const KEEP_BYTES: usize = 4 * BATCH_BYTES;

impl Buffers {
    fn take(&self) -> EncodedBatch {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Keeps a sent batch's buffer for a later one.
    pub(super) fn give_back(&self, mut batch: EncodedBatch) {
        if batch.capacity() > KEEP_BYTES {
            return;
        }
        batch.clear();
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEEP {
            kept.push(batch);
        }
    }
}

/// A forwarded poll: batches per (output, partition) in the order to send them, dead
/// letters, and the counts `[out, filtered, dead-lettered, emitted]`.
pub(super) struct Forwarded {
    pub batches: Vec<(usize, i32, EncodedBatch)>,
    pub dead: Vec<ProduceRecord>,
    pub counts: [u64; 4],
}

/// Copies a poll's runs into output batches, each record with its lineage header,
/// skipping what a replay finds already written; runs on the produce thread, where the
/// record path assembles too.
pub(super) fn assemble(
    assembly: &Assembly,
    polls: &[EncodedPoll],
    lineage: &mut Lineage,
) -> Result<Forwarded, RuntimeError> {
    // The batch being filled per output and partition; full ones wait in `batches`.
    let mut filling: Vec<Vec<Option<EncodedBatch>>> = assembly
        .out_parts
        .iter()
        .map(|&n| (0..n).map(|_| None).collect())
        .collect();
    let mut batches = Vec::new();
    let mut dead = Vec::new();
    let (mut outs, mut failed, mut emitted) = (0u64, 0u64, 0u64);
    let mut names = Names::default();
    // The lineage's output index is the output's number.
    let index_texts: Vec<String> = (0..filling.len()).map(|i| i.to_string()).collect();
    for poll in polls {
        let origin = lineage::origin_of(&poll.tp.topic, poll.tp.partition);
        let prefix = lineage::prefix(&assembly.stage, &origin);
        let mut offset_text = Decimal::new(poll.records.first_offset());
        let mut walked = 0usize;
        for rec in poll.records.iter() {
            walked += 1;
            offset_text.move_to(rec.offset);
            let at = i64::try_from(rec.offset).unwrap_or(i64::MAX);
            let at_text = offset_text.as_bytes();
            // As on the record path, the limit counts the output before its lineage
            // header (key, value, the input's headers).
            let size = rec.content_size();
            if size > MAX_RECORD_BYTES {
                failed += 1;
                let decoded =
                    rec.to_record(&mut names)
                        .map_err(|reason| RuntimeError::Undecodable {
                            stage: assembly.stage.clone(),
                            partition: poll.tp.clone(),
                            offset: at,
                            reason,
                        })?;
                let source = millrace_broker::ConsumedRecord {
                    topic: poll.tp.topic.clone(),
                    partition: poll.tp.partition,
                    offset: at,
                    key: decoded.key,
                    value: decoded.value,
                    headers: decoded.headers,
                    timestamp: decoded.timestamp,
                };
                dead.push(dead_letter::record(
                    &assembly.stage,
                    &source,
                    &oversize(size),
                    1,
                ));
                continue;
            }
            outs += 1;
            // What the record takes in a batch with its lineage header (prefix, offset,
            // '.' and an index of up to 10 digits): for cutting batches.
            let value_len = prefix.len() + at_text.len() + 11;
            let stored = EncodedBatch::size_with_header(&rec, lineage::HEADER, value_len);
            for (output, partitions) in filling.iter_mut().enumerate() {
                emitted += 1;
                let parts = assembly.out_parts[output];
                let q = lineage::output_partition(None, rec.key, parts, Some(poll.tp.partition))
                    .unwrap_or(0);
                let index = u32::try_from(output).unwrap_or(u32::MAX);
                let topic = &assembly.outputs[output];
                if lineage.already_written(topic, q, &origin, at, index) {
                    continue;
                }
                let slot = usize::try_from(q)
                    .ok()
                    .and_then(|q| partitions.get_mut(q))
                    .ok_or_else(|| RuntimeError::NoPartition {
                        stage: assembly.stage.clone(),
                        topic: topic.clone(),
                        partition: q,
                    })?;
                let batch = slot.get_or_insert_with(|| assembly.buffers.take());
                if !batch.is_empty() && batch.size() + stored > BATCH_BYTES {
                    let full = std::mem::replace(batch, assembly.buffers.take());
                    batches.push((output, q, full));
                }
                let index = index_texts[output].as_bytes();
                batch
                    .push_with_header(
                        &rec,
                        lineage::HEADER,
                        &lineage::value_parts(&prefix, at_text, index),
                    )
                    .map_err(|e| RuntimeError::Forward {
                        stage: assembly.stage.clone(),
                        topic: topic.clone(),
                        partition: q,
                        source: Box::new(e.into()),
                    })?;
            }
        }
        // The read checked the run's layout, so the walk takes every record; should it
        // ever stop short, the offsets committed for this poll would pass records never
        // written. The stage stops instead.
        if walked != poll.records.len() {
            return Err(RuntimeError::Unparsed {
                stage: assembly.stage.clone(),
                partition: poll.tp.clone(),
                from: i64::try_from(poll.records.first_offset()).unwrap_or(i64::MAX),
                missed: poll.records.len() - walked,
                of: poll.records.len(),
            });
        }
    }
    for (output, parts) in filling.into_iter().enumerate() {
        for (q, batch) in parts.into_iter().enumerate() {
            match batch {
                Some(b) if !b.is_empty() => {
                    batches.push((output, i32::try_from(q).unwrap_or(i32::MAX), b));
                }
                Some(b) => assembly.buffers.give_back(b),
                None => {}
            }
        }
    }
    Ok(Forwarded {
        batches,
        dead,
        counts: [outs, 0, failed, emitted],
    })
}

/// An offset in decimal, counted up in place: the records of a run have consecutive
/// offsets, so a record's lineage header costs an increment instead of a formatting.
struct Decimal {
    value: u64,
    digits: [u8; 20],
    /// Where the digits start in `digits`.
    start: usize,
}

impl Decimal {
    fn new(value: u64) -> Self {
        let mut d = Decimal {
            value,
            digits: [b'0'; 20],
            start: 20,
        };
        d.set(value);
        d
    }

    fn set(&mut self, value: u64) {
        let mut text = itoa::Buffer::new();
        let text = text.format(value).as_bytes();
        self.start = self.digits.len() - text.len();
        self.digits[self.start..].copy_from_slice(text);
        self.value = value;
    }

    /// Moves to `value`: an increment when it is the next one.
    fn move_to(&mut self, value: u64) {
        if value == self.value {
            return;
        }
        if Some(value) != self.value.checked_add(1) {
            return self.set(value);
        }
        self.value = value;
        for i in (self.start..self.digits.len()).rev() {
            if self.digits[i] == b'9' {
                self.digits[i] = b'0';
            } else {
                self.digits[i] += 1;
                return;
            }
        }
        // All nines: one digit more.
        match self.start.checked_sub(1) {
            Some(s) => {
                self.start = s;
                self.digits[s] = b'1';
            }
            None => self.set(value),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::Decimal;

    #[test]
    fn a_counted_offset_reads_as_the_formatted_one() {
        let mut d = Decimal::new(0);
        for v in (0..120_000u64).chain(999_990..1_000_010) {
            d.move_to(v);
            assert_eq!(d.as_bytes(), v.to_string().as_bytes());
        }
        for v in [
            7,
            99,
            100,
            5,
            i64::MAX as u64 - 1,
            i64::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            d.move_to(v);
            assert_eq!(d.as_bytes(), v.to_string().as_bytes());
        }
    }
}
