//! join: the barrier of coordinated batch processing.
//!
//! - `barrier`: the items of a batch are released only when every input is complete
//!   for it. The join holds *positions*, not copies: per input partition, the first
//!   offset held; at release it reads the items back from their topics in chunks, so
//!   memory does not grow with the batch. With `combine`, one summary item per batch
//!   is released instead.
//! - `key`: items with equal join key from every input are combined (objects merged,
//!   left to right) as soon as the last part arrives; a key still missing an input
//!   after `timeout` (or at the end of the batch) is dead-lettered with the parts that
//!   did arrive.
//! - `zip`: the i-th item of every input become one output `[a, b, …]`, as the book's
//!   two-topic hands-on prints pairs; unpaired items stay held (uncommitted).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use millrace_broker::{
    ConsumedRecord, ConsumerConfig, OffsetReset, ProduceRecord, Seek, TopicPartition,
};
use millrace_pipeline::expr::not_json_because;
use millrace_pipeline::{Format, Selector};

use super::{Coordinated, FinishContext, Progress, Tally, emit_json};
use crate::batch::{BATCH_HEADER, batch_header, own_batch};
use crate::error::RuntimeError;
use crate::operator::{Emit, RecordError};
use crate::patterns::{value_of, with_vars};

fn tp_of(rec: &ConsumedRecord) -> TopicPartition {
    TopicPartition::new(rec.topic.clone(), rec.partition)
}

/// Released items are produced in chunks of this many records.
const RELEASE_CHUNK: usize = 4096;

pub struct Barrier {
    pub combine: bool,
    /// Output topic and its partition count (the task resolves them).
    pub output: String,
    pub output_partitions: i32,
    first_held: BTreeMap<TopicPartition, i64>,
    held: u64,
    /// With `combine`: items held per batch they came in (the batch in hand, or an
    /// earlier one whose release a run died in), and per input topic.
    held_per_batch: BTreeMap<u64, BTreeMap<String, u64>>,
}

impl Barrier {
    pub fn new(combine: bool, output: String, output_partitions: i32) -> Self {
        Barrier {
            combine,
            output,
            output_partitions: output_partitions.max(1),
            first_held: BTreeMap::new(),
            held: 0,
            held_per_batch: BTreeMap::new(),
        }
    }

    /// Reads the held items of one partition back and produces them, in order.
    async fn release(
        &self,
        ctx: &FinishContext<'_>,
        tp: &TopicPartition,
        from: i64,
        upto: i64,
        batch: u64,
    ) -> Result<u64, RuntimeError> {
        let mut cfg = ConsumerConfig::new(vec![tp.topic.to_string()]);
        cfg.offset_reset = OffsetReset::Latest;
        let mut reader = ctx.broker.consumer(cfg).await?;
        reader.seek(tp, Seek::Offset(from)).await?;
        let mut released = 0u64;
        let mut next = from;
        let origin = crate::lineage::origin_of(&tp.topic, tp.partition);
        let mut idle = 0;
        while next < upto {
            let recs = reader
                .poll(RELEASE_CHUNK, Duration::from_millis(500))
                .await?;
            if recs.is_empty() {
                idle += 1;
                if idle > 20 {
                    return Err(RuntimeError::Stage {
                        stage: ctx.stage.to_string(),
                        message: format!(
                            "held items of {tp} from offset {next} could not be read back"
                        ),
                    });
                }
                continue;
            }
            idle = 0;
            let mut chunk = Vec::with_capacity(recs.len());
            for r in recs {
                if r.topic != tp.topic || r.partition != tp.partition || r.offset < next {
                    continue;
                }
                if r.offset >= upto {
                    next = upto;
                    break;
                }
                next = r.offset + 1;
                let q = crate::lineage::output_partition(
                    None,
                    r.key.as_deref(),
                    self.output_partitions,
                    Some(r.partition),
                )
                .unwrap_or(0);
                // A release replayed after a crash skips what it already wrote.
                let written = ctx
                    .lineage
                    .lock()
                    .map(|mut l| l.already_written(&self.output, q, &origin, r.offset, 0))
                    .unwrap_or(false);
                if written {
                    continue;
                }
                // An item of an earlier batch (held when a run released part of that
                // batch and died before committing) is released under its own batch,
                // as that run would have released it: a sink upserting by batch sees
                // the batch whole, once. (As the reduce counts such records.)
                let own = own_batch(&r, batch);
                let mut headers = r.headers.clone();
                headers.retain(|h| &*h.key != BATCH_HEADER && &*h.key != crate::lineage::HEADER);
                headers.push(batch_header(own));
                headers.push(crate::lineage::header(ctx.stage, &origin, r.offset, 0));
                chunk.push(ProduceRecord {
                    partition: Some(q),
                    key: r.key,
                    value: r.value,
                    headers,
                    timestamp: Some(r.timestamp),
                });
            }
            released += chunk.len() as u64;
            if !chunk.is_empty() {
                ctx.broker.produce(&self.output, &chunk).await?;
            }
        }
        let _ = reader.close().await;
        Ok(released)
    }
}

#[async_trait]
impl Coordinated for Barrier {
    fn prepare(&mut self, outputs: &[(String, i32)]) {
        if let Some((name, partitions)) = outputs.first() {
            self.output = name.clone();
            self.output_partitions = (*partitions).max(1);
        }
    }

    fn absorb(
        &mut self,
        rec: &ConsumedRecord,
        progress: Progress,
        _emits: &mut Vec<Emit>,
        _dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Tally {
        self.first_held.entry(tp_of(rec)).or_insert(rec.offset);
        self.held += 1;
        if self.combine {
            let batch = own_batch(rec, progress.batch);
            *self
                .held_per_batch
                .entry(batch)
                .or_default()
                .entry(rec.topic.to_string())
                .or_default() += 1;
        }
        Tally::default()
    }

    async fn finish(
        &mut self,
        progress: Progress,
        ctx: &FinishContext<'_>,
        emits: &mut Vec<Emit>,
        _dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Result<Tally, RuntimeError> {
        let held = self.held;
        let mut written = 0;
        if self.combine {
            // One summary per batch: items of an earlier batch (see `release`) are
            // that batch's, and its summary is named after it, as when first written.
            let mut batches = std::mem::take(&mut self.held_per_batch);
            batches.entry(progress.batch).or_default();
            for (batch, inputs) in batches {
                let value = serde_json::json!({
                    "batch": batch,
                    "count": inputs.values().sum::<u64>(),
                    "inputs": inputs,
                });
                let mut e = emit_json(0, None, &value);
                if batch != progress.batch {
                    e.record.headers.push(batch_header(batch));
                }
                emits.push(e);
            }
        } else {
            for (tp, from) in &self.first_held {
                let upto = ctx.read_upto.get(tp).copied().unwrap_or(*from);
                written += self.release(ctx, tp, *from, upto, progress.batch).await?;
            }
        }
        self.first_held.clear();
        self.held = 0;
        Ok(Tally {
            out: held,
            written,
            ..Tally::default()
        })
    }

    fn held_from(&self, tp: &TopicPartition) -> Option<i64> {
        self.first_held.get(tp).copied()
    }

    fn revoke(&mut self, tps: &[TopicPartition]) -> u64 {
        for tp in tps {
            self.first_held.remove(tp);
        }
        // Counts per partition are not kept; the task forgets what it read of them.
        0
    }
}

/// One input's part of a key join.
struct Part {
    rec: ConsumedRecord,
}

struct Pending {
    parts: Vec<Option<Part>>,
    since: Instant,
}

pub struct KeyJoin {
    pub inputs: Vec<String>,
    pub key: Selector,
    pub timeout: Option<Duration>,
    pub format: Format,
    pending: HashMap<Vec<u8>, Pending>,
    /// Offsets still held per partition, so commits stay below them.
    held: BTreeMap<TopicPartition, BTreeSet<i64>>,
}

impl KeyJoin {
    pub fn new(
        inputs: Vec<String>,
        key: Selector,
        timeout: Option<Duration>,
        format: Format,
    ) -> Self {
        KeyJoin {
            inputs,
            key,
            timeout,
            format,
            pending: HashMap::new(),
            held: BTreeMap::new(),
        }
    }

    fn unhold(&mut self, rec: &ConsumedRecord) {
        let tp = tp_of(rec);
        if let Some(set) = self.held.get_mut(&tp) {
            set.remove(&rec.offset);
            if set.is_empty() {
                self.held.remove(&tp);
            }
        }
    }

    fn combined(&self, parts: &[Option<Part>]) -> serde_json::Value {
        let values: Vec<serde_json::Value> = parts
            .iter()
            .flatten()
            .map(|p| serde_json::from_slice(&p.rec.value).unwrap_or(serde_json::Value::Null))
            .collect();
        if values.iter().all(|v| v.is_object()) {
            let mut merged = serde_json::Map::new();
            for v in values {
                if let serde_json::Value::Object(m) = v {
                    merged.extend(m);
                }
            }
            serde_json::Value::Object(merged)
        } else {
            serde_json::Value::Array(values)
        }
    }

    fn expire(
        &mut self,
        keys: Vec<Vec<u8>>,
        why: &str,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Tally {
        let mut t = Tally::default();
        for k in keys {
            let Some(p) = self.pending.remove(&k) else {
                continue;
            };
            let missing: Vec<&str> = p
                .parts
                .iter()
                .zip(&self.inputs)
                .filter(|(part, _)| part.is_none())
                .map(|(_, name)| name.as_str())
                .collect();
            let error = format!(
                "join key '{}' is missing input(s) {} {why}",
                String::from_utf8_lossy(&k),
                missing.join(", ")
            );
            for part in p.parts.into_iter().flatten() {
                self.unhold(&part.rec);
                t.dead_lettered += 1;
                dead.push((part.rec, RecordError::new(&error)));
            }
        }
        t
    }
}

#[async_trait]
impl Coordinated for KeyJoin {
    fn absorb(
        &mut self,
        rec: &ConsumedRecord,
        _progress: Progress,
        emits: &mut Vec<Emit>,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Tally {
        let mut t = Tally::default();
        let key = match value_of(rec, self.format)
            .and_then(|v| with_vars(rec, |vars| self.key.key(&v, vars)).map_err(RecordError::new))
        {
            Ok(k) => k,
            Err(e) => {
                dead.push((rec.clone(), e));
                t.dead_lettered += 1;
                return t;
            }
        };
        let Some(input) = self.inputs.iter().position(|i| **i == *rec.topic) else {
            return t;
        };
        let n = self.inputs.len();
        let entry = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            parts: (0..n).map(|_| None).collect(),
            since: Instant::now(),
        });
        if let Some(old) = entry.parts[input].replace(Part { rec: rec.clone() }) {
            // A replayed duplicate of the same part: the newer copy stands.
            let old_rec = old.rec;
            self.unhold(&old_rec);
            t.filtered += 1;
        }
        self.held.entry(tp_of(rec)).or_default().insert(rec.offset);
        if self
            .pending
            .get(&key)
            .is_some_and(|p| p.parts.iter().all(|x| x.is_some()))
            && let Some(p) = self.pending.remove(&key)
        {
            let value = self.combined(&p.parts);
            for part in p.parts.iter().flatten() {
                self.unhold(&part.rec);
                t.out += 1;
            }
            emits.push(emit_json(0, Some(key), &value));
        }
        t
    }

    fn tick(
        &mut self,
        _progress: Progress,
        _emits: &mut Vec<Emit>,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Tally {
        let Some(timeout) = self.timeout else {
            return Tally::default();
        };
        let expired: Vec<Vec<u8>> = self
            .pending
            .iter()
            .filter(|(_, p)| p.since.elapsed() >= timeout)
            .map(|(k, _)| k.clone())
            .collect();
        self.expire(expired, &format!("after the {timeout:?} timeout"), dead)
    }

    async fn finish(
        &mut self,
        _progress: Progress,
        _ctx: &FinishContext<'_>,
        _emits: &mut Vec<Emit>,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Result<Tally, RuntimeError> {
        let keys: Vec<Vec<u8>> = self.pending.keys().cloned().collect();
        Ok(self.expire(keys, "at the end of the batch", dead))
    }

    fn held_from(&self, tp: &TopicPartition) -> Option<i64> {
        self.held.get(tp).and_then(|s| s.first().copied())
    }

    fn revoke(&mut self, tps: &[TopicPartition]) -> u64 {
        let mut forgotten = 0;
        for p in self.pending.values_mut() {
            for slot in p.parts.iter_mut() {
                if slot
                    .as_ref()
                    .is_some_and(|part| tps.contains(&tp_of(&part.rec)))
                {
                    *slot = None;
                    forgotten += 1;
                }
            }
        }
        self.pending
            .retain(|_, p| p.parts.iter().any(|x| x.is_some()));
        for tp in tps {
            self.held.remove(tp);
        }
        forgotten
    }
}

pub struct Zip {
    pub inputs: Vec<String>,
    pub format: Format,
    queues: Vec<VecDeque<(ConsumedRecord, serde_json::Value)>>,
}

impl Zip {
    pub fn new(inputs: Vec<String>, format: Format) -> Self {
        let n = inputs.len();
        Zip {
            inputs,
            format,
            queues: (0..n).map(|_| VecDeque::new()).collect(),
        }
    }
}

#[async_trait]
impl Coordinated for Zip {
    fn commits_at_finish(&self) -> bool {
        false
    }

    fn absorb(
        &mut self,
        rec: &ConsumedRecord,
        _progress: Progress,
        emits: &mut Vec<Emit>,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Tally {
        let mut t = Tally::default();
        let value = match self.format {
            Format::Json => match serde_json::from_slice(&rec.value) {
                Ok(v) => v,
                Err(e) => {
                    dead.push((
                        rec.clone(),
                        RecordError::new(not_json_because(&rec.value, &e)),
                    ));
                    t.dead_lettered += 1;
                    return t;
                }
            },
            Format::Text => {
                serde_json::Value::String(String::from_utf8_lossy(&rec.value).into_owned())
            }
        };
        let Some(i) = self.inputs.iter().position(|x| **x == *rec.topic) else {
            return t;
        };
        self.queues[i].push_back((rec.clone(), value));
        while self.queues.iter().all(|q| !q.is_empty()) {
            let mut pair = Vec::with_capacity(self.queues.len());
            for q in self.queues.iter_mut() {
                if let Some((_, v)) = q.pop_front() {
                    pair.push(v);
                    t.out += 1;
                }
            }
            emits.push(emit_json(0, None, &serde_json::Value::Array(pair)));
        }
        t
    }

    async fn finish(
        &mut self,
        _progress: Progress,
        _ctx: &FinishContext<'_>,
        _emits: &mut Vec<Emit>,
        _dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Result<Tally, RuntimeError> {
        // Unpaired items wait, uncommitted, for their partners in a later batch.
        Ok(Tally::default())
    }

    fn held_from(&self, tp: &TopicPartition) -> Option<i64> {
        self.queues
            .iter()
            .flat_map(|q| q.iter())
            .filter(|(r, _)| r.topic == tp.topic && r.partition == tp.partition)
            .map(|(r, _)| r.offset)
            .min()
    }

    fn revoke(&mut self, tps: &[TopicPartition]) -> u64 {
        let mut forgotten = 0;
        for q in self.queues.iter_mut() {
            let before = q.len();
            q.retain(|(r, _)| !tps.contains(&tp_of(r)));
            forgotten += (before - q.len()) as u64;
        }
        forgotten
    }
}

#[cfg(test)]
mod tests {
    use millrace_broker::embedded::EmbeddedBroker;
    use millrace_broker::{Broker, NewTopic};

    use bytes::Bytes;
    use millrace_broker::Header;

    use super::*;
    use crate::batch::batch_of;

    const BATCH_9: Progress = Progress {
        batch: 9,
        done: 1,
        of: 1,
    };

    /// Finishes batch 9 with what `barrier` holds (read up to `read_upto`).
    async fn finish_batch_9(
        barrier: &mut Barrier,
        broker: &EmbeddedBroker,
        read_upto: BTreeMap<TopicPartition, i64>,
    ) -> (Tally, Vec<Emit>) {
        let lineage = std::sync::Mutex::new(crate::lineage::Lineage::new("j"));
        let ctx = FinishContext {
            broker,
            stage: "j",
            read_upto: &read_upto,
            lineage: &lineage,
        };
        let mut emits = Vec::new();
        let t = barrier
            .finish(BATCH_9, &ctx, &mut emits, &mut Vec::new())
            .await
            .expect("finished");
        (t, emits)
    }

    #[tokio::test]
    async fn a_barrier_releases_an_earlier_batchs_items_under_their_own_batch() {
        let dir = tempfile::tempdir().expect("tmp");
        let broker = EmbeddedBroker::open(dir.path()).expect("broker");
        for t in ["in", "out"] {
            broker
                .create_topic(&NewTopic::new(t, 1))
                .await
                .expect("topic");
        }
        // Items of batch 5 held over from a run that died mid-release, an item with no
        // batch, and one that names a later batch than the one released.
        let item = |v: &'static str, batch: Option<&'static str>| {
            let mut r = ProduceRecord::value(v);
            r.headers = batch
                .map(|b| vec![Header::new(BATCH_HEADER, Bytes::from_static(b.as_bytes()))])
                .unwrap_or_default();
            r
        };
        let records = [
            item("a", Some("5")),
            item("b", None),
            item("c", Some("5")),
            item("d", Some("12")),
        ];
        broker.produce("in", &records).await.expect("produce");

        let mut barrier = Barrier::new(false, "out".into(), 1);
        let tp = TopicPartition::new("in", 0);
        for offset in 0..4 {
            let rec = ConsumedRecord {
                topic: tp.topic.clone(),
                partition: 0,
                offset,
                key: None,
                value: Bytes::new(),
                headers: Vec::new(),
                timestamp: 0,
            };
            barrier.absorb(&rec, Progress::default(), &mut Vec::new(), &mut Vec::new());
        }
        let (t, _) = finish_batch_9(&mut barrier, &broker, BTreeMap::from([(tp, 4)])).await;
        assert_eq!(t.out, 4);
        assert_eq!(t.written, 4, "what a barrier releases counts as emitted");

        let mut cfg = ConsumerConfig::new(vec!["out".into()]);
        cfg.offset_reset = OffsetReset::Earliest;
        let mut reader = broker.consumer(cfg).await.expect("consumer");
        let out = reader.poll(10, Duration::from_secs(5)).await.expect("poll");
        let got: Vec<(String, Option<u64>)> = out
            .iter()
            .map(|r| (String::from_utf8_lossy(&r.value).into_owned(), batch_of(r)))
            .collect();
        let want = [("a", 5), ("b", 9), ("c", 5), ("d", 9)];
        let want: Vec<(String, Option<u64>)> = want
            .iter()
            .map(|(v, b)| (v.to_string(), Some(*b)))
            .collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_combined_barrier_summarises_an_earlier_batchs_items_apart() {
        let dir = tempfile::tempdir().expect("tmp");
        let broker = EmbeddedBroker::open(dir.path()).expect("broker");
        let mut barrier = Barrier::new(true, "out".into(), 1);
        for (offset, batch) in [(0, Some("5")), (1, None), (2, Some("5")), (3, Some("9"))] {
            let rec = ConsumedRecord {
                topic: "in".into(),
                partition: 0,
                offset,
                key: None,
                value: Bytes::new(),
                headers: batch
                    .map(|b| vec![Header::new(BATCH_HEADER, Bytes::from_static(b.as_bytes()))])
                    .unwrap_or_default(),
                timestamp: 0,
            };
            barrier.absorb(&rec, BATCH_9, &mut Vec::new(), &mut Vec::new());
        }
        let (t, emits) = finish_batch_9(&mut barrier, &broker, BTreeMap::new()).await;
        assert_eq!(t.out, 4);
        let got: Vec<(serde_json::Value, Option<String>)> = emits
            .iter()
            .map(|e| {
                let v = serde_json::from_slice(&e.record.value).expect("json");
                let h = e.record.headers.iter().find(|h| &*h.key == BATCH_HEADER);
                (v, h.map(|h| String::from_utf8_lossy(&h.value).into_owned()))
            })
            .collect();
        let summary = |batch: u64, count: u64| serde_json::json!({"batch": batch, "count": count, "inputs": {"in": count}});
        assert_eq!(
            got,
            vec![
                (summary(5, 2), Some("5".to_string())),
                (summary(9, 2), None)
            ]
        );
    }
}
