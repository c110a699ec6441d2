//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup on the wire.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};

use super::{ClientInfo, millis, text};
use crate::group::{Coordinator, GroupError, JoinGroup, Protocol, SyncGroup};

/// JoinGroup: answers once the group's join phase ends. v4 and later get
/// MEMBER_ID_REQUIRED on a first join; v0 has no rebalance timeout (the session
/// timeout serves).
pub async fn join_group(
    c: &Coordinator,
    client: &ClientInfo,
    version: i16,
    req: JoinGroupRequest,
) -> JoinGroupResponse {
    let session_timeout = millis(req.session_timeout_ms);
    let rebalance_timeout = if version >= 1 && req.rebalance_timeout_ms >= 0 {
        millis(req.rebalance_timeout_ms)
    } else {
        session_timeout
    };
    let member_id = req.member_id.to_string();
    let join = JoinGroup {
        group_id: req.group_id.0.to_string(),
        member_id: member_id.clone(),
        group_instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: client.client_id.clone(),
        client_host: client.host.clone(),
        session_timeout,
        rebalance_timeout,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata,
            })
            .collect(),
        require_known_member_id: version >= 4,
    };
    let mut r = JoinGroupResponse::default();
    // Before v7 the protocol name may not be null.
    let name = |n: Option<String>| match n {
        Some(n) => Some(text(&n)),
        None if version < 7 => Some(text("")),
        None => None,
    };
    match c.join_group(join).await {
        Ok(o) => {
            r.generation_id = o.generation;
            if version >= 7 {
                r.protocol_type = o.protocol_type.as_deref().map(text);
            }
            r.protocol_name = name(o.protocol_name);
            r.leader = text(&o.leader);
            r.member_id = text(&o.member_id);
            r.members = o
                .members
                .into_iter()
                .map(|m| {
                    let mut jm = JoinGroupResponseMember::default();
                    jm.member_id = text(&m.member_id);
                    if version >= 5 {
                        jm.group_instance_id = m.group_instance_id.as_deref().map(text);
                    }
                    jm.metadata = m.metadata;
                    jm
                })
                .collect();
        }
        Err(e) => {
            r.error_code = e.code();
            r.generation_id = -1;
            r.protocol_name = name(None);
            r.member_id = match e {
                GroupError::MemberIdRequired(id) => text(&id),
                _ => text(&member_id),
            };
        }
    }
    r
}

/// SyncGroup: the leader's assignment in, every member's part out (after the leader's
/// arrives).
pub async fn sync_group(c: &Coordinator, version: i16, req: SyncGroupRequest) -> SyncGroupResponse {
    let sync = SyncGroup {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        generation: req.generation_id,
        protocol_type: req.protocol_type.as_ref().map(|p| p.to_string()),
        protocol_name: req.protocol_name.as_ref().map(|p| p.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let mut r = SyncGroupResponse::default();
    match c.sync_group(sync).await {
        Ok(o) => {
            if version >= 5 {
                r.protocol_type = o.protocol_type.as_deref().map(text);
                r.protocol_name = o.protocol_name.as_deref().map(text);
            }
            r.assignment = o.assignment;
        }
        Err(e) => r.error_code = e.code(),
    }
    r
}

pub async fn heartbeat(c: &Coordinator, req: HeartbeatRequest) -> HeartbeatResponse {
    let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
    let result = c
        .heartbeat(
            req.group_id.0.as_str(),
            req.member_id.as_str(),
            instance.as_deref(),
            req.generation_id,
        )
        .await;
    let mut r = HeartbeatResponse::default();
    if let Err(e) = result {
        r.error_code = e.code();
    }
    r
}

/// LeaveGroup: one member before v3, several (each answered) from v3.
pub async fn leave_group(
    c: &Coordinator,
    version: i16,
    req: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let mut r = LeaveGroupResponse::default();
    match c.leave_group(req.group_id.0.as_str(), &members).await {
        Err(e) => r.error_code = e.code(),
        Ok(results) if version >= 3 => {
            r.members = members
                .iter()
                .zip(&results)
                .map(|((id, instance), result)| {
                    let mut m = MemberResponse::default();
                    m.member_id = text(id);
                    m.group_instance_id = instance.as_deref().map(text);
                    m.error_code = result.as_ref().err().map_or(0, GroupError::code);
                    m
                })
                .collect();
        }
        Ok(results) => {
            r.error_code = results
                .first()
                .and_then(|r| r.as_ref().err())
                .map_or(0, GroupError::code);
        }
    }
    r
}
