//! What `millrace serve`'s `/metrics` and `/api/stats` report, read from the hub at
//! once: every topic partition's offsets, every group's committed offsets and lag,
//! and what the Kafka server counted. Reading it takes no lock a produce or fetch
//! waits on for long: the store's offsets are in memory, its committed offsets too.

use millrace_server::Hub;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub topics: Vec<Topic>,
    pub groups: Vec<Group>,
    pub connections: Connections,
    /// The APIs that have had a request, by API key.
    pub requests: Vec<Requests>,
}

#[derive(Debug, Serialize)]
pub struct Topic {
    pub topic: String,
    pub partitions: Vec<Partition>,
}

#[derive(Debug, Serialize)]
pub struct Partition {
    pub partition: u32,
    /// The first offset still stored (Kafka's log start offset).
    pub start_offset: u64,
    /// The offset the next record appended gets (Kafka's log end offset).
    pub end_offset: u64,
    /// The bytes its segments take on disk.
    pub size_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Group {
    pub group: String,
    /// Kafka's group state: Empty, PreparingRebalance, CompletingRebalance, Stable.
    pub state: &'static str,
    pub members: usize,
    pub offsets: Vec<GroupOffset>,
}

#[derive(Debug, Serialize)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: u32,
    /// The next offset the group will consume, as committed.
    pub committed_offset: u64,
    /// The partition's end offset; absent when the topic or partition is gone.
    pub end_offset: Option<u64>,
    /// The end offset minus the committed offset (0 if the committed one is past
    /// it); absent with the end offset.
    pub lag: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Connections {
    pub open: u64,
    pub accepted: u64,
}

#[derive(Debug, Serialize)]
pub struct Requests {
    /// Kafka's name of the API (`Produce`, `Fetch`, …), as its request metrics name it.
    pub request: String,
    pub api_key: i16,
    pub count: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

impl Snapshot {
    pub fn read(hub: &Hub) -> Snapshot {
        let store = hub.store();
        let topics: Vec<Topic> = store
            .topic_names()
            .into_iter()
            .filter_map(|name| {
                let t = store.topic(&name).ok()?;
                let partitions = t
                    .partitions()
                    .iter()
                    .map(|p| Partition {
                        partition: p.id(),
                        start_offset: p.start_offset(),
                        end_offset: p.end_offset(),
                        size_bytes: p.size_bytes(),
                    })
                    .collect();
                Some(Topic {
                    topic: name,
                    partitions,
                })
            })
            .collect();
        let end_of = |topic: &str, partition: u32| {
            topics
                .iter()
                .find(|t| t.topic == topic)?
                .partitions
                .iter()
                .find(|p| p.partition == partition)
                .map(|p| p.end_offset)
        };
        let coordinator = hub.coordinator();
        let groups = coordinator
            .list_groups()
            .into_iter()
            .map(|listing| {
                let members = coordinator
                    .describe_group(&listing.group_id)
                    .map_or(0, |d| d.members.len());
                let offsets = store
                    .group_offsets(&listing.group_id)
                    .into_iter()
                    .map(|(topic, partition, committed)| {
                        let end_offset = end_of(&topic, partition);
                        GroupOffset {
                            lag: end_offset.map(|end| end.saturating_sub(committed.next)),
                            end_offset,
                            committed_offset: committed.next,
                            topic,
                            partition,
                        }
                    })
                    .collect();
                Group {
                    group: listing.group_id,
                    state: listing.state.as_str(),
                    members,
                    offsets,
                }
            })
            .collect();
        let stats = hub.stats();
        let requests = stats
            .apis()
            .into_iter()
            .map(|a| Requests {
                request: format!("{:?}", a.key),
                api_key: a.key as i16,
                count: a.requests,
                request_bytes: a.request_bytes,
                response_bytes: a.response_bytes,
            })
            .collect();
        Snapshot {
            topics,
            groups,
            connections: Connections {
                open: stats.connections_open(),
                accepted: stats.connections_accepted(),
            },
            requests,
        }
    }
}
