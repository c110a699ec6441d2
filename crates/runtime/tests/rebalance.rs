//! A rebalance inside a poll: Kafka's consumer runs the rebalance callback inside
//! `poll`, so a poll can return records it fetched from a partition just before the
//! partition was revoked. Those records are the partition's next owner's (who starts
//! from the committed offset); a stage that processed them anyway wrote their outputs
//! twice, or counted them in a reduce result that also counted them again.
//!
//! Simulated on the embedded store by a consumer that, in its first poll with records,
//! reports one partition revoked and rewinds it to where the poll started, as a fresh
//! assignment starts from the committed offset; the partition is assigned again in the
//! same poll (what Kafka's eager protocol does to a member that keeps it) or in the next.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use millrace_broker::{
    Broker, ConsumedRecord, Consumer, ConsumerConfig, Delivered, InFlight, NewTopic, ProduceRecord,
    Rebalance, Result, Seek, TopicDescription, TopicPartition,
};
use millrace_runtime::{RunOptions, Runtime};
use tokio::sync::watch;

/// The embedded broker, with group consumers that see one rebalance inside a poll.
struct RebalanceInPoll(Arc<dyn Broker>);

struct Consumer1 {
    inner: Box<dyn Consumer>,
    injected: Vec<Rebalance>,
    /// The partition comes back with the next poll, not with this one.
    back_later: bool,
    later: Vec<Rebalance>,
    done: bool,
}

#[async_trait]
impl Consumer for Consumer1 {
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>> {
        self.injected.append(&mut self.later);
        let mut recs = self.inner.poll(max_records, timeout).await?;
        if !self.done
            && let Some(first) = recs.first().cloned()
        {
            self.done = true;
            // Every partition in this poll is read again from where the poll started,
            // and the poll returns only the first few records of the first one: the
            // batch is not over when the partition comes back.
            let mut starts: BTreeMap<TopicPartition, i64> = BTreeMap::new();
            for r in &recs {
                starts
                    .entry(TopicPartition::new(r.topic.clone(), r.partition))
                    .or_insert(r.offset);
            }
            for (tp, o) in &starts {
                self.inner.seek(tp, Seek::Offset(*o)).await?;
            }
            recs.retain(|r| r.partition == first.partition && r.topic == first.topic);
            recs.truncate(5);
            let tp = TopicPartition::new(first.topic.clone(), first.partition);
            self.injected.push(Rebalance::Revoked(vec![tp.clone()]));
            let back = Rebalance::Assigned(vec![tp]);
            if self.back_later {
                self.later.push(back);
            } else {
                self.injected.push(back);
            }
        }
        Ok(recs)
    }
    fn assignment(&self) -> Vec<TopicPartition> {
        self.inner.assignment()
    }
    fn take_rebalances(&mut self) -> Vec<Rebalance> {
        let mut r = self.inner.take_rebalances();
        r.append(&mut self.injected);
        r
    }
    fn hand_over_after(&mut self, work: InFlight) {
        self.inner.hand_over_after(work);
    }
    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        self.inner.commit(offsets).await
    }
    async fn seek(&mut self, tp: &TopicPartition, to: Seek) -> Result<()> {
        self.inner.seek(tp, to).await
    }
    async fn close(self: Box<Self>) -> Result<()> {
        self.inner.close().await
    }
}

#[async_trait]
impl Broker for RebalanceInPoll {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
    async fn create_topic(&self, topic: &NewTopic) -> Result<()> {
        self.0.create_topic(topic).await
    }
    async fn list_topics(&self) -> Result<Vec<String>> {
        self.0.list_topics().await
    }
    async fn describe_topic(&self, topic: &str) -> Result<TopicDescription> {
        self.0.describe_topic(topic).await
    }
    async fn delete_topic(&self, topic: &str) -> Result<()> {
        self.0.delete_topic(topic).await
    }
    async fn produce(&self, topic: &str, records: &[ProduceRecord]) -> Result<Vec<Delivered>> {
        self.0.produce(topic, records).await
    }
    async fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        let Some(group) = config.group.clone() else {
            return self.0.consumer(config).await;
        };
        // Where each stage would go wrong: the copier reads the lineage when the
        // partition comes back, which must not be before the stale records are written
        // (same poll); the reduce forgets a revoked partition's counts, which the stale
        // records must not refill before the partition is read again (next poll).
        let back_later = group.ends_with(".count");
        Ok(Box::new(Consumer1 {
            inner: self.0.consumer(config).await?,
            injected: Vec::new(),
            back_later,
            later: Vec::new(),
            done: false,
        }))
    }
    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<(i32, Option<i64>)>> {
        self.0.committed(group, topic).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_a_poll_returns_from_a_revoked_partition_are_not_processed() {
    let b = embedded();
    let src = r#"
pipeline: handover
topics:
  in: { partitions: 2 }
  words: { partitions: 2 }
stages:
  copy: { kind: copier, from: in, to: copied }
  count: { kind: reduce, from: words, to: counts, group_by: .w, reducer: count }
"#;
    b.create_topics(src).await;
    let mut ins = Vec::new();
    let mut words = Vec::new();
    for p in 0..2 {
        for i in 0..10 {
            let mut r = ProduceRecord::value(format!("{p}-{i}").into_bytes());
            r.partition = Some(p);
            ins.push(r);
            let mut w = ProduceRecord::value(format!(r#"{{"w":"w{p}"}}"#).into_bytes());
            w.partition = Some(p);
            words.push(w);
        }
    }
    b.produce("in", ins).await;
    b.produce("words", words).await;

    let broker: Arc<dyn Broker> = Arc::new(RebalanceInPoll(b.broker.clone()));
    let spec = millrace_runtime::build::from_plan(&b.plan(src)).expect("build");
    let (_tx, rx) = watch::channel(false);
    let opts = RunOptions {
        batch: true,
        ..RunOptions::default()
    };
    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        Runtime::new(spec).run(broker, opts, rx),
    )
    .await
    .expect("batch run finishes")
    .expect("batch run succeeds");
    assert_conserved(&summary);

    let mut copied = b.values("copied").await;
    copied.sort();
    let mut want: Vec<String> = (0..2)
        .flat_map(|p| (0..10).map(move |i| format!("{p}-{i}")))
        .collect();
    want.sort();
    assert_eq!(copied, want, "every record copied once");

    let counts: BTreeMap<String, i64> = b
        .read_all("counts")
        .await
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.value).expect("json");
            (
                v["group"].as_str().expect("group").to_string(),
                v["value"].as_i64().expect("count"),
            )
        })
        .collect();
    let want: BTreeMap<String, i64> = [("w0".to_string(), 10), ("w1".to_string(), 10)].into();
    assert_eq!(counts, want, "each word counted once per record");
}
