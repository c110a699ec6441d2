//! Records librdkafka acknowledged without having placed them, sent again.
//!
//! With `acks=all` an acknowledged record has its offset, except when librdkafka counts
//! it as written because a later request to the same partition succeeded (its
//! "implicit acknowledgement": the record keeps librdkafka's invalid offset, -1001) or
//! because the broker called it a duplicate (offset -1). Both are true once the broker
//! holds state for the producer in that partition: it then refuses sequence numbers out
//! of order, so a later request's success means the earlier ones were written. Before,
//! the implicit one is wrong: a broker with no state for the producer in a partition
//! accepts any sequence number, so when a producer's first request there fails (a
//! leader that does not serve the partition yet, as right after a topic is created)
//! while the second is on its way, the second is written and the first's records never
//! are (confluent-kafka-go#921). A record implicitly acknowledged in a partition where
//! the producer has had no record placed yet (`Placed`, in delivery order) is sent
//! again: at least once, never lost; duplicates and later implicit acknowledgements are
//! taken as they are, so idempotence still writes nothing twice.

use super::KafkaBroker;
use super::delivery::Batch;
use super::errors::{self, Subject};
use crate::api::{Delivered, ProduceRecord, Result};
use crate::error::BrokerError;
use rdkafka::error::KafkaError;

/// What librdkafka answered for every record of `batch`, or the first failure.
pub(super) async fn acknowledged(batch: &Batch, topic: &str) -> Result<Vec<Delivered>> {
    batch
        .delivered()
        .await
        .map_err(|(_, failure)| match failure {
            Some(KafkaError::Canceled) | None => {
                BrokerError::Closed("the producer shut down before the record was acknowledged")
            }
            Some(e) => errors::from_kafka(&e, Subject::Topic(topic)),
        })
}

/// How many times records acknowledged without being placed are sent again before their
/// acknowledgement is taken as it is (a broker that never reports offsets).
const UNCONFIRMED_ROUNDS: usize = 3;

impl KafkaBroker {
    /// Sends the records of `batch` implicitly acknowledged before any was placed in
    /// their partitions (of `partitions`) again, to the same partitions, until each is
    /// placed (see the module's text for why), and puts where they were written into
    /// `delivered`.
    pub(super) async fn send_unconfirmed_again(
        &self,
        topic: &str,
        partitions: usize,
        batch: &Batch,
        delivered: &mut [Delivered],
    ) -> Result<()> {
        let mut unconfirmed = batch.take_unconfirmed();
        for _ in 0..UNCONFIRMED_ROUNDS {
            if unconfirmed.is_empty() {
                break;
            }
            tracing::warn!(
                topic,
                records = unconfirmed.len(),
                "records acknowledged before any was placed in their partition (possibly never written); sending them again"
            );
            let (at, again): (Vec<usize>, Vec<ProduceRecord>) = unconfirmed.into_iter().unzip();
            let resent = self
                .inner
                .producer
                .send(topic, partitions, &again)
                .await
                .map_err(|e| errors::from_kafka(&e, Subject::Topic(topic)))?;
            for (i, d) in at.iter().zip(acknowledged(&resent, topic).await?) {
                if let Some(slot) = delivered.get_mut(*i) {
                    *slot = d;
                }
            }
            unconfirmed = resent
                .take_unconfirmed()
                .into_iter()
                .filter_map(|(j, r)| at.get(j).map(|i| (*i, r)))
                .collect();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::{Broker, NewTopic};
    use crate::kafka::DEFAULT_TIMEOUT;

    /// Records written to a topic's partitions as soon as the metadata names their
    /// leaders, before the leaders serve them, are all stored, each with its offset.
    /// Producers of their own side by side (each with its own requests in flight) and
    /// a broker slowed by their creates make the first requests fail while later ones
    /// are on their way, several times a run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn first_writes_before_the_leaders_serve_are_all_stored() {
        // In CI its absence fails the test instead of skipping it.
        let Some(bootstrap) = millrace_testkit::kafka_bootstrap() else {
            return;
        };
        const PRODUCERS: usize = 6;
        const TOPICS: usize = 20;
        const PARTITIONS: i32 = 4;
        const PER_PARTITION: i32 = 10;
        let runs = (0..PRODUCERS).map(|w| {
            let bootstrap = bootstrap.clone();
            tokio::spawn(async move {
                let k = KafkaBroker::connect(&bootstrap, BTreeMap::new(), DEFAULT_TIMEOUT)
                    .await
                    .expect("connect");
                let mut short = Vec::new();
                for i in 0..TOPICS {
                    let name = format!("first-writes-{}-{w}-{i}", std::process::id());
                    k.inner
                        .admin
                        .create_listed(&NewTopic::new(&name, PARTITIONS), DEFAULT_TIMEOUT)
                        .await
                        .expect("create");
                    let records: Vec<ProduceRecord> = (0..PARTITIONS * PER_PARTITION)
                        .map(|r| ProduceRecord {
                            partition: Some(r % PARTITIONS),
                            ..ProduceRecord::value(format!("r{r}"))
                        })
                        .collect();
                    let delivered = k.produce(&name, &records).await.expect("produce");
                    let stored: i64 = k
                        .partitions(&name)
                        .await
                        .expect("partitions")
                        .iter()
                        .map(|p| p.end_offset - p.start_offset)
                        .sum();
                    let unplaced = delivered.iter().filter(|d| d.offset < 0).count();
                    if stored < i64::from(PARTITIONS * PER_PARTITION) || unplaced > 0 {
                        short.push(format!(
                            "{name}: {stored} stored, {unplaced} without an offset"
                        ));
                    }
                    k.delete_topic(&name).await.expect("delete");
                }
                short
            })
        });
        let mut short = Vec::new();
        for run in runs.collect::<Vec<_>>() {
            short.extend(run.await.expect("producer"));
        }
        assert!(
            short.is_empty(),
            "records acknowledged but not stored: {short:?}"
        );
    }
}
