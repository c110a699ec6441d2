//! A barrier join (`mode: barrier`): the items of a batch are released only when every
//! input is complete for it. The join holds *positions*, not copies: per input
//! partition, the first offset held; at release it reads the items back from their
//! topics in chunks, so memory does not grow with the batch. With `combine`, one
//! summary item per batch is released instead.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use millrace_broker::{
    ConsumedRecord, ConsumerConfig, OffsetReset, ProduceRecord, Seek, TopicPartition,
};

use crate::batch::{BATCH_HEADER, batch_header, own_batch};
use crate::coordinated::{Coordinated, FinishContext, Progress, Tally, emit_json, tp_of};
use crate::error::RuntimeError;
use crate::operator::{Emit, RecordError};

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
                    return Err(RuntimeError::HeldLost {
                        stage: ctx.stage.to_string(),
                        partition: tp.clone(),
                        from: next,
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use millrace_broker::embedded::EmbeddedBroker;
    use millrace_broker::{Broker, Header, NewTopic};

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
