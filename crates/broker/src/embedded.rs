//! The embedded store behind the broker interface.
//!
//! The store is synchronous; this adapter keeps the async side honest: appends that
//! wait for an fdatasync (`batch` topics; `interval` ones may at a segment roll) and
//! offset commits run on tokio's blocking pool, while `durability=none` appends — a
//! `write(2)` into the page cache — and reads run inline, sparing a thread hand-off per
//! call. Tailing consumers sleep on a per-topic `Notify` that every append through this
//! broker wakes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use millrace_store::{
    Durability, GroupMember, Pending, RecordRef, RecordSink, Store, StoreError, StoreOptions,
    Topic, TopicConfig, partition_for_key,
};
use tokio::sync::Notify;

use crate::api::*;
use crate::error::BrokerError;

mod encoded;

/// The embedded store, opened by this process (which then holds its lock).
#[derive(Clone)]
pub struct EmbeddedBroker {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    /// Woken after every append to the topic; tailing consumers wait on it.
    notify: Mutex<HashMap<String, Arc<Notify>>>,
    /// Where the next unkeyed produce call sticks its records.
    sticky: AtomicU32,
    /// Groups that joined or left: consumers of those groups re-check their assignment.
    group_change: Notify,
}

impl EmbeddedBroker {
    /// Opens (or creates) the data directory and takes its lock. What recovery cut from
    /// torn tails is logged as a warning.
    pub fn open(dir: &Path) -> Result<EmbeddedBroker, BrokerError> {
        let (store, report) = Store::open(dir, StoreOptions::default())?;
        for t in &report.truncated {
            tracing::warn!("recovery: {t:?}");
        }
        Ok(EmbeddedBroker::from_store(Arc::new(store)))
    }

    pub fn from_store(store: Arc<Store>) -> EmbeddedBroker {
        EmbeddedBroker {
            inner: Arc::new(Inner {
                store,
                notify: Mutex::new(HashMap::new()),
                sticky: AtomicU32::new(0),
                group_change: Notify::new(),
            }),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    fn notifier(&self, topic: &str) -> Arc<Notify> {
        let mut map = self.inner.notify.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(topic) {
            return Arc::clone(n);
        }
        map.entry(topic.to_string())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        self.inner.store.topic(name).map_err(map_store)
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
        .map_err(|e| BrokerError::Other(format!("store task failed: {e}")))?
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
        let store = self.inner.store.clone();
        let name = topic.name.clone();
        blocking(move || {
            store
                .create_topic(&name, partitions, config)
                .map_err(map_store)
        })
        .await
    }

    async fn list_topics(&self) -> Result<Vec<String>> {
        Ok(self.inner.store.topic_names())
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
        let store = self.inner.store.clone();
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
        self.notifier(topic).notify_waiters();
        Ok(delivered)
    }

    fn writes_encoded(&self) -> bool {
        true
    }

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

    async fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        for t in &config.topics {
            self.topic(t)?;
        }
        let member = match &config.group {
            Some(g) => Some(
                self.inner
                    .store
                    .join_group(g, &config.topics)
                    .map_err(map_store)?,
            ),
            None => None,
        };
        self.inner.group_change.notify_waiters();
        let mut c = EmbeddedConsumer {
            broker: self.clone(),
            config,
            member,
            generation: u64::MAX,
            positions: BTreeMap::new(),
            rebalances: Vec::new(),
            next: 0,
            ahead: None,
            rest: Rest::new(),
        };
        c.refresh_assignment()?;
        Ok(Box::new(c))
    }

    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<(i32, Option<i64>)>> {
        let t = self.topic(topic)?;
        Ok((0..t.partition_count())
            .map(|p| {
                (
                    i32::try_from(p).unwrap_or(i32::MAX),
                    self.inner
                        .store
                        .committed_offset(group, topic, p)
                        .map(to_i64),
                )
            })
            .collect())
    }
}

/// A consumer of the embedded store: a position per assigned partition.
pub struct EmbeddedConsumer {
    broker: EmbeddedBroker,
    config: ConsumerConfig,
    member: Option<GroupMember>,
    generation: u64,
    positions: BTreeMap<TopicPartition, u64>,
    rebalances: Vec<Rebalance>,
    /// Round-robin start among partitions so one busy partition cannot starve others.
    next: usize,
    /// The next poll's records, read while the caller works on this poll's.
    ahead: Option<ReadAhead>,
    /// Records decoded past a poll's end, per partition (see [`Rest`]).
    rest: Rest,
}

/// The rest of the batch each partition's last read stopped in: records from the
/// partition's position on, in order. The next read of the partition takes them first
/// (if they still start at its position) instead of reading that batch again.
type Rest = BTreeMap<TopicPartition, VecDeque<ConsumedRecord>>;

/// Records kept per partition at most: a batch of up to 64 MiB may hold millions of
/// small ones, of which the next poll wants a few thousand (the rest of a bigger batch
/// is read again once these are used).
const REST_MAX: usize = 16_384;

/// A read of the next records on a blocking thread, started when a poll returns
/// records: a busy reader's read and decode then overlap its processing (a stage's loop
/// would otherwise do both on one core). Its records are used only if nothing moved the
/// positions it started from (a seek, a rebalance) and the next poll asks for as many.
struct ReadAhead {
    read: tokio::task::JoinHandle<Result<Read, BrokerError>>,
    from: Positions,
    max_records: usize,
}

type Positions = BTreeMap<TopicPartition, u64>;

/// What a read ahead gives: its records, and the positions and rest after them.
type Read = (Vec<ConsumedRecord>, Positions, Rest);

impl EmbeddedConsumer {
    fn start_position(&self, tp: &TopicPartition) -> Result<u64, BrokerError> {
        let t = self.broker.topic(&tp.topic)?;
        let part = t
            .partition(partition_index(tp.partition)?)
            .map_err(map_store)?;
        if let Some(g) = &self.config.group
            && let Some(o) = self.broker.inner.store.committed_offset(
                g,
                &tp.topic,
                partition_index(tp.partition)?,
            )
        {
            return Ok(o.max(part.start_offset()));
        }
        Ok(match self.config.offset_reset {
            OffsetReset::Earliest => part.start_offset(),
            OffsetReset::Latest => part.end_offset(),
        })
    }

    /// Brings the assignment up to date with the group (or with all partitions when there
    /// is no group), recording what was revoked and what was assigned.
    fn refresh_assignment(&mut self) -> Result<(), BrokerError> {
        let wanted: Vec<TopicPartition> = match &self.member {
            Some(m) => {
                if m.generation() == self.generation {
                    return Ok(());
                }
                self.generation = m.generation();
                m.assignment()
                    .into_iter()
                    .map(|(t, p)| TopicPartition::new(t, i32::try_from(p).unwrap_or(i32::MAX)))
                    .collect()
            }
            None => {
                if self.generation != u64::MAX {
                    return Ok(());
                }
                self.generation = 0;
                let mut all = Vec::new();
                for t in &self.config.topics {
                    let topic = self.broker.topic(t)?;
                    for p in 0..topic.partition_count() {
                        all.push(TopicPartition::new(
                            t.clone(),
                            i32::try_from(p).unwrap_or(i32::MAX),
                        ));
                    }
                }
                all
            }
        };
        let revoked: Vec<TopicPartition> = self
            .positions
            .keys()
            .filter(|tp| !wanted.contains(tp))
            .cloned()
            .collect();
        let mut assigned = Vec::new();
        for tp in &wanted {
            if !self.positions.contains_key(tp) {
                let pos = self.start_position(tp)?;
                self.positions.insert(tp.clone(), pos);
                assigned.push(tp.clone());
            }
        }
        for tp in &revoked {
            self.positions.remove(tp);
            self.rest.remove(tp);
        }
        if !revoked.is_empty() {
            self.rebalances.push(Rebalance::Revoked(revoked));
        }
        if !assigned.is_empty() {
            self.rebalances.push(Rebalance::Assigned(assigned));
        }
        Ok(())
    }

    fn read_available(&mut self, max_records: usize) -> Result<Vec<ConsumedRecord>, BrokerError> {
        let start = self.next;
        self.next = self.next.wrapping_add(1);
        read_from(
            &self.broker,
            &mut self.positions,
            &mut self.rest,
            start,
            max_records,
        )
    }

    /// Starts reading the records after the ones just returned.
    fn read_ahead(&mut self, max_records: usize) {
        let (broker, from) = (self.broker.clone(), self.positions.clone());
        let mut positions = from.clone();
        // The rest goes with the read; a read ahead that is not used loses it (it is
        // only a cache of what the store holds).
        let mut rest = std::mem::take(&mut self.rest);
        let start = self.next;
        self.ahead = Some(ReadAhead {
            read: tokio::task::spawn_blocking(move || {
                let out = read_from(&broker, &mut positions, &mut rest, start, max_records)?;
                Ok((out, positions, rest))
            }),
            from,
            max_records,
        });
    }

    /// The records read ahead, if they are still the next ones.
    async fn take_ahead(&mut self, max_records: usize) -> Result<Vec<ConsumedRecord>, BrokerError> {
        let Some(a) = self.ahead.take() else {
            return Ok(Vec::new());
        };
        if a.from != self.positions || a.max_records != max_records {
            return Ok(Vec::new());
        }
        let (out, positions, rest) = a
            .read
            .await
            .map_err(|e| BrokerError::Other(format!("store read failed: {e}")))??;
        if !out.is_empty() {
            self.positions = positions;
            self.next = self.next.wrapping_add(1);
        }
        // Its rest starts at the positions it read up to; an empty read left them as
        // they were, and the rest with them.
        self.rest = rest;
        Ok(out)
    }
}

impl EmbeddedConsumer {
    /// Reads up to `max` records (decoded, or as stored when `encoded`) once some are
    /// there or `timeout` passes, sleeping until an append, a group change or the
    /// timeout.
    async fn wait_for(&mut self, timeout: Duration, max: usize, encoded: bool) -> Result<Reading> {
        let deadline = Instant::now() + timeout;
        let notifiers: Vec<Arc<Notify>> = self
            .config
            .topics
            .iter()
            .map(|t| self.broker.notifier(t))
            .collect();
        let inner = self.broker.inner.clone();
        loop {
            // Register for wake-ups before looking, so an append between the look and
            // the wait is not missed.
            let mut waits: Vec<_> = notifiers.iter().map(|n| Box::pin(n.notified())).collect();
            for w in &mut waits {
                w.as_mut().enable();
            }
            let group_wait = inner.group_change.notified();
            tokio::pin!(group_wait);
            group_wait.as_mut().enable();

            self.refresh_assignment()?;
            let out = if encoded {
                let start = self.next;
                self.next = self.next.wrapping_add(1);
                Reading::Encoded(encoded::read_from(
                    &self.broker,
                    &mut self.positions,
                    start,
                    max,
                )?)
            } else {
                let mut out = self.take_ahead(max).await?;
                if out.is_empty() {
                    out = self.read_available(max)?;
                }
                if !out.is_empty() {
                    self.read_ahead(max);
                }
                Reading::Records(out)
            };
            if !out.is_empty() {
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(out);
            }
            // Appends from other processes reach this store only through this process,
            // but a short cap on the sleep keeps rebalances and retention moves timely.
            let nap = (deadline - now).min(Duration::from_millis(500));
            // `select_all` wants at least one future; a consumer always names a topic.
            let any = async move {
                if waits.is_empty() {
                    std::future::pending::<()>().await;
                } else {
                    futures::future::select_all(waits).await;
                }
            };
            tokio::select! {
                _ = any => {}
                _ = &mut group_wait => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }
}

/// What a poll read.
enum Reading {
    Records(Vec<ConsumedRecord>),
    Encoded(Vec<EncodedPoll>),
}

impl Reading {
    fn is_empty(&self) -> bool {
        match self {
            Reading::Records(r) => r.is_empty(),
            Reading::Encoded(r) => r.is_empty(),
        }
    }
}

/// Reads up to `max_records` from `positions` (advancing them), starting the
/// round-robin at partition `start`.
fn read_from(
    broker: &EmbeddedBroker,
    positions: &mut Positions,
    rest: &mut Rest,
    start: usize,
    max_records: usize,
) -> Result<Vec<ConsumedRecord>, BrokerError> {
    let mut out = Vec::new();
    let shares = shares(broker, positions, start, max_records)?;
    out.reserve_exact(shares.iter().map(|s| s.quota).sum());
    for Share {
        tp,
        pos,
        topic: t,
        mut quota,
    } in shares
    {
        let kept = rest.entry(tp.clone()).or_default();
        if kept.front().is_some_and(|r| r.offset != to_i64(*pos)) {
            // A seek moved the position: what was kept is not next.
            kept.clear();
        }
        while quota > 0
            && let Some(r) = kept.pop_front()
        {
            *pos = to_u64(r.offset) + 1;
            out.push(r);
            quota -= 1;
        }
        if quota == 0 {
            continue;
        }
        let part = t
            .partition(partition_index(tp.partition)?)
            .map_err(map_store)?;
        let mut sink = Consumed {
            out: &mut out,
            rest: kept,
            topic: &tp.topic,
            partition: tp.partition,
            taken: 0,
            next: *pos,
        };
        part.read_into(*pos, quota, 16 << 20, &mut sink)
            .map_err(map_store)?;
        *pos = sink.next;
    }
    Ok(out)
}

/// A partition's share of a poll.
struct Share<'a> {
    tp: &'a TopicPartition,
    /// Its position, which the read advances.
    pos: &'a mut u64,
    topic: Arc<Topic>,
    /// Records it may give to this poll (at least one).
    quota: usize,
}

/// What each partition has, then a fair share of a poll of `max_records` for each,
/// starting the round robin at partition `start`: a backlog in one partition does not
/// fill whole polls while the others wait, and a stage can work on several partitions
/// of one poll side by side. Partitions with nothing to read are left out.
fn shares<'a>(
    broker: &EmbeddedBroker,
    positions: &'a mut Positions,
    start: usize,
    max_records: usize,
) -> Result<Vec<Share<'a>>, BrokerError> {
    let n = positions.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut order: Vec<(&TopicPartition, &mut u64)> = positions.iter_mut().collect();
    order.rotate_left(start % n);
    let mut parts = Vec::with_capacity(n);
    for (tp, pos) in order {
        let t = broker.topic(&tp.topic)?;
        let part = t
            .partition(partition_index(tp.partition)?)
            .map_err(map_store)?;
        let avail = part.end_offset().saturating_sub(*pos);
        parts.push((tp, pos, t, avail));
    }
    let quotas = fair_shares(
        &parts.iter().map(|p| p.3).collect::<Vec<_>>(),
        max_records as u64,
    );
    Ok(parts
        .into_iter()
        .zip(quotas)
        .filter(|(_, q)| *q > 0)
        .map(|((tp, pos, topic, _), quota)| Share {
            tp,
            pos,
            topic,
            quota: usize::try_from(quota).unwrap_or(usize::MAX),
        })
        .collect())
}

/// Splits `max` among partitions that have `avail` records each: equal shares, and
/// what a partition cannot use goes to the others.
fn fair_shares(avail: &[u64], max: u64) -> Vec<u64> {
    let mut by_need: Vec<usize> = (0..avail.len()).collect();
    by_need.sort_by_key(|&i| avail[i]);
    let mut quotas = vec![0; avail.len()];
    let mut left = max;
    for (k, &i) in by_need.iter().enumerate() {
        let share = left / (avail.len() - k) as u64;
        let share = if k + 1 == avail.len() { left } else { share };
        quotas[i] = avail[i].min(share);
        left -= quotas[i];
    }
    quotas
}

/// Decoded records go straight into the poll's result.
struct Consumed<'a> {
    out: &'a mut Vec<ConsumedRecord>,
    /// Where the rest of the batch the read stops in goes.
    rest: &'a mut VecDeque<ConsumedRecord>,
    topic: &'a Arc<str>,
    partition: i32,
    taken: usize,
    /// The offset after the last record taken.
    next: u64,
}

impl RecordSink for Consumed<'_> {
    fn taken(&self) -> usize {
        self.taken
    }

    fn take(&mut self, offset: u64, record: millrace_store::Record) {
        self.taken += 1;
        self.next = offset + 1;
        let r = self.consumed(offset, record);
        self.out.push(r);
    }

    fn keeps_rest(&self) -> bool {
        true
    }

    fn rest(&mut self, offset: u64, record: millrace_store::Record) -> bool {
        let r = self.consumed(offset, record);
        self.rest.push_back(r);
        self.rest.len() < REST_MAX
    }
}

impl Consumed<'_> {
    fn consumed(&self, offset: u64, record: millrace_store::Record) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::clone(self.topic),
            partition: self.partition,
            offset: to_i64(offset),
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: record.timestamp,
        }
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>> {
        match self.wait_for(timeout, max_records.max(1), false).await? {
            Reading::Records(r) => Ok(r),
            Reading::Encoded(_) => Ok(Vec::new()),
        }
    }

    fn reads_encoded(&self) -> bool {
        true
    }

    async fn poll_encoded(
        &mut self,
        max_records: usize,
        timeout: Duration,
    ) -> Result<Vec<EncodedPoll>> {
        // What decoded polls read ahead or kept is only a cache of the store.
        self.ahead = None;
        self.rest.clear();
        match self.wait_for(timeout, max_records.max(1), true).await? {
            Reading::Encoded(r) => Ok(r),
            Reading::Records(_) => Ok(Vec::new()),
        }
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    fn take_rebalances(&mut self) -> Vec<Rebalance> {
        // A rebalance may have happened since the last poll.
        let _ = self.refresh_assignment();
        std::mem::take(&mut self.rebalances)
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let group = match &self.config.group {
            Some(g) => g.clone(),
            None => {
                return Err(BrokerError::Invalid(
                    "commit needs a consumer group".to_string(),
                ));
            }
        };
        if offsets.is_empty() {
            return Ok(());
        }
        let store = self.broker.inner.store.clone();
        let mut commits = Vec::with_capacity(offsets.len());
        for (tp, o) in offsets {
            commits.push((tp.topic.clone(), partition_index(tp.partition)?, to_u64(*o)));
        }
        // All partitions in one journal write and one fdatasync, off the async threads.
        blocking(move || {
            let entries: Vec<(&str, u32, u64)> =
                commits.iter().map(|(t, p, o)| (&**t, *p, *o)).collect();
            store.commit_offsets(&group, &entries).map_err(map_store)
        })
        .await
    }

    async fn seek(&mut self, tp: &TopicPartition, to: Seek) -> Result<()> {
        if !self.positions.contains_key(tp) {
            return Err(BrokerError::Invalid(format!(
                "partition {tp} is not assigned to this consumer"
            )));
        }
        let t = self.broker.topic(&tp.topic)?;
        let part = t
            .partition(partition_index(tp.partition)?)
            .map_err(map_store)?;
        let pos = match to {
            Seek::Beginning => part.start_offset(),
            Seek::End => part.end_offset(),
            Seek::Offset(o) => to_u64(o).clamp(part.start_offset(), part.end_offset()),
            Seek::Timestamp(ts) => part.offset_for_timestamp(ts).map_err(map_store)?,
        };
        self.positions.insert(tp.clone(), pos);
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let broker = self.broker.clone();
        drop(self);
        broker.inner.group_change.notify_waiters();
        Ok(())
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        // Dropping the member leaves the group; tell the others to pick up its partitions.
        self.member.take();
        self.broker.inner.group_change.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_rest_of_a_big_batch_is_kept_up_to_a_bound_and_read_on_from_there() {
        let dir = tempfile::tempdir().expect("tmp");
        let broker = EmbeddedBroker::open(dir.path()).expect("broker");
        broker
            .create_topic(&NewTopic::new("t", 1))
            .await
            .expect("topic");
        // One produce call: one stored batch of more records than a rest keeps.
        let n = REST_MAX + 5000;
        let records: Vec<ProduceRecord> = (0..n)
            .map(|i| ProduceRecord::value(format!("v{i}")))
            .collect();
        broker.produce("t", &records).await.expect("produce");
        let tp = TopicPartition::new("t", 0);
        let mut positions = Positions::from([(tp.clone(), 0)]);
        let mut rest = Rest::new();
        let first = read_from(&broker, &mut positions, &mut rest, 0, 7).expect("read");
        assert_eq!(first.len(), 7);
        assert_eq!(
            rest[&tp].len(),
            REST_MAX,
            "the rest is kept up to the bound"
        );
        assert_eq!(rest[&tp].front().map(|r| r.offset), Some(7));
        // Polls of 1000 go through the kept rest, then read the batch again.
        let mut offsets: Vec<i64> = first.iter().map(|r| r.offset).collect();
        while offsets.len() < n {
            let got = read_from(&broker, &mut positions, &mut rest, 0, 1000).expect("read");
            assert!(!got.is_empty() && got.len() <= 1000);
            offsets.extend(got.iter().map(|r| r.offset));
            for r in &got {
                assert_eq!(r.value, bytes::Bytes::from(format!("v{}", r.offset)));
            }
        }
        let want: Vec<i64> = (0..i64::try_from(n).expect("n")).collect();
        assert_eq!(offsets, want);
        assert_eq!(positions[&tp], u64::try_from(n).expect("n"));
    }

    /// An encoded poll moves a group member's positions exactly as a decoded one: it
    /// starts at the committed offset, takes whole stored batches from a position
    /// inside one, follows seeks, and after a decoded poll goes on where it stopped.
    #[tokio::test]
    async fn encoded_polls_read_what_decoded_polls_read_from_the_same_positions() {
        let dir = tempfile::tempdir().expect("tmp");
        let broker = EmbeddedBroker::open(dir.path()).expect("broker");
        broker
            .create_topic(&NewTopic::new("t", 2))
            .await
            .expect("topic");
        for (p, n) in [(0, 10), (1, 4), (0, 6), (1, 9)] {
            let records: Vec<ProduceRecord> = (0..n)
                .map(|i| ProduceRecord {
                    partition: Some(p),
                    ..ProduceRecord::value(format!("{p}:{i}"))
                })
                .collect();
            broker.produce("t", &records).await.expect("produce");
        }
        let (tp0, tp1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        let mut cfg = ConsumerConfig::new(vec!["t".into()]);
        cfg.group = Some("g".into());
        cfg.offset_reset = OffsetReset::Earliest;
        let mut c = broker.consumer(cfg.clone()).await.expect("consumer");
        c.commit(&[(tp0.clone(), 3), (tp1.clone(), 2)])
            .await
            .expect("commit");
        c.close().await.expect("close");
        let wait = Duration::from_millis(50);
        let mut c = broker.consumer(cfg).await.expect("consumer");
        assert!(c.reads_encoded());
        let runs = |polls: &[EncodedPoll]| -> Vec<(i32, u64, usize)> {
            polls
                .iter()
                .map(|p| (p.tp.partition, p.records.first_offset(), p.records.len()))
                .collect()
        };
        // From the committed offsets, whole batches: 3..10 and 2..4, past the poll's 2.
        let polls = c.poll_encoded(2, wait).await.expect("poll");
        let mut got = runs(&polls);
        got.sort_unstable();
        assert_eq!(got, vec![(0, 3, 7), (1, 2, 2)]);
        // The values are the stored records, read by a decoded poll from the same spot.
        let values: Vec<String> = polls
            .iter()
            .filter(|p| p.tp == tp0)
            .flat_map(|p| p.records.iter())
            .map(|r| String::from_utf8_lossy(r.value).into_owned())
            .collect();
        assert_eq!(
            values,
            (3..10).map(|i| format!("0:{i}")).collect::<Vec<_>>()
        );
        // A decoded poll goes on where the encoded one stopped, and the other way round.
        let decoded = c.poll(3, wait).await.expect("poll");
        let firsts: Vec<(i32, i64)> = decoded.iter().map(|r| (r.partition, r.offset)).collect();
        assert!(
            firsts.contains(&(0, 10)) || firsts.contains(&(1, 4)),
            "{firsts:?}"
        );
        c.seek(&tp0, Seek::Offset(12)).await.expect("seek");
        c.seek(&tp1, Seek::End).await.expect("seek");
        let polls = c.poll_encoded(100, wait).await.expect("poll");
        assert_eq!(runs(&polls), vec![(0, 12, 4)]);
        assert!(c.poll_encoded(100, wait).await.expect("poll").is_empty());
    }

    #[test]
    fn a_poll_is_shared_fairly_among_partitions_with_records() {
        // Equal backlogs: equal shares, the remainder to the last.
        assert_eq!(fair_shares(&[5000, 5000], 2048), vec![1024, 1024]);
        assert_eq!(fair_shares(&[5000, 5000, 5000], 100), vec![33, 33, 34]);
        // What a short partition cannot use goes to the others.
        assert_eq!(fair_shares(&[10, 5000, 0], 2048), vec![10, 2038, 0]);
        // Less than a poll in all: everything.
        assert_eq!(fair_shares(&[3, 4], 2048), vec![3, 4]);
        assert_eq!(fair_shares(&[], 2048), Vec::<u64>::new());
    }
}
