//! DeleteRecords: every record before an offset (-1: the high watermark) is deleted;
//! the partition's log start moves there durably and readers begin at it. Kafka
//! Streams deletes what it consumed from its repartition topics this way.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use millrace_store::StoreError;

use super::{Ctx, blocking, store_code};

/// DeleteRecords' offset for "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub async fn handle(ctx: &Ctx, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = ctx.hub.store().topic(&t.name.0);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for dp in t.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(dp.partition_index)
                .with_low_watermark(-1);
            let outcome = match &topic {
                Err(e) => Err(store_code(e)),
                Ok(topic) => delete(Arc::clone(topic), dp.partition_index, dp.offset).await,
            };
            partitions.push(match outcome {
                Ok(low) => result.with_low_watermark(i64::try_from(low).unwrap_or(i64::MAX)),
                Err(code) => result.with_error_code(code.code()),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

async fn delete(
    topic: Arc<millrace_store::Topic>,
    index: i32,
    offset: i64,
) -> Result<u64, ResponseError> {
    let id = u32::try_from(index).map_err(|_| ResponseError::UnknownTopicOrPartition)?;
    topic.partition(id).map_err(|e| store_code(&e))?;
    blocking(move || {
        let p = topic.partition(id)?;
        let before = if offset == HIGH_WATERMARK {
            p.end_offset()
        } else {
            u64::try_from(offset)
                .map_err(|_| StoreError::InvalidArgument(format!("offset {offset}")))?
        };
        p.delete_records_before(before)
    })
    .await
    .and_then(|r| r)
    .map_err(|e| match e {
        StoreError::InvalidArgument(_) => ResponseError::OffsetOutOfRange,
        e => store_code(&e),
    })
}
