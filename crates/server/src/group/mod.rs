//! The group coordinator: Kafka's classic consumer-group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup), committed offsets (OffsetCommit, OffsetFetch, OffsetDelete)
//! and the group tools' APIs (ListGroups, DescribeGroups, DeleteGroups), independent of
//! the wire. The members' leader computes the assignment, so every client assignor
//! works (range, round-robin, cooperative-sticky, Kafka Streams'); protocol metadata and
//! assignments are opaque bytes to the coordinator. Offsets live in the store's offsets
//! journal, which `millrace consume --group` commits to as well: one group either way.
//!
//! # Layout
//! - `coordinator`: [`Coordinator`] — the groups of one store, their timers, and the
//!   membership calls (async; an in-process consumer calls them as a client would).
//! - `state`: one group's state (Kafka's `ClassicGroup`) and the requests and answers.
//! - `rebalance`: joins and the join phase: a new generation, its protocol and leader.
//! - `membership`: within a generation: syncs, heartbeats, commit checks, leaves, expiry.
//! - `offsets`: OffsetCommit, OffsetFetch, OffsetDelete over the store's journal.
//! - `admin`: ListGroups, DescribeGroups, DeleteGroups.
//! - `consumer_protocol`: the consumer protocol's subscription and assignment bytes and
//!   Kafka's range assignor, for members in this process.
//! - `local`: [`LocalMember`] — a consumer in this process as a group member: joins,
//!   leads with the range assignor, syncs, heartbeats, commits, leaves.
//! - `handlers`: the Kafka wire APIs: decoded request in, response body out.
//! - `error`: [`GroupError`], one Kafka error code per variant.
//!
//! Note for the server's other parts: the store gained `commit_offsets_with_metadata`,
//! `committed`, `group_offsets`, `offset_groups`, `delete_offsets` and
//! `delete_group_offsets`; `commit_offsets` and `committed_offset` are unchanged.
//! `crates/server/Cargo.toml` gained `uuid` (member ids) and, for tests, tokio's
//! `test-util`. Dispatch calls `handlers::*` with a [`handlers::ClientInfo`] and serves
//! the versions in [`handlers::SERVED`].

mod admin;
pub mod consumer_protocol;
mod coordinator;
mod error;
pub mod handlers;
mod local;
mod membership;
mod offsets;
mod rebalance;
mod state;

pub use admin::{GroupDescription, GroupListing, MemberDescription};
pub use coordinator::{Coordinator, CoordinatorConfig};
pub use error::GroupError;
pub use local::LocalMember;
pub use offsets::{CommitOffsets, FetchedTopic, PartitionCommit};
pub use state::{
    GroupState, JoinGroup, JoinOutcome, JoinedMember, Protocol, SyncGroup, SyncOutcome,
};

#[cfg(test)]
mod tests;
