//! Durability: group commit, the interval flusher's hook, and the store-wide poison flag.
//!
//! Group commit is a leader/follower protocol on one mutex + condvar per partition. An
//! appender that finds its batch not yet durable and no `fdatasync` running becomes the
//! leader: it notes how far the log is written, syncs without holding the lock, then
//! publishes that point as durable and wakes everyone. Appenders that arrive while a sync
//! runs wait; the next leader's sync covers all of them at once. The same condvar wakes
//! tailing readers (`wait_for`), since readers only see durable records.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::io::StorageFile;

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
    /// Offset after the last record written to the file.
    pub written_end: u64,
    /// Offset after the last record known durable (what readers may see).
    pub durable_end: u64,
    /// A leader is running `fdatasync` right now.
    pub syncing: bool,
    /// The active segment's file: what a leader syncs. Older segments were synced when
    /// they were sealed.
    pub file: Arc<dyn StorageFile>,
    pub last_sync: Instant,
    /// The topic was deleted: waiters give up.
    pub closed: bool,
}

pub(crate) struct Committer {
    pub state: Mutex<SyncState>,
    pub advanced: Condvar,
    /// Mirror of `durable_end` for lock-free `end_offset()`.
    pub durable_end: AtomicU64,
    wake: Wake,
}

impl Committer {
    pub fn new(end: u64, file: Arc<dyn StorageFile>, wake: Wake) -> Self {
        Committer {
            state: Mutex::new(SyncState {
                written_end: end,
                durable_end: end,
                syncing: false,
                file,
                last_sync: Instant::now(),
                closed: false,
            }),
            advanced: Condvar::new(),
            durable_end: AtomicU64::new(end),
            wake,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `end` as durable (for writes that need no sync) and wakes waiters.
    pub fn publish(&self, s: &mut SyncState, end: u64) {
        if end > s.durable_end {
            s.durable_end = end;
            self.durable_end.store(end, Ordering::Release);
            self.advanced.notify_all();
            self.wake.tell(end);
        }
    }

    /// Marks the partition closed (its topic was deleted) and wakes every waiter.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        self.advanced.notify_all();
        self.wake.tell(s.durable_end);
    }

    /// Runs one `fdatasync` as the leader, releasing the lock meanwhile. Returns the
    /// re-taken lock. On failure, poisons the store.
    fn lead<'a>(
        &'a self,
        mut s: MutexGuard<'a, SyncState>,
        poison: &Poison,
    ) -> MutexGuard<'a, SyncState> {
        s.syncing = true;
        let target = s.written_end;
        let file = Arc::clone(&s.file);
        drop(s);
        let result = file.sync_data();
        let mut s = self.lock();
        s.syncing = false;
        s.last_sync = Instant::now();
        match result {
            Ok(()) => self.publish(&mut s, target),
            Err(e) => {
                poison.set(format!("fdatasync failed: {e}"));
                self.advanced.notify_all();
            }
        }
        s
    }

    /// Blocks until offsets below `end` are durable, leading a sync when none is running.
    pub fn wait_durable(&self, end: u64, poison: &Poison) -> Result<(), StoreError> {
        let mut s = self.lock();
        loop {
            if s.durable_end >= end {
                return Ok(());
            }
            poison.check()?;
            if s.closed {
                return Err(StoreError::InvalidArgument("the topic was deleted".into()));
            }
            if s.syncing {
                s = self.advanced.wait(s).unwrap_or_else(|e| e.into_inner());
            } else {
                s = self.lead(s, poison);
            }
        }
    }

    /// The interval flusher's hook: syncs if something is written but not durable and
    /// `interval` has passed since the last sync.
    pub fn flush_if_due(&self, interval: Duration, poison: &Poison) {
        let s = self.lock();
        if s.written_end > s.durable_end
            && !s.syncing
            && s.last_sync.elapsed() >= interval
            && poison.check().is_ok()
        {
            drop(self.lead(s, poison));
        }
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
            s = self
                .advanced
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
