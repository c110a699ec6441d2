//! Idempotent producers: the ids InitProducerId hands out, and per producer, epoch and
//! partition the sequence numbers of the last five batches appended, so a batch sent
//! again (a retry after a lost response) is answered with the offset it got the first
//! time instead of being appended twice, and a batch after a gap is refused.
//!
//! The state lives in memory only. A producer this server has not seen — new, or from
//! before a restart — is accepted from the first sequence it sends: after a restart a
//! retry of a batch that was appended before it is appended again (at least once, as
//! a non-idempotent producer would be).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Batches remembered per producer and partition, as Kafka does.
const KEPT_BATCHES: usize = 5;
/// State of a producer unseen for this long is forgotten (Kafka's
/// `producer.id.expiration.ms` default: one day).
const EXPIRE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How many producer partitions may be kept before expired ones are swept.
const SWEEP_AT: usize = 10_000;

/// What to do with a produced batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sequence {
    /// Append it (then [`ProducerPartition::appended`]).
    Append,
    /// It was appended before, at this base offset: answer with that.
    Duplicate(u64),
    /// Its first sequence is not the one after the last batch
    /// (`OUT_OF_ORDER_SEQUENCE_NUMBER`).
    OutOfOrder { expected: i32 },
    /// An older epoch of the producer: a newer one took over (`INVALID_PRODUCER_EPOCH`).
    Fenced,
}

/// One producer's sequence state in one partition. Lock it across the check and the
/// append, so two requests of the same producer cannot interleave.
#[derive(Debug)]
pub struct ProducerPartition {
    epoch: i16,
    /// (first sequence, last sequence, base offset), oldest first.
    batches: VecDeque<(i32, i32, u64)>,
    seen: Instant,
}

fn last_sequence(first: i32, count: usize) -> i32 {
    // Sequences wrap from i32::MAX to 0, as Kafka's do.
    let span = i64::try_from(count).unwrap_or(i64::MAX).saturating_sub(1);
    let last = (i64::from(first) + span) % (i64::from(i32::MAX) + 1);
    i32::try_from(last).unwrap_or(i32::MAX)
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX { 0 } else { last + 1 }
}

impl ProducerPartition {
    /// Checks a batch of `count` records from `epoch` starting at `first`.
    pub fn check(&mut self, epoch: i16, first: i32, count: usize) -> Sequence {
        self.seen = Instant::now();
        if epoch < self.epoch {
            return Sequence::Fenced;
        }
        let Some(&(_, last, _)) = self.batches.back() else {
            return Sequence::Append;
        };
        if epoch > self.epoch {
            // A new epoch starts its sequences again at 0.
            return if first == 0 {
                Sequence::Append
            } else {
                Sequence::OutOfOrder { expected: 0 }
            };
        }
        let end = last_sequence(first, count);
        if let Some(&(_, _, base)) = self
            .batches
            .iter()
            .find(|&&(f, l, _)| f == first && l == end)
        {
            return Sequence::Duplicate(base);
        }
        let expected = next_sequence(last);
        if first == expected {
            Sequence::Append
        } else {
            Sequence::OutOfOrder { expected }
        }
    }

    /// Records that a batch checked with [`check`](Self::check) was appended at `base`.
    pub fn appended(&mut self, epoch: i16, first: i32, count: usize, base: u64) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        if self.batches.len() == KEPT_BATCHES {
            self.batches.pop_front();
        }
        self.batches
            .push_back((first, last_sequence(first, count), base));
    }
}

/// (producer id, topic, partition).
type Key = (i64, String, u32);

/// Every idempotent producer's state, and the next producer id.
#[derive(Debug)]
pub struct Producers {
    next_id: AtomicI64,
    partitions: Mutex<HashMap<Key, Arc<Mutex<ProducerPartition>>>>,
}

impl Default for Producers {
    fn default() -> Self {
        // Ids start at the clock's milliseconds, so ids handed out after a restart are
        // new (unless a previous run handed out more than one id per millisecond).
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| i64::try_from(d.as_millis()).unwrap_or(1));
        Producers {
            next_id: AtomicI64::new(now),
            partitions: Mutex::new(HashMap::new()),
        }
    }
}

impl Producers {
    /// A new producer id, at epoch 0.
    pub fn new_producer_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The state of `producer_id` in `topic`/`partition`, new if unseen.
    pub fn partition(
        &self,
        producer_id: i64,
        topic: &str,
        partition: u32,
    ) -> Arc<Mutex<ProducerPartition>> {
        let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= SWEEP_AT {
            map.retain(|_, s| lock(s).seen.elapsed() < EXPIRE_AFTER);
        }
        Arc::clone(
            map.entry((producer_id, topic.to_string(), partition))
                .or_insert_with(|| {
                    Arc::new(Mutex::new(ProducerPartition {
                        epoch: -1,
                        batches: VecDeque::new(),
                        seen: Instant::now(),
                    }))
                }),
        )
    }

    /// Forgets every producer's state in `topic` (it was deleted).
    pub fn forget_topic(&self, topic: &str) {
        let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|(_, t, _), _| t != topic);
    }
}

/// Locks a producer's partition state; the state is consistent between calls, so a
/// panic elsewhere leaves nothing half-done.
pub fn lock(s: &Mutex<ProducerPartition>) -> MutexGuard<'_, ProducerPartition> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_get_their_first_offset_and_gaps_are_refused() {
        let producers = Producers::default();
        let state = producers.partition(9, "t", 0);
        let mut s = lock(&state);
        assert_eq!(s.check(0, 100, 3), Sequence::Append, "unseen: any start");
        s.appended(0, 100, 3, 40);
        assert_eq!(s.check(0, 103, 2), Sequence::Append);
        s.appended(0, 103, 2, 43);
        assert_eq!(s.check(0, 100, 3), Sequence::Duplicate(40));
        assert_eq!(s.check(0, 103, 2), Sequence::Duplicate(43));
        assert_eq!(s.check(0, 106, 1), Sequence::OutOfOrder { expected: 105 });
        assert_eq!(s.check(0, 104, 1), Sequence::OutOfOrder { expected: 105 });
        assert_eq!(s.check(1, 5, 1), Sequence::OutOfOrder { expected: 0 });
        assert_eq!(s.check(1, 0, 1), Sequence::Append);
        s.appended(1, 0, 1, 45);
        assert_eq!(s.check(0, 105, 1), Sequence::Fenced);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let producers = Producers::default();
        let state = producers.partition(1, "t", 0);
        let mut s = lock(&state);
        for i in 0..7 {
            s.appended(0, i, 1, u64::try_from(i).unwrap());
        }
        assert_eq!(s.check(0, 2, 1), Sequence::Duplicate(2));
        assert_eq!(s.check(0, 1, 1), Sequence::OutOfOrder { expected: 7 });
        s.appended(0, i32::MAX - 1, 2, 100);
        assert_eq!(s.check(0, 0, 1), Sequence::Append, "after i32::MAX comes 0");
        assert_eq!(last_sequence(i32::MAX, 3), 1);
    }

    #[test]
    fn producer_ids_are_new_each_time() {
        let p = Producers::default();
        let (a, b) = (p.new_producer_id(), p.new_producer_id());
        assert!(a > 0 && b == a + 1);
    }
}
