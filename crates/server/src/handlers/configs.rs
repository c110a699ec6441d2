//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs for topics (what the keys
//! mean: `topic_configs`), and the broker's configs, read-only, as Kafka tools ask for
//! them.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{Ctx, Failure, blocking, fail, store_error};
use crate::topic_configs::{self, Source};

/// Kafka's `ConfigResource.Type`.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Kafka's `AlterConfigOp.OpType`.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// The broker's configs, as `kafka-configs --describe --entity-type brokers` shows them.
fn broker_configs(ctx: &Ctx) -> Vec<(String, String)> {
    [
        (
            "auto.create.topics.enable",
            ctx.config.auto_create_topics.to_string(),
        ),
        ("num.partitions", ctx.config.num_partitions.to_string()),
        ("default.replication.factor", "1".to_string()),
        ("min.insync.replicas", "1".to_string()),
        ("offsets.topic.replication.factor", "1".to_string()),
        (
            "socket.request.max.bytes",
            ctx.config.max_request_bytes.to_string(),
        ),
        (
            "message.max.bytes",
            millrace_store::codec::MAX_BATCH_BYTES.to_string(),
        ),
        (
            "group.initial.rebalance.delay.ms",
            ctx.hub
                .coordinator()
                .config()
                .initial_rebalance_delay
                .as_millis()
                .to_string(),
        ),
        ("log.cleanup.policy", "delete".to_string()),
        ("log.message.timestamp.type", "CreateTime".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub fn describe(ctx: &Ctx, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let wanted = |k: &str| {
                r.configuration_keys
                    .as_ref()
                    // Null asks for every key; so does an empty list here.
                    .is_none_or(|keys| keys.is_empty() || keys.iter().any(|w| &**w == k))
            };
            let entries: Result<Vec<(String, String, Source, bool)>, Failure> =
                match r.resource_type {
                    TOPIC => ctx
                        .hub
                        .store()
                        .topic(&r.resource_name)
                        .map(|t| {
                            topic_configs::describe(&t.config(), &t.extra_config())
                                .into_iter()
                                .map(|(k, v, s)| (k, v, s, false))
                                .collect()
                        })
                        .map_err(|e| store_error(&e)),
                    BROKER => Ok(broker_configs(ctx)
                        .into_iter()
                        .map(|(k, v)| (k, v, Source::Default, true))
                        .collect()),
                    other => Err(fail(
                        ResponseError::InvalidRequest,
                        format!("resource type {other} has no configs here"),
                    )),
                };
            match entries {
                Ok(entries) => result.with_configs(
                    entries
                        .into_iter()
                        .filter(|(k, ..)| wanted(k))
                        .map(|(k, v, source, read_only)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_string(k))
                                .with_value(Some(StrBytes::from_string(v)))
                                .with_read_only(read_only)
                                .with_config_source(source as i8)
                        })
                        .collect(),
                ),
                Err((code, message)) => result.with_error_code(code).with_error_message(message),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Replaces a topic's configs with `pairs` (after checking them), unless only
/// validating.
async fn apply(
    ctx: &Ctx,
    resource_type: i8,
    topic: &str,
    pairs: Result<BTreeMap<String, String>, Failure>,
    validate_only: bool,
) -> Result<(), Failure> {
    if resource_type != TOPIC {
        return Err(fail(
            ResponseError::InvalidRequest,
            "only topic configs can be altered here; the broker's are fixed",
        ));
    }
    let (config, extra) =
        topic_configs::split(&pairs?).map_err(|e| fail(ResponseError::InvalidConfig, e))?;
    if validate_only {
        return ctx
            .hub
            .store()
            .topic(topic)
            .map(|_| ())
            .map_err(|e| store_error(&e));
    }
    let store = Arc::clone(ctx.hub.store());
    let name = topic.to_string();
    blocking(move || store.alter_topic_config(&name, config, extra))
        .await
        .and_then(|r| r)
        .map_err(|e| store_error(&e))
}

/// A topic's configs now, as Kafka pairs.
fn current(ctx: &Ctx, topic: &str) -> Result<BTreeMap<String, String>, Failure> {
    let t = ctx.hub.store().topic(topic).map_err(|e| store_error(&e))?;
    Ok(topic_configs::pairs(&t.config(), &t.extra_config()))
}

/// Each (type, name, outcome) as the response type's per-resource answer (the two
/// alter APIs have one type each, of the same shape).
macro_rules! resource_responses {
    ($response:ty, $outcomes:expr) => {
        $outcomes
            .into_iter()
            .map(|(resource_type, name, outcome)| {
                let (code, message) = outcome.err().unwrap_or((0, None));
                <$response>::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(name)
                    .with_error_code(code)
                    .with_error_message(message)
            })
            .collect()
    };
}

/// A resource's type and name, and its new configs (or why there are none).
type Altered = (i8, StrBytes, Result<BTreeMap<String, String>, Failure>);

/// Applies each resource's new pairs; (type, name, outcome) per resource, in order.
async fn apply_all(
    ctx: &Ctx,
    validate_only: bool,
    resources: Vec<Altered>,
) -> Vec<(i8, StrBytes, Result<(), Failure>)> {
    let mut out = Vec::with_capacity(resources.len());
    for (resource_type, name, pairs) in resources {
        let outcome = apply(ctx, resource_type, &name, pairs, validate_only).await;
        out.push((resource_type, name, outcome));
    }
    out
}

pub async fn alter(ctx: &Ctx, req: AlterConfigsRequest) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    // AlterConfigs replaces the whole set: keys not given go back to their defaults.
    let resources = req
        .resources
        .into_iter()
        .map(|r| {
            let pairs = r
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            (r.resource_type, r.resource_name, Ok(pairs))
        })
        .collect();
    let outcomes = apply_all(ctx, req.validate_only, resources).await;
    let responses = resource_responses!(AlterConfigsResourceResponse, outcomes);
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn incremental_alter(
    ctx: &Ctx,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let resources = req
        .resources
        .into_iter()
        .map(|r| {
            let pairs = if r.resource_type == TOPIC {
                current(ctx, &r.resource_name).and_then(|mut pairs| {
                    for c in &r.configs {
                        change(&mut pairs, &c.name, c.config_operation, c.value.as_deref())?;
                    }
                    Ok(pairs)
                })
            } else {
                Ok(BTreeMap::new())
            };
            (r.resource_type, r.resource_name, pairs)
        })
        .collect();
    let outcomes = apply_all(ctx, req.validate_only, resources).await;
    let responses = resource_responses!(AlterConfigsResourceResponse, outcomes);
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// One IncrementalAlterConfigs operation on a topic's pairs. Deleting a key sets it
/// back to its default; APPEND and SUBTRACT treat the value as a comma-separated list.
fn change(
    pairs: &mut BTreeMap<String, String>,
    key: &str,
    op: i8,
    value: Option<&str>,
) -> Result<(), Failure> {
    let need = || {
        value.ok_or_else(|| {
            fail(
                ResponseError::InvalidRequest,
                format!("{key}: a value is needed"),
            )
        })
    };
    match op {
        SET => {
            pairs.insert(key.to_string(), need()?.to_string());
        }
        DELETE => {
            pairs.remove(key);
        }
        APPEND | SUBTRACT => {
            let mut items: Vec<String> = pairs
                .get(key)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            for item in need()?.split(',').map(str::trim) {
                if op == APPEND && !items.iter().any(|i| i == item) {
                    items.push(item.to_string());
                } else if op == SUBTRACT {
                    items.retain(|i| i != item);
                }
            }
            if items.is_empty() {
                pairs.remove(key);
            } else {
                pairs.insert(key.to_string(), items.join(","));
            }
        }
        other => {
            return Err(fail(
                ResponseError::InvalidRequest,
                format!("{key}: unknown operation {other}"),
            ));
        }
    }
    Ok(())
}
