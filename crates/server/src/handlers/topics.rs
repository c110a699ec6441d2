//! CreateTopics, DeleteTopics, CreatePartitions. Each topic gets its own result: one
//! bad entry does not fail the others. Replication factors other than 1 (or -1, "the
//! broker's default") and manual replica assignments naming another broker are refused
//! with INVALID_REPLICATION_FACTOR / INVALID_REPLICA_ASSIGNMENT: there is one node.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use millrace_store::StoreError;

use super::{Ctx, Failure, blocking, fail, store_error};
use crate::config::NODE_ID;
use crate::topic_configs;

fn from_store(r: Result<Result<(), StoreError>, StoreError>) -> Result<(), Failure> {
    r.and_then(|inner| inner).map_err(|e| store_error(&e))
}

pub async fn create(ctx: &Ctx, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let partitions = if t.num_partitions == -1 {
            Ok(ctx.config.num_partitions)
        } else {
            u32::try_from(t.num_partitions).map_err(|_| {
                fail(
                    ResponseError::InvalidPartitions,
                    "the partition count must be positive",
                )
            })
        };
        let pairs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let checked = partitions.and_then(|n| {
            if !matches!(t.replication_factor, -1 | 1) {
                return Err(fail(
                    ResponseError::InvalidReplicationFactor,
                    format!(
                        "replication factor {}: this server is one node, so 1",
                        t.replication_factor
                    ),
                ));
            }
            if t.assignments
                .iter()
                .any(|a| a.broker_ids.iter().any(|b| b.0 != NODE_ID))
            {
                return Err(fail(
                    ResponseError::InvalidReplicaAssignment,
                    format!("every replica is on broker {NODE_ID}"),
                ));
            }
            let n = if t.assignments.is_empty() {
                n
            } else {
                u32::try_from(t.assignments.len()).unwrap_or(u32::MAX)
            };
            let (config, extra) =
                topic_configs::split(&pairs).map_err(|e| fail(ResponseError::InvalidConfig, e))?;
            Ok((n, config, extra))
        });
        let outcome = match checked {
            Err(f) => Err(f),
            Ok((n, config, extra)) if req.validate_only => {
                if ctx.hub.store().topic(&name).is_ok() {
                    Err(fail(
                        ResponseError::TopicAlreadyExists,
                        format!("topic '{name}' already exists"),
                    ))
                } else {
                    Ok((n, config, extra))
                }
            }
            Ok((n, config, extra)) => {
                let store = Arc::clone(ctx.hub.store());
                let (nm, c, x) = (name.clone(), config.clone(), extra.clone());
                from_store(blocking(move || store.create_topic_with(&nm, n, c, x)).await)
                    .map(|()| (n, config, extra))
            }
        };
        let result = CreatableTopicResult::default()
            .with_name(TopicName(StrBytes::from_string(name)))
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        results.push(match outcome {
            // What was created is told from v5; before, those fields must stay unset.
            Ok(_) if version < 5 => result,
            Ok((n, config, extra)) => result
                .with_num_partitions(i32::try_from(n).unwrap_or(i32::MAX))
                .with_replication_factor(1)
                .with_configs(Some(
                    topic_configs::describe(&config, &extra)
                        .into_iter()
                        .map(|(k, v, source)| {
                            CreatableTopicConfigs::default()
                                .with_name(StrBytes::from_string(k))
                                .with_value(Some(StrBytes::from_string(v)))
                                .with_config_source(source as i8)
                        })
                        .collect(),
                )),
            Err((code, message)) => result.with_error_code(code).with_error_message(message),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn delete(ctx: &Ctx, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    // Up to v5 topics come by name in `topic_names`; v6 in `topics`, by name or id.
    let mut names: Vec<Option<TopicName>> = req.topic_names.into_iter().map(Some).collect();
    names.extend(req.topics.into_iter().map(|t| t.name));
    let mut responses = Vec::with_capacity(names.len());
    for name in names {
        let result = DeletableTopicResult::default().with_name(name.clone());
        let Some(name) = name else {
            responses.push(result.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        let store = Arc::clone(ctx.hub.store());
        let n = name.0.to_string();
        let outcome = from_store(blocking(move || store.delete_topic(&n)).await);
        if outcome.is_ok() {
            ctx.hub.producers().forget_topic(&name.0);
        }
        responses.push(match outcome {
            Ok(()) => result,
            // Error messages exist from v5.
            Err((code, message)) => result
                .with_error_code(code)
                .with_error_message(message.filter(|_| version >= 5)),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(
    ctx: &Ctx,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let outcome = match (u32::try_from(t.count), ctx.hub.store().topic(&name)) {
            (_, Err(e)) => Err(store_error(&e)),
            (Err(_), _) => Err(fail(
                ResponseError::InvalidPartitions,
                "the partition count must be positive",
            )),
            (Ok(n), Ok(topic)) if n <= topic.partition_count() => Err(fail(
                ResponseError::InvalidPartitions,
                format!(
                    "topic '{name}' has {} partitions; it can only grow",
                    topic.partition_count()
                ),
            )),
            (Ok(_), Ok(_))
                if t.assignments
                    .iter()
                    .flatten()
                    .any(|a| a.broker_ids.iter().any(|b| b.0 != NODE_ID)) =>
            {
                Err(fail(
                    ResponseError::InvalidReplicaAssignment,
                    format!("every replica is on broker {NODE_ID}"),
                ))
            }
            (Ok(_), Ok(_)) if req.validate_only => Ok(()),
            (Ok(n), Ok(_)) => {
                let store = Arc::clone(ctx.hub.store());
                let nm = name.clone();
                from_store(blocking(move || store.create_partitions(&nm, n)).await)
            }
        };
        let result = CreatePartitionsTopicResult::default().with_name(t.name);
        results.push(match outcome {
            Ok(()) => result,
            Err((code, message)) => result.with_error_code(code).with_error_message(message),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
