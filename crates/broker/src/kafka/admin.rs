//! Topics admin and committed offsets, through Kafka's AdminClient and metadata.
//!
//! Kafka applies creates and deletes asynchronously: a created topic may not have
//! leaders yet, a deleted one may still be listed for a moment. Both calls here wait
//! (bounded) until the metadata agrees, so a caller can produce right after a create
//! and see the topic gone right after a delete, as on the embedded store.
//!
//! A description's partition offsets come from one ListOffsets request per end for all
//! partitions (librdkafka's offsets-for-times call, its one `unsafe` line here), asked
//! for side by side with the topic's config.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, NewTopic as KNewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::bindings as rd;
use rdkafka::client::Client;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::backoff::Backoff;
use super::errors::{self, Subject};
use super::producer::Producer;
use super::{LogContext, blocking, config};
use crate::api::{NewTopic, PartitionInfo, Result, TopicDescription};
use crate::error::BrokerError;

/// Topic configs that are millrace's own (the embedded store's) and mean nothing to a
/// Kafka broker; they are left out of a create rather than failing it.
const MILLRACE_ONLY_CONFIGS: &[&str] = &["durability"];

pub(crate) struct Admin {
    /// Metadata and offsets are asked for through the producer's client, which is
    /// connected from the start and lives as long as the broker.
    lookup: Arc<Producer>,
    /// What the admin client is made from.
    admin_config: ClientConfig,
    /// Redacts the client settings from errors.
    props: BTreeMap<String, String>,
    /// The admin client (topics created, deleted, their configs; consumer groups
    /// listed, described, their offsets, deleted), made at the first request and kept:
    /// each new client is two connections (the bootstrap server, then the controller)
    /// before its request goes out, and a `run` asks for several topics at once. Its
    /// teardown, which waits out its polling thread's 100 ms step, is the broker's
    /// (off the caller's thread: see `destroy_detached`).
    client: OnceLock<Arc<AdminClient<LogContext>>>,
    bootstrap: String,
    /// A consumer handle per group whose committed offsets were asked for, kept: making
    /// one and tearing it down costs ~150 ms, and a `--batch` run asks often (start
    /// positions, whether another instance finished a partition).
    committed_by_group: Mutex<HashMap<String, Arc<BaseConsumer<LogContext>>>>,
    /// How the clients made here log.
    log: LogContext,
}

impl Admin {
    pub(crate) fn new(
        bootstrap: &str,
        props: &BTreeMap<String, String>,
        setup_ms: &str,
        lookup: Arc<Producer>,
        log: LogContext,
    ) -> Admin {
        let admin_config = config::client_config(
            bootstrap,
            &[
                ("allow.auto.create.topics", "false"),
                ("socket.connection.setup.timeout.ms", setup_ms),
            ],
            props,
        );
        Admin {
            lookup,
            admin_config,
            props: props.clone(),
            client: OnceLock::new(),
            bootstrap: bootstrap.to_string(),
            committed_by_group: Mutex::new(HashMap::new()),
            log,
        }
    }

    /// The admin client of consumer-group requests: the one admin client.
    pub(crate) fn groups_client(&self) -> Result<Arc<AdminClient<LogContext>>> {
        self.admin_client()
    }

    /// The admin client, made at the first request.
    fn admin_client(&self) -> Result<Arc<AdminClient<LogContext>>> {
        if let Some(c) = self.client.get() {
            return Ok(Arc::clone(c));
        }
        let made = Arc::new(self.new_admin_client()?);
        Ok(Arc::clone(self.client.get_or_init(|| made)))
    }

    fn new_admin_client(&self) -> Result<AdminClient<LogContext>> {
        self.admin_config
            .create_with_context(self.log)
            .map_err(|e| {
                BrokerError::Invalid(format!(
                    "client settings: {}",
                    config::redact(&e.to_string(), &self.props)
                ))
            })
    }

    fn options(timeout: Duration) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(timeout))
            .operation_timeout(Some(timeout))
    }

    /// Metadata for one topic (`Some`) or all; `None` topic errors are left to the caller.
    async fn metadata(&self, topic: Option<&str>, timeout: Duration) -> Result<Metadata> {
        let client = Arc::clone(&self.lookup);
        let topic = topic.map(str::to_string);
        blocking(move || client.client().fetch_metadata(topic.as_deref(), timeout))
            .await?
            .map_err(|e| errors::from_kafka(&e, Subject::None))
    }

    /// Partition count of an existing topic; `UnknownTopic` otherwise.
    pub(crate) async fn partition_count(&self, topic: &str, timeout: Duration) -> Result<i32> {
        let md = self.metadata(Some(topic), timeout).await?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| BrokerError::UnknownTopic(topic.to_string()))?;
        if let Some(err) = t.error() {
            return Err(errors::from_code(err.into(), Subject::Topic(topic)));
        }
        if t.partitions().is_empty() {
            return Err(BrokerError::UnknownTopic(topic.to_string()));
        }
        i32::try_from(t.partitions().len())
            .map_err(|_| BrokerError::KafkaClient("too many partitions".into()))
    }

    /// Creates a topic and waits until every partition's leader serves it. Returns the
    /// partition count.
    pub(crate) async fn create_topic(&self, topic: &NewTopic, timeout: Duration) -> Result<i32> {
        let partitions = match self.create_listed(topic, timeout).await {
            Ok(()) => topic.partitions,
            // Made a moment ago by another client (two instances of a pipeline starting
            // together): it may not be listed or served yet either, and the caller goes
            // on to use it as if made here.
            Err(BrokerError::TopicExists(name)) => {
                if let Ok(count) = self.wait_listed(&topic.name, None, timeout).await {
                    self.wait_served(&topic.name, count, timeout).await?;
                }
                return Err(BrokerError::TopicExists(name));
            }
            Err(e) => return Err(e),
        };
        self.wait_served(&topic.name, partitions, timeout).await?;
        Ok(partitions)
    }

    /// Waits until every partition's leader answers ListOffsets. A leader named in the
    /// metadata may not serve its partition yet: its answer to a first produce is then
    /// "not leader", which librdkafka's idempotent producer mishandles when a later
    /// request to the partition succeeds (see the `unconfirmed` module). ListOffsets
    /// needs the same leadership as a produce, and retries until every leader answers.
    async fn wait_served(&self, topic: &str, partitions: i32, timeout: Duration) -> Result<()> {
        let ids: Vec<i32> = (0..partitions).collect();
        let (client, name) = (Arc::clone(&self.lookup), topic.to_string());
        blocking(move || list_offsets(client.client(), &name, &ids, Offset::End, timeout))
            .await?
            .map_err(|e| errors::from_kafka(&e, Subject::Topic(topic)))?;
        Ok(())
    }

    /// Waits until the metadata names a leader for every partition of `topic` (exactly
    /// `partitions` of them when given); its partition count.
    async fn wait_listed(
        &self,
        topic: &str,
        partitions: Option<i32>,
        timeout: Duration,
    ) -> Result<i32> {
        let mut count = 0;
        self.wait_until(timeout, topic, |md| {
            md.topics().iter().any(|t| {
                let n = i32::try_from(t.partitions().len()).unwrap_or(0);
                let listed = t.name() == topic
                    && t.error().is_none()
                    && n > 0
                    && partitions.is_none_or(|want| want == n)
                    && t.partitions().iter().all(|p| p.leader() >= 0);
                if listed {
                    count = n;
                }
                listed
            })
        })
        .await?;
        Ok(count)
    }

    /// Creates a topic and waits until the metadata names a leader for every
    /// partition, as most tools do: the leaders may not serve yet.
    pub(crate) async fn create_listed(&self, topic: &NewTopic, timeout: Duration) -> Result<()> {
        if topic.partitions < 1 {
            return Err(BrokerError::Invalid(
                "the number of partitions must be at least 1".to_string(),
            ));
        }
        let mut nt = KNewTopic::new(
            &topic.name,
            topic.partitions,
            TopicReplication::Fixed(i32::from(topic.replication_factor)),
        );
        for (k, v) in &topic.config {
            if MILLRACE_ONLY_CONFIGS.contains(&k.as_str()) {
                tracing::debug!(config = %k, "not a Kafka topic config; left out");
                continue;
            }
            nt = nt.set(k, v);
        }
        let results = self
            .admin_client()?
            .create_topics([&nt], &Self::options(timeout))
            .await
            .map_err(|e| errors::from_kafka(&e, Subject::Topic(&topic.name)))?;
        for r in results {
            if let Err((name, code)) = r {
                return Err(match code {
                    RDKafkaErrorCode::InvalidReplicationFactor => {
                        let brokers = self
                            .metadata(None, timeout)
                            .await
                            .map(|m| m.brokers().len())
                            .unwrap_or(0);
                        BrokerError::Invalid(format!(
                            "replication factor {} is larger than the {brokers} broker(s) \
                             available in the cluster",
                            topic.replication_factor
                        ))
                    }
                    other => errors::from_code(other, Subject::Topic(&name)),
                });
            }
        }
        self.wait_listed(&topic.name, Some(topic.partitions), timeout)
            .await
            .map(drop)
    }

    pub(crate) async fn list_topics(&self, timeout: Duration) -> Result<Vec<String>> {
        let md = self.metadata(None, timeout).await?;
        let mut names: Vec<String> = md
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
            .map(|t| t.name().to_string())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The topic's partitions with their leaders, replicas and offsets.
    pub(crate) async fn partitions(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<Vec<PartitionInfo>> {
        let md = self.metadata(Some(topic), timeout).await?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| BrokerError::UnknownTopic(topic.to_string()))?;
        if let Some(err) = t.error() {
            return Err(errors::from_code(err.into(), Subject::Topic(topic)));
        }
        let mut layout: Vec<(i32, i32, Vec<i32>)> = t
            .partitions()
            .iter()
            .map(|p| (p.id(), p.leader(), p.replicas().to_vec()))
            .collect();
        layout.sort_by_key(|p| p.0);

        // The first and next offsets of every partition, one request each for all
        // partitions, both at once.
        let ids: Vec<i32> = layout.iter().map(|p| p.0).collect();
        let offsets_at = |at: Offset| {
            let client = Arc::clone(&self.lookup);
            let (name, ids) = (topic.to_string(), ids.clone());
            blocking(move || list_offsets(client.client(), &name, &ids, at, timeout))
        };
        let (starts, ends) = tokio::join!(offsets_at(Offset::Beginning), offsets_at(Offset::End));
        let in_topic = |e: KafkaError| errors::from_kafka(&e, Subject::Topic(topic));
        let (starts, ends) = (starts?.map_err(in_topic)?, ends?.map_err(in_topic)?);
        Ok(layout
            .into_iter()
            .zip(starts.into_iter().zip(ends))
            .map(|((id, leader, replicas), (low, high))| PartitionInfo {
                partition: id,
                start_offset: low,
                end_offset: high,
                leader: (leader >= 0).then_some(leader),
                replicas,
            })
            .collect())
    }

    pub(crate) async fn describe_topic(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<TopicDescription> {
        // The partitions and the config at once.
        let options = Self::options(timeout);
        let resource = ResourceSpecifier::Topic(topic);
        let client = self.admin_client()?;
        let (partitions, configs) = tokio::join!(
            self.partitions(topic, timeout),
            client.describe_configs([&resource], &options)
        );
        let partitions = partitions?;
        let in_topic = |e: KafkaError| errors::from_kafka(&e, Subject::Topic(topic));
        let mut configs = configs.map_err(in_topic)?;
        // The metadata lists the topic, so a broker that does not know it yet only
        // lags behind the controller (a topic just created, on a cluster): asked again.
        let mut backoff = Backoff::until(timeout);
        while configs
            .iter()
            .any(|r| matches!(r, Err(RDKafkaErrorCode::UnknownTopicOrPartition)))
            && let Some(wait) = backoff.next_wait()
        {
            tokio::time::sleep(wait).await;
            configs = client
                .describe_configs([&resource], &options)
                .await
                .map_err(in_topic)?;
        }

        // Like `kafka-topics --describe`: the topic's own overrides, not every default.
        let mut config = BTreeMap::new();
        for r in configs {
            let r = r.map_err(|code| errors::from_code(code, Subject::Topic(topic)))?;
            for e in r.entries {
                if matches!(e.source, ConfigSource::DynamicTopic)
                    && !e.is_sensitive
                    && let Some(v) = e.value
                {
                    config.insert(e.name, v);
                }
            }
        }
        Ok(TopicDescription {
            name: topic.to_string(),
            partitions,
            config,
        })
    }

    /// Deletes a topic and waits until the metadata no longer lists it.
    pub(crate) async fn delete_topic(&self, topic: &str, timeout: Duration) -> Result<()> {
        let results = self
            .admin_client()?
            .delete_topics(&[topic], &Self::options(timeout))
            .await
            .map_err(|e| errors::from_kafka(&e, Subject::Topic(topic)))?;
        for r in results {
            if let Err((name, code)) = r {
                return Err(errors::from_code(code, Subject::Topic(&name)));
            }
        }
        self.wait_until(timeout, topic, |md| {
            !md.topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        })
        .await
    }

    /// Polls the topic's metadata until `done` holds or `timeout` passes, in the steps
    /// of [`Backoff`].
    async fn wait_until(
        &self,
        timeout: Duration,
        topic: &str,
        mut done: impl FnMut(&Metadata) -> bool,
    ) -> Result<()> {
        let mut backoff = Backoff::until(timeout);
        loop {
            // A metadata error (the topic is not there yet or any more) is just "not yet".
            if let Ok(md) = self.metadata(Some(topic), timeout).await
                && done(&md)
            {
                return Ok(());
            }
            let Some(wait) = backoff.next_wait() else {
                return Err(BrokerError::Timeout(super::millis(timeout)));
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The handle that asks for `group`'s committed offsets. Fetching them needs a
    /// consumer with the group's id; it never subscribes, so it does not join the group
    /// or disturb its members.
    pub(crate) fn committed_handle(
        &self,
        props: &BTreeMap<String, String>,
        group: &str,
    ) -> Result<Arc<BaseConsumer<LogContext>>> {
        // Every entry is inserted whole: a poisoned map is still sound.
        let mut handles = self
            .committed_by_group
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = handles.get(group) {
            return Ok(Arc::clone(c));
        }
        let mut cfg = config::client_config(
            &self.bootstrap,
            &[
                ("enable.auto.commit", "false"),
                ("allow.auto.create.topics", "false"),
            ],
            props,
        );
        cfg.set("group.id", group);
        let consumer: BaseConsumer<LogContext> =
            cfg.create_with_context(self.log).map_err(|e| {
                BrokerError::Invalid(format!(
                    "client settings: {}",
                    config::redact(&e.to_string(), props)
                ))
            })?;
        let consumer = Arc::new(consumer);
        handles.insert(group.to_string(), Arc::clone(&consumer));
        Ok(consumer)
    }

    /// The offsets `group` committed on each partition of `topic`.
    pub(crate) async fn committed(
        &self,
        props: &BTreeMap<String, String>,
        group: &str,
        topic: &str,
        partitions: i32,
        timeout: Duration,
    ) -> Result<Vec<(i32, Option<i64>)>> {
        let consumer = self.committed_handle(props, group)?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = blocking(move || {
            let deadline = Instant::now() + timeout;
            loop {
                match consumer.committed_offsets(tpl.clone(), timeout) {
                    Err(e) if errors::is_coordinator_transient(&e) && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    other => break other,
                }
            }
        })
        .await?
        .map_err(|e| errors::from_kafka(&e, Subject::Group(group)))?;
        let mut out: Vec<(i32, Option<i64>)> = got
            .elements_for_topic(topic)
            .iter()
            .map(|e| {
                let o = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (e.partition(), o)
            })
            .collect();
        out.sort_by_key(|x| x.0);
        Ok(out)
    }
}

impl Drop for Admin {
    /// Closes the group handles without rdkafka's 100 ms poll steps (its consumer's
    /// `Drop` polls in those until the close is done: a tenth of a second at the end of
    /// every `--batch` run); rdkafka's `Drop` then finds them closed (see the consumer's
    /// `close_blocking`).
    fn drop(&mut self) {
        let handles = std::mem::take(
            &mut *self
                .committed_by_group
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for c in handles.into_values().filter_map(Arc::into_inner) {
            if c.close_queue().is_ok() {
                let deadline = Instant::now() + CLOSE_AT_MOST;
                while !c.closed() && Instant::now() < deadline {
                    c.poll(CLOSE_POLL);
                }
            }
        }
    }
}

/// How long one offsets lookup waits at most before it is retried.
const LOOKUP_AT_MOST: Duration = Duration::from_secs(2);
/// How long a metadata refresh between offsets lookups waits at most.
const REFRESH_AT_MOST: Duration = Duration::from_millis(500);

/// How long a group handle's close is waited for at most.
const CLOSE_AT_MOST: Duration = Duration::from_secs(1);

/// The steps a closing group handle is polled in.
const CLOSE_POLL: Duration = Duration::from_millis(5);

/// Each partition's offset at `at` (`Offset::Beginning`: the first offset still
/// stored; `Offset::End`: the next one to be written), in the order of `partitions`,
/// from one ListOffsets request per leader (where asking for each partition's
/// watermarks took two requests per partition, one after another). Right after a create
/// the leader may not serve offsets yet (`NotLeaderForPartition`, `LeaderNotAvailable`,
/// `UnknownLeaderEpoch`, `OffsetNotAvailable`, and on a cluster `UnknownPartition` from
/// a broker or a client cache behind the metadata); right after a broker is lost, a
/// query sent to it fails once librdkafka learns it is gone (`DestroyBroker`,
/// `BrokerTransportFailure`) and the next goes to the new leader: retried, in the
/// steps of [`Backoff`], until `timeout`.
#[allow(unsafe_code)]
fn list_offsets(
    client: &Client<LogContext>,
    topic: &str,
    partitions: &[i32],
    at: Offset,
    timeout: Duration,
) -> std::result::Result<Vec<i64>, KafkaError> {
    let mut backoff = Backoff::until(timeout);
    loop {
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for p in partitions {
            tpl.add_partition_offset(topic, *p, at)?;
        }
        // One call waits for leaders its metadata cache lacks; bounded, so that a cache
        // stuck behind the cluster is refreshed below and asked again.
        let left = backoff.left().min(LOOKUP_AT_MOST);
        let timeout_ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
        // SAFETY: a live client and partition list; librdkafka's offsets-for-times call
        // reads each element's offset as the position to look up (the logical
        // beginning and end are what ListOffsets takes as the earliest and latest
        // timestamps) and writes back each partition's offset or error.
        let err =
            unsafe { rd::rd_kafka_offsets_for_times(client.native_ptr(), tpl.ptr(), timeout_ms) };
        let result = if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            partitions
                .iter()
                .map(|p| match tpl.find_partition(topic, *p) {
                    Some(e) => e.error().map(|()| match e.offset() {
                        Offset::Offset(o) => o,
                        // No offset there: an empty partition's, for either end.
                        _ => 0,
                    }),
                    None => Err(KafkaError::OffsetFetch(RDKafkaErrorCode::UnknownPartition)),
                })
                .collect()
        } else {
            Err(KafkaError::OffsetFetch(err.into()))
        };
        let code = result
            .as_ref()
            .err()
            .and_then(KafkaError::rdkafka_error_code);
        let retried = matches!(
            code,
            Some(
                RDKafkaErrorCode::NotLeaderForPartition
                    | RDKafkaErrorCode::LeaderNotAvailable
                    // A broker behind the client's metadata, or ahead of it, as leaders
                    // move (and right after a create); and a new leader that has not
                    // learnt its high watermark yet.
                    | RDKafkaErrorCode::UnknownLeaderEpoch
                    | RDKafkaErrorCode::FencedLeaderEpoch
                    | RDKafkaErrorCode::OffsetNotAvailable
                    // The metadata named the topic (callers look it up first): a
                    // broker, or the client's cache, behind it.
                    | RDKafkaErrorCode::UnknownPartition
                    | RDKafkaErrorCode::UnknownTopicOrPartition
                    | RDKafkaErrorCode::UnknownTopic
                    | RDKafkaErrorCode::NotCoordinator
                    | RDKafkaErrorCode::DestroyBroker
                    | RDKafkaErrorCode::BrokerTransportFailure
            )
        );
        let Some(wait) = backoff.next_wait().filter(|_| retried) else {
            return result;
        };
        // librdkafka's cache may hold the topic as a broker behind the controller
        // described it (no such partition, or no such topic) and not look again for a
        // while: a metadata request of the topic's own replaces that entry.
        if matches!(
            code,
            Some(
                RDKafkaErrorCode::UnknownPartition
                    | RDKafkaErrorCode::UnknownTopicOrPartition
                    | RDKafkaErrorCode::UnknownTopic
            )
        ) {
            let _ = client.fetch_metadata(Some(topic), REFRESH_AT_MOST);
        }
        std::thread::sleep(wait);
    }
}
