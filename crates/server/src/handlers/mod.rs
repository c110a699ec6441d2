//! One handler per API or small family of APIs. Each takes the decoded request body
//! and returns the response body; errors a client caused are Kafka error codes in the
//! response, and only what must close the connection is a [`ServerError`].

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use millrace_store::StoreError;

use crate::auth::{self, Authentication};
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::group::handlers::{self as groups, ClientInfo};
use crate::hub::Hub;

pub mod api_versions;
mod cluster;
mod configs;
mod delete_records;
mod fetch;
mod list_offsets;
mod metadata;
mod produce;
mod producer_id;
mod topics;
pub mod unsupported;

/// What every connection of one server shares.
#[derive(Debug)]
pub struct Ctx {
    pub hub: Arc<Hub>,
    pub config: ServerConfig,
    /// The cluster id metadata reports: stable for a data directory.
    pub cluster_id: String,
}

/// One connection's state.
#[derive(Debug)]
pub struct Session {
    pub peer: SocketAddr,
    /// The address the client reached this server at: what metadata advertises.
    pub local: SocketAddr,
    pub auth: Authentication,
}

impl Session {
    /// Whether the client may send `key` now: before it authenticated (when the server
    /// requires it), only the version and SASL exchanges.
    pub fn may_send(&self, key: ApiKey) -> bool {
        self.auth.is_done()
            || matches!(
                key,
                ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
            )
    }
}

/// Calls the handler of a request this server serves.
pub async fn handle(
    ctx: &Ctx,
    session: &mut Session,
    key: ApiKey,
    header: &RequestHeader,
    request: RequestKind,
) -> Result<Option<ResponseKind>, ServerError> {
    let v = header.request_api_version;
    let coordinator = ctx.hub.coordinator();
    Ok(Some(match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle(ctx)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(ctx, session, r, v).await)
        }
        RequestKind::Produce(r) => {
            return Ok(produce::handle(ctx, r, v).await.map(ResponseKind::Produce));
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, r, v).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(ctx, r, v)),
        RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(producer_id::handle(ctx, r)),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(topics::create(ctx, r, v).await),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(topics::delete(ctx, r, v).await),
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(topics::create_partitions(ctx, r).await)
        }
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(configs::describe(ctx, r)),
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(ctx, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(ctx, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(cluster::describe(ctx, session, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(cluster::find_coordinator(session, r, v))
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(ctx, r).await)
        }
        RequestKind::JoinGroup(r) => {
            let client = client_info(header, session);
            ResponseKind::JoinGroup(groups::join_group(coordinator, &client, v, r).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(groups::sync_group(coordinator, v, r).await)
        }
        RequestKind::Heartbeat(r) => {
            ResponseKind::Heartbeat(groups::heartbeat(coordinator, r).await)
        }
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(groups::leave_group(coordinator, v, r).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(groups::offset_commit(coordinator, v, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(groups::offset_fetch(coordinator, v, r))
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(groups::offset_delete(coordinator, r).await)
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(groups::list_groups(coordinator, v, r))
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe_groups(coordinator, v, r))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(groups::delete_groups(coordinator, r).await)
        }
        RequestKind::SaslHandshake(r) => {
            ResponseKind::SaslHandshake(auth::handshake(ctx, session, r))
        }
        RequestKind::SaslAuthenticate(r) => {
            ResponseKind::SaslAuthenticate(auth::authenticate(ctx, session, r)?)
        }
        other => {
            return unsupported::response(key, &other).map(Some).ok_or(
                ServerError::UnsupportedVersion {
                    api_key: header.request_api_key,
                    api_version: v,
                },
            );
        }
    }))
}

/// Who sent a request, as the group coordinator shows a member.
fn client_info(header: &RequestHeader, session: &Session) -> ClientInfo {
    ClientInfo::new(header.client_id.as_deref(), session.peer.ip())
}

/// The Kafka error code for a store error met while serving a request.
pub fn store_code(e: &StoreError) -> ResponseError {
    match e {
        StoreError::UnknownTopic(_) | StoreError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        StoreError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        StoreError::InvalidTopicName { .. } => ResponseError::InvalidTopicException,
        StoreError::InvalidConfig(_) => ResponseError::InvalidConfig,
        StoreError::InvalidArgument(_) => ResponseError::InvalidRequest,
        StoreError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        StoreError::Poisoned(_) => ResponseError::KafkaStorageError,
        _ => ResponseError::KafkaStorageError,
    }
}

/// An error code and message, for the responses that carry both.
pub type Failure = (i16, Option<StrBytes>);

pub fn fail(code: ResponseError, message: impl Into<String>) -> Failure {
    (code.code(), Some(StrBytes::from_string(message.into())))
}

/// A store error's code and message.
pub fn store_error(e: &StoreError) -> Failure {
    (
        store_code(e).code(),
        Some(StrBytes::from_string(e.to_string())),
    )
}

/// Runs a store call that may wait for an fsync on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(format!("a store task failed: {e}"))))
}
