//! Forwarding stages (copier, merger) on a backend that hands out records as stored:
//! each input record is copied, as its stored bytes plus the lineage header, into a
//! batch per output partition, with no record object built on either side. What the
//! record path does per record (the output partition, the lineage check on replays,
//! the size limit, the counts) is done here the same way; a test compares the two.

use std::sync::Mutex;

use millrace_broker::{EncodedBatch, EncodedPoll, Names, ProduceRecord};

use super::{Assembly, MAX_RECORD_BYTES};
use crate::dead_letter;
use crate::error::RuntimeError;
use crate::lineage::{self, Lineage};

/// A batch is sent once it holds this much, so an output batch stays well under the
/// store's batch limit whatever the input's batches were.
const BATCH_BYTES: usize = 16 << 20;

/// Output batches' buffers, kept from one poll to the next. A copier's batches run to
/// megabytes; a fresh buffer each time is page faults and zeroing as it grows, which
/// cost the 1 KiB copier more than the copying itself.
#[derive(Default)]
pub(super) struct Buffers(Mutex<Vec<EncodedBatch>>);

/// Buffers kept at most, and the largest kept.
const KEEP: usize = 8;
const KEEP_BYTES: usize = BATCH_BYTES + (1 << 20);

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
    let mut offset_text = itoa::Buffer::new();
    let mut index_text = itoa::Buffer::new();
    for poll in polls {
        let origin = lineage::origin_of(&poll.tp.topic, poll.tp.partition);
        let prefix = lineage::prefix(&assembly.stage, &origin);
        for rec in poll.records.iter() {
            let at = i64::try_from(rec.offset).unwrap_or(i64::MAX);
            let at_text = offset_text.format(at).as_bytes();
            // As on the record path, the limit counts the output before its lineage
            // header (key, value, the input's headers).
            let size = rec.content_size();
            if size > MAX_RECORD_BYTES {
                failed += 1;
                let decoded = rec.to_record(&mut names).map_err(|e| RuntimeError::Stage {
                    stage: assembly.stage.clone(),
                    message: format!("a stored record does not decode: {e}"),
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
                let error = format!(
                    "an output of {size} bytes is over the {MAX_RECORD_BYTES}-byte record limit"
                );
                dead.push(dead_letter::record(&assembly.stage, &source, &error, 1));
                continue;
            }
            outs += 1;
            // What the record takes in a batch, with its lineage header (prefix, offset,
            // '.', index) and the encoding's length fields: for cutting batches.
            let stored = rec.size() + 8 + lineage::HEADER.len() + prefix.len() + at_text.len() + 11;
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
                    .ok_or_else(|| RuntimeError::Stage {
                        stage: assembly.stage.clone(),
                        message: format!("no partition {q} in {topic}"),
                    })?;
                let batch = slot.get_or_insert_with(|| assembly.buffers.take());
                if !batch.is_empty() && batch.size() + stored > BATCH_BYTES {
                    let full = std::mem::replace(batch, assembly.buffers.take());
                    batches.push((output, q, full));
                }
                let index = index_text.format(index).as_bytes();
                batch
                    .push_with_header(&rec, lineage::HEADER, &[&prefix, at_text, b".", index])
                    .map_err(|e| RuntimeError::Stage {
                        stage: assembly.stage.clone(),
                        message: format!("forwarding a record: {e}"),
                    })?;
            }
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
