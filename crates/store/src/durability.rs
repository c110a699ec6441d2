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
            Err(e) => poison.set(format!("fdatasync failed: {e}")),
        }
        // Appenders that found this sync running wait for its end, even when it has
        // nothing new to publish (a roll published past `target` meanwhile): one of
        // them leads the next sync.
        self.advanced.notify_all();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file whose `fdatasync` is counted, can fail, and can be held until released.
    #[derive(Default)]
    struct Disk {
        syncs: AtomicU64,
        fail: AtomicBool,
        /// (a sync is running, syncs are held)
        state: Mutex<(bool, bool)>,
        changed: Condvar,
    }

    impl Disk {
        fn lock(&self) -> MutexGuard<'_, (bool, bool)> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }

        fn hold(&self, held: bool) {
            self.lock().1 = held;
            self.changed.notify_all();
        }

        /// Blocks until a sync is running (and held).
        fn wait_for_sync(&self) {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut s = self.lock();
            while !s.0 {
                assert!(Instant::now() < deadline, "no sync started");
                s = self
                    .changed
                    .wait_timeout(s, Duration::from_millis(50))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }

        fn syncs(&self) -> u64 {
            self.syncs.load(Ordering::SeqCst)
        }
    }

    impl StorageFile for Arc<Disk> {
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
            let mut s = self.lock();
            s.0 = true;
            self.changed.notify_all();
            while s.1 {
                s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            s.0 = false;
            drop(s);
            if self.fail.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(5));
            }
            self.syncs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn len(&self) -> std::io::Result<u64> {
            Ok(0)
        }
    }

    fn committer() -> (Arc<Committer>, Arc<Disk>, Arc<Poison>) {
        let disk = Arc::new(Disk::default());
        let file: Arc<dyn StorageFile> = Arc::new(Arc::clone(&disk));
        (
            Arc::new(Committer::new(
                0,
                file,
                Wake {
                    slot: ListenerSlot::default(),
                    topic: Arc::from("t"),
                    partition: 0,
                },
            )),
            disk,
            Arc::new(Poison::default()),
        )
    }

    /// An appender's part: the log is written up to `end`, then waits for it durable.
    fn append(c: &Arc<Committer>, p: &Arc<Poison>, end: u64) -> JoinHandle {
        {
            let mut s = c.lock();
            s.written_end = s.written_end.max(end);
        }
        let (c, p) = (Arc::clone(c), Arc::clone(p));
        std::thread::spawn(move || c.wait_durable(end, &p))
    }

    type JoinHandle = std::thread::JoinHandle<Result<(), StoreError>>;

    #[test]
    fn appenders_that_arrive_during_a_sync_share_the_next_one() {
        let (c, disk, poison) = committer();
        disk.hold(true);
        let first = append(&c, &poison, 1);
        disk.wait_for_sync();
        // Four more batches are written while the first one's sync runs.
        let rest: Vec<_> = (2..=5).map(|end| append(&c, &poison, end)).collect();
        disk.hold(false);
        first.join().expect("join").expect("durable");
        for h in rest {
            h.join().expect("join").expect("durable");
        }
        assert_eq!(
            disk.syncs(),
            2,
            "the first leader's sync, then one for all four"
        );
        assert_eq!(c.durable_end.load(Ordering::Acquire), 5);
        assert_eq!(c.lock().durable_end, 5);
    }

    #[test]
    fn an_appender_waiting_on_a_sync_that_publishes_nothing_new_still_wakes() {
        // A roll syncs the old segment and publishes everything written while a
        // leader's sync runs; that leader then has nothing new to publish, and the
        // appender that waited for its sync must still be woken to lead the next one.
        let (c, disk, poison) = committer();
        disk.hold(true);
        let first = append(&c, &poison, 1);
        disk.wait_for_sync();
        {
            let mut s = c.lock();
            s.written_end = 2;
            c.publish(&mut s, 2);
        }
        let waiter = append(&c, &poison, 3);
        disk.hold(false);
        first.join().expect("join").expect("durable");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(waiter.join()));
        let woke = rx.recv_timeout(Duration::from_secs(10));
        assert!(
            woke.is_ok(),
            "the appender waiting for a sync was never woken"
        );
        assert_eq!(c.durable_end.load(Ordering::Acquire), 3);
    }

    #[test]
    fn what_is_durable_already_takes_no_sync() {
        let (c, disk, poison) = committer();
        append(&c, &poison, 3)
            .join()
            .expect("join")
            .expect("durable");
        for end in 0..=3 {
            c.wait_durable(end, &poison).expect("durable");
        }
        assert_eq!(disk.syncs(), 1);
    }

    #[test]
    fn a_failed_sync_poisons_and_fails_every_waiter_without_publishing() {
        let (c, disk, poison) = committer();
        disk.fail.store(true, Ordering::SeqCst);
        disk.hold(true);
        let first = append(&c, &poison, 1);
        disk.wait_for_sync();
        let second = append(&c, &poison, 2);
        disk.hold(false);
        for h in [first, second] {
            let err = h.join().expect("join").expect_err("poisoned");
            assert!(matches!(err, StoreError::Poisoned(_)), "{err}");
            assert!(err.to_string().contains("fdatasync failed"), "{err}");
        }
        assert_eq!(
            c.durable_end.load(Ordering::Acquire),
            0,
            "nothing published"
        );
        // The disk works again, but the store stays poisoned: no sync is even tried.
        disk.fail.store(false, Ordering::SeqCst);
        assert!(c.wait_durable(2, &poison).is_err());
        assert_eq!(disk.syncs(), 0);
        c.flush_if_due(Duration::ZERO, &poison);
        assert_eq!(
            disk.syncs(),
            0,
            "the flusher does not sync a poisoned store"
        );
    }

    #[test]
    fn the_flusher_syncs_only_what_is_written_and_only_when_due() {
        let (c, disk, poison) = committer();
        c.flush_if_due(Duration::ZERO, &poison);
        assert_eq!(disk.syncs(), 0, "nothing written, nothing to sync");
        c.lock().written_end = 4;
        c.flush_if_due(Duration::from_secs(3600), &poison);
        assert_eq!(disk.syncs(), 0, "not due");
        assert_eq!(c.durable_end.load(Ordering::Acquire), 0);
        c.flush_if_due(Duration::ZERO, &poison);
        assert_eq!(disk.syncs(), 1);
        assert_eq!(
            c.durable_end.load(Ordering::Acquire),
            4,
            "readers see it now"
        );
        c.flush_if_due(Duration::ZERO, &poison);
        assert_eq!(disk.syncs(), 1, "nothing new");
    }

    #[test]
    fn readers_wake_when_records_become_durable_and_give_up_when_closed() {
        let (c, _disk, _poison) = committer();
        assert!(!c.wait_for(0, Duration::from_millis(10)), "nothing yet");
        let reader = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || c.wait_for(2, Duration::from_secs(30)))
        };
        {
            let mut s = c.lock();
            c.publish(&mut s, 3);
            // Publishing never moves the durable end back.
            c.publish(&mut s, 1);
            assert_eq!(s.durable_end, 3);
        }
        assert!(reader.join().expect("join"));
        let waiter = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || c.wait_for(10, Duration::from_secs(30)))
        };
        {
            let mut s = c.lock();
            s.closed = true;
            c.advanced.notify_all();
        }
        assert!(
            !waiter.join().expect("join"),
            "a deleted topic wakes its readers"
        );
        let err = c.wait_durable(10, &Poison::default()).expect_err("deleted");
        assert!(err.to_string().contains("deleted"), "{err}");
    }
}
