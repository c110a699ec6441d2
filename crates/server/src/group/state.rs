//! One group's state — Kafka's `ClassicGroup`: its members, generation, leader and chosen
//! protocol — and the requests and answers of the membership APIs. The transitions live
//! in `rebalance`.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::consumer_protocol::Subscription;
use super::error::GroupError;

/// Kafka's group states, named as Kafka names them (ListGroups filters on the names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members; the group may still have committed offsets.
    Empty,
    /// A rebalance started: members rejoin until all have or the rebalance timeout ends.
    PreparingRebalance,
    /// The join phase ended: the leader computes the assignment and sends it in SyncGroup.
    CompletingRebalance,
    /// Every member has its assignment for the generation.
    Stable,
    /// The group was deleted.
    Dead,
}

impl GroupState {
    /// Kafka's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// The state named `s`, in any case (as Kafka's ListGroups matches its filter).
    pub fn parse(s: &str) -> Option<GroupState> {
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ]
        .into_iter()
        .find(|g| g.as_str().eq_ignore_ascii_case(s))
    }
}

/// One protocol a member offers (for consumers an assignor such as `range`), with its
/// metadata (for consumers an encoded [`Subscription`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinGroup {
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// `consumer` for consumers, `connect` for Kafka Connect workers, …
    pub protocol_type: String,
    /// In the member's order of preference.
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4 and later: a first join without a member id is answered with
    /// MEMBER_ID_REQUIRED and the id to join with.
    pub require_known_member_id: bool,
}

/// A member as the leader sees it in its JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// The member's metadata for the group's chosen protocol.
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    pub member_id: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    /// Every member, for the leader only (it computes the assignment); empty for others.
    pub members: Vec<JoinedMember>,
}

impl JoinOutcome {
    /// Whether the member that got this answer leads the generation.
    pub fn is_leader(&self) -> bool {
        self.leader == self.member_id
    }
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncGroup {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation: i32,
    /// SyncGroup v5: checked against the group's when given.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// From the leader: every member's assignment. Empty from the others.
    pub assignments: Vec<(String, Bytes)>,
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The member's assignment (for consumers an encoded `Assignment`).
    pub assignment: Bytes,
}

pub(crate) type JoinWaiter = oneshot::Sender<Result<JoinOutcome, GroupError>>;
pub(crate) type SyncWaiter = oneshot::Sender<Result<SyncOutcome, GroupError>>;

pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    /// Set while the member waits in JoinGroup: it has rejoined this rebalance.
    pub awaiting_join: Option<JoinWaiter>,
    /// Set while the member waits in SyncGroup for the leader's assignment.
    pub awaiting_sync: Option<SyncWaiter>,
    /// When the member expires unless it heartbeats (not while it waits in a join or
    /// a sync).
    pub expires: Instant,
}

impl Member {
    /// Whether `protocols` are the member's own, names, metadata and order.
    pub fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    pub fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// Whether a session timeout may expire the member now: not while it waits for
    /// the group in JoinGroup or SyncGroup (as Kafka, whose sockets are muted then).
    pub fn may_expire(&self) -> bool {
        self.awaiting_join.is_none() && self.awaiting_sync.is_none()
    }
}

/// A member id handed out with MEMBER_ID_REQUIRED, until the client joins with it.
pub(crate) struct PendingMember {
    pub id: String,
    pub expires: Instant,
}

pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    /// The protocol chosen for the generation (an assignor name for consumers).
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order: the first member to join leads unless it leaves.
    pub members: Vec<Member>,
    pub pending: Vec<PendingMember>,
    /// In PreparingRebalance: when the join phase ends whoever has rejoined.
    pub join_deadline: Option<Instant>,
    /// A new group's first join phase lasts at least until this (Kafka's
    /// `group.initial.rebalance.delay.ms`), so members starting together share a
    /// generation; each member that joins meanwhile extends it, up to `join_deadline`.
    pub initial_delay_until: Option<Instant>,
    pub new_member_added: bool,
    /// After a join phase: members that must sync before `sync_deadline` or be removed.
    pub pending_sync: Vec<String>,
    pub sync_deadline: Option<Instant>,
    /// Topics the consumer members subscribe to, as of the last join phase; `None` when
    /// the group is not a consumer group or a subscription did not decode.
    pub subscribed_topics: Option<BTreeSet<String>>,
    /// Whether a timer task watches this group's deadlines.
    pub timer_running: bool,
    /// Which timer task that is: bumped at each start, so a task that ended (or was
    /// dropped with its runtime) clears `timer_running` only if it is still the one.
    pub timer_epoch: u64,
    /// Taken out of the coordinator's map (deleted, or empty and forgotten): a request
    /// that holds it looks the group up again.
    pub removed: bool,
}

impl Group {
    pub fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: Vec::new(),
            join_deadline: None,
            initial_delay_until: None,
            new_member_added: false,
            pending_sync: Vec::new(),
            sync_deadline: None,
            subscribed_topics: None,
            timer_running: false,
            timer_epoch: 0,
            removed: false,
        }
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    pub fn has(&self, id: &str) -> bool {
        self.member(id).is_some()
    }

    pub fn is_pending(&self, id: &str) -> bool {
        self.pending.iter().any(|p| p.id == id)
    }

    pub fn is_leader(&self, id: &str) -> bool {
        self.leader.as_deref() == Some(id)
    }

    /// The member id that holds `instance` now.
    pub fn static_member(&self, instance: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.as_str())
    }

    /// Whether `instance` is held by a member other than `member_id`: the caller is an
    /// older incarnation of a static member that has joined again since.
    pub fn is_fenced(&self, member_id: &str, instance: Option<&str>) -> bool {
        instance
            .and_then(|i| self.static_member(i))
            .is_some_and(|holder| holder != member_id)
    }

    /// Neither members nor pending ones: nothing to time, nothing to keep in memory.
    pub fn is_idle(&self) -> bool {
        self.state == GroupState::Empty && self.members.is_empty() && self.pending.is_empty()
    }

    /// Whether a member (`member_id`, `None` for a new one) with these protocols may be
    /// in the group: the group's protocol type, and a protocol every other member offers.
    pub fn supports_protocols(
        &self,
        member_id: Option<&str>,
        protocol_type: &str,
        protocols: &[Protocol],
    ) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let mut others = self
            .members
            .iter()
            .filter(|m| Some(m.id.as_str()) != member_id)
            .peekable();
        if others.peek().is_none() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let others: Vec<&Member> = others.collect();
        protocols
            .iter()
            .any(|p| others.iter().all(|m| m.supports(&p.name)))
    }

    /// Kafka's choice: of the protocols every member offers, each member votes for the
    /// first in its own order; most votes wins, a tie going to the leader's preference.
    pub fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.iter().all(|m| m.supports(name)))
            .collect();
        let votes = |name: &str| {
            self.members
                .iter()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .find(|p| candidates.contains(&p.name.as_str()))
                        .is_some_and(|p| p.name == name)
                })
                .count()
        };
        let leader = self
            .leader
            .as_deref()
            .and_then(|l| self.member(l))
            .unwrap_or(first);
        let mut best: Option<(&str, usize)> = None;
        for p in &leader.protocols {
            if !candidates.contains(&p.name.as_str()) {
                continue;
            }
            let n = votes(&p.name);
            if best.is_none_or(|(_, most)| n > most) {
                best = Some((&p.name, n));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    /// The topics of every member's subscription, for a consumer group whose members'
    /// metadata all decode.
    pub fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in &self.members {
            let sub = Subscription::decode(&m.metadata(protocol)).ok()?;
            topics.extend(sub.topics);
        }
        Some(topics)
    }

    /// Whether a member subscribes to `topic` (every topic, when that is not known).
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.subscribed_topics
            .as_ref()
            .is_none_or(|t| t.contains(topic))
    }

    /// The longest rebalance timeout of the members: how long a join phase waits.
    pub fn rebalance_timeout(&self) -> Duration {
        self.members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    /// The JoinGroup answer for `m` in the current generation.
    pub fn join_outcome(&self, m: &Member) -> JoinOutcome {
        let protocol = self.protocol.as_deref().unwrap_or_default();
        JoinOutcome {
            member_id: m.id.clone(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            members: if self.is_leader(&m.id) {
                self.members
                    .iter()
                    .map(|m| JoinedMember {
                        member_id: m.id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        metadata: m.metadata(protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// The earliest time something of this group times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        let members = self
            .members
            .iter()
            .filter(|m| m.may_expire())
            .map(|m| m.expires);
        let pending = self.pending.iter().map(|p| p.expires);
        members
            .chain(pending)
            .chain(self.join_deadline)
            .chain(self.initial_delay_until)
            .chain(self.sync_deadline)
            .min()
    }
}
