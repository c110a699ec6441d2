//! A Kafka consumer behind the `Consumer` trait.
//!
//! With a group it subscribes, and Kafka's group protocol hands it partitions; without
//! one it assigns itself every partition of its topics and commits nothing, as the
//! embedded store does. The rebalance callback runs inside `poll` (librdkafka calls it
//! from the consumer queue), so `Assigned`/`Revoked` are recorded before the records of
//! the new assignment are returned.
//!
//! A member losing partitions first waits for the work its owner has in flight (see
//! `hand_over`), so the partitions' next owner finds all of it written.
//!
//! Records come from a queue of the consumer's own, which its partitions forward to
//! from their assignment on and which a poll drains many at a time (`fetched`); the
//! consumer queue keeps the rebalances, commits and errors, served first in each poll.
//!
//! The default assignment strategy is `cooperative-sticky`: a rebalance moves only the
//! partitions that change owner, and the `Assigned`/`Revoked` lists are exactly those.
//!
//! Parts:
//! - `mod.rs` (here): `KafkaConsumer` — its settings, opening it (subscribe or assign),
//!   and the `Consumer` impl (poll, assignment, commit, seek, close).
//! - `context`: `GroupContext`, the client context whose rebalance callbacks record
//!   `Assigned`/`Revoked` and hand partitions over.
//! - `start`: `StartLookup`, the start offset of partitions the group committed nothing for.
//! - `records`: a poll's records — the consumer queue's events served, messages copied
//!   into records, librdkafka's consumer errors sorted, revoked partitions' records dropped.
//! - `seek`: moving a partition's position (offset, timestamp, beginning, end).
//! - `close`: leaving the group and closing the client, on `close` and on drop.

mod close;
mod context;
mod records;
mod seek;
mod start;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};

use super::errors::{self, Subject};
use super::fetched::{Fetched, Taken};
use super::{KafkaBroker, blocking, config};
use crate::api::{
    ConsumedRecord, Consumer, ConsumerConfig, Names, OffsetReset, Rebalance, Result, Seek,
    TopicPartition,
};
use crate::error::BrokerError;
use crate::hand_over::InFlight;
use close::close_blocking;
use context::{GroupContext, lock};
use records::consumer_error;
use seek::seek_blocking;
use start::{StartLookup, reset_offset};

/// Consumer settings millrace relies on; the user's properties may override them.
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    // The runtime commits only offsets whose outputs are durable (at-least-once).
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "false"),
    ("allow.auto.create.topics", "false"),
    ("partition.assignment.strategy", "cooperative-sticky"),
    // Notices joins and leaves of other members within about a second.
    ("heartbeat.interval.ms", "1000"),
    // Heartbeats come from librdkafka's own thread, so only a dead process (or a lost
    // network) misses them. A group's rebalance waits for every member it knows,
    // including one that died without leaving (or a joining member left half-joined
    // when its process ended, which the broker keeps as "pending"): the other
    // members sat idle for librdkafka's 45 s until the broker gave up on it. 10 s
    // bounds that wait, and a crashed process's partitions move on as soon.
    ("session.timeout.ms", "10000"),
    // librdkafka pauses fetching a partition for this long once its local queue is
    // full (default 1 s); a stage that drains quickly would then sit idle.
    ("fetch.queue.backoff.ms", "20"),
    // How long the broker holds a fetch that finds nothing (a fetch returns as soon as
    // any partition in it has records). librdkafka adds a new assignment's partitions
    // to its fetches one by one, and a fetch sent before the partition with records
    // joined it was held the 500 ms default: a 1000-record `--batch` run took 0.7 s
    // instead of 0.2 s about one time in three. Idle, a fetch 10 times a second.
    ("fetch.wait.max.ms", "100"),
    // A stage polls between batches. An exec stage's batch of slow work items, or a
    // continuous run waiting for its next `batch: {every: 1h}`, takes longer than the
    // 5 min default; the group would then drop the stage, and its batch would be done
    // again after it rejoins (and dropped again). Liveness stays with the heartbeats
    // (`session.timeout.ms`). librdkafka's maximum: 24 h.
    ("max.poll.interval.ms", "86400000"),
];

type Inner = BaseConsumer<GroupContext>;

/// A consumer of Kafka topics.
pub struct KafkaConsumer {
    /// `None` only after `close`; `Arc` so blocking calls can run off the async workers.
    consumer: Option<Arc<Inner>>,
    group: Option<String>,
    timeout: Duration,
    /// Partition counts of the subscribed topics, for checks and group-less assignment.
    partitions: BTreeMap<String, i32>,
    names: Names,
    /// Topic names by librdkafka's topic handle, for records taken in batches.
    topic_names: Vec<(usize, Arc<str>)>,
}

impl KafkaConsumer {
    pub(crate) async fn open(broker: KafkaBroker, config: ConsumerConfig) -> Result<KafkaConsumer> {
        if config.topics.is_empty() {
            return Err(BrokerError::Invalid(
                "a consumer needs at least one topic".into(),
            ));
        }
        let mut partitions = BTreeMap::new();
        for t in &config.topics {
            partitions.insert(t.clone(), broker.partition_count(t).await?);
        }
        let inner = &broker.inner;
        let mut props = inner.properties.clone();
        props.extend(config::to_librdkafka(&config.properties)?);
        if config.co_partitioned {
            // The range assignor gives one member partition p of every topic.
            props.insert("partition.assignment.strategy".into(), "range".into());
        }
        if config.reads_written {
            // Its default wait would be most of a stage's start-up.
            props.insert("fetch.wait.max.ms".into(), "10".into());
        }
        let reset = match config.offset_reset {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        };
        let mut defaults = CONSUMER_DEFAULTS.to_vec();
        defaults.extend_from_slice(inner.flavour.consumer_defaults);
        defaults.push(("auto.offset.reset", reset));
        let mut cfg = config::client_config(&inner.bootstrap, &defaults, &props);
        match &config.group {
            Some(g) => {
                cfg.set("group.id", g);
            }
            None => {
                // librdkafka's assign() needs a group id even though this consumer never
                // joins or commits; a private one keeps it away from real groups.
                cfg.set(
                    "group.id",
                    format!("millrace-unjoined-{}", std::process::id()),
                );
            }
        }
        let mut consumer: Inner = cfg
            .create_with_context(GroupContext {
                quiet_transport: inner.flavour.quiet_transport,
                ..GroupContext::default()
            })
            .map_err(|e| {
                BrokerError::Invalid(format!(
                    "client settings: {}",
                    config::redact(&e.to_string(), &props)
                ))
            })?;
        let wake = consumer.context().wake.clone();
        consumer.set_nonempty_callback(move || wake.notify_one());
        let ctx = consumer.context();
        let fetched = Fetched::new(consumer.client().native_ptr(), ctx.wake.clone());
        let _ = ctx.fetched.set(fetched);
        // From here on, dropping `this` (also on an error below) gives the queue back
        // before the client goes.
        let this = KafkaConsumer {
            consumer: Some(Arc::new(consumer)),
            group: config.group,
            timeout: inner.timeout,
            partitions,
            names: Names::default(),
            topic_names: Vec::new(),
        };
        let consumer = this.handle()?;
        let ctx = consumer.context();
        if let Some(group) = &this.group {
            let committed = inner.admin.committed_handle(&inner.properties, group)?;
            let reset = reset_offset(config.offset_reset);
            let _ = ctx.start.set(StartLookup { committed, reset });
            let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&topics)
                .map_err(|e| errors::from_kafka(&e, Subject::None))?;
        } else {
            // No group: every partition, starting where `offset_reset` says.
            let start = reset_offset(config.offset_reset);
            let mut tpl = TopicPartitionList::new();
            let mut all = Vec::new();
            for (t, n) in &this.partitions {
                for p in 0..*n {
                    tpl.add_partition_offset(t, p, start)
                        .map_err(|e| errors::from_kafka(&e, Subject::Topic(t)))?;
                    if let Some(f) = ctx.fetched.get() {
                        f.forward(t, p);
                    }
                    all.push(TopicPartition::new(t.clone(), p));
                }
            }
            consumer
                .assign(&tpl)
                .map_err(|e| errors::from_kafka(&e, Subject::None))?;
            lock(&ctx.owned).extend(all.iter().cloned());
            lock(&ctx.rebalances).push(Rebalance::Assigned(all));
        }
        Ok(this)
    }

    fn handle(&self) -> Result<&Arc<Inner>> {
        self.consumer
            .as_ref()
            .ok_or(BrokerError::Closed("the consumer is closed"))
    }
}

/// Records a poll makes room for at once (librdkafka fetches ahead in batches of this
/// order for small records).
const PREFETCHED: usize = 4096;

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>> {
        let c = self.handle()?.clone();
        let max = max_records.max(1);
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut arena = BytesMut::new();
        let ctx = c.context();
        // Revocations before this poll concern no record of it.
        lock(&ctx.revoked_in_poll).clear();
        loop {
            // Events first: a revocation served here drops what librdkafka fetched
            // for those partitions before the fetched records are taken.
            self.serve_events(&c, &mut out, max, &mut arena)?;
            if out.len() < max
                && let Some(fetched) = ctx.fetched.get()
            {
                let mut failed = Ok(());
                fetched.take(max - out.len(), |taken| match taken {
                    Taken::Record(m) => {
                        if out.capacity() == 0 {
                            // Room for what is probably fetched already, once a record
                            // has come: growing by doubling from one would copy a
                            // large poll's records over and over.
                            out.reserve(max.min(PREFETCHED));
                        }
                        let r = self.fetched_record(&m, &mut arena);
                        out.push(r);
                    }
                    Taken::Error(code, text) => {
                        if failed.is_ok() {
                            failed = consumer_error(Some(code), &text, ctx.quiet_transport);
                        }
                    }
                });
                failed?;
            }
            if !out.is_empty() {
                return Ok(out);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(out);
            }
            // Either queue's callback wakes this; a wake-up that came since the
            // queues were looked at is kept by `Notify` and ends this wait at once.
            let _ = tokio::time::timeout(left, ctx.wake.notified()).await;
        }
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        match &self.consumer {
            Some(c) => lock(&c.context().owned).iter().cloned().collect(),
            None => Vec::new(),
        }
    }

    fn take_rebalances(&mut self) -> Vec<Rebalance> {
        match &self.consumer {
            Some(c) => std::mem::take(&mut *lock(&c.context().rebalances)),
            None => Vec::new(),
        }
    }

    fn hand_over_after(&mut self, work: InFlight) {
        if let Some(c) = &self.consumer {
            *lock(&c.context().in_flight) = Some(work);
        }
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let Some(group) = self.group.clone() else {
            return Err(BrokerError::Invalid(
                "commit needs a consumer group".to_string(),
            ));
        };
        if offsets.is_empty() {
            return Ok(());
        }
        let c = self.handle()?.clone();
        let mut tpl = TopicPartitionList::new();
        for (tp, o) in offsets {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*o))
                .map_err(|e| errors::from_kafka(&e, Subject::Topic(&tp.topic)))?;
        }
        let timeout = self.timeout;
        blocking(move || {
            let deadline = Instant::now() + timeout;
            loop {
                match c.commit(&tpl, CommitMode::Sync) {
                    Err(e) if errors::is_coordinator_transient(&e) && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    other => break other,
                }
            }
        })
        .await?
        .map_err(|e| errors::from_kafka(&e, Subject::Group(&group)))
    }

    async fn seek(&mut self, tp: &TopicPartition, to: Seek) -> Result<()> {
        if !self.assignment().contains(tp) {
            return Err(BrokerError::Invalid(format!(
                "partition {tp} is not assigned to this consumer"
            )));
        }
        if !self.partitions.contains_key(&*tp.topic) {
            return Err(BrokerError::UnknownTopic(tp.topic.to_string()));
        }
        let c = self.handle()?.clone();
        let timeout = self.timeout;
        let tp2 = tp.clone();
        blocking(move || seek_blocking(&c, &tp2, to, timeout))
            .await?
            .map_err(|e| errors::from_kafka(&e, Subject::Topic(&tp.topic)))
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        let Some(c) = self.consumer.take() else {
            return Ok(());
        };
        let timeout = self.timeout;
        let done = blocking(move || close_blocking(c, timeout));
        match tokio::time::timeout(timeout * 3, done).await {
            Ok(r) => r,
            Err(_) => Err(BrokerError::Timeout(super::millis(timeout * 3))),
        }
    }
}
