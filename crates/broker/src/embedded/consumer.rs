//! [`EmbeddedConsumer`]: a position per assigned partition, records read straight from
//! the store. With a group, its partitions come from the store's group coordinator
//! (`member`); without one, it reads every partition of its topics. A poll waits on
//! the hub's tails, which every append to the store wakes, whoever appended.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use millrace_server::hub::TopicWatch;

use super::member::{Membership, Update};
use super::read::{Positions, Rest, read_from};
use super::{EmbeddedBroker, encoded, map_store, partition_index, to_u64};
use crate::api::*;
use crate::encoded::{EncodedConsumer, EncodedPoll};
use crate::error::BrokerError;
use crate::hand_over::InFlight;

/// A consumer of the embedded store: a position per assigned partition.
pub struct EmbeddedConsumer {
    broker: EmbeddedBroker,
    config: ConsumerConfig,
    /// The group's member, for a consumer with a group.
    member: Option<Membership>,
    positions: Positions,
    rebalances: Vec<Rebalance>,
    /// Round-robin start among partitions so one busy partition cannot starve others.
    next: usize,
    /// The next poll's records, read while the caller works on this poll's.
    ahead: Option<ReadAhead>,
    /// Records decoded past a poll's end, per partition (see [`Rest`]).
    rest: Rest,
}

/// A read of the next records on a blocking thread, started when a poll returns
/// records: a busy reader's read and decode then overlap its processing (a stage's loop
/// would otherwise do both on one core). Its records are used only if nothing moved the
/// positions it started from (a seek, a rebalance) and the next poll asks for as many.
struct ReadAhead {
    read: tokio::task::JoinHandle<Result<Read, BrokerError>>,
    from: Positions,
    max_records: usize,
}

/// What a read ahead gives: its records, and the positions and rest after them.
type Read = (Vec<ConsumedRecord>, Positions, Rest);

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

impl EmbeddedConsumer {
    /// A consumer of `config`'s topics; with a group, joining it (polls take the
    /// assignment in).
    pub(super) fn open(broker: EmbeddedBroker, config: ConsumerConfig) -> Result<EmbeddedConsumer> {
        if config.topics.is_empty() {
            return Err(BrokerError::Invalid(
                "a consumer needs at least one topic".into(),
            ));
        }
        for t in &config.topics {
            broker.topic(t)?;
        }
        let (member, wanted) = match &config.group {
            Some(g) => (
                Some(Membership::start(
                    broker.hub().coordinator(),
                    g,
                    &config.topics,
                )),
                Vec::new(),
            ),
            None => {
                let mut all = Vec::new();
                for t in &config.topics {
                    let topic = broker.topic(t)?;
                    for p in 0..topic.partition_count() {
                        all.push(TopicPartition::new(
                            t.clone(),
                            i32::try_from(p).unwrap_or(i32::MAX),
                        ));
                    }
                }
                (None, all)
            }
        };
        let mut c = EmbeddedConsumer {
            broker,
            config,
            member,
            positions: Positions::new(),
            rebalances: Vec::new(),
            next: 0,
            ahead: None,
            rest: Rest::new(),
        };
        c.assign(&wanted)?;
        Ok(c)
    }

    fn start_position(&self, tp: &TopicPartition) -> Result<u64, BrokerError> {
        let t = self.broker.topic(&tp.topic)?;
        let p = partition_index(tp.partition)?;
        let part = t.partition(p).map_err(map_store)?;
        if let Some(g) = &self.config.group
            && let Some(o) = self.broker.store().committed_offset(g, &tp.topic, p)
        {
            return Ok(o.max(part.start_offset()));
        }
        Ok(match self.config.offset_reset {
            OffsetReset::Earliest => part.start_offset(),
            OffsetReset::Latest => part.end_offset(),
        })
    }

    /// Makes `wanted` the assignment, recording what was revoked and what was assigned.
    /// Partitions kept keep their positions.
    fn assign(&mut self, wanted: &[TopicPartition]) -> Result<(), BrokerError> {
        let revoked: Vec<TopicPartition> = self
            .positions
            .keys()
            .filter(|tp| !wanted.contains(tp))
            .cloned()
            .collect();
        let mut assigned = Vec::new();
        for tp in wanted {
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

    /// Follows the group: whether records may be read now (not while a join is under
    /// way, when any partition may be on its way to another member).
    async fn follow_group(&mut self) -> Result<bool, BrokerError> {
        let Some(m) = &mut self.member else {
            return Ok(true);
        };
        match m.update().await? {
            Update::Steady => Ok(true),
            Update::Joining => {
                // What was read ahead may be for partitions that go.
                self.ahead = None;
                Ok(false)
            }
            Update::Assigned(wanted) => {
                self.assign(&wanted)?;
                Ok(true)
            }
        }
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
            .map_err(|e| BrokerError::task("store read", e))??;
        if !out.is_empty() {
            self.positions = positions;
            self.next = self.next.wrapping_add(1);
        }
        // Its rest starts at the positions it read up to; an empty read left them as
        // they were, and the rest with them.
        self.rest = rest;
        Ok(out)
    }

    /// Reads up to `max` records (decoded, or as stored when `encoded`) once some are
    /// there or `timeout` passes, sleeping until an append, a change in the group or
    /// the timeout.
    async fn wait_for(&mut self, timeout: Duration, max: usize, encoded: bool) -> Result<Reading> {
        let deadline = Instant::now() + timeout;
        let hub = std::sync::Arc::clone(self.broker.hub());
        loop {
            // Watch before looking, so an append between the look and the wait is not
            // missed.
            let mut watches: Vec<TopicWatch> =
                self.config.topics.iter().map(|t| hub.watch(t)).collect();
            let out = if !self.follow_group().await? {
                Reading::Records(Vec::new())
            } else if encoded {
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
            // Appends wake the wait; the cap keeps retention moves (which move no end
            // offset) timely.
            let nap = (deadline - now).min(Duration::from_millis(500));
            let appended =
                futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            let group = async {
                match &mut self.member {
                    Some(m) => m.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = appended => {}
                () = group => {}
                () = tokio::time::sleep(nap) => {}
            }
        }
    }
}

#[async_trait]
impl EncodedConsumer for EmbeddedConsumer {
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
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>> {
        match self.wait_for(timeout, max_records.max(1), false).await? {
            Reading::Records(r) => Ok(r),
            Reading::Encoded(_) => Ok(Vec::new()),
        }
    }

    fn encoded(&mut self) -> Option<&mut dyn EncodedConsumer> {
        Some(self)
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    fn take_rebalances(&mut self) -> Vec<Rebalance> {
        std::mem::take(&mut self.rebalances)
    }

    fn hand_over_after(&mut self, work: InFlight) {
        if let Some(m) = &mut self.member {
            m.hand_over_after(work);
        }
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let Some(m) = &self.member else {
            return Err(BrokerError::Invalid(
                "commit needs a consumer group".to_string(),
            ));
        };
        if offsets.is_empty() {
            return Ok(());
        }
        for (tp, _) in offsets {
            partition_index(tp.partition)?;
        }
        // All partitions in one journal write and one fdatasync, off the async threads.
        m.commit(offsets).await
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

    async fn close(mut self: Box<Self>) -> Result<()> {
        if let Some(mut m) = self.member.take() {
            m.leave().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // A member commits once it has joined (its first polls take the assignment in).
        while c.assignment().len() < 2 {
            c.poll(1, Duration::from_millis(50)).await.expect("poll");
        }
        c.commit(&[(tp0.clone(), 3), (tp1.clone(), 2)])
            .await
            .expect("commit");
        c.close().await.expect("close");
        let wait = Duration::from_millis(50);
        let mut c = broker.consumer(cfg).await.expect("consumer");
        assert!(c.encoded().is_some());
        let runs = |polls: &[EncodedPoll]| -> Vec<(i32, u64, usize)> {
            polls
                .iter()
                .map(|p| (p.tp.partition, p.records.first_offset(), p.records.len()))
                .collect()
        };
        // From the committed offsets, whole batches: 3..10 and 2..4, past the poll's 2.
        let polls = encoded(&mut c).poll_encoded(2, wait).await.expect("poll");
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
        let polls = encoded(&mut c).poll_encoded(100, wait).await.expect("poll");
        assert_eq!(runs(&polls), vec![(0, 12, 4)]);
        assert!(
            encoded(&mut c)
                .poll_encoded(100, wait)
                .await
                .expect("poll")
                .is_empty()
        );
    }

    /// The embedded consumer's stored-bytes reads.
    fn encoded(c: &mut Box<dyn Consumer>) -> &mut dyn EncodedConsumer {
        c.encoded()
            .expect("the embedded store reads records as stored")
    }
}
