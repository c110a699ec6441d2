//! millrace-server: Apache Kafka's wire protocol over the embedded store — a single-node
//! broker (replication factor 1) that every Kafka client, tool and script can use.
//!
//! # Layout
//! - `server`: [`serve`] — the accept loop; the caller owns shutdown.
//! - `connection`: Kafka's framing (4-byte length, `socket.request.max.bytes`).
//! - `dispatch`: request header and body decoded for the negotiated version, the
//!   handler called, the response encoded with the right header version.
//! - `handlers`: one file per API or small family (`api_versions`, `metadata`,
//!   `produce`, `fetch`, `list_offsets`, `topics`, `configs`, `cluster`,
//!   `delete_records`, `producer_id`, `unsupported`).
//! - `hub`: [`Hub`] — what the server and in-process users of one store share.
//! - `batches`: produced Kafka record batches read into the store's records;
//!   `batch_writer`: the store's records written as Kafka batches for Fetch;
//!   `compression`: inflating compressed batches with a bound.
//! - `producers`: idempotent producers' sequence state.
//! - `stats`: [`ServerStats`] — connections, and requests and bytes per API.
//! - `topic_configs`: Kafka topic configs over the store's.
//! - `auth`: SASL/SCRAM-SHA-256 and the loopback owner check.
//! - `config`: [`ServerConfig`]; `error`: [`ServerError`].
//! - `group`: the group coordinator (Kafka's classic protocol), independent of the wire.

pub mod auth;
pub mod batch_writer;
pub mod batches;
mod compression;
pub mod config;
mod connection;
pub mod dispatch;
pub mod error;
pub mod group;
pub mod handlers;
pub mod hub;
pub mod producers;
mod server;
pub mod stats;
pub mod topic_configs;

pub use auth::Users;
pub use config::{Access, ListenerPolicy, ServerConfig};
pub use error::ServerError;
pub use hub::Hub;
pub use server::{cluster_id, serve};
pub use stats::ServerStats;
