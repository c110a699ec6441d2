//! Fetch: each partition's records from the offset asked for, as uncompressed v2
//! batches written from the stored bytes (`batch_writer`), within the partition's and
//! the response's byte limits (the first stored batch found is returned even when
//! larger, as Kafka does, so a consumer never sticks on a big record). A fetch with too
//! little data long-polls: it waits until `min_bytes` are there or `max_wait_ms`
//! passed, woken by the hub when records become readable.
//!
//! No fetch sessions: the response's session id is 0, which tells clients to send full
//! fetches. Without transactions every offset is stable, so both isolation levels read
//! the same records, up to the high watermark.

use std::cell::RefCell;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use millrace_store::Partition;

use super::{Ctx, store_code};
use crate::batch_writer::FetchSink;

pub async fn handle(ctx: &Ctx, req: FetchRequest, version: i16) -> FetchResponse {
    let max_bytes = usize::try_from(req.max_bytes)
        .unwrap_or(0)
        .min(ctx.config.max_fetch_bytes);
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0).max(1);
    let wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0));
    let topics: Vec<String> = req.topics.iter().map(|t| t.topic.0.to_string()).collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let seen = ends(ctx, &req);
        let (response, bytes, failed) = read(ctx, &req, max_bytes, version);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if failed || bytes >= min_bytes || left.is_zero() {
            return response;
        }
        // Wait until a partition asked for grows, then read again.
        let grew = ctx
            .hub
            .wait_for_records(&names, left, || ends(ctx, &req) != seen)
            .await;
        if !grew {
            return read(ctx, &req, max_bytes, version).0;
        }
    }
}

/// The end offsets of the partitions asked for (0 for one that is not there), summed:
/// it changes when any of them grows.
fn ends(ctx: &Ctx, req: &FetchRequest) -> u64 {
    let store = ctx.hub.store();
    req.topics
        .iter()
        .filter_map(|t| store.topic(&t.topic.0).ok().map(|topic| (t, topic)))
        .flat_map(|(t, topic)| {
            t.partitions.iter().map(move |p| {
                u32::try_from(p.partition)
                    .ok()
                    .and_then(|i| topic.partition(i).ok())
                    .map_or(0, |part| part.end_offset())
            })
        })
        .fold(0u64, u64::wrapping_add)
}

/// One pass over the partitions: the response, the record bytes in it, and whether a
/// partition failed (which answers at once).
fn read(
    ctx: &Ctx,
    req: &FetchRequest,
    max_bytes: usize,
    version: i16,
) -> (FetchResponse, usize, bool) {
    let store = ctx.hub.store();
    let mut budget = max_bytes;
    let mut total = 0usize;
    let mut any_failed = false;
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let topic = store.topic(&t.topic.0);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for fp in &t.partitions {
            let mut data = PartitionData::default()
                .with_partition_index(fp.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica(BrokerId(-1))
                .with_records(Some(Bytes::new()));
            let part = match &topic {
                Err(e) => Err(store_code(e)),
                Ok(topic) => u32::try_from(fp.partition)
                    .ok()
                    .and_then(|i| topic.partition(i).ok())
                    .ok_or(ResponseError::UnknownTopicOrPartition),
            };
            let outcome = part.and_then(|p| {
                let (start, end) = (p.start_offset(), p.end_offset());
                data = std::mem::take(&mut data)
                    .with_high_watermark(i64::try_from(end).unwrap_or(i64::MAX))
                    .with_last_stable_offset(i64::try_from(end).unwrap_or(i64::MAX))
                    // The log start exists from v5; before, the field must stay unset.
                    .with_log_start_offset(if version >= 5 {
                        i64::try_from(start).unwrap_or(0)
                    } else {
                        -1
                    });
                let from = u64::try_from(fp.fetch_offset)
                    .ok()
                    .filter(|o| (start..=end).contains(o))
                    .ok_or(ResponseError::OffsetOutOfRange)?;
                if from == end || (budget == 0 && total > 0) {
                    return Ok(());
                }
                let limit = usize::try_from(fp.partition_max_bytes)
                    .unwrap_or(0)
                    .min(budget)
                    .max(1);
                let bytes = read_batches(p, from, limit)?;
                budget = budget.saturating_sub(bytes.len());
                total += bytes.len();
                data = std::mem::take(&mut data).with_records(Some(bytes));
                Ok(())
            });
            if let Err(code) = outcome {
                any_failed = true;
                data = data.with_error_code(code.code());
            }
            partitions.push(data);
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions),
        );
    }
    let response = FetchResponse::default().with_responses(responses);
    (response, total, any_failed)
}

thread_local! {
    /// Where this thread writes fetched batches. Each partition's bytes are split off
    /// it; once the response that held them is sent, the next fetch reuses the memory.
    static FETCH_BUF: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A buffer that grew past this is let go after use rather than kept by the thread.
const KEEP_BUF_BYTES: usize = 8 << 20;

/// The records of partition `p` from `from` on, about `limit` bytes of them (at least
/// one stored batch), as Kafka batches.
fn read_batches(p: &Partition, from: u64, limit: usize) -> Result<Bytes, ResponseError> {
    FETCH_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.reserve(limit.min(KEEP_BUF_BYTES));
        let mut sink = FetchSink::new(&mut buf);
        let read = p.read_into(from, usize::MAX, limit, &mut sink);
        let written = sink.finish();
        let grown = buf.capacity() > KEEP_BUF_BYTES;
        let bytes = buf.split().freeze();
        if grown {
            *buf = BytesMut::new();
        }
        read.map_err(|e| store_code(&e))?;
        if let Err(e) = written {
            tracing::error!(error = %e, "fetch");
            return Err(ResponseError::KafkaStorageError);
        }
        Ok(bytes)
    })
}
