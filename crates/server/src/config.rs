//! How a server behaves: Kafka's broker settings that apply to one node over the store,
//! under Kafka's names, and who may connect.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::auth::Users;
use crate::error::ServerError;

/// Kafka's default `socket.request.max.bytes`: a request larger than this closes the
/// connection before anything is allocated for it.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 100 << 20;

/// The node id this broker has in metadata (a KRaft node's usual first id).
pub const NODE_ID: i32 = 1;

/// A server's settings. `Default` is Kafka's defaults, on loopback, for anyone.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `socket.request.max.bytes`.
    pub max_request_bytes: usize,
    /// `auto.create.topics.enable`: a Metadata request that asks for unknown topics and
    /// allows their creation (as producers do) creates them. Kafka's default is on.
    pub auto_create_topics: bool,
    /// `num.partitions`: partitions of an auto-created topic, and of a CreateTopics
    /// entry that leaves the count to the broker.
    pub num_partitions: u32,
    /// The largest response a Fetch may make, whatever the client asks (its
    /// `fetch.max.bytes` defaults to 50 MiB, which this allows).
    pub max_fetch_bytes: usize,
    /// Who may connect.
    pub access: Access,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            auto_create_topics: true,
            num_partitions: 1,
            max_fetch_bytes: 64 << 20,
            access: Access::default(),
        }
    }
}

/// Who may connect, and how they prove it.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// Users for SASL/SCRAM-SHA-256; `None` serves without authentication.
    pub users: Option<Arc<Users>>,
    /// On Linux, a connection from loopback is accepted only from a process of this
    /// uid (the data directory's owner); `None` accepts any.
    pub owner_uid: Option<u32>,
}

/// What `millrace serve` was asked for, checked against the rules for a listener.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListenerPolicy {
    /// `--insecure`: serve off loopback without authentication.
    pub insecure: bool,
    /// `--allow-any-user`: accept loopback connections from any local user.
    pub allow_any_user: bool,
}

impl ListenerPolicy {
    /// The access for a listener on `addr` over a data directory owned by
    /// `owner_uid`: off loopback, users are required unless `insecure`; on loopback
    /// without users, only the owner's processes may connect unless
    /// `allow_any_user`.
    pub fn access(
        &self,
        addr: SocketAddr,
        users: Option<Arc<Users>>,
        owner_uid: u32,
    ) -> Result<Access, ServerError> {
        let loopback = addr.ip().is_loopback();
        if !loopback && users.is_none() && !self.insecure {
            return Err(ServerError::Config(format!(
                "refusing to listen on {addr} without authentication: anyone who can reach it \
                 could read and write every topic. Give users with --users FILE \
                 (SASL/SCRAM-SHA-256), listen on 127.0.0.1, or pass --insecure"
            )));
        }
        let owner_only = loopback && users.is_none() && !self.allow_any_user;
        Ok(Access {
            users,
            owner_uid: owner_only.then_some(owner_uid),
        })
    }
}
