//! Reading records for a poll: a fair share of the poll for each partition with
//! records, decoded straight into the poll's result, and the rest of the stored batch
//! a read stops in kept for the next poll.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use millrace_store::{RecordSink, Topic};

use super::{EmbeddedBroker, map_store, partition_index, to_i64, to_u64};
use crate::api::{ConsumedRecord, TopicPartition};
use crate::error::BrokerError;

/// Each assigned partition's position: the next offset to read.
pub(super) type Positions = BTreeMap<TopicPartition, u64>;

/// The rest of the batch each partition's last read stopped in: records from the
/// partition's position on, in order. The next read of the partition takes them first
/// (if they still start at its position) instead of reading that batch again.
pub(super) type Rest = BTreeMap<TopicPartition, VecDeque<ConsumedRecord>>;

/// Records kept per partition at most: a batch of up to 64 MiB may hold millions of
/// small ones, of which the next poll wants a few thousand (the rest of a bigger batch
/// is read again once these are used).
const REST_MAX: usize = 16_384;

/// Reads up to `max_records` from `positions` (advancing them), starting the
/// round-robin at partition `start`.
pub(super) fn read_from(
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
pub(super) struct Share<'a> {
    pub(super) tp: &'a TopicPartition,
    /// Its position, which the read advances.
    pub(super) pos: &'a mut u64,
    pub(super) topic: Arc<Topic>,
    /// Records it may give to this poll (at least one).
    pub(super) quota: usize,
}

/// What each partition has, then a fair share of a poll of `max_records` for each,
/// starting the round robin at partition `start`: a backlog in one partition does not
/// fill whole polls while the others wait, and a stage can work on several partitions
/// of one poll side by side. Partitions with nothing to read are left out.
pub(super) fn shares<'a>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Broker, NewTopic, ProduceRecord};

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
