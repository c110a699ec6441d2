//! OffsetCommit, OffsetFetch and OffsetDelete on the wire.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use millrace_store::CommittedOffset;

use super::text;
use crate::group::{CommitOffsets, Coordinator, FetchedTopic, GroupError, PartitionCommit};

fn code(r: &Result<(), GroupError>) -> i16 {
    r.as_ref().err().map_or(0, GroupError::code)
}

/// OffsetCommit: one error code per partition; a refusal of the whole commit (a
/// member or generation the group does not know) is every partition's code.
pub async fn offset_commit(
    c: &Coordinator,
    version: i16,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let commit = CommitOffsets {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: if version >= 7 {
            req.group_instance_id.as_ref().map(|i| i.to_string())
        } else {
            None
        },
        generation: req.generation_id_or_member_epoch,
        offsets: req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| PartitionCommit {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                })
            })
            .collect(),
    };
    let results = match c.commit_offsets(commit).await {
        Ok(r) => r,
        Err(e) => {
            let n = req.topics.iter().map(|t| t.partitions.len()).sum();
            vec![Err(e); n]
        }
    };
    let asked = req.topics.iter().map(|t| {
        let partitions = t.partitions.iter().map(|p| p.partition_index).collect();
        (t.name.clone(), partitions)
    });
    let mut r = OffsetCommitResponse::default();
    r.topics = answer(asked, &results, |name, partitions| {
        let mut t = OffsetCommitResponseTopic::default();
        t.name = name;
        t.partitions = partitions
            .into_iter()
            .map(|(index, error_code)| {
                let mut p = OffsetCommitResponsePartition::default();
                p.partition_index = index;
                p.error_code = error_code;
                p
            })
            .collect();
        t
    });
    r
}

/// The topics of an answer in the request's order (`asked`: each topic's name and
/// partitions), every partition with the code of its result, taken in order.
fn answer<T>(
    asked: impl Iterator<Item = (TopicName, Vec<i32>)>,
    results: &[Result<(), GroupError>],
    topic: impl Fn(TopicName, Vec<(i32, i16)>) -> T,
) -> Vec<T> {
    let mut results = results.iter();
    asked
        .map(|(name, partitions)| {
            let codes = partitions
                .into_iter()
                .map(|p| (p, results.next().map_or(0, code)))
                .collect();
            topic(name, codes)
        })
        .collect()
}

/// One partition's answer: the offset and metadata, or -1 and empty for none.
fn fetched(c: Option<&CommittedOffset>) -> (i64, String) {
    match c {
        Some(c) => (
            i64::try_from(c.next).unwrap_or(i64::MAX),
            c.metadata.clone(),
        ),
        None => (-1, String::new()),
    }
}

/// OffsetFetch: one group before v8, several from v8. Topics `null` (v2 and later)
/// asks for every offset the group committed.
pub fn offset_fetch(c: &Coordinator, version: i16, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let mut r = OffsetFetchResponse::default();
    if version >= 8 {
        r.groups = req
            .groups
            .iter()
            .map(|g| {
                let topics: Option<Vec<(String, Vec<i32>)>> = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let mut rg = OffsetFetchResponseGroup::default();
                rg.group_id = g.group_id.clone();
                match c.fetch_offsets(g.group_id.0.as_str(), topics.as_deref()) {
                    Ok(found) => rg.topics = found.iter().map(group_topic).collect(),
                    Err(e) => rg.error_code = e.code(),
                }
                rg
            })
            .collect();
        return r;
    }
    let topics: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    match c.fetch_offsets(req.group_id.0.as_str(), topics.as_deref()) {
        Ok(found) => r.topics = found.iter().map(|t| single_topic(t, 0, version)).collect(),
        Err(e) if version >= 2 => r.error_code = e.code(),
        // v1 has no group-level error: every partition asked for carries it.
        Err(e) => {
            r.topics = topics
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, partitions)| {
                    let t = FetchedTopic {
                        topic,
                        partitions: partitions.into_iter().map(|p| (p, None)).collect(),
                    };
                    single_topic(&t, e.code(), version)
                })
                .collect();
        }
    }
    r
}

/// A topic of a v1–v7 answer (one group).
fn single_topic(t: &FetchedTopic, error: i16, version: i16) -> OffsetFetchResponseTopic {
    let mut rt = OffsetFetchResponseTopic::default();
    rt.name = TopicName(text(&t.topic));
    rt.partitions = t
        .partitions
        .iter()
        .map(|(p, c)| {
            let (offset, metadata) = fetched(c.as_ref());
            let mut rp = OffsetFetchResponsePartition::default();
            rp.partition_index = *p;
            rp.committed_offset = offset;
            if version >= 5 {
                rp.committed_leader_epoch = -1;
            }
            rp.metadata = Some(text(&metadata));
            rp.error_code = error;
            rp
        })
        .collect();
    rt
}

/// A topic of a v8+ answer (several groups).
fn group_topic(t: &FetchedTopic) -> OffsetFetchResponseTopics {
    let mut rt = OffsetFetchResponseTopics::default();
    rt.name = TopicName(text(&t.topic));
    rt.partitions = t
        .partitions
        .iter()
        .map(|(p, c)| {
            let (offset, metadata) = fetched(c.as_ref());
            let mut rp = OffsetFetchResponsePartitions::default();
            rp.partition_index = *p;
            rp.committed_offset = offset;
            rp.committed_leader_epoch = -1;
            rp.metadata = Some(text(&metadata));
            rp
        })
        .collect();
    rt
}

/// OffsetDelete: a group-level refusal is the top-level code; otherwise one code per
/// partition.
pub async fn offset_delete(c: &Coordinator, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let mut r = OffsetDeleteResponse::default();
    let results = match c.delete_offsets(req.group_id.0.as_str(), &partitions).await {
        Ok(results) => results,
        Err(e) => {
            r.error_code = e.code();
            return r;
        }
    };
    let asked = req.topics.iter().map(|t| {
        let partitions = t.partitions.iter().map(|p| p.partition_index).collect();
        (t.name.clone(), partitions)
    });
    r.topics = answer(asked, &results, |name, partitions| {
        let mut t = OffsetDeleteResponseTopic::default();
        t.name = name;
        t.partitions = partitions
            .into_iter()
            .map(|(index, error_code)| {
                let mut p = OffsetDeleteResponsePartition::default();
                p.partition_index = index;
                p.error_code = error_code;
                p
            })
            .collect();
        t
    });
    r
}
