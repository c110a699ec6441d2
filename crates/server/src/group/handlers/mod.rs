//! The group APIs on the wire: each function takes a decoded kafka-protocol request
//! (with the version the client chose and, where members are made, who the client is)
//! and returns the response body for that version. Every failure is a Kafka error code
//! in the response; nothing here closes a connection.
//!
//! # Layout
//! - `membership`: JoinGroup, SyncGroup, Heartbeat, LeaveGroup.
//! - `offsets`: OffsetCommit, OffsetFetch, OffsetDelete.
//! - `admin`: ListGroups, DescribeGroups, DeleteGroups.

mod admin;
mod membership;
mod offsets;

use std::net::IpAddr;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;

pub use admin::{delete_groups, describe_groups, list_groups};
pub use membership::{heartbeat, join_group, leave_group, sync_group};
pub use offsets::{offset_commit, offset_delete, offset_fetch};

/// (API, lowest version, highest version) of the group APIs served. OffsetCommit and
/// OffsetFetch stop before the versions that name topics by id; OffsetCommit starts
/// at the oldest version kafka-protocol decodes.
pub const SERVED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
];

/// Who sent a request, as DescribeGroups shows a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The request header's client id (empty when it has none).
    pub client_id: String,
    /// The client's address as Kafka shows it: `/` and the IP address.
    pub host: String,
}

impl ClientInfo {
    pub fn new(client_id: Option<&str>, peer: IpAddr) -> ClientInfo {
        ClientInfo {
            client_id: client_id.unwrap_or_default().to_string(),
            host: format!("/{peer}"),
        }
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A duration from a request's milliseconds; negative ones are zero.
fn millis(ms: i32) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests;
