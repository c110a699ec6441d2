//! Apache Kafka behind the broker traits, through rdkafka (librdkafka).
//!
//! Layout:
//! - `mod.rs` (here): `KafkaBroker`: connecting, producing, and the shared client state.
//! - `admin`: topics create / list / describe / delete, committed offsets.
//! - `producer`: the producer: a topic handle per topic, records handed over in runs.
//! - `delivery`: each send's acknowledgements, and the thread serving librdkafka's reports.
//! - `unconfirmed`: records librdkafka acknowledged without placing them, sent again.
//! - `consumer`: `KafkaConsumer`, a group (or group-less) consumer with rebalance events.
//! - `fetched`: the consumer's fetched records, taken from librdkafka in batches.
//! - `groups`: consumer groups listed, described, their offsets altered, deleted.
//! - `holder`: the store of a data directory another millrace process holds, as the
//!   Kafka broker that process serves.
//! - `config`: client settings, the `.properties` reader, secret redaction.
//! - `errors`: Kafka's error codes in plain words.
//!
//! Settings that make millrace agree with the Java client and with the embedded store:
//! `partitioner=murmur2_random` (keyed records land where the Java client puts them),
//! `acks=all` with idempotence (an acknowledged record is durable and not duplicated by
//! retries), no auto-commit (the runtime commits only what is durable downstream), and
//! no topic auto-creation (an unknown topic is an error, as on the embedded store).
//!
//! Logging: librdkafka's log lines come through `tracing` under the target
//! `librdkafka`. A closed consumer also makes rdkafka log, once, at error level under
//! `rdkafka::consumer::base_consumer`: "Failed to close consumer queue on drop". It is
//! harmless: millrace closes consumers itself (in 5 ms steps instead of rdkafka's
//! 100 ms ones), and rdkafka's `Drop` then finds the consumer closed already. The
//! `millrace` command filters that line out; a program using this crate with a `log`
//! or `tracing` subscriber may do the same (it is the only error that target logs).

mod admin;
mod backoff;
mod config;
mod consumer;
mod delivery;
mod errors;
mod fetched;
mod groups;
mod holder;
mod producer;
mod unconfirmed;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::api::{
    Acks, Broker, Consumer, ConsumerConfig, Delivered, GroupDescription, GroupListing, NewTopic,
    PartitionInfo, ProduceRecord, Result, TopicDescription, TopicPartition,
};
use crate::error::BrokerError;

pub use config::{parse_properties, read_properties_file};
pub use consumer::{CONSUMER_DEFAULTS, KafkaConsumer};
/// The rdkafka this backend is built on, for code that measures against it directly
/// (`millrace bench kafka`'s baseline).
pub use rdkafka;

use errors::Subject;

/// How long connecting waits for the cluster's id before it asks for the metadata,
/// whose error says what is wrong (see `connect`).
const FIRST_ANSWER: Duration = Duration::from_millis(500);

/// The default bound on connecting and on each admin request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Producer settings millrace relies on; the user's properties may override them.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("partitioner", "murmur2_random"),
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("allow.auto.create.topics", "false"),
    // Without this a lost cluster would hold a produce call for librdkafka's 5 minutes.
    ("message.timeout.ms", "30000"),
    // Lets records up to the broker's limit through; the broker decides what it accepts.
    ("message.max.bytes", "16777216"),
    // `produce` hands over whole batches (a stage's outputs, a console producer's
    // lines): waiting for more records only delays the acknowledgement a stage waits
    // for (a copier on Kafka ran at 0.6 of its speed with librdkafka's 5 ms).
    ("linger.ms", "0"),
];

/// Kafka through rdkafka. Cheap to clone; clones share the producer and admin clients.
#[derive(Clone)]
pub struct KafkaBroker {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) bootstrap: String,
    /// The user's client properties after translation. May hold secrets: never log it.
    pub(crate) properties: BTreeMap<String, String>,
    pub(crate) timeout: Duration,
    pub(crate) producer: Arc<producer::Producer>,
    pub(crate) admin: admin::Admin,
    /// Partition counts of topics known to exist, so `produce` checks a topic once.
    pub(crate) known_topics: Mutex<HashMap<String, i32>>,
    /// Whether every written record is acknowledged with its offset (not with
    /// `acks=0`): a record acknowledged without being placed is then sent again (see
    /// `unconfirmed`).
    pub(crate) offsets_acknowledged: bool,
    pub(crate) flavour: &'static Flavour,
}

/// What kind of broker is at the other end, for what differs: the backend's name and
/// consumer settings.
#[derive(Debug)]
pub(crate) struct Flavour {
    pub(crate) backend: &'static str,
    /// Consumer settings over [`CONSUMER_DEFAULTS`], under the user's.
    pub(crate) consumer_defaults: &'static [(&'static str, &'static str)],
    /// Lost and refused connections are part of how the broker works (a store's
    /// holder leaving, another taking over): librdkafka's lines about them, which it
    /// retries, are logged at debug level only.
    pub(crate) quiet_transport: bool,
}

/// A Kafka cluster.
pub(crate) static KAFKA: Flavour = Flavour {
    backend: "kafka",
    consumer_defaults: &[],
    quiet_transport: false,
};

impl Drop for KafkaBroker {
    /// The last clone hands the clients to [`destroy_detached`]: whatever is still
    /// queued is dropped either way (librdkafka's producer is purged when dropped), and
    /// a command that is done does not wait for librdkafka's threads to wind down.
    fn drop(&mut self) {
        if Arc::strong_count(&self.inner) == 1 {
            destroy_detached(Arc::clone(&self.inner));
        }
    }
}

/// Drops `clients` on a thread of its own. Tearing librdkafka clients down (their
/// broker threads joined, the admin clients' polling threads waiting out their 100 ms
/// step) took tens of milliseconds at the end of every command; the caller has finished
/// with them (a consumer has left its group, a broker's sends are acknowledged or
/// abandoned), so a process that exits meanwhile loses nothing.
pub(crate) fn destroy_detached<T: Send + 'static>(clients: T) {
    let spawned = std::thread::Builder::new()
        .name("kafka client close".into())
        .spawn(move || drop(clients));
    // Without a thread, here: the teardown is only slower.
    if let Err(e) = spawned {
        tracing::debug!("closing Kafka clients on this thread: {e}");
    }
}

impl std::fmt::Debug for KafkaBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Properties are left out on purpose: they may hold passwords.
        f.debug_struct("KafkaBroker")
            .field("bootstrap", &self.inner.bootstrap)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl KafkaBroker {
    /// Connects to the cluster at `bootstrap` (`host:port[,host:port…]`) and checks that
    /// it answers within `timeout`; an unreachable cluster is `BrokerError::Unreachable`.
    /// `properties` are client settings in Kafka's names (`security.protocol`, `sasl.*`,
    /// `ssl.*`, or anything librdkafka accepts).
    pub async fn connect(
        bootstrap: &str,
        properties: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<KafkaBroker> {
        KafkaBroker::connect_as(bootstrap, properties, timeout, &KAFKA).await
    }

    pub(crate) async fn connect_as(
        bootstrap: &str,
        properties: BTreeMap<String, String>,
        timeout: Duration,
        flavour: &'static Flavour,
    ) -> Result<KafkaBroker> {
        let props = config::to_librdkafka(&properties)?;
        let timeout_ms = millis(timeout);
        let setup_ms = timeout_ms.clamp(1000, 30_000).to_string();
        let mut defaults: Vec<(&str, &str)> = PRODUCER_DEFAULTS.to_vec();
        defaults.push(("socket.connection.setup.timeout.ms", &setup_ms));
        let cfg = config::client_config(bootstrap, &defaults, &props);
        let offsets_acknowledged = ["acks", "request.required.acks"]
            .iter()
            .all(|k| cfg.get(k) != Some("0"));
        let client = cfg
            .create_with_context(LogContext::of(flavour))
            .map_err(|e| invalid_config(&e, &props))?;
        let producer = Arc::new(
            producer::Producer::new(client)
                .map_err(|e| BrokerError::io("cannot start the producer's polling thread", e))?,
        );
        let admin = admin::Admin::new(
            bootstrap,
            &props,
            &setup_ms,
            Arc::clone(&producer),
            LogContext::of(flavour),
        );

        // A wrong address fails here, in bounded time, rather than at the first produce.
        // The cluster's id comes with the bootstrap broker's first answer: when it does,
        // the cluster answers. (A metadata request of our own would go to the bootstrap
        // broker too, which librdkafka retires for the cluster's own broker as that
        // answer comes, failing the request and sending it again only after its retry
        // back-off: some 50 ms more at every start.) Without the id, the metadata
        // request says why.
        let probe = Arc::clone(&producer);
        let first_answer = timeout.min(FIRST_ANSWER);
        let id = blocking(move || probe.client().fetch_cluster_id(first_answer)).await?;
        let probe = Arc::clone(&producer);
        let answered = match id {
            Some(_) => Ok(()),
            None => {
                blocking(move || probe.client().fetch_metadata(None, timeout).map(|_| ())).await?
            }
        };
        match answered {
            Ok(()) => {}
            Err(e) => {
                let reason = config::redact(&e.to_string(), &props);
                return Err(match e.rdkafka_error_code() {
                    Some(
                        RDKafkaErrorCode::Authentication
                        | RDKafkaErrorCode::SaslAuthenticationFailed,
                    ) => errors::from_kafka(&e, Subject::None),
                    _ => BrokerError::Unreachable {
                        bootstrap: bootstrap.to_string(),
                        timeout_ms,
                        reason: format!(
                            "{reason} (is a broker listening there? is security.protocol right?)"
                        ),
                    },
                });
            }
        }
        Ok(KafkaBroker {
            inner: Arc::new(Inner {
                bootstrap: bootstrap.to_string(),
                properties: props,
                timeout,
                producer,
                admin,
                known_topics: Mutex::new(HashMap::new()),
                offsets_acknowledged,
                flavour,
            }),
        })
    }

    /// The bootstrap servers this broker was connected with.
    pub fn bootstrap(&self) -> &str {
        &self.inner.bootstrap
    }

    /// The partition count of `topic`, from a cache or from the cluster's metadata.
    pub(crate) async fn partition_count(&self, topic: &str) -> Result<i32> {
        if let Some(n) = self.known().get(topic) {
            return Ok(*n);
        }
        let n = self
            .inner
            .admin
            .partition_count(topic, self.inner.timeout)
            .await?;
        self.known().insert(topic.to_string(), n);
        Ok(n)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, i32>> {
        // A poisoned cache is still a valid cache: every entry is written whole.
        self.inner
            .known_topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Broker for KafkaBroker {
    fn backend(&self) -> &'static str {
        self.inner.flavour.backend
    }

    async fn create_topic(&self, topic: &NewTopic) -> Result<()> {
        let n = self
            .inner
            .admin
            .create_topic(topic, self.inner.timeout)
            .await?;
        self.known().insert(topic.name.clone(), n);
        Ok(())
    }

    async fn list_topics(&self) -> Result<Vec<String>> {
        self.inner.admin.list_topics(self.inner.timeout).await
    }

    async fn describe_topic(&self, topic: &str) -> Result<TopicDescription> {
        self.inner
            .admin
            .describe_topic(topic, self.inner.timeout)
            .await
    }

    async fn partitions(&self, topic: &str) -> Result<Vec<PartitionInfo>> {
        let d = self
            .inner
            .admin
            .partitions(topic, self.inner.timeout)
            .await?;
        // A run looks its topics up before it opens consumers of them and producers
        // to them, which then need not ask for the partition count again.
        if let Ok(n) = i32::try_from(d.len())
            && n > 0
        {
            self.known().insert(topic.to_string(), n);
        }
        Ok(d)
    }

    async fn delete_topic(&self, topic: &str) -> Result<()> {
        self.known().remove(topic);
        self.inner
            .admin
            .delete_topic(topic, self.inner.timeout)
            .await
    }

    async fn produce(&self, topic: &str, records: &[ProduceRecord]) -> Result<Vec<Delivered>> {
        self.send(topic, records).await?.await
    }

    async fn send(&self, topic: &str, records: &[ProduceRecord]) -> Result<Acks> {
        if records.is_empty() {
            return Ok(Acks::ready(Ok(Vec::new())));
        }
        let partitions = self.partition_count(topic).await?;
        for r in records {
            if let Some(p) = r.partition
                && !(0..partitions).contains(&p)
            {
                return Err(BrokerError::Invalid(format!(
                    "topic '{topic}' has partitions 0..{partitions}, not {p}"
                )));
            }
        }
        let partitions = usize::try_from(partitions).unwrap_or(0);
        let batch = self
            .inner
            .producer
            .send(topic, partitions, records)
            .await
            .map_err(|e| errors::from_kafka(&e, Subject::Topic(topic)))?;
        // Every record is in librdkafka's queue, in order: the rest is waiting.
        let topic = topic.to_string();
        let broker = self.clone();
        Ok(Acks::new(async move {
            let mut delivered = unconfirmed::acknowledged(&batch, &topic).await?;
            if broker.inner.offsets_acknowledged {
                broker
                    .send_unconfirmed_again(&topic, partitions, &batch, &mut delivered)
                    .await?;
            }
            Ok(delivered)
        }))
    }

    /// librdkafka keeps up to 5 requests per partition in flight with idempotence, in
    /// order; a few sends in flight keep it busy while the oldest waits for `acks=all`.
    fn sends_in_flight(&self) -> usize {
        4
    }

    async fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        let c = KafkaConsumer::open(self.clone(), config).await?;
        Ok(Box::new(c))
    }

    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<(i32, Option<i64>)>> {
        let partitions = self.partition_count(topic).await?;
        self.inner
            .admin
            .committed(
                &self.inner.properties,
                group,
                topic,
                partitions,
                self.inner.timeout,
            )
            .await
    }

    async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        self.list_consumer_groups().await
    }

    async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        self.describe_consumer_group(group).await
    }

    async fn describe_groups(&self) -> Result<Vec<GroupDescription>> {
        self.describe_consumer_groups().await
    }

    async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<()> {
        self.alter_consumer_group_offsets(group, offsets).await
    }

    async fn delete_group(&self, group: &str) -> Result<()> {
        self.delete_consumer_group(group).await
    }
}

fn invalid_config(e: &KafkaError, props: &BTreeMap<String, String>) -> BrokerError {
    BrokerError::Invalid(format!(
        "client settings: {}",
        config::redact(&e.to_string(), props)
    ))
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs a blocking rdkafka call off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::task("kafka client task", e))
}

/// Sends librdkafka's own log lines to `tracing`, one level quieter than librdkafka
/// rates them: millrace reports the errors that matter itself, in plain words. As the
/// producer's context it also hands delivery reports to their batches (`producer`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LogContext {
    /// Lost and refused connections are expected (see [`Flavour::quiet_transport`]).
    pub(crate) quiet_transport: bool,
}

impl LogContext {
    pub(crate) fn of(flavour: &Flavour) -> LogContext {
        LogContext {
            quiet_transport: flavour.quiet_transport,
        }
    }
}

impl rdkafka::consumer::ConsumerContext for LogContext {}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        log_librdkafka(level, fac, msg, self.quiet_transport);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(&error, reason, self.quiet_transport);
    }
}

/// Whether a librdkafka error is about connections to brokers (which it retries).
pub(crate) fn is_transport(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
    )
}

pub(crate) fn log_client_error(error: &KafkaError, reason: &str, quiet_transport: bool) {
    if quiet_transport && is_transport(error.rdkafka_error_code()) {
        tracing::debug!(target: "librdkafka", "{error}: {reason}");
    } else {
        tracing::warn!(target: "librdkafka", "{error}: {reason}");
    }
}

pub(crate) fn log_librdkafka(level: RDKafkaLogLevel, fac: &str, msg: &str, quiet_transport: bool) {
    // `FAIL`: a connection lost or refused.
    let level = if quiet_transport && fac == "FAIL" {
        RDKafkaLogLevel::Debug
    } else {
        level
    };
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::warn!(target: "librdkafka", "{fac}: {msg}"),
        RDKafkaLogLevel::Warning => tracing::info!(target: "librdkafka", "{fac}: {msg}"),
        _ => tracing::debug!(target: "librdkafka", "{fac}: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `destroy_detached` is given is dropped, and not on the caller's thread.
    #[test]
    fn clients_are_destroyed_on_a_thread_of_their_own() {
        struct Probe(std::sync::mpsc::Sender<std::thread::ThreadId>);
        impl Drop for Probe {
            fn drop(&mut self) {
                let _ = self.0.send(std::thread::current().id());
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        destroy_detached(Probe(tx));
        let dropped_on = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the probe is dropped");
        assert_ne!(dropped_on, std::thread::current().id());
    }

    /// A topic's partitions, once looked up, give its partition count to the
    /// consumers and producers opened after, without a metadata request of their own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn looked_up_partitions_are_remembered_as_the_partition_count() {
        // In CI its absence fails the test instead of skipping it.
        let Some(bootstrap) = millrace_testkit::kafka_bootstrap() else {
            return;
        };
        let connect = || KafkaBroker::connect(&bootstrap, BTreeMap::new(), DEFAULT_TIMEOUT);
        let (maker, reader) = (
            connect().await.expect("connect"),
            connect().await.expect("connect"),
        );
        let t = format!("known-count-{}", std::process::id());
        maker
            .create_topic(&NewTopic::new(&t, 3))
            .await
            .expect("create");
        assert_eq!(reader.known().get(&t), None);
        let d = reader.partitions(&t).await.expect("partitions");
        assert_eq!(d.len(), 3);
        assert_eq!(reader.known().get(&t), Some(&3));
        maker.delete_topic(&t).await.expect("delete");
    }
}
