//! Metadata: one broker (this one, at the address the client reached it by), and each
//! topic's partitions, every one led by it with one replica in sync.
//!
//! Unknown topics are created when the server allows it (`auto.create.topics.enable`,
//! on by default as in Kafka) and the request asks for it (`allow_auto_topic_creation`:
//! producers set it, Kafka's consumers since 2.3 do not; before v4 every request asks),
//! with `num.partitions` partitions and the store's default config.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use millrace_store::{StoreError, TopicConfig};

use super::{Ctx, Session, blocking, store_code};
use crate::config::NODE_ID;

/// The operations a client may do on a topic here: all of them (Kafka's `AclOperation`
/// bits READ to DESCRIBE_CONFIGS and ALTER_CONFIGS), since there are no ACLs.
pub const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// This broker, as metadata lists it.
pub fn broker(session: &Session) -> MetadataResponseBroker {
    MetadataResponseBroker::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(StrBytes::from_string(session.local.ip().to_string()))
        .with_port(i32::from(session.local.port()))
}

pub async fn handle(
    ctx: &Ctx,
    session: &Session,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let store = ctx.hub.store();
    // v0 lists every topic for an empty list; later versions for a null one.
    let names: Vec<String> = match req.topics {
        Some(ts) if !(version == 0 && ts.is_empty()) => ts
            .into_iter()
            .filter_map(|t| t.name.map(|n| n.0.to_string()))
            .collect(),
        _ => store.topic_names(),
    };
    let create = ctx.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let operations = if req.include_topic_authorized_operations {
        TOPIC_OPERATIONS
    } else {
        i32::MIN
    };
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        let mut found = store.topic(&name);
        if create && matches!(found, Err(StoreError::UnknownTopic(_))) {
            found = auto_create(ctx, &name)
                .await
                .and_then(|()| store.topic(&name));
        }
        let topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name))))
            .with_topic_authorized_operations(operations);
        topics.push(match found {
            Ok(t) => topic.with_partitions(
                (0..t.partition_count())
                    .map(|p| {
                        MetadataResponsePartition::default()
                            .with_partition_index(i32::try_from(p).unwrap_or(i32::MAX))
                            .with_leader_id(BrokerId(NODE_ID))
                            // Leader epochs exist from v7; before, the field must stay unset.
                            .with_leader_epoch(if version >= 7 { 0 } else { -1 })
                            .with_replica_nodes(vec![BrokerId(NODE_ID)])
                            .with_isr_nodes(vec![BrokerId(NODE_ID)])
                    })
                    .collect(),
            ),
            Err(e) => topic.with_error_code(store_code(&e).code()),
        });
    }
    // A field a version does not have must keep its default, or encoding fails.
    MetadataResponse::default()
        .with_brokers(vec![broker(session)])
        .with_cluster_id((version >= 2).then(|| StrBytes::from_string(ctx.cluster_id.clone())))
        .with_controller_id(BrokerId(if version >= 1 { NODE_ID } else { -1 }))
        .with_topics(topics)
}

async fn auto_create(ctx: &Ctx, name: &str) -> Result<(), StoreError> {
    let store = std::sync::Arc::clone(ctx.hub.store());
    let partitions = ctx.config.num_partitions;
    let name = name.to_string();
    let created =
        blocking(move || store.create_topic(&name, partitions, TopicConfig::default())).await?;
    match created {
        // Another request created it meanwhile: it is there, which is what was asked.
        Ok(()) | Err(StoreError::TopicExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
