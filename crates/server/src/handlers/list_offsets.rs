//! ListOffsets: a partition's earliest offset (-2), latest (-1), or the first offset
//! whose record's timestamp is at or after a time. Versions up to 6: version 7 adds the
//! offset of the largest timestamp (-3), which the store cannot answer without reading
//! the whole partition.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use millrace_store::Partition;

use super::{Ctx, store_code};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub fn handle(ctx: &Ctx, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let store = ctx.hub.store();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = store.topic(&t.name.0);
            let partitions = t
                .partitions
                .into_iter()
                .map(|lp| {
                    let answer = ListOffsetsPartitionResponse::default()
                        .with_partition_index(lp.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        // Leader epochs exist from v4; before, the field must stay unset.
                        .with_leader_epoch(if version >= 4 { 0 } else { -1 });
                    let found = match &topic {
                        Err(e) => Err(store_code(e)),
                        Ok(topic) => u32::try_from(lp.partition_index)
                            .ok()
                            .and_then(|i| topic.partition(i).ok())
                            .ok_or(ResponseError::UnknownTopicOrPartition)
                            .and_then(|p| lookup(p, lp.timestamp)),
                    };
                    match found {
                        Ok((offset, timestamp)) => {
                            answer.with_offset(offset).with_timestamp(timestamp)
                        }
                        Err(code) => answer.with_error_code(code.code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// (offset, timestamp) for a ListOffsets timestamp; (-1, -1) when no record is that
/// recent, as Kafka answers.
fn lookup(p: &Partition, timestamp: i64) -> Result<(i64, i64), ResponseError> {
    let as_i64 = |o: u64| i64::try_from(o).unwrap_or(i64::MAX);
    match timestamp {
        LATEST => Ok((as_i64(p.end_offset()), -1)),
        EARLIEST => Ok((as_i64(p.start_offset()), -1)),
        ts if ts >= 0 => {
            let offset = p.offset_for_timestamp(ts).map_err(|e| store_code(&e))?;
            if offset >= p.end_offset() {
                return Ok((-1, -1));
            }
            let found = p.read(offset, 1, 1).map_err(|e| store_code(&e))?;
            Ok(found
                .first()
                .map_or((-1, -1), |r| (as_i64(r.offset), r.record.timestamp)))
        }
        _ => Err(ResponseError::UnsupportedVersion),
    }
}
