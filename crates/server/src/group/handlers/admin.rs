//! ListGroups, DescribeGroups and DeleteGroups on the wire.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse,
};

use super::text;
use crate::group::{Coordinator, GroupError, GroupState};

/// The type of every group here: Kafka's classic protocol (ListGroups v5).
const GROUP_TYPE: &str = "classic";

/// What DescribeGroups reports as allowed when asked (v3+): every group operation
/// (read, delete, describe — Kafka's ACL operation codes 3, 6 and 8), there being no
/// ACLs.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// ListGroups: every group, filtered by state (v4+) and type (v5+), both matched
/// without regard to case as Kafka does.
pub fn list_groups(c: &Coordinator, version: i16, req: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = if version >= 4 {
        req.states_filter.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if version >= 5 {
        req.types_filter.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let mut r = ListGroupsResponse::default();
    r.groups = c
        .list_groups()
        .into_iter()
        .filter(|g| {
            states.is_empty() || states.iter().any(|s| GroupState::parse(s) == Some(g.state))
        })
        .filter(|_| types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case(GROUP_TYPE)))
        .map(|g| {
            let mut l = ListedGroup::default();
            l.group_id = GroupId(text(&g.group_id));
            l.protocol_type = text(&g.protocol_type);
            if version >= 4 {
                l.group_state = text(g.state.as_str());
            }
            if version >= 5 {
                l.group_type = text(GROUP_TYPE);
            }
            l
        })
        .collect();
    r
}

/// DescribeGroups: a group that does not exist is described as Dead, with
/// GROUP_ID_NOT_FOUND from v6 (as Kafka answers).
pub fn describe_groups(
    c: &Coordinator,
    version: i16,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let operations = if version >= 3 && req.include_authorized_operations {
        GROUP_OPERATIONS
    } else {
        i32::MIN
    };
    let mut r = DescribeGroupsResponse::default();
    r.groups = req
        .groups
        .iter()
        .map(|id| {
            let mut d = DescribedGroup::default();
            d.group_id = id.clone();
            d.authorized_operations = operations;
            if id.0.is_empty() {
                d.error_code = GroupError::InvalidGroupId.code();
                d.group_state = text(GroupState::Dead.as_str());
                return d;
            }
            let Some(g) = c.describe_group(id.0.as_str()) else {
                d.group_state = text(GroupState::Dead.as_str());
                if version >= 6 {
                    let e = GroupError::GroupIdNotFound;
                    d.error_code = e.code();
                    d.error_message = Some(text(&format!("group {} {e}", id.0.as_str())));
                }
                return d;
            };
            d.group_state = text(g.state.as_str());
            d.protocol_type = text(&g.protocol_type);
            d.protocol_data = text(&g.protocol);
            d.members = g
                .members
                .into_iter()
                .map(|m| {
                    let mut dm = DescribedGroupMember::default();
                    dm.member_id = text(&m.member_id);
                    if version >= 4 {
                        dm.group_instance_id = m.group_instance_id.as_deref().map(text);
                    }
                    dm.client_id = text(&m.client_id);
                    dm.client_host = text(&m.client_host);
                    dm.member_metadata = m.metadata;
                    dm.member_assignment = m.assignment;
                    dm
                })
                .collect();
            d
        })
        .collect();
    r
}

/// DeleteGroups: one code per group; a group with members is NON_EMPTY_GROUP.
pub async fn delete_groups(c: &Coordinator, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in &req.groups_names {
        let mut d = DeletableGroupResult::default();
        d.group_id = id.clone();
        if let Err(e) = c.delete_group(id.0.as_str()).await {
            d.error_code = e.code();
        }
        results.push(d);
    }
    let mut r = DeleteGroupsResponse::default();
    r.results = results;
    r
}
