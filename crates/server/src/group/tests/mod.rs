//! The coordinator's state machine with simulated members, on paused tokio time: what
//! Kafka clients see of joins, syncs, heartbeats, leaves, expiry and commits.
//!
//! - `membership`: joins, rebalances, expiry, leaves, static members, protocols.
//! - `offsets`: commits against generations, fetches, deletes, reopen, listing.
//! - `local`: the in-process member, and timers across runtimes.
#![allow(clippy::unwrap_used)]

mod local;
mod membership;
mod offsets;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use millrace_store::{Store, StoreOptions, TopicConfig};

use super::consumer_protocol::{Assignment, Subscription, range_assignments};
use super::{
    Coordinator, CoordinatorConfig, GroupError, JoinGroup, JoinOutcome, Protocol, SyncGroup,
};

pub(super) const SESSION: Duration = Duration::from_secs(10);
/// Every wait of these tests ends within this much (paused, so virtual) time: a
/// coordinator that never answers fails a test instead of hanging it.
pub(super) const BOUND: Duration = Duration::from_secs(900);
pub(super) const REBALANCE: Duration = Duration::from_secs(30);

/// A store with topics `t` (4 partitions) and `u` (2), and a coordinator over it that
/// starts a new group's join phase without the initial delay unless `delay` is given.
pub(super) fn setup(delay: Duration) -> (Coordinator, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), delay);
    c.store()
        .create_topic("t", 4, TopicConfig::default())
        .unwrap();
    c.store()
        .create_topic("u", 2, TopicConfig::default())
        .unwrap();
    (c, dir)
}

pub(super) fn open(dir: &std::path::Path, delay: Duration) -> Coordinator {
    let (store, _) = Store::open(dir, StoreOptions::default()).unwrap();
    Coordinator::new(
        Arc::new(store),
        CoordinatorConfig {
            initial_rebalance_delay: delay,
            ..CoordinatorConfig::default()
        },
    )
}

pub(super) fn range(topics: &[&str]) -> Vec<Protocol> {
    vec![Protocol {
        name: "range".into(),
        metadata: Subscription::new(topics.iter().copied()).encode(),
    }]
}

pub(super) fn join_req(group: &str, member_id: &str, protocols: Vec<Protocol>) -> JoinGroup {
    JoinGroup {
        group_id: group.into(),
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        protocol_type: "consumer".into(),
        protocols,
        require_known_member_id: true,
    }
}

/// `f`'s output, or a failed test if it takes longer than [`BOUND`].
pub(super) async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(BOUND, f).await {
        Ok(t) => t,
        Err(_) => panic!("no answer within {BOUND:?}"),
    }
}

/// A simulated member, driven step by step as a Kafka consumer drives its own.
#[derive(Clone, Debug)]
pub(super) struct Sim {
    pub c: Coordinator,
    pub group: String,
    pub id: String,
    pub instance: Option<String>,
    pub topics: Vec<String>,
    pub generation: i32,
    pub last: Option<JoinOutcome>,
}

impl Sim {
    pub fn new(c: &Coordinator, group: &str, topics: &[&str]) -> Sim {
        Sim {
            c: c.clone(),
            group: group.into(),
            id: String::new(),
            instance: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            generation: -1,
            last: None,
        }
    }

    fn request(&self) -> JoinGroup {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let mut r = join_req(&self.group, &self.id, range(&topics));
        r.group_instance_id = self.instance.clone();
        r
    }

    /// JoinGroup until it has a generation: a first join gets its member id with
    /// MEMBER_ID_REQUIRED and joins again with it, as clients do.
    pub async fn join(&mut self) -> Result<JoinOutcome, GroupError> {
        let mut r = bounded(self.c.join_group(self.request())).await;
        if let Err(GroupError::MemberIdRequired(id)) = &r {
            self.id = id.clone();
            r = bounded(self.c.join_group(self.request())).await;
        }
        let out = r?;
        self.id = out.member_id.clone();
        self.generation = out.generation;
        self.last = Some(out.clone());
        Ok(out)
    }

    /// SyncGroup; the leader brings a range assignment over the store's topics.
    pub async fn sync(&self) -> Result<Vec<(String, i32)>, GroupError> {
        let assignments = match &self.last {
            Some(out) if out.is_leader() => {
                let store = Arc::clone(self.c.store());
                range_assignments(&out.members, |t| {
                    store.topic(t).ok().map(|t| t.partition_count())
                })
            }
            _ => Vec::new(),
        };
        let out = bounded(self.c.sync_group(SyncGroup {
            group_id: self.group.clone(),
            member_id: self.id.clone(),
            group_instance_id: self.instance.clone(),
            generation: self.generation,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments,
        }))
        .await?;
        Ok(Assignment::decode(&out.assignment)
            .unwrap()
            .topic_partitions())
    }

    pub async fn heartbeat(&self) -> Result<(), GroupError> {
        self.c
            .heartbeat(
                &self.group,
                &self.id,
                self.instance.as_deref(),
                self.generation,
            )
            .await
    }

    pub async fn leave(&self) -> Result<(), GroupError> {
        let mut r = self
            .c
            .leave_group(&self.group, &[(self.id.clone(), self.instance.clone())])
            .await?;
        r.pop().unwrap()
    }

    pub async fn join_and_sync(&mut self) -> Result<Vec<(String, i32)>, GroupError> {
        self.join().await?;
        self.sync().await
    }
}

/// Joins and syncs every member at once (the join phase waits for all of them): each
/// member's assignment, in order.
pub(super) async fn rebalance(members: &mut [Sim]) -> Vec<Vec<(String, i32)>> {
    let tasks: Vec<_> = members
        .iter()
        .cloned()
        .map(|mut m| {
            tokio::spawn(async move {
                let a = m.join_and_sync().await.unwrap();
                (m, a)
            })
        })
        .collect();
    let mut out = Vec::new();
    for (slot, t) in members.iter_mut().zip(tasks) {
        let (m, a) = t.await.unwrap();
        *slot = m;
        out.push(a);
    }
    out
}

/// Every (topic, partition) of the given assignments, sorted.
pub(super) fn union(parts: &[Vec<(String, i32)>]) -> Vec<(String, i32)> {
    let mut all: Vec<(String, i32)> = parts.iter().flatten().cloned().collect();
    all.sort();
    all
}

pub(super) fn all_of(topic: &str, n: i32) -> Vec<(String, i32)> {
    (0..n).map(|p| (topic.to_string(), p)).collect()
}

pub(super) fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}
