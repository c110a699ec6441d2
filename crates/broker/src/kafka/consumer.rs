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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance as KRebalance,
    RebalanceProtocol,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::Notify;

use super::errors::{self, Subject};
use super::fetched::{Fetched, FetchedRecord, Taken};
use super::{
    KafkaBroker, LogContext, blocking, config, is_transport, log_client_error, log_librdkafka,
};
use crate::api::{
    ConsumedRecord, Consumer, ConsumerConfig, Header, Names, OffsetReset, Rebalance, Result, Seek,
    TopicPartition,
};
use crate::error::BrokerError;
use crate::hand_over::{HAND_OVER_WAIT, InFlight};

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

/// What the rebalance callback records, shared with the consumer handle.
#[derive(Default)]
pub(crate) struct GroupContext {
    rebalances: Mutex<Vec<Rebalance>>,
    owned: Mutex<BTreeSet<TopicPartition>>,
    /// The owner's work in flight, waited for before partitions are given up.
    in_flight: Mutex<Option<InFlight>>,
    /// Partitions revoked since `poll` last looked: the records it collected from them
    /// before the revocation are not returned.
    revoked_in_poll: Mutex<Vec<TopicPartition>>,
    /// The queue assigned partitions deliver their records to (set once the client
    /// exists, before anything is assigned).
    fetched: OnceLock<Fetched>,
    /// Told when records or events arrive, by either queue's callback.
    wake: Arc<Notify>,
    /// Whether this consumer has been given an assignment (an empty one counts): its
    /// first join into the group is complete.
    joined: AtomicBool,
    /// Where assigned partitions without a committed offset start (set once, before
    /// the consumer subscribes).
    start: OnceLock<StartLookup>,
    /// Lost and refused connections are expected (see `Flavour::quiet_transport`).
    quiet_transport: bool,
}

/// Names the start of assigned partitions the group has committed nothing for.
///
/// librdkafka looks a new partition's committed offset up itself, and when there is
/// none it waits 100 ms before asking where the partition begins (it treats "no
/// committed offset" as an error to back off from). For a stage's first run that wait
/// is most of a small batch's time. So the assignment is looked up first, through a
/// client of the group's that is not a member (looking up through the member itself,
/// inside its own rebalance, stalled now and then), and partitions with no commit are
/// assigned at the offset where they begin (or end, as `reset` says), which librdkafka
/// starts fetching at without a wait.
/// Partitions with a commit are left for librdkafka to look up as before (it also
/// learns the commit's leader epoch there), as is everything when the look-up fails.
struct StartLookup {
    committed: Arc<BaseConsumer<LogContext>>,
    reset: Offset,
}

impl StartLookup {
    /// Bound on the look-up: the rebalance callback waits for it.
    const TIMEOUT: Duration = Duration::from_secs(2);

    fn name_starts(&self, tpl: &mut TopicPartitionList) {
        let mut ask = TopicPartitionList::new();
        for e in tpl.elements() {
            if e.offset() == Offset::Invalid {
                ask.add_partition(e.topic(), e.partition());
            }
        }
        if ask.count() == 0 {
            return;
        }
        let got = match self.committed.committed_offsets(ask, Self::TIMEOUT) {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!("committed offsets not known before the assignment: {e}");
                return;
            }
        };
        let mut fresh = TopicPartitionList::new();
        for e in got.elements() {
            if e.offset() == Offset::Invalid && e.error().is_ok() {
                // ListOffsets takes the logical beginning and end as the earliest and
                // latest times.
                let _ = fresh.add_partition_offset(e.topic(), e.partition(), self.reset);
            }
        }
        if fresh.count() == 0 {
            return;
        }
        // Where each begins (or ends), asked in one request: a logical offset in the
        // assignment has librdkafka ask each partition's on its own, and its first
        // fetch then goes out with the partitions answered so far; when those hold
        // nothing the broker holds it for `fetch.wait.max.ms` (500 ms) before the rest
        // are fetched at all.
        let known = self
            .committed
            .offsets_for_times(fresh.clone(), Self::TIMEOUT)
            .unwrap_or(fresh);
        for e in known.elements() {
            let start = match e.offset() {
                Offset::Offset(o) if o >= 0 && e.error().is_ok() => e.offset(),
                _ => self.reset,
            };
            if let Err(err) = tpl.set_partition_offset(e.topic(), e.partition(), start) {
                tracing::debug!("start offset not named: {err}");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a whole push or set operation, so a poisoned value is still sound.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn to_tps(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        log_librdkafka(level, fac, msg, self.quiet_transport);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(&error, reason, self.quiet_transport);
    }
}

impl ConsumerContext for GroupContext {
    /// rdkafka's own `rebalance` (the callbacks around the (incremental) assign or
    /// unassign), with the start of partitions nothing is committed for named first.
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let assign = matches!(err, RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS);
        if assign && let Some(start) = self.start.get() {
            start.name_starts(tpl);
        }
        let tpl = &*tpl;
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => KRebalance::Assign(tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => KRebalance::Revoke(tpl),
            other => KRebalance::Error(KafkaError::Rebalance(other.into())),
        };
        self.pre_rebalance(c, &rebalance);
        // Anything but an assignment gives the partitions up: a revocation, and (as
        // librdkafka asks of the application) a failed rebalance.
        let cooperative = matches!(c.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let done = match (assign, cooperative) {
            (true, true) => c.incremental_assign(tpl),
            (true, false) => c.assign(tpl),
            (false, true) => c.incremental_unassign(tpl),
            (false, false) => c.unassign(),
        };
        self.post_rebalance(c, &rebalance);
        if let Err(e) = done {
            tracing::warn!("consumer group rebalance: {e}");
        }
    }

    /// Runs inside `poll`, before librdkafka unassigns the revoked partitions and before
    /// this member rejoins the group: no other member can be handed them until this
    /// returns (with the eager protocol as with the cooperative one).
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &KRebalance<'_>) {
        let tpl = match rebalance {
            KRebalance::Assign(tpl) => {
                self.joined.store(true, Ordering::Release);
                // Before librdkafka starts fetching them (it assigns after this).
                if let Some(f) = self.fetched.get() {
                    for e in tpl.elements() {
                        f.forward(e.topic(), e.partition());
                    }
                }
                return;
            }
            KRebalance::Revoke(tpl) => tpl,
            KRebalance::Error(_) => return,
        };
        if tpl.count() == 0 {
            return;
        }
        let work = lock(&self.in_flight).clone();
        if let Some(work) = work
            && !work.wait_idle_blocking(HAND_OVER_WAIT)
        {
            tracing::warn!(
                "partitions revoked while outputs were still in flight after {HAND_OVER_WAIT:?}; \
                 their next owner may write some outputs again (at least once)"
            );
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &KRebalance<'_>) {
        match rebalance {
            KRebalance::Assign(tpl) => {
                let tps = to_tps(tpl);
                if tps.is_empty() {
                    return;
                }
                lock(&self.owned).extend(tps.iter().cloned());
                lock(&self.rebalances).push(Rebalance::Assigned(tps));
            }
            KRebalance::Revoke(tpl) => {
                let tps = to_tps(tpl);
                if tps.is_empty() {
                    return;
                }
                {
                    let mut owned = lock(&self.owned);
                    for tp in &tps {
                        owned.remove(tp);
                    }
                }
                lock(&self.revoked_in_poll).extend(tps.iter().cloned());
                lock(&self.rebalances).push(Rebalance::Revoked(tps));
            }
            KRebalance::Error(e) => tracing::warn!("consumer group rebalance failed: {e}"),
        }
    }
}

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

    /// Turns a message from the consumer queue into a record, or an error into
    /// `Ok(None)` (transient, retried by librdkafka) or `Err` (the user must act).
    fn record(
        m: std::result::Result<BorrowedMessage<'_>, KafkaError>,
        names: &mut Names,
        arena: &mut BytesMut,
        quiet_transport: bool,
    ) -> Result<Option<ConsumedRecord>> {
        match m {
            Ok(m) => Ok(Some(ConsumedRecord {
                topic: names.get(m.topic()),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|b| copy(arena, b)),
                value: m.payload().map(|b| copy(arena, b)).unwrap_or_default(),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| Header {
                                key: names.get(h.key),
                                value: h.value.map(|b| copy(arena, b)).unwrap_or_default(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp: m.timestamp().to_millis().unwrap_or(-1),
            })),
            Err(e) => {
                consumer_error(e.rdkafka_error_code(), &e, quiet_transport)?;
                Ok(None)
            }
        }
    }

    /// The same for a record taken from the fetched queue.
    fn fetched_record(&mut self, m: &FetchedRecord<'_>, arena: &mut BytesMut) -> ConsumedRecord {
        let handle = m.topic_handle();
        let topic = match self.topic_names.iter().find(|(h, _)| *h == handle) {
            Some((_, name)) => name.clone(),
            None => {
                let name = self.names.get(&m.topic());
                self.topic_names.push((handle, name.clone()));
                name
            }
        };
        let mut headers = Vec::new();
        m.headers(|key, value| {
            headers.push(Header {
                key: self.names.get(key),
                value: value.map(|b| copy(arena, b)).unwrap_or_default(),
            });
        });
        ConsumedRecord {
            topic,
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|b| copy(arena, b)),
            value: m.value().map(|b| copy(arena, b)).unwrap_or_default(),
            headers,
            timestamp: m.timestamp(),
        }
    }

    /// Serves the consumer queue without waiting: rebalance callbacks, commit events,
    /// errors, and the records of any partition that does not forward to the fetched
    /// queue.
    fn serve_events(
        &mut self,
        c: &Inner,
        out: &mut Vec<ConsumedRecord>,
        max: usize,
        arena: &mut BytesMut,
    ) -> Result<()> {
        let ctx = c.context();
        for _ in 0..EVENTS_PER_POLL {
            let polled = c.poll(Duration::ZERO);
            // A rebalance callback may have run inside that poll: what was collected
            // before it from partitions it revoked is their next owner's (who starts
            // at the committed offset), as Java's consumer never returns such records
            // after `onPartitionsRevoked`. The record the poll returned comes after it.
            drop_revoked(out, &mut lock(&ctx.revoked_in_poll));
            match polled {
                Some(m) => {
                    if let Some(r) = Self::record(m, &mut self.names, arena, ctx.quiet_transport)? {
                        out.push(r);
                        if out.len() >= max {
                            return Ok(());
                        }
                    }
                }
                // Nothing returned: the queue was empty, or the poll served an event.
                None => {
                    if !ctx.fetched.get().is_some_and(Fetched::events_waiting) {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Events (and records of partitions not forwarded) a poll serves at most before it
/// takes fetched records: a bound, should librdkafka keep adding log lines.
const EVENTS_PER_POLL: usize = 1024;

/// Where a partition with nothing committed starts.
fn reset_offset(reset: OffsetReset) -> Offset {
    match reset {
        OffsetReset::Earliest => Offset::Beginning,
        OffsetReset::Latest => Offset::End,
    }
}

/// Copies `b` into `arena`: a poll's records share its chunks, one allocation for
/// hundreds of small records instead of two each.
fn copy(arena: &mut BytesMut, b: &[u8]) -> Bytes {
    if arena.capacity() - arena.len() < b.len() {
        arena.reserve(b.len().max(ARENA_CHUNK));
    }
    arena.extend_from_slice(b);
    arena.split().freeze()
}

/// A consumer error from librdkafka: `Err` for those the user must act on, else
/// logged (librdkafka retries).
fn consumer_error(
    code: Option<RDKafkaErrorCode>,
    what: &dyn std::fmt::Display,
    quiet_transport: bool,
) -> Result<()> {
    match code {
        Some(
            c @ (RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::Fatal),
        ) => Err(errors::from_code(c, Subject::None)),
        c if quiet_transport && is_transport(c) => {
            tracing::debug!("kafka consumer: {what} (librdkafka retries)");
            Ok(())
        }
        _ => {
            tracing::warn!("kafka consumer: {what} (librdkafka retries)");
            Ok(())
        }
    }
}

/// Drops the records of partitions revoked (since) and forgets the revocations.
fn drop_revoked(out: &mut Vec<ConsumedRecord>, revoked: &mut Vec<TopicPartition>) {
    if revoked.is_empty() {
        return;
    }
    out.retain(|r| {
        !revoked
            .iter()
            .any(|tp| tp.partition == r.partition && tp.topic == r.topic)
    });
    revoked.clear();
}

/// Bytes a poll's records are copied into at a time.
const ARENA_CHUNK: usize = 64 << 10;

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

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        // Closing blocks; keep it off the async workers when there are some.
        if let Some(c) = self.consumer.take() {
            let timeout = self.timeout;
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn_blocking(move || close_blocking(c, timeout));
                }
                Err(_) => close_blocking(c, timeout),
            }
        }
    }
}

/// How long a closing consumer waits at most for its first join to complete.
const JOIN_BEFORE_CLOSE: Duration = Duration::from_secs(5);

/// How long each poll of a closing consumer waits for the close to finish.
const CLOSE_POLL: Duration = Duration::from_millis(5);

/// Gives the fetched queue back, leaves the group (librdkafka's consumer close, which
/// waits for the group coordinator) and drops the client off this thread (see
/// `destroy_detached`): the group is left by then.
///
/// rdkafka's own close, in its `Drop`, polls in 100 ms steps and so takes a tenth of a
/// second after the group is left: at the end of every stage and of every tail read.
/// This polls in `CLOSE_POLL` steps instead; rdkafka's `Drop` then finds the consumer
/// closed, and says so at error level under `rdkafka::consumer::base_consumer` (the
/// CLI's log filter drops that one line).
fn close_blocking(c: Arc<Inner>, timeout: Duration) {
    // A member that closes while its first join is under way does not leave the group:
    // librdkafka sends no LeaveGroup yet, the broker adds the member when the join
    // completes, and every later rebalance of the group waits for it until its session
    // times out (a second run of a pipeline started then sat idle that long). So such a
    // member first finishes joining (the records it is then given are not committed:
    // their next owner reads them).
    let subscribed = c.subscription().map(|s| s.count() > 0).unwrap_or(false);
    let deadline = Instant::now() + timeout.min(JOIN_BEFORE_CLOSE);
    while subscribed && !c.context().joined.load(Ordering::Acquire) && Instant::now() < deadline {
        let _ = c.poll(CLOSE_POLL);
    }
    if let Some(f) = c.context().fetched.get() {
        f.release();
    }
    if subscribed {
        c.unsubscribe();
    }
    match c.close_queue() {
        Ok(()) => {
            let deadline = Instant::now() + timeout;
            while !c.closed() && Instant::now() < deadline {
                // Serves the revocation and the close's own ops; a record it returns
                // is not committed, so its partition's next owner reads it again.
                let _ = c.poll(CLOSE_POLL);
            }
        }
        Err(e) => tracing::debug!("closing the Kafka consumer: {e}"),
    }
    super::destroy_detached(c);
}

/// Moves the position of `tp`. Offsets are clamped to what the partition holds (as on
/// the embedded store) rather than left to `auto.offset.reset`.
fn seek_blocking(
    c: &Inner,
    tp: &TopicPartition,
    to: Seek,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let target = match to {
        Seek::Beginning => Offset::Beginning,
        Seek::End => Offset::End,
        Seek::Offset(o) => {
            let (low, high) = c.fetch_watermarks(&tp.topic, tp.partition, timeout)?;
            Offset::Offset(o.clamp(low, high))
        }
        Seek::Timestamp(ts) => {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(ts))?;
            let got = c.offsets_for_times(tpl, timeout)?;
            match got
                .find_partition(&tp.topic, tp.partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => Offset::Offset(o),
                // No record at or after `ts`: the end.
                _ => Offset::End,
            }
        }
    };
    // A partition just assigned is not fetching yet until its start offset is known;
    // librdkafka refuses a seek then (`State`), so retry briefly.
    let deadline = Instant::now() + timeout;
    loop {
        match c.seek(&tp.topic, tp.partition, target, timeout) {
            Ok(()) => return Ok(()),
            Err(e)
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::State)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(topic: &str, partition: i32, offset: i64) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::from(topic),
            partition,
            offset,
            key: None,
            value: bytes::Bytes::new(),
            headers: Vec::new(),
            timestamp: 0,
        }
    }

    /// The broker for the tests that need one: `MILLRACE_TEST_BOOTSTRAP`; in CI its
    /// absence fails the test instead of skipping it.
    fn test_bootstrap() -> Option<String> {
        let b = std::env::var("MILLRACE_TEST_BOOTSTRAP")
            .ok()
            .filter(|s| !s.trim().is_empty());
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            b.is_some() || !in_ci,
            "CI=true but MILLRACE_TEST_BOOTSTRAP is not set (start `scripts/kafka.sh start`)"
        );
        b
    }

    /// A new member's assignment names the start offset of the partitions its group
    /// committed nothing for (`StartLookup`), and leaves those with a commit to
    /// librdkafka; the member then reads each partition from the right place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partitions_without_a_commit_start_at_the_reset_position() {
        use crate::{Broker as _, NewTopic, ProduceRecord};
        let Some(bootstrap) = test_bootstrap() else {
            return;
        };
        let k = KafkaBroker::connect(&bootstrap, BTreeMap::new(), Duration::from_secs(10))
            .await
            .expect("connect");
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let (t, group) = (format!("start-lookup-{stamp}"), format!("g-{stamp}"));
        k.create_topic(&NewTopic::new(&t, 2)).await.expect("create");
        let records: Vec<ProduceRecord> = (0..6)
            .map(|i| {
                let mut r = ProduceRecord::value(format!("v{i}"));
                r.partition = Some(i % 2);
                r
            })
            .collect();
        k.produce(&t, &records).await.expect("produce");

        // The group committed partition 0 up to offset 1, nothing on partition 1.
        let handle = k
            .inner
            .admin
            .committed_handle(&k.inner.properties, &group)
            .expect("handle");
        let mut commit = TopicPartitionList::new();
        commit
            .add_partition_offset(&t, 0, Offset::Offset(1))
            .expect("offset");
        let h = Arc::clone(&handle);
        blocking(move || h.commit(&commit, CommitMode::Sync))
            .await
            .expect("blocking")
            .expect("commit");

        // Partition 1 holds offsets 0 to 2: it is assigned at its first offset, or
        // after its last, as a number (not a logical offset librdkafka asks about).
        for (reset, start) in [(Offset::Beginning, 0), (Offset::End, 3)] {
            let lookup = StartLookup {
                committed: Arc::clone(&handle),
                reset,
            };
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&t, 0);
            tpl.add_partition(&t, 1);
            let tpl = blocking(move || {
                lookup.name_starts(&mut tpl);
                tpl
            })
            .await
            .expect("blocking");
            let offsets: Vec<Offset> = tpl.elements().iter().map(|e| e.offset()).collect();
            let want = vec![Offset::Invalid, Offset::Offset(start)];
            assert_eq!(offsets, want, "reset {reset:?}");
        }

        // A member of the group reads partition 0 from its commit, partition 1 from
        // its start.
        let mut config = ConsumerConfig::new(vec![t.clone()]);
        config.group = Some(group.clone());
        config.offset_reset = OffsetReset::Earliest;
        let mut c = k.consumer(config).await.expect("consumer");
        let mut got: Vec<(i32, i64)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < 5 && Instant::now() < deadline {
            let polled = c.poll(100, Duration::from_millis(100)).await.expect("poll");
            got.extend(polled.iter().map(|r| (r.partition, r.offset)));
        }
        got.sort_unstable();
        assert_eq!(got, vec![(0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
        c.close().await.expect("close");
        let _ = k.delete_topic(&t).await;
    }

    #[test]
    fn records_collected_before_their_partition_was_revoked_are_dropped() {
        let mut out = vec![
            rec("a", 0, 5),
            rec("a", 1, 7),
            rec("b", 0, 1),
            rec("a", 0, 6),
        ];
        let mut revoked = vec![TopicPartition::new("a", 0)];
        drop_revoked(&mut out, &mut revoked);
        let left: Vec<(String, i32, i64)> = out
            .iter()
            .map(|r| (r.topic.to_string(), r.partition, r.offset))
            .collect();
        assert_eq!(left, vec![("a".into(), 1, 7), ("b".into(), 0, 1)]);
        assert!(revoked.is_empty(), "a revocation is applied once");
        // Records of a partition assigned again after that come from the new owner's
        // start and stay.
        out.push(rec("a", 0, 0));
        drop_revoked(&mut out, &mut revoked);
        assert_eq!(out.len(), 3);
    }
}
