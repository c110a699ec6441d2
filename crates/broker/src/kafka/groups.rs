//! Consumer groups on Kafka, as `kafka-consumer-groups` manages them, through rdkafka's
//! safe API:
//! - librdkafka's group list (ListGroups, then DescribeGroups): each group's state,
//!   protocol and members, with the assignment bytes the consumer protocol decodes;
//! - librdkafka's ListConsumerGroupOffsets (an OffsetFetch for every offset a group
//!   committed), for many groups at once, through its C API (`native`): rdkafka does
//!   not wrap it, and asking through a consumer handle per group would need every
//!   partition named and cost a client per group (`millrace status` describes every
//!   group of a cluster). With `fetched`, this is the Kafka backend's `unsafe`;
//! - a consumer handle with the group's id that never subscribes, so it never joins:
//!   OffsetCommit with no member and generation -1 — what Kafka's
//!   AlterConsumerGroupOffsets sends, and what a coordinator accepts only while the
//!   group has no members;
//! - the admin client's DeleteGroups.

use std::time::Duration;

use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::groups::GroupInfo;
use rdkafka::{Offset, TopicPartitionList};

mod native;

use super::errors::{self, Subject};
use super::{KafkaBroker, blocking};
use crate::api::{
    GroupDescription, GroupListing, GroupState, MemberDescription, Result, TopicPartition,
    consumer_assignment,
};
use crate::error::BrokerError;

/// Groups of consumers: Kafka's tool lists these protocol types (an empty one is a
/// group known only by its committed offsets).
fn is_consumer_group(protocol_type: &str) -> bool {
    protocol_type.is_empty() || protocol_type == "consumer"
}

/// One group as librdkafka described it, owned (librdkafka's list is freed with it).
struct Described {
    name: String,
    state: GroupState,
    protocol_type: String,
    protocol: String,
    members: Vec<MemberDescription>,
}

impl Described {
    fn from_info(g: &GroupInfo) -> Described {
        let consumer = g.protocol_type() == "consumer";
        let members = g
            .members()
            .iter()
            .map(|m| MemberDescription {
                member_id: m.id().to_string(),
                instance_id: None,
                client_id: m.client_id().to_string(),
                host: m.client_host().to_string(),
                assignment: if consumer {
                    consumer_assignment(g.name(), m.id(), m.assignment().unwrap_or_default())
                } else {
                    Vec::new()
                },
            })
            .collect();
        Described {
            name: g.name().to_string(),
            state: GroupState::parse(g.state()),
            protocol_type: g.protocol_type().to_string(),
            protocol: g.protocol().to_string(),
            members,
        }
    }
}

impl KafkaBroker {
    /// librdkafka's group list: every group, or only `group`.
    async fn described(&self, group: Option<&str>) -> Result<Vec<Described>> {
        let client = self.inner.admin.groups_client()?;
        let group = group.map(str::to_string);
        let timeout = self.inner.timeout;
        let subject = group.clone();
        blocking(move || {
            client
                .inner()
                .fetch_group_list(group.as_deref(), timeout)
                .map(|list| list.groups().iter().map(Described::from_info).collect())
        })
        .await?
        .map_err(|e| {
            errors::from_kafka(&e, subject.as_deref().map_or(Subject::None, Subject::Group))
        })
    }

    /// The group's state; Dead for a group the coordinator does not list.
    async fn state_of(&self, group: &str) -> Result<GroupState> {
        Ok(self
            .described(Some(group))
            .await?
            .into_iter()
            .find(|g| g.name == group)
            .map_or(GroupState::Dead, |g| g.state))
    }

    pub(crate) async fn list_consumer_groups(&self) -> Result<Vec<GroupListing>> {
        let mut out: Vec<GroupListing> = self
            .described(None)
            .await?
            .into_iter()
            .filter(|g| is_consumer_group(&g.protocol_type) && g.state != GroupState::Dead)
            .map(|g| GroupListing {
                group: g.name,
                state: g.state,
            })
            .collect();
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out.dedup_by(|a, b| a.group == b.group);
        Ok(out)
    }

    /// Every consumer group, described: one group list and the offsets of all the
    /// groups asked for together.
    pub(crate) async fn describe_consumer_groups(&self) -> Result<Vec<GroupDescription>> {
        let mut groups: Vec<Described> = self
            .described(None)
            .await?
            .into_iter()
            .filter(|g| is_consumer_group(&g.protocol_type) && g.state != GroupState::Dead)
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups.dedup_by(|a, b| a.name == b.name);
        let names: Vec<String> = groups.iter().map(|g| g.name.clone()).collect();
        let offsets = self.offsets_of(names).await?;
        groups
            .into_iter()
            .zip(offsets)
            .map(|(g, offsets)| {
                Ok(GroupDescription {
                    offsets: offsets.map_err(|e| failed(e, &g.name))?,
                    group: g.name,
                    state: g.state,
                    protocol_type: g.protocol_type,
                    protocol: g.protocol,
                    members: g.members,
                })
            })
            .collect()
    }

    pub(crate) async fn describe_consumer_group(&self, group: &str) -> Result<GroupDescription> {
        let found = self
            .described(Some(group))
            .await?
            .into_iter()
            .find(|g| g.name == group && g.state != GroupState::Dead);
        let offsets = self
            .offsets_of(vec![group.to_string()])
            .await?
            .pop()
            .unwrap_or(Ok(Vec::new()))
            .map_err(|e| failed(e, group))?;
        match found {
            Some(g) => Ok(GroupDescription {
                group: g.name,
                state: g.state,
                protocol_type: g.protocol_type,
                protocol: g.protocol,
                members: g.members,
                offsets,
            }),
            None if offsets.is_empty() => Err(BrokerError::UnknownGroup(group.to_string())),
            // Committed offsets and no listing: a coordinator that does not list
            // offsets-only groups; Kafka's own list them as Empty.
            None => Ok(GroupDescription {
                group: group.to_string(),
                state: GroupState::Empty,
                protocol_type: "consumer".to_string(),
                protocol: String::new(),
                members: Vec::new(),
                offsets,
            }),
        }
    }

    /// Every offset each of `groups` committed, in their order (see [`native`]).
    async fn offsets_of(&self, groups: Vec<String>) -> Result<Vec<native::Offsets>> {
        let timeout = self.inner.timeout;
        let client = self.inner.admin.groups_client()?;
        blocking(move || native::committed_offsets(client.inner().native_ptr(), &groups, timeout))
            .await
    }

    pub(crate) async fn alter_consumer_group_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<()> {
        // The coordinator refuses a commit from outside the group while it has
        // members; asking first names the state in the refusal.
        let state = self.state_of(group).await?;
        if !state.is_inactive() {
            return Err(BrokerError::GroupNotEmpty {
                group: group.to_string(),
                state,
            });
        }
        let mut tpl = TopicPartitionList::new();
        for (tp, o) in offsets {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*o))
                .map_err(|e| errors::from_kafka(&e, Subject::Topic(&tp.topic)))?;
        }
        let consumer = self
            .inner
            .admin
            .committed_handle(&self.inner.properties, group)?;
        let timeout = self.inner.timeout;
        let committed = blocking(move || {
            retry_coordinator(timeout, || consumer.commit(&tpl, CommitMode::Sync))
        })
        .await?;
        match committed {
            Ok(()) => Ok(()),
            // A member joined between the check and the commit.
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::UnknownMemberId
                            | RDKafkaErrorCode::IllegalGeneration
                            | RDKafkaErrorCode::RebalanceInProgress
                    )
                ) =>
            {
                Err(BrokerError::GroupNotEmpty {
                    group: group.to_string(),
                    state: self.state_of(group).await?,
                })
            }
            Err(e) => Err(errors::from_kafka(&e, Subject::Group(group))),
        }
    }

    pub(crate) async fn delete_consumer_group(&self, group: &str) -> Result<()> {
        let opts = AdminOptions::new()
            .request_timeout(Some(self.inner.timeout))
            .operation_timeout(Some(self.inner.timeout));
        let results = self
            .inner
            .admin
            .groups_client()?
            .delete_groups(&[group], &opts)
            .await
            .map_err(|e| errors::from_kafka(&e, Subject::Group(group)))?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {
                    return Err(BrokerError::UnknownGroup(group.to_string()));
                }
                Err((_, RDKafkaErrorCode::NonEmptyGroup)) => {
                    return Err(BrokerError::GroupNotEmpty {
                        group: group.to_string(),
                        state: self.state_of(group).await?,
                    });
                }
                Err((_, code)) => return Err(errors::from_code(code, Subject::Group(group))),
            }
        }
        Ok(())
    }
}

/// A group's offsets that could not be had, in the broker layer's words.
fn failed(e: native::Failed, group: &str) -> BrokerError {
    match e {
        native::Failed::Code(code) => errors::from_code(code, Subject::Group(group)),
        native::Failed::Other(what) => BrokerError::KafkaClient(what),
    }
}

/// Runs a group coordinator call until it stops failing with "the coordinator is not
/// there yet" (a fresh handle looks it up first), or `timeout` passes.
fn retry_coordinator<T>(
    timeout: Duration,
    mut call: impl FnMut() -> rdkafka::error::KafkaResult<T>,
) -> rdkafka::error::KafkaResult<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match call() {
            Err(e)
                if errors::is_coordinator_transient(&e) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}
