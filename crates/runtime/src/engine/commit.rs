//! Committing a stage's input offsets once the outputs they caused are durable.
//!
//! A commit refused because the group rebalanced is not an error: the partitions'
//! uncommitted records are delivered again to their new owner (at least once), and the
//! task learns of the new assignment on its next poll. Offsets refused that way are
//! kept and retried with the task's next commit, for the partitions it still owns then
//! (a cooperative rebalance keeps most).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use millrace_broker::{BrokerError, Consumer, TopicPartition};

use super::produce::RETRY_FOR;
use crate::counters::StageCounters;
use crate::error::RuntimeError;

/// How often a busy stage commits.
const COMMIT_EVERY: Duration = Duration::from_millis(100);

/// Offsets a rebalance refused, retried with the next commit.
#[derive(Default)]
pub(crate) struct Deferred(Vec<(TopicPartition, i64)>);

impl Deferred {
    /// Drops those of partitions this task no longer owns.
    pub(crate) fn forget(&mut self, lost: &[TopicPartition]) {
        self.0.retain(|(tp, _)| !lost.contains(tp));
    }
}

/// Offsets whose outputs are durable but are not committed yet, committed together
/// every `COMMIT_EVERY` (and whenever the task idles or stops): fewer commits, each
/// one a sync on the embedded store.
#[derive(Default)]
pub(crate) struct PendingCommit {
    offsets: Vec<(TopicPartition, i64)>,
    deferred: Deferred,
    records: u64,
    last: Option<Instant>,
}

impl PendingCommit {
    pub(crate) fn add(&mut self, offsets: Vec<(TopicPartition, i64)>, records: u64) {
        for (tp, o) in offsets {
            raise(&mut self.offsets, &tp, o);
        }
        self.records += records;
    }

    /// Drops what would be committed for partitions this task no longer owns.
    pub(crate) fn forget(&mut self, lost: &[TopicPartition]) {
        self.offsets.retain(|(tp, _)| !lost.contains(tp));
        self.deferred.forget(lost);
    }

    /// Commits the pending offsets when `COMMIT_EVERY` has passed since the last
    /// commit, or now when `force`; `next` then holds them.
    pub(crate) async fn commit_if_due(
        &mut self,
        counters: &StageCounters,
        consumer: &mut dyn Consumer,
        next: &mut BTreeMap<TopicPartition, i64>,
        force: bool,
    ) -> Result<(), RuntimeError> {
        if self.offsets.is_empty() {
            return Ok(());
        }
        let due = force || self.last.is_none_or(|l| l.elapsed() >= COMMIT_EVERY);
        if !due {
            return Ok(());
        }
        let offsets = std::mem::take(&mut self.offsets);
        commit(consumer, &offsets, &mut self.deferred).await?;
        for (tp, o) in offsets {
            next.insert(tp, o);
        }
        counters.committed(std::mem::take(&mut self.records));
        self.last = Some(Instant::now());
        Ok(())
    }
}

/// Raises `tp`'s offset in `offsets` to `offset` (adding it if it is not there).
pub(crate) fn raise(offsets: &mut Vec<(TopicPartition, i64)>, tp: &TopicPartition, offset: i64) {
    match offsets.iter_mut().find(|(t, _)| t == tp) {
        Some(slot) => slot.1 = slot.1.max(offset),
        None => offsets.push((tp.clone(), offset)),
    }
}

/// Commits `offsets` together with the deferred ones of partitions still owned;
/// transient failures are retried for [`RETRY_FOR`], a rebalance defers them.
pub(crate) async fn commit(
    consumer: &mut dyn Consumer,
    offsets: &[(TopicPartition, i64)],
    deferred: &mut Deferred,
) -> Result<(), RuntimeError> {
    let owned = consumer.assignment();
    let mut offsets: BTreeMap<TopicPartition, i64> = offsets.iter().cloned().collect();
    for (tp, o) in std::mem::take(&mut deferred.0) {
        if owned.contains(&tp) {
            let e = offsets.entry(tp).or_insert(o);
            *e = (*e).max(o);
        }
    }
    let offsets: Vec<(TopicPartition, i64)> = offsets.into_iter().collect();
    let offsets = offsets.as_slice();
    let start = Instant::now();
    let mut result = consumer.commit(offsets).await;
    while matches!(&result, Err(e) if e.is_transient()) && start.elapsed() < RETRY_FOR {
        tokio::time::sleep(Duration::from_millis(500)).await;
        result = consumer.commit(offsets).await;
    }
    match result {
        Ok(()) => Ok(()),
        Err(BrokerError::Rebalanced(why)) => {
            tracing::info!("commit deferred, the group rebalanced ({why})");
            deferred.0.extend_from_slice(offsets);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
