//! Consumer groups as `groups list` and `groups describe` show them.

use super::TopicPartition;

/// A consumer group's state, in Kafka's names (`kafka-consumer-groups` prints them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupState {
    /// No live members (only committed offsets, or nothing yet).
    Empty,
    /// A member joined or left: the members are rejoining.
    PreparingRebalance,
    /// The members rejoined and wait for the leader's assignment.
    CompletingRebalance,
    /// Every member has its partitions.
    Stable,
    /// Deleted, or never existed.
    Dead,
    /// A state this millrace does not know (a newer broker's).
    Unknown,
}

impl GroupState {
    pub const ALL: [GroupState; 5] = [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
    ];

    /// Kafka's name: `Stable`, `Empty`, `PreparingRebalance`, …
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
            GroupState::Unknown => "Unknown",
        }
    }

    /// The state Kafka names `name` (in any case); [`GroupState::Unknown`] for others.
    pub fn parse(name: &str) -> GroupState {
        GroupState::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name.trim()))
            .unwrap_or(GroupState::Unknown)
    }

    /// Whether a group in this state may have its offsets reset or be deleted: Kafka
    /// refuses both while members are live.
    pub fn is_inactive(self) -> bool {
        matches!(self, GroupState::Empty | GroupState::Dead)
    }
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One consumer group as `groups list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupListing {
    pub group: String,
    pub state: GroupState,
}

/// One live member of a consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    /// The id the coordinator gave it (Kafka's CONSUMER-ID).
    pub member_id: String,
    /// Its `group.instance.id`, for a static member (when the backend reports it).
    pub instance_id: Option<String>,
    pub client_id: String,
    /// Where it connects from, as Kafka shows it (`/127.0.0.1`).
    pub host: String,
    /// The partitions it owns, sorted; empty while the group rebalances, or when there
    /// are more members than partitions.
    pub assignment: Vec<TopicPartition>,
}

/// The partitions in a consumer's assignment bytes (the consumer protocol's
/// `ConsumerProtocolAssignment`, which every Kafka consumer's group leader writes),
/// sorted. Bytes that do not decode are the member's business: logged, read as none.
pub fn consumer_assignment(group: &str, member: &str, bytes: &[u8]) -> Vec<TopicPartition> {
    use millrace_server::group::consumer_protocol::Assignment;
    match Assignment::decode(bytes) {
        Ok(a) => a
            .topic_partitions()
            .into_iter()
            .map(|(t, p)| TopicPartition::new(t, p))
            .collect(),
        Err(e) => {
            tracing::warn!(%group, %member, error = %e, "a member's assignment does not decode");
            Vec::new()
        }
    }
}

/// One consumer group as `groups describe` shows it: its members and its committed
/// offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    pub state: GroupState,
    /// `consumer` for consumers (Kafka Connect's workers say `connect`).
    pub protocol_type: String,
    /// The assignor the members agreed on (`range`, `cooperative-sticky`, …); empty
    /// unless the group is Stable.
    pub protocol: String,
    pub members: Vec<MemberDescription>,
    /// The next offset to read of every partition the group committed for, sorted.
    pub offsets: Vec<(TopicPartition, i64)>,
}
