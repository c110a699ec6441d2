//! [`LocalMember`]: a consumer in the process that holds the store, as a member of a
//! group beside Kafka clients. It does what a Kafka consumer does: joins with the
//! `range` protocol and its subscription, computes the range assignment when it leads,
//! syncs, heartbeats, and joins again when the group rebalances.

use std::sync::Arc;

use super::consumer_protocol::{
    Assignment, CONSUMER_PROTOCOL_TYPE, RANGE, Subscription, range_assignments,
};
use super::coordinator::Coordinator;
use super::error::GroupError;
use super::state::{JoinGroup, JoinOutcome, Protocol, SyncGroup};

/// How many times a join starts over (a new member id, or a rebalance that overtook
/// it) before the error is the caller's.
const JOIN_ATTEMPTS: usize = 10;

/// One in-process member of a consumer group.
#[derive(Debug)]
pub struct LocalMember {
    coordinator: Coordinator,
    group: String,
    topics: Vec<String>,
    client_id: String,
    session_timeout: std::time::Duration,
    rebalance_timeout: std::time::Duration,
    member_id: String,
    generation: i32,
}

impl LocalMember {
    /// A member of `group` subscribing to `topics`, not joined yet. Kafka's consumer
    /// defaults: a 45 s session, a 5 min rebalance timeout.
    pub fn new(
        coordinator: &Coordinator,
        group: &str,
        topics: &[String],
        client_id: &str,
    ) -> LocalMember {
        LocalMember {
            coordinator: coordinator.clone(),
            group: group.to_string(),
            topics: topics.to_vec(),
            client_id: client_id.to_string(),
            session_timeout: std::time::Duration::from_secs(45),
            rebalance_timeout: std::time::Duration::from_secs(300),
            member_id: String::new(),
            generation: -1,
        }
    }

    /// Sets the session and rebalance timeouts of the next join.
    pub fn with_timeouts(
        mut self,
        session: std::time::Duration,
        rebalance: std::time::Duration,
    ) -> Self {
        self.session_timeout = session;
        self.rebalance_timeout = rebalance;
        self
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The generation of the last join; -1 before the first.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Joins (or joins again) and syncs: the `(topic, partition)` pairs this member
    /// consumes in the new generation, sorted. Waits for the group's join phase, as a
    /// Kafka consumer's poll does.
    pub async fn join(&mut self) -> Result<Vec<(String, i32)>, GroupError> {
        let mut last = GroupError::RebalanceInProgress;
        for _ in 0..JOIN_ATTEMPTS {
            let joined = match self.coordinator.join_group(self.request()).await {
                Ok(j) => j,
                Err(GroupError::MemberIdRequired(id)) => {
                    self.member_id = id;
                    continue;
                }
                Err(e @ (GroupError::UnknownMemberId | GroupError::IllegalGeneration)) => {
                    // Forgotten by the group (expired, or the group was emptied): start
                    // over as a new member, as Kafka's consumers do.
                    self.member_id.clear();
                    last = e;
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.member_id = joined.member_id.clone();
            self.generation = joined.generation;
            match self.sync(&joined).await {
                Ok(a) => return Ok(a),
                Err(e @ GroupError::RebalanceInProgress) => last = e,
                Err(e @ (GroupError::UnknownMemberId | GroupError::IllegalGeneration)) => {
                    self.member_id.clear();
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn request(&self) -> JoinGroup {
        JoinGroup {
            group_id: self.group.clone(),
            member_id: self.member_id.clone(),
            group_instance_id: None,
            client_id: self.client_id.clone(),
            client_host: "/127.0.0.1".to_string(),
            session_timeout: self.session_timeout,
            rebalance_timeout: self.rebalance_timeout,
            protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
            protocols: vec![Protocol {
                name: RANGE.to_string(),
                metadata: Subscription::new(self.topics.iter().cloned()).encode(),
            }],
            require_known_member_id: true,
        }
    }

    async fn sync(&self, joined: &JoinOutcome) -> Result<Vec<(String, i32)>, GroupError> {
        let assignments = if joined.is_leader() {
            let store = Arc::clone(self.coordinator.store());
            range_assignments(&joined.members, |t| {
                store.topic(t).ok().map(|t| t.partition_count())
            })
        } else {
            Vec::new()
        };
        let synced = self
            .coordinator
            .sync_group(SyncGroup {
                group_id: self.group.clone(),
                member_id: self.member_id.clone(),
                group_instance_id: None,
                generation: self.generation,
                protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
                protocol_name: Some(RANGE.to_string()),
                assignments,
            })
            .await?;
        // The leader may be a Kafka client: its bytes are checked like any client's.
        let assignment = Assignment::decode(&synced.assignment).map_err(|e| {
            tracing::warn!(group = %self.group, error = %e, "the leader's assignment did not decode");
            GroupError::InconsistentGroupProtocol
        })?;
        Ok(assignment.topic_partitions())
    }

    /// Keeps the membership alive; `RebalanceInProgress` means [`LocalMember::join`]
    /// again (after committing what was processed). Call it well within the session
    /// timeout (Kafka's consumers default to every 3 s).
    pub async fn heartbeat(&self) -> Result<(), GroupError> {
        self.coordinator
            .heartbeat(&self.group, &self.member_id, None, self.generation)
            .await
    }

    /// Commits the next offsets to consume, as `(topic, partition, offset)`, for this
    /// member's generation: refused (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID) once the
    /// group has moved on without it.
    pub async fn commit(&self, offsets: &[(String, i32, i64)]) -> Result<(), GroupError> {
        let results = self
            .coordinator
            .commit_offsets(super::offsets::CommitOffsets {
                group_id: self.group.clone(),
                member_id: self.member_id.clone(),
                group_instance_id: None,
                generation: self.generation,
                offsets: offsets
                    .iter()
                    .map(
                        |(topic, partition, offset)| super::offsets::PartitionCommit {
                            topic: topic.clone(),
                            partition: *partition,
                            offset: *offset,
                            metadata: None,
                        },
                    )
                    .collect(),
            })
            .await?;
        results.into_iter().collect()
    }

    /// Leaves the group at once, so the others take its partitions without waiting for
    /// its session to expire.
    pub async fn leave(self) -> Result<(), GroupError> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let mut r = self
            .coordinator
            .leave_group(&self.group, &[(self.member_id.clone(), None)])
            .await?;
        r.pop().unwrap_or(Ok(()))
    }
}
