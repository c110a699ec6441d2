//! Durability as partitions and callers see it: each partition's durable end (what
//! readers may see) and the readers waiting on it, the appends a caller waits for
//! together ([`Pending`]), the store-wide poison flag, and the [`AppendListener`].
//!
//! The syncs themselves are the journal's (`crate::journal`): durability=batch and
//! interval appends go to one journal per data directory, whose group commit publishes
//! every partition it made durable here. The same condvar wakes tailing readers
//! (`wait_for`), since readers only see durable records.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::store::Ctx;
use crate::tail::Tail;

/// Set when an `fdatasync` fails. After that the kernel may have dropped dirty pages and
/// cleared the error, so no later success can be trusted: every write is refused until
/// the store is reopened and recovered.
#[derive(Default)]
pub(crate) struct Poison {
    flag: AtomicBool,
    reason: Mutex<String>,
}

impl Poison {
    pub fn set(&self, reason: String) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if !self.flag.load(Ordering::Acquire) {
            tracing::error!(%reason, "fsync failed; the store is poisoned");
            *r = reason;
            self.flag.store(true, Ordering::Release);
        }
    }

    pub fn check(&self) -> Result<(), StoreError> {
        if self.flag.load(Ordering::Acquire) {
            let r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
            Err(StoreError::Poisoned(r.clone()))
        } else {
            Ok(())
        }
    }
}

/// Told whenever records become readable in a partition (its end offset moves), by
/// whichever thread made them so: an appender, a group-commit leader, the interval
/// flusher. Also told once when a partition's topic is deleted, so waiters look again.
/// Called with the partition's sync lock held: it must be quick and must not block or
/// call back into the store (waking an async task is the intended use).
pub trait AppendListener: Send + Sync {
    fn appended(&self, topic: &str, partition: u32, end_offset: u64);
}

/// The store's listener, set at most once ([`crate::Store::set_append_listener`]),
/// shared by every partition.
pub(crate) type ListenerSlot = Arc<OnceLock<Arc<dyn AppendListener>>>;

/// What a partition's committer needs to tell the listener who it is.
pub(crate) struct Wake {
    pub slot: ListenerSlot,
    pub topic: Arc<str>,
    pub partition: u32,
}

impl Wake {
    fn tell(&self, end: u64) {
        if let Some(l) = self.slot.get() {
            l.appended(&self.topic, self.partition, end);
        }
    }
}

/// Where a partition's log is written to and durable to. Guarded by [`Committer::state`].
pub(crate) struct SyncState {
    /// Offset after the last record written to the segment.
    pub written_end: u64,
    /// Offset after the last record known durable (what readers may see).
    pub durable_end: u64,
    /// The active segment's tail: what a checkpoint writes out and syncs. Older
    /// segments were written and synced when they were sealed.
    pub tail: Arc<Tail>,
    /// The topic was deleted: waiters give up.
    pub closed: bool,
    /// Threads blocked in [`Committer::wait_for`]. std's condvar makes a system call
    /// for every notify, waiters or not, and a group commit publishes to every
    /// partition it touched: only partitions with a waiter are notified.
    pub waiters: usize,
}

/// A partition's durable end and the readers waiting on it. The journal's group
/// commit publishes what it made durable here (`publish`); so does an append to a
/// durability=none topic at once, and a roll once it synced the sealed segment.
pub(crate) struct Committer {
    pub state: Mutex<SyncState>,
    pub advanced: Condvar,
    /// Mirror of `durable_end` for lock-free `end_offset()`.
    pub durable_end: AtomicU64,
    /// The journal file this partition's last entry went into (`NO_FILE`: none since
    /// open): the checkpoint that retires that file syncs this partition's segment.
    pub journal_file: AtomicU64,
    wake: Wake,
}

/// [`Committer::journal_file`] before the partition's first journal entry.
pub(crate) const NO_FILE: u64 = u64::MAX;

impl Committer {
    pub fn new(end: u64, tail: Arc<Tail>, wake: Wake) -> Self {
        Committer {
            state: Mutex::new(SyncState {
                written_end: end,
                durable_end: end,
                tail,
                closed: false,
                waiters: 0,
            }),
            advanced: Condvar::new(),
            durable_end: AtomicU64::new(end),
            journal_file: AtomicU64::new(NO_FILE),
            wake,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `end` as durable and wakes waiters; never moves the end back.
    pub fn publish(&self, s: &mut SyncState, end: u64) {
        if end > s.durable_end {
            s.durable_end = end;
            self.durable_end.store(end, Ordering::Release);
            if s.waiters > 0 {
                self.advanced.notify_all();
            }
            self.wake.tell(end);
        }
    }

    /// [`publish`](Self::publish), taking the lock.
    pub fn publish_to(&self, end: u64) {
        let mut s = self.lock();
        self.publish(&mut s, end);
    }

    /// The active segment's tail, for a checkpoint to write out and sync.
    pub fn segment_tail(&self) -> Arc<Tail> {
        Arc::clone(&self.lock().tail)
    }

    /// Marks the partition closed (its topic was deleted) and wakes every waiter.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        self.advanced.notify_all();
        self.wake.tell(s.durable_end);
    }

    /// Blocks until `durable_end > offset`, or the timeout passes. No polling: the
    /// condvar is notified whenever `durable_end` moves.
    pub fn wait_for(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if s.durable_end > offset {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || s.closed {
                return false;
            }
            s.waiters += 1;
            s = self
                .advanced
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            s.waiters -= 1;
        }
    }
}

/// Appends written but not yet acknowledged, waited for together. The `_pending`
/// appends of [`Partition`](crate::Partition) add to it and return at once; [`wait`]
/// returns once every one of them is as durable as its topic's durability asks. Their
/// durability=batch appends are made durable by one journal sync (a group commit),
/// however many partitions and topics they went to, so a caller that writes to many
/// partitions pays one `fdatasync`, not one per partition.
///
/// Until then readers do not see them. Dropped without [`wait`], they still become
/// durable and readable with the journal's next sync (the background flusher's, at
/// the latest).
///
/// [`wait`]: Pending::wait
#[derive(Default)]
pub struct Pending {
    /// Per store: the journal position to wait for.
    until: Vec<(Arc<Ctx>, u64)>,
}

impl Pending {
    pub(crate) fn add(&mut self, ctx: &Arc<Ctx>, lsn: u64) {
        match self.until.iter_mut().find(|(c, _)| Arc::ptr_eq(c, ctx)) {
            Some((_, at)) => *at = (*at).max(lsn),
            None => self.until.push((Arc::clone(ctx), lsn)),
        }
    }

    /// Whether nothing waits to be acknowledged.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }

    /// Blocks until every append added is durable: one group commit per store for all
    /// of them. Fails (and the appends may or may not be durable) when the store is
    /// poisoned.
    pub fn wait(&mut self) -> Result<(), StoreError> {
        for (ctx, lsn) in self.until.drain(..) {
            ctx.journal.writer().sync_to(lsn, &ctx.poison)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("stores", &self.until.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StorageFile;
    use crate::tail::Budget;

    struct NoFile;

    impl StorageFile for NoFile {
        fn read_at(&self, _: &mut [u8], _: u64) -> std::io::Result<usize> {
            Ok(0)
        }
        fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn set_len(&self, _: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn sync_data(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn len(&self) -> std::io::Result<u64> {
            Ok(0)
        }
    }

    #[test]
    fn readers_wake_when_records_become_durable_and_give_up_when_closed() {
        let c = Arc::new(Committer::new(
            0,
            Tail::new(
                Arc::new(NoFile),
                std::path::Path::new("0.log"),
                0,
                Budget::new(1024, 1024),
            ),
            Wake {
                slot: ListenerSlot::default(),
                topic: Arc::from("t"),
                partition: 0,
            },
        ));
        assert!(!c.wait_for(0, Duration::from_millis(10)), "nothing yet");
        let reader = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                let start = Instant::now();
                (c.wait_for(2, Duration::from_secs(120)), start.elapsed())
            })
        };
        // Published once the reader is blocked: the publish must wake it, not its
        // timeout.
        while c.lock().waiters == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        {
            let mut s = c.lock();
            c.publish(&mut s, 3);
            // Publishing never moves the durable end back.
            c.publish(&mut s, 1);
            assert_eq!(s.durable_end, 3);
        }
        let (woken, waited) = reader.join().expect("join");
        assert!(woken);
        assert!(
            waited < Duration::from_secs(60),
            "the reader slept {waited:?}: the publish did not wake it"
        );
        let waiter = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || c.wait_for(10, Duration::from_secs(30)))
        };
        c.close();
        assert!(
            !waiter.join().expect("join"),
            "a deleted topic wakes its readers"
        );
    }
}
