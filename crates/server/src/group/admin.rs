//! What tools ask of groups: ListGroups, DescribeGroups, DeleteGroups. A group is the
//! union of the members the coordinator holds and the offsets the store holds: a group
//! with committed offsets and no members (one `millrace consume --group` committed for,
//! or one whose consumers all left) is listed and described as Empty.

use bytes::Bytes;

use super::coordinator::Coordinator;
use super::error::GroupError;
use super::state::GroupState;

/// The protocol type of a group known only by its committed offsets: consumers are
/// what commit offsets (Kafka lists such groups as consumer groups too).
const OFFSETS_ONLY_PROTOCOL_TYPE: &str = "consumer";

/// One group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// One member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's metadata for the chosen protocol (for consumers its subscription);
    /// empty unless the group is Stable, as Kafka shows it.
    pub metadata: Bytes,
    /// The member's assignment; empty unless the group is Stable.
    pub assignment: Bytes,
}

/// One group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    /// The generation (not on the wire: Kafka's DescribeGroups has no field for it);
    /// 0 for a group known only by its offsets.
    pub generation: i32,
    pub protocol_type: String,
    /// The chosen protocol (an assignor for consumers); empty unless Stable.
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

impl Coordinator {
    /// Every group, sorted by id: those with members and those with committed offsets.
    pub fn list_groups(&self) -> Vec<GroupListing> {
        let mut out: Vec<GroupListing> = self
            .slots()
            .iter()
            .map(|slot| {
                let g = slot.lock();
                GroupListing {
                    group_id: g.id.clone(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    state: g.state,
                }
            })
            .filter(|l| l.state != GroupState::Dead)
            .collect();
        for id in self.store().offset_groups() {
            if !out.iter().any(|l| l.group_id == id) {
                out.push(GroupListing {
                    group_id: id,
                    protocol_type: OFFSETS_ONLY_PROTOCOL_TYPE.to_string(),
                    state: GroupState::Empty,
                });
            }
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// Group `id`, or `None` if it has neither members nor committed offsets.
    pub fn describe_group(&self, id: &str) -> Option<GroupDescription> {
        if let Some(slot) = self.slot(id) {
            let g = slot.lock();
            let stable = g.state == GroupState::Stable;
            let protocol = if stable {
                g.protocol.clone().unwrap_or_default()
            } else {
                String::new()
            };
            return Some(GroupDescription {
                group_id: g.id.clone(),
                state: g.state,
                generation: g.generation,
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                members: g
                    .members
                    .iter()
                    .map(|m| MemberDescription {
                        member_id: m.id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: if stable {
                            m.metadata(&protocol)
                        } else {
                            Bytes::new()
                        },
                        assignment: if stable {
                            m.assignment.clone()
                        } else {
                            Bytes::new()
                        },
                    })
                    .collect(),
                protocol,
            });
        }
        let has_offsets = !self.store().group_offsets(id).is_empty();
        has_offsets.then(|| GroupDescription {
            group_id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: OFFSETS_ONLY_PROTOCOL_TYPE.to_string(),
            protocol: String::new(),
            members: Vec::new(),
        })
    }

    /// DeleteGroups for one group: refused while it has members; its committed offsets
    /// are deleted durably.
    pub async fn delete_group(&self, id: &str) -> Result<(), GroupError> {
        if id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let in_memory = self.remove_if_empty(id)?;
        let group = id.to_string();
        let had_offsets = self
            .blocking(move |store| store.delete_group_offsets(&group))
            .await?;
        if !in_memory && !had_offsets {
            return Err(GroupError::GroupIdNotFound);
        }
        Ok(())
    }
}
