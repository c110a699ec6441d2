//! `StartLookup`: where assigned partitions the group committed nothing for start.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};

use super::super::LogContext;
use crate::api::OffsetReset;

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
/// Partitions with a commit are left for librdkafka to look up itself (it also
/// learns the commit's leader epoch there), as is everything when the look-up fails.
pub(super) struct StartLookup {
    pub(super) committed: Arc<BaseConsumer<LogContext>>,
    pub(super) reset: Offset,
}

impl StartLookup {
    /// Bound on the look-up: the rebalance callback waits for it.
    const TIMEOUT: Duration = Duration::from_secs(2);

    pub(super) fn name_starts(&self, tpl: &mut TopicPartitionList) {
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

/// Where a partition with nothing committed starts.
pub(super) fn reset_offset(reset: OffsetReset) -> Offset {
    match reset {
        OffsetReset::Earliest => Offset::Beginning,
        OffsetReset::Latest => Offset::End,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use rdkafka::consumer::CommitMode;

    use super::super::super::{KafkaBroker, blocking};
    use super::*;
    use crate::api::{ConsumerConfig, OffsetReset};

    /// The broker for the tests that need one: `MILLRACE_TEST_BOOTSTRAP`; in CI its
    /// absence fails the test instead of skipping it.
    fn test_bootstrap() -> Option<String> {
        millrace_testkit::kafka_bootstrap()
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
}
