//! Consumer groups on the embedded store, through the hub's group coordinator
//! (`millrace_server::group`): this process's group consumers, the Kafka clients of
//! the server sharing the hub, and the offsets anyone committed to the store's offsets
//! journal are one set of groups, listed, described, reset and deleted here as Kafka's
//! tools do over the wire.
//!
//! This file reaches the embedded backend through the one `impl EmbeddedBroker` block
//! below (its store and coordinator); the rest speaks the coordinator's Rust API.

use std::sync::Arc;

use millrace_server::group::{CommitOffsets, Coordinator, GroupError, PartitionCommit};
use millrace_store::Store;

use super::EmbeddedBroker;
use crate::api::{
    GroupDescription, GroupListing, GroupState, MemberDescription, Result, TopicPartition,
    consumer_assignment,
};
use crate::error::BrokerError;

impl EmbeddedBroker {
    /// The hub's group coordinator: the groups of this process's consumers and of the
    /// Kafka clients of the server sharing the hub.
    fn group_coordinator(&self) -> &Coordinator {
        self.hub().coordinator()
    }

    fn group_store(&self) -> &Arc<Store> {
        self.store()
    }
}

/// Kafka's tools list consumer groups only (an empty protocol type is a group known
/// by its committed offsets).
fn is_consumer_group(protocol_type: &str) -> bool {
    protocol_type.is_empty() || protocol_type == "consumer"
}

fn state(s: millrace_server::group::GroupState) -> GroupState {
    GroupState::parse(s.as_str())
}

pub(super) async fn list(b: &EmbeddedBroker) -> Result<Vec<GroupListing>> {
    Ok(b.group_coordinator()
        .list_groups()
        .into_iter()
        .filter(|g| is_consumer_group(&g.protocol_type))
        .map(|g| GroupListing {
            group: g.group_id,
            state: state(g.state),
        })
        .collect())
}

pub(super) async fn describe(b: &EmbeddedBroker, group: &str) -> Result<GroupDescription> {
    let d = b
        .group_coordinator()
        .describe_group(group)
        .ok_or_else(|| BrokerError::UnknownGroup(group.to_string()))?;
    let consumer = d.protocol_type == "consumer";
    let members = d
        .members
        .iter()
        .map(|m| MemberDescription {
            member_id: m.member_id.clone(),
            instance_id: m.group_instance_id.clone(),
            client_id: m.client_id.clone(),
            host: m.client_host.clone(),
            assignment: if consumer {
                consumer_assignment(group, &m.member_id, &m.assignment)
            } else {
                Vec::new()
            },
        })
        .collect();
    let offsets = b
        .group_store()
        .group_offsets(group)
        .into_iter()
        .map(|(topic, p, c)| {
            (
                TopicPartition::new(topic, i32::try_from(p).unwrap_or(i32::MAX)),
                i64::try_from(c.next).unwrap_or(i64::MAX),
            )
        })
        .collect();
    Ok(GroupDescription {
        group: d.group_id,
        state: state(d.state),
        protocol_type: d.protocol_type,
        protocol: d.protocol,
        members,
        offsets,
    })
}

pub(super) async fn alter_offsets(
    b: &EmbeddedBroker,
    group: &str,
    offsets: &[(TopicPartition, i64)],
) -> Result<()> {
    let coordinator = b.group_coordinator();
    if let Some(d) = coordinator.describe_group(group) {
        let s = state(d.state);
        if !s.is_inactive() {
            return Err(BrokerError::GroupNotEmpty {
                group: group.to_string(),
                state: s,
            });
        }
    }
    let req = CommitOffsets {
        group_id: group.to_string(),
        // No member and generation -1: a commit from outside the group, accepted only
        // while it has no members (Kafka's AlterConsumerGroupOffsets).
        member_id: String::new(),
        group_instance_id: None,
        generation: -1,
        offsets: offsets
            .iter()
            .map(|(tp, o)| PartitionCommit {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                offset: *o,
                metadata: None,
            })
            .collect(),
    };
    let answers = coordinator
        .commit_offsets(req)
        .await
        .map_err(|e| group_error(coordinator, group, e))?;
    for ((tp, o), answer) in offsets.iter().zip(answers) {
        match answer {
            Ok(()) => {}
            Err(GroupError::UnknownTopicOrPartition) => {
                return Err(match b.group_store().topic(&tp.topic) {
                    Err(_) => BrokerError::UnknownTopic(tp.topic.to_string()),
                    Ok(_) => BrokerError::Invalid(format!(
                        "topic '{}' has no partition {}",
                        tp.topic, tp.partition
                    )),
                });
            }
            Err(GroupError::OffsetOutOfRange(_)) => {
                return Err(BrokerError::Invalid(format!(
                    "offset {o} for {tp} is negative"
                )));
            }
            Err(e) => return Err(group_error(coordinator, group, e)),
        }
    }
    Ok(())
}

pub(super) async fn delete(b: &EmbeddedBroker, group: &str) -> Result<()> {
    let coordinator = b.group_coordinator();
    coordinator
        .delete_group(group)
        .await
        .map_err(|e| group_error(coordinator, group, e))
}

/// The coordinator's refusal in the broker layer's words.
fn group_error(coordinator: &Coordinator, group: &str, e: GroupError) -> BrokerError {
    match e {
        GroupError::GroupIdNotFound => BrokerError::UnknownGroup(group.to_string()),
        GroupError::NonEmptyGroup
        | GroupError::UnknownMemberId
        | GroupError::IllegalGeneration
        | GroupError::RebalanceInProgress => BrokerError::GroupNotEmpty {
            group: group.to_string(),
            state: coordinator
                .describe_group(group)
                .map_or(GroupState::Unknown, |d| state(d.state)),
        },
        GroupError::InvalidGroupId => {
            BrokerError::Invalid("a consumer group's name cannot be empty".to_string())
        }
        GroupError::Store(s) => BrokerError::store(s),
        source => BrokerError::Group {
            group: group.to_string(),
            source,
        },
    }
}
