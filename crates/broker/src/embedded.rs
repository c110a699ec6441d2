//! The embedded store behind the broker interface.
//!
//! Layout:
//! - `embedded.rs` (here): [`EmbeddedBroker`] — topics, produce, committed offsets.
//! - `consumer`: [`EmbeddedConsumer`], a position per assigned partition.
//! - `member`: a group consumer's membership in the store's group coordinator.
//! - `read`: a poll's fair share per partition, and the rest of a stored batch kept.
//! - `encoded`: records moved as stored, for forwarding stages.
//! - `groups`: consumer groups listed, described, reset and deleted.
//!
//! The broker is built on the store's [`Hub`]: the one this process shares between its
//! own stages and the Kafka server it serves the store with. An append wakes the
//! hub's tails whoever made it — a stage here or a Kafka producer over the wire — so a
//! tailing consumer here and a Kafka client's long-polling fetch wake alike, and a
//! group consumer here is a member of the hub's group coordinator beside Kafka
//! clients.
//!
//! The store is synchronous; this adapter keeps the async side honest: appends that
//! wait for an fdatasync (`batch` topics; `interval` ones may at a segment roll) and
//! offset commits run on tokio's blocking pool, while `durability=none` appends — a
//! `write(2)` into the page cache — and reads run inline, sparing a thread hand-off per
//! call.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use millrace_server::Hub;
use millrace_server::group::CoordinatorConfig;
use millrace_store::{
    Durability, Pending, RecordRef, Store, StoreError, StoreOptions, Topic, TopicConfig,
    partition_for_key,
};

use crate::api::*;
use crate::encoded::{EncodedBatch, EncodedBroker};
use crate::error::BrokerError;

mod consumer;
mod encoded;
mod groups;
mod member;
mod read;

pub use consumer::EmbeddedConsumer;

/// The embedded store, opened by this process (which then holds its lock).
#[derive(Clone)]
pub struct EmbeddedBroker {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Arc<Hub>,
    /// Where the next unkeyed produce call sticks its records.
    sticky: AtomicU32,
}

impl EmbeddedBroker {
    /// Opens (or creates) the data directory, takes its lock and builds its hub. What
    /// recovery cut from torn tails is logged as a warning.
    pub fn open(dir: &Path) -> Result<EmbeddedBroker, BrokerError> {
        EmbeddedBroker::open_with_groups(dir, groups_config())
    }

    /// [`EmbeddedBroker::open`] with the group coordinator's settings.
    pub fn open_with_groups(
        dir: &Path,
        groups: CoordinatorConfig,
    ) -> Result<EmbeddedBroker, BrokerError> {
        let (store, report) = Store::open(dir, StoreOptions::default())?;
        for t in &report.truncated {
            tracing::warn!("recovery: {t:?}");
        }
        let hub = Hub::with_groups(Arc::new(store), groups)
            .map_err(|e| BrokerError::server("cannot share the store", e))?;
        Ok(EmbeddedBroker::from_hub(hub))
    }

    /// The broker over `hub`'s store, sharing the hub with whoever else has it (the
    /// Kafka server serving the same store).
    pub fn from_hub(hub: Arc<Hub>) -> EmbeddedBroker {
        EmbeddedBroker {
            inner: Arc::new(Inner {
                hub,
                sticky: AtomicU32::new(0),
            }),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        self.inner.hub.store()
    }

    /// The hub this broker shares with the Kafka server of its store.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        self.store().topic(name).map_err(map_store)
    }
}

/// Store errors that have a broker-level meaning keep it.
fn map_store(e: StoreError) -> BrokerError {
    match e {
        StoreError::UnknownTopic(t) => BrokerError::UnknownTopic(t),
        StoreError::TopicExists(t) => BrokerError::TopicExists(t),
        other => BrokerError::Store(other),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn partition_index(p: i32) -> Result<u32, BrokerError> {
    u32::try_from(p).map_err(|_| BrokerError::Invalid(format!("partition {p} is negative")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::task("store task", e))?
}

/// Appends `records` to the partitions `by_partition` assigns them (an empty index
/// list: all of them, in order) and returns where each landed, in input order, once
/// all are durable: one group commit of the store's journal for every partition.
fn append_grouped<'a>(
    t: &Topic,
    records: &'a [ProduceRecord],
    by_partition: &[(u32, Vec<usize>)],
    now: i64,
) -> Result<Vec<Delivered>, BrokerError> {
    let view = |r: &'a ProduceRecord| RecordRef {
        key: r.key.as_deref(),
        value: &r.value,
        headers: &r.headers,
        timestamp: r.timestamp.unwrap_or(now),
    };
    let mut out = vec![
        Delivered {
            partition: 0,
            offset: 0
        };
        records.len()
    ];
    let mut pending = Pending::default();
    for (p, idx) in by_partition {
        let part = t.partition(*p).map_err(map_store)?;
        let base = if idx.is_empty() {
            part.append_pending(records.iter().map(view), &mut pending)
        } else {
            part.append_pending(idx.iter().map(|&i| view(&records[i])), &mut pending)
        }
        .map_err(map_store)?;
        let partition = i32::try_from(*p).unwrap_or(i32::MAX);
        let at = |j: usize| Delivered {
            partition,
            offset: to_i64(base + j as u64),
        };
        if idx.is_empty() {
            for (j, slot) in out.iter_mut().enumerate() {
                *slot = at(j);
            }
        } else {
            for (j, &i) in idx.iter().enumerate() {
                out[i] = at(j);
            }
        }
    }
    pending.wait().map_err(map_store)?;
    Ok(out)
}

#[async_trait]
impl Broker for EmbeddedBroker {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn create_topic(&self, topic: &NewTopic) -> Result<()> {
        if topic.replication_factor > 1 {
            return Err(BrokerError::Invalid(format!(
                "replication factor {} is not possible on the embedded store: it keeps one copy \
                 in one data directory on one machine; use --replication-factor 1, or run on \
                 Kafka (--bootstrap-server) for replicated topics",
                topic.replication_factor
            )));
        }
        let partitions = u32::try_from(topic.partitions)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                BrokerError::Invalid(format!(
                    "a topic needs at least one partition, got {}",
                    topic.partitions
                ))
            })?;
        let config = TopicConfig::from_pairs(&topic.config).map_err(map_store)?;
        let store = Arc::clone(self.store());
        let name = topic.name.clone();
        blocking(move || {
            store
                .create_topic(&name, partitions, config)
                .map_err(map_store)
        })
        .await
    }

    async fn list_topics(&self) -> Result<Vec<String>> {
        Ok(self.store().topic_names())
    }

    async fn describe_topic(&self, topic: &str) -> Result<TopicDescription> {
        let t = self.topic(topic)?;
        let mut partitions = Vec::new();
        for p in 0..t.partition_count() {
            let part = t.partition(p).map_err(map_store)?;
            partitions.push(PartitionInfo {
                partition: i32::try_from(p).unwrap_or(i32::MAX),
                start_offset: to_i64(part.start_offset()),
                end_offset: to_i64(part.end_offset()),
                leader: Some(0),
                replicas: vec![0],
            });
        }
        Ok(TopicDescription {
            name: topic.to_string(),
            partitions,
            config: t.config().to_pairs(),
        })
    }

    async fn delete_topic(&self, topic: &str) -> Result<()> {
        let store = Arc::clone(self.store());
        let name = topic.to_string();
        blocking(move || store.delete_topic(&name).map_err(map_store)).await
    }

    async fn produce(&self, topic: &str, records: &[ProduceRecord]) -> Result<Vec<Delivered>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let t = self.topic(topic)?;
        let n = t.partition_count();
        // Unkeyed records of one call stick to one partition (as Kafka's sticky
        // partitioner does per batch): one batch, one fdatasync.
        let sticky = self.inner.sticky.fetch_add(1, Ordering::Relaxed) % n;
        let now = now_ms();
        let place = |r: &ProduceRecord| -> Result<u32, BrokerError> {
            Ok(match (r.partition, &r.key) {
                (Some(p), _) => {
                    let p = partition_index(p)?;
                    if p >= n {
                        return Err(BrokerError::Invalid(format!(
                            "topic '{topic}' has {n} partitions; partition {p} does not exist"
                        )));
                    }
                    p
                }
                (None, Some(k)) => partition_for_key(k, n),
                (None, None) => sticky,
            })
        };
        // The common case — every record for one partition (a stage fixes the output
        // partition itself) — needs no grouping and no index map.
        let first = place(&records[0])?;
        let mut single = true;
        for r in &records[1..] {
            if place(r)? != first {
                single = false;
                break;
            }
        }
        let by_partition: Vec<(u32, Vec<usize>)> = if single {
            vec![(first, Vec::new())]
        } else {
            let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
            for (i, r) in records.iter().enumerate() {
                groups.entry(place(r)?).or_default().push(i);
            }
            groups.into_iter().collect()
        };
        let delivered = if t.config().durability == Durability::None {
            // A write(2) into the page cache (and, once per segment, a roll with one
            // directory fsync): cheaper inline, encoded straight from the caller's
            // records, than a hand-off to the blocking pool.
            append_grouped(&t, records, &by_partition, now)?
        } else {
            // `batch` waits for an fdatasync; `interval` syncs the old segment at a roll.
            // The blocking pool needs records of its own.
            let owned: Vec<ProduceRecord> = records.to_vec();
            blocking(move || append_grouped(&t, &owned, &by_partition, now)).await?
        };
        Ok(delivered)
    }

    fn encoded(&self) -> Option<&dyn EncodedBroker> {
        Some(self)
    }

    async fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(EmbeddedConsumer::open(self.clone(), config)?))
    }

    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<(i32, Option<i64>)>> {
        let t = self.topic(topic)?;
        Ok((0..t.partition_count())
            .map(|p| {
                (
                    i32::try_from(p).unwrap_or(i32::MAX),
                    self.store().committed_offset(group, topic, p).map(to_i64),
                )
            })
            .collect())
    }

    async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        groups::list(self).await
    }

    async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        groups::describe(self, group).await
    }

    async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<()> {
        groups::alter_offsets(self, group, offsets).await
    }

    async fn delete_group(&self, group: &str) -> Result<()> {
        groups::delete(self, group).await
    }
}

#[async_trait]
impl EncodedBroker for EmbeddedBroker {
    async fn produce_encoded(
        &self,
        topic: &str,
        partition: i32,
        batch: &mut EncodedBatch,
    ) -> Result<i64> {
        encoded::produce(self, topic, partition, batch).await
    }

    async fn produce_encoded_all(&self, batches: &mut [(&str, i32, EncodedBatch)]) -> Result<()> {
        encoded::produce_all(self, batches).await
    }
}

/// The group coordinator's settings in a process holding a data directory: Kafka's
/// broker defaults, but a new group's first generation starts at once. Kafka waits
/// 3 s (`group.initial.rebalance.delay.ms`) for more members to arrive; here every
/// `millrace run`, `--batch` runs included, would wait that long before its stages
/// read anything, and members arriving later join through an ordinary rebalance.
pub fn groups_config() -> CoordinatorConfig {
    CoordinatorConfig {
        initial_rebalance_delay: Duration::ZERO,
        ..CoordinatorConfig::default()
    }
}
