//! What a stage's poll gave it: records decoded for the patterns that look at them, or
//! runs of stored records for a forwarding stage (see `forward`), and what the task
//! asks of either: how many, the `--batch` snapshot's cut, the offsets to commit.

use millrace_broker::encoded::EncodedPoll;
use millrace_broker::{ConsumedRecord, TopicPartition};

use crate::batch::Completion;
use crate::engine::commit::raise;

/// A poll's records: decoded for the patterns that look at them, as stored for a
/// forwarding stage (see `forward`).
pub(super) enum Input {
    Records(Vec<ConsumedRecord>),
    Encoded(Vec<EncodedPoll>),
}

impl Input {
    pub(super) fn len(&self) -> usize {
        match self {
            Input::Records(r) => r.len(),
            Input::Encoded(polls) => polls.iter().map(|p| p.records.len()).sum(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the records within a `--batch` run's snapshot.
    pub(super) fn retain_within(&mut self, c: &Completion) {
        match self {
            Input::Records(r) => r.retain(|r| c.within(r)),
            Input::Encoded(polls) => {
                for p in polls.iter_mut() {
                    let end = c.limit(&p.tp.topic, p.tp.partition);
                    p.records.truncate(u64::try_from(end).unwrap_or(0));
                }
                polls.retain(|p| !p.records.is_empty());
            }
        }
    }

    /// The offset after the last record of each partition.
    pub(super) fn next_offsets(&self) -> Vec<(TopicPartition, i64)> {
        match self {
            Input::Records(r) => next_offsets(r),
            Input::Encoded(polls) => {
                let mut offsets: Vec<(TopicPartition, i64)> = Vec::new();
                for p in polls {
                    let end = i64::try_from(p.records.next_offset()).unwrap_or(i64::MAX);
                    raise(&mut offsets, &p.tp, end);
                }
                offsets
            }
        }
    }
}

/// The offset after the last record of each partition in `batch`.
pub(super) fn next_offsets(batch: &[ConsumedRecord]) -> Vec<(TopicPartition, i64)> {
    let mut offsets: Vec<(TopicPartition, i64)> = Vec::new();
    // A poll returns each partition's records together: the slot of the previous
    // record is almost always the one (compared by pointer before by name).
    let mut last = 0;
    for rec in batch {
        let same = |(tp, _): &(TopicPartition, i64)| {
            tp.partition == rec.partition
                && (std::sync::Arc::ptr_eq(&tp.topic, &rec.topic) || tp.topic == rec.topic)
        };
        if !offsets.get(last).is_some_and(same) {
            last = match offsets.iter().position(same) {
                Some(i) => i,
                None => {
                    offsets.push((
                        TopicPartition::new(rec.topic.clone(), rec.partition),
                        rec.offset + 1,
                    ));
                    offsets.len() - 1
                }
            };
        }
        let slot = &mut offsets[last].1;
        *slot = (*slot).max(rec.offset + 1);
    }
    offsets
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use millrace_broker::embedded::EmbeddedBroker;
    use millrace_broker::{
        Broker, ConsumedRecord, ConsumerConfig, NewTopic, OffsetReset, ProduceRecord,
        TopicPartition,
    };

    use super::{Input, next_offsets};

    /// Records appended after a `--batch` run's snapshot are not the run's, also where
    /// a forwarding stage's poll reads them along with earlier ones (it reads whole
    /// stored batches).
    #[tokio::test]
    async fn a_poll_keeps_only_what_the_snapshot_holds_on_both_paths() {
        let dir = tempfile::tempdir().expect("tmp");
        let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::open(dir.path()).expect("open"));
        broker
            .create_topic(&NewTopic::new("in", 2))
            .await
            .expect("create");
        let batch = |p: i32, n: usize| -> Vec<ProduceRecord> {
            (0..n)
                .map(|i| {
                    let mut r = ProduceRecord::value(format!("{p}-{i}").into_bytes());
                    r.partition = Some(p);
                    r
                })
                .collect()
        };
        broker.produce("in", &batch(0, 5)).await.expect("produce");
        broker.produce("in", &batch(1, 2)).await.expect("produce");
        let root = crate::batch::start(
            broker.clone(),
            HashMap::new(),
            &["in".into()],
            HashMap::new(),
        )
        .await
        .expect("snapshot");
        let completion = root.for_stage("g".into(), vec!["in".into()]);
        // After the snapshot: a batch in each partition.
        broker.produce("in", &batch(0, 4)).await.expect("produce");
        broker.produce("in", &batch(1, 3)).await.expect("produce");
        let mut cfg = ConsumerConfig::new(vec!["in".into()]);
        cfg.offset_reset = OffsetReset::Earliest;
        for encoded in [true, false] {
            let mut c = broker.consumer(cfg.clone()).await.expect("consumer");
            let mut input = if encoded {
                Input::Encoded(
                    c.encoded()
                        .expect("the embedded store reads records as stored")
                        .poll_encoded(100, Duration::from_secs(1))
                        .await
                        .expect("poll"),
                )
            } else {
                Input::Records(c.poll(100, Duration::from_secs(1)).await.expect("poll"))
            };
            assert_eq!(input.len(), 14, "encoded: {encoded}");
            input.retain_within(&completion);
            assert_eq!(input.len(), 7, "encoded: {encoded}");
            let mut offsets = input.next_offsets();
            offsets.sort();
            assert_eq!(
                offsets,
                vec![
                    (TopicPartition::new("in", 0), 5),
                    (TopicPartition::new("in", 1), 2)
                ],
                "encoded: {encoded}"
            );
        }
    }

    fn rec(topic: &Arc<str>, partition: i32, offset: i64) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::clone(topic),
            partition,
            offset,
            key: None,
            value: bytes::Bytes::new(),
            headers: Vec::new(),
            timestamp: 0,
        }
    }

    #[test]
    fn next_offsets_are_per_partition_whatever_the_order() {
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        // Another allocation of the same name: equal by name, not by pointer.
        let a2: Arc<str> = Arc::from("a");
        let batch = [
            rec(&a, 0, 5),
            rec(&a, 0, 6),
            rec(&b, 0, 1),
            rec(&a, 1, 9),
            rec(&a2, 0, 7),
            rec(&b, 0, 2),
            rec(&a, 1, 3),
        ];
        let got = next_offsets(&batch);
        assert_eq!(
            got,
            vec![
                (TopicPartition::new("a", 0), 8),
                (TopicPartition::new("b", 0), 3),
                (TopicPartition::new("a", 1), 10),
            ]
        );
        assert!(next_offsets(&[]).is_empty());
    }
}
