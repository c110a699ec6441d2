//! Produce: each partition's batches decoded (`batches`), checked against the
//! producer's sequence when it is idempotent (`producers`), appended as one store batch
//! each, and answered with the base offset once the append is as durable as the
//! topic's `durability` says — for acks=1 and acks=all alike, since this node is every
//! replica. acks=0 appends the same way and answers nothing.
//!
//! Appends that may wait for an fsync run on tokio's blocking pool, all partitions of a
//! request at once, so their fsyncs overlap; `durability=none` appends run inline.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use millrace_store::{Durability, Partition, Topic};

use super::{Ctx, Failure, store_error};
use crate::batches::{self, BatchError, ProducedBatch};
use crate::hub::Hub;
use crate::producers::{self, Sequence};

/// Handles a produce request; `None` for acks=0.
pub async fn handle(ctx: &Ctx, req: ProduceRequest, version: i16) -> Option<ProduceResponse> {
    let transactional = req.transactional_id.is_some();
    let mut pending: Vec<(TopicName, i32, Pending)> = Vec::new();
    for topic in req.topic_data {
        let found = ctx.hub.store().topic(&topic.name.0);
        for part in topic.partition_data {
            let records = part.records.unwrap_or_default();
            let answer = match &found {
                _ if transactional => Pending::Done(refuse_transaction()),
                Err(e) => {
                    let (code, message) = store_error(e);
                    Pending::Done(failed(code, message))
                }
                Ok(t) => start(&ctx.hub, Arc::clone(t), part.index, records),
            };
            pending.push((topic.name.clone(), part.index, answer));
        }
    }
    let mut responses: Vec<TopicProduceResponse> = Vec::new();
    for (name, index, answer) in pending {
        let answer = match answer {
            Pending::Done(a) => a,
            Pending::Running(task) => task.await.unwrap_or_else(|e| {
                failed(
                    ResponseError::KafkaStorageError.code(),
                    Some(StrBytes::from_string(format!("the append failed: {e}"))),
                )
            }),
        }
        .with_index(index);
        // Fields a version does not have must keep their defaults.
        let answer = if version >= 5 {
            answer
        } else {
            answer.with_log_start_offset(-1)
        };
        let answer = if version >= 8 {
            answer
        } else {
            answer.with_error_message(None)
        };
        match responses.last_mut() {
            Some(t) if t.name == name => t.partition_responses.push(answer),
            _ => responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(vec![answer]),
            ),
        }
    }
    (req.acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

/// A partition's answer, or the append that will give it.
enum Pending {
    Done(PartitionProduceResponse),
    Running(tokio::task::JoinHandle<PartitionProduceResponse>),
}

fn start(hub: &Arc<Hub>, topic: Arc<Topic>, index: i32, records: Bytes) -> Pending {
    let inline = topic.config().durability == Durability::None;
    let hub = Arc::clone(hub);
    let work = move || append_partition(&hub, &topic, index, records);
    if inline {
        Pending::Done(work())
    } else {
        Pending::Running(tokio::task::spawn_blocking(work))
    }
}

fn transactions_refused() -> Failure {
    (
        ResponseError::TransactionalIdAuthorizationFailed.code(),
        Some(StrBytes::from_static_str(
            "transactions are not supported by millrace serve",
        )),
    )
}

fn refuse_transaction() -> PartitionProduceResponse {
    let (code, message) = transactions_refused();
    failed(code, message)
}

fn failed(code: i16, message: Option<StrBytes>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_error_code(code)
        .with_error_message(message)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

fn append_partition(
    hub: &Hub,
    topic: &Topic,
    index: i32,
    records: Bytes,
) -> PartitionProduceResponse {
    let Some(p) = u32::try_from(index)
        .ok()
        .and_then(|i| topic.partition(i).ok())
    else {
        return failed(ResponseError::UnknownTopicOrPartition.code(), None);
    };
    let batches = match batches::decode_produced(records) {
        Ok(b) => b,
        Err(BatchError::Corrupt(m)) => {
            return failed(ResponseError::CorruptMessage.code(), Some(m.into()));
        }
        Err(BatchError::Invalid(m)) => {
            return failed(ResponseError::InvalidRecord.code(), Some(m.into()));
        }
    };
    let mut first_base = None;
    for batch in batches {
        match append_batch(hub, topic.name(), p, &batch) {
            Ok(base) => {
                first_base.get_or_insert(base);
            }
            Err((code, message)) => return failed(code, message),
        }
    }
    let Some(base) = first_base else {
        return failed(
            ResponseError::InvalidRecord.code(),
            Some(StrBytes::from_static_str("the request holds no records")),
        );
    };
    PartitionProduceResponse::default()
        .with_base_offset(i64::try_from(base).unwrap_or(i64::MAX))
        .with_log_append_time_ms(-1)
        .with_log_start_offset(i64::try_from(p.start_offset()).unwrap_or(0))
}

/// Appends one batch, checking its sequence first when its producer is idempotent.
/// Returns its base offset: where it was appended now, or the first time.
fn append_batch(
    hub: &Hub,
    topic: &str,
    p: &Partition,
    batch: &ProducedBatch,
) -> Result<u64, Failure> {
    if batch.transactional {
        return Err(transactions_refused());
    }
    let append = || p.append_refs(batch.records()).map_err(|e| store_error(&e));
    if batch.producer_id < 0 || batch.base_sequence < 0 {
        return append();
    }
    let state = hub.producers().partition(batch.producer_id, topic, p.id());
    // Held across the append: the same producer's next batch waits for this one.
    let mut s = producers::lock(&state);
    let count = batch.len();
    match s.check(batch.producer_epoch, batch.base_sequence, count) {
        Sequence::Append => {
            let base = append()?;
            s.appended(batch.producer_epoch, batch.base_sequence, count, base);
            Ok(base)
        }
        Sequence::Duplicate(base) => Ok(base),
        Sequence::OutOfOrder { expected } => Err((
            ResponseError::OutOfOrderSequenceNumber.code(),
            Some(StrBytes::from_string(format!(
                "producer {} sent sequence {} where {expected} was expected",
                batch.producer_id, batch.base_sequence
            ))),
        )),
        Sequence::Fenced => Err((
            ResponseError::InvalidProducerEpoch.code(),
            Some(StrBytes::from_string(format!(
                "producer {} epoch {} is older than its current epoch",
                batch.producer_id, batch.producer_epoch
            ))),
        )),
    }
}
