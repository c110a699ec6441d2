//! Reads a topic from its start to the end offsets it has when the read begins, as a
//! consumer outside any group (nothing committed), on either backend.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use millrace_broker::{Broker, BrokerError, ConsumedRecord, Consumer, ConsumerConfig, OffsetReset};

/// How long a read waits for a record it knows is there before it gives up.
const STALL: Duration = Duration::from_secs(30);

/// A topic being read to the end offsets it had when the reader opened.
pub struct TopicReader {
    topic: String,
    consumer: Option<Box<dyn Consumer>>,
    /// Partition → its end at the start; a partition is done once a record at
    /// end - 1 is read.
    ends: BTreeMap<i32, i64>,
}

impl TopicReader {
    /// `None` when the topic does not exist.
    pub async fn open(broker: &dyn Broker, topic: &str) -> anyhow::Result<Option<TopicReader>> {
        let d = match broker.describe_topic(topic).await {
            Ok(d) => d,
            Err(BrokerError::UnknownTopic(_)) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot describe {topic}")),
        };
        let ends: BTreeMap<i32, i64> = d
            .partitions
            .iter()
            .filter(|p| p.end_offset > p.start_offset)
            .map(|p| (p.partition, p.end_offset))
            .collect();
        let consumer = if ends.is_empty() {
            None
        } else {
            let mut config = ConsumerConfig::new(vec![topic.to_string()]);
            config.offset_reset = OffsetReset::Earliest;
            // The records are there: a Kafka fetch need not wait for more.
            config
                .properties
                .insert("fetch.wait.max.ms".into(), "10".into());
            Some(broker.consumer(config).await?)
        };
        Ok(Some(TopicReader {
            topic: topic.to_string(),
            consumer,
            ends,
        }))
    }

    /// The next records (partitions interleaved, each in offset order); `None` at the
    /// end.
    pub async fn next(&mut self) -> anyhow::Result<Option<Vec<ConsumedRecord>>> {
        let Some(consumer) = self.consumer.as_mut() else {
            return Ok(None);
        };
        let started = Instant::now();
        while !self.ends.is_empty() {
            let recs = consumer.poll(10_000, Duration::from_millis(200)).await?;
            let mut batch = Vec::with_capacity(recs.len());
            for r in recs {
                let Some(end) = self.ends.get(&r.partition).copied() else {
                    continue;
                };
                if r.offset >= end {
                    continue;
                }
                if r.offset + 1 >= end {
                    self.ends.remove(&r.partition);
                }
                batch.push(r);
            }
            if !batch.is_empty() {
                return Ok(Some(batch));
            }
            if started.elapsed() > STALL {
                anyhow::bail!(
                    "could not read {} to its end: no record came for {}s (partitions {:?} left)",
                    self.topic,
                    STALL.as_secs(),
                    self.ends.keys().collect::<Vec<_>>()
                );
            }
        }
        self.close().await;
        Ok(None)
    }

    pub async fn close(&mut self) {
        if let Some(c) = self.consumer.take() {
            let _ = c.close().await;
        }
    }
}

/// Hands `each` every record of `topic` up to its end offsets now; `each` returns false
/// to stop early. Returns false when the topic does not exist.
pub async fn read_topic(
    broker: &dyn Broker,
    topic: &str,
    mut each: impl FnMut(ConsumedRecord) -> anyhow::Result<bool>,
) -> anyhow::Result<bool> {
    let Some(mut reader) = TopicReader::open(broker, topic).await? else {
        return Ok(false);
    };
    let result = async {
        while let Some(batch) = reader.next().await? {
            for r in batch {
                if !each(r)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
    .await;
    reader.close().await;
    result.map(|()| true)
}
