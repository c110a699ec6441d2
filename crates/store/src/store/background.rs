//! The store's background threads: the flusher (journal syncs when due, durability=none
//! tails written out, time retention) and the checkpointer (full journal files retired).
//! Both sleep on the store's stop condvar, so dropping the store stops them at once.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Shared;
use crate::config::Durability;
use crate::error::StoreError;
use crate::partition::Partition;
use crate::topic::Topic;

/// How often the background thread applies time-based retention.
const RETENTION_EVERY: Duration = Duration::from_secs(5);
/// How often the checkpointer looks whether the journal's active file is full.
const CHECKPOINT_TICK: Duration = Duration::from_millis(100);

pub(super) fn apply_retention(shared: &Shared) -> Result<(), StoreError> {
    // Every partition: besides retention, a pass removes segments wholly before a log
    // start moved by DeleteRecords (a crash may have kept them).
    for_each_partition(shared, |_| true, Partition::apply_retention)
}

/// Writes out the buffered tails of every partition of the topics whose durability
/// `which` picks (no sync).
pub(super) fn flush_tails(
    shared: &Shared,
    which: impl Fn(Durability) -> bool,
) -> Result<(), StoreError> {
    for_each_partition(shared, which, Partition::flush_tail)
}

/// Runs `f` on every partition of the topics whose durability `which` picks, on a
/// snapshot of the topics (no lock held meanwhile); stops at the first error.
fn for_each_partition(
    shared: &Shared,
    which: impl Fn(Durability) -> bool,
    f: impl Fn(&Partition) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let topics: Vec<Arc<Topic>> = shared
        .topics
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter(|t| which(t.config().durability))
        .cloned()
        .collect();
    for t in topics {
        for p in t.partitions() {
            f(p)?;
        }
    }
    Ok(())
}

/// The background thread: syncs the journal when due — every `interval:<ms>` of the
/// topics that ask for it, and within a second for appends nobody waits for — and
/// applies time retention. Sleeps on a condvar so dropping the store stops it at once.
pub(super) fn spawn_flusher(shared: Arc<Shared>) -> Result<JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name("millrace-store-flusher".into())
        .spawn(move || {
            let mut last_retention = Instant::now();
            loop {
                let tick = {
                    let topics = shared.topics.read().unwrap_or_else(|e| e.into_inner());
                    topics
                        .values()
                        .filter_map(|t| match t.config().durability {
                            Durability::Interval(d) => Some(d),
                            _ => None,
                        })
                        .min()
                        .unwrap_or(Duration::from_secs(1))
                        .clamp(Duration::from_millis(1), Duration::from_secs(1))
                };
                if stopped(&shared, tick) {
                    return;
                }
                shared.ctx.journal.flush_if_due(tick, &shared.ctx.poison);
                // A topic changed to durability=none may hold bytes buffered while it
                // was `batch`: they reach the page cache within a tick. The journal
                // holds the others' until a checkpoint writes them out.
                if shared.ctx.poison.check().is_ok()
                    && let Err(e) = flush_tails(&shared, |d| d == Durability::None)
                {
                    tracing::warn!(error = %e, "writing segment tails failed");
                }
                if last_retention.elapsed() >= RETENTION_EVERY {
                    last_retention = Instant::now();
                    if let Err(e) = apply_retention(&shared) {
                        tracing::warn!(error = %e, "retention failed");
                    }
                }
            }
        })
        .map_err(StoreError::Io)
}

/// The background thread that retires full journal files (`Journal::checkpoint`), so
/// appenders never wait for the segment syncs that retiring takes.
pub(super) fn spawn_checkpointer(shared: Arc<Shared>) -> Result<JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name("millrace-store-checkpointer".into())
        .spawn(move || {
            while !stopped(&shared, CHECKPOINT_TICK) {
                let ctx = &shared.ctx;
                if ctx.journal.checkpoint_due()
                    && ctx.poison.check().is_ok()
                    && let Err(e) = ctx.journal.checkpoint(&ctx.poison, false)
                {
                    tracing::warn!(error = %e, "journal checkpoint failed");
                }
            }
        })
        .map_err(StoreError::Io)
}

/// Waits up to `tick`; whether the store is being dropped.
fn stopped(shared: &Shared, tick: Duration) -> bool {
    let stop = shared.stop.lock().unwrap_or_else(|e| e.into_inner());
    let (stop, _) = shared
        .stop_cv
        .wait_timeout_while(stop, tick, |s| !*s)
        .unwrap_or_else(|e| e.into_inner());
    *stop
}
