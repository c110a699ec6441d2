//! Appending to the journal, and its group commit.
//!
//! An append copies its entry into an in-memory buffer (no system call) and notes
//! which partition end it makes durable. Group commit is a leader/follower protocol on
//! one mutex and condvar: a caller that needs its entries durable and finds no sync
//! running becomes the leader. It takes the whole buffer, writes it to the active file
//! with one `write` and makes it durable with one `fdatasync`, without holding the lock,
//! then publishes every partition end the buffer held and wakes the waiters. Callers
//! that arrive while a sync runs buffer their entries and wait; the next leader's sync
//! covers all of them at once, whatever partitions they went to.
//!
//! Positions in the journal (an LSN) count the bytes appended since the store opened,
//! across files: an append returns the position after its entry, and it is durable once
//! the durable position reaches it.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::entry;
use crate::durability::{Committer, Poison};
use crate::error::StoreError;
use crate::io::{Storage, StorageFile};

/// The buffer is written and synced by the appender itself once it holds this much
/// with no sync running (appends that nobody waits for: interval topics, `Pending`s
/// not waited on yet), so it never grows past a few of these.
const SPILL_BYTES: usize = 8 << 20;
/// A buffer kept for reuse between syncs is given back past this size.
const KEEP_BUF_BYTES: usize = 16 << 20;

/// The journal file appends go to.
pub(crate) struct ActiveFile {
    pub id: u64,
    pub path: PathBuf,
    /// `None` until the first entry is written: the first leader creates the file, so
    /// opening a store (to read it, even on a full disk) writes nothing.
    pub file: Option<Arc<dyn StorageFile>>,
    /// Bytes written to the file (its header included; 0 while it is not created).
    pub len: u64,
    /// Partitions with entries in this file: the checkpoint that retires the file
    /// syncs their segments.
    pub dirty: Vec<Arc<Committer>>,
}

struct State {
    active: ActiveFile,
    /// Entries appended and not yet written to the file.
    buf: Vec<u8>,
    /// An empty buffer to swap in when a leader takes `buf`.
    spare: Vec<u8>,
    /// Position after the last entry appended.
    appended: u64,
    /// Position up to which everything is durable.
    durable: u64,
    /// A leader is writing and syncing right now.
    syncing: bool,
    /// Partition ends that become durable with the entries in `buf`, in append order.
    publish: Vec<(Arc<Committer>, u64)>,
    last_sync: Instant,
}

pub(crate) struct Writer {
    state: Mutex<State>,
    /// Notified whenever a leader finishes.
    synced: Condvar,
    /// Where a not yet created active file is created.
    storage: Arc<dyn Storage>,
    dir: PathBuf,
}

impl ActiveFile {
    /// Journal file `id` in `dir`, not created until entries are written to it.
    pub fn uncreated(dir: &Path, id: u64) -> ActiveFile {
        ActiveFile {
            id,
            path: dir.join(super::file_name(id)),
            file: None,
            len: 0,
            dirty: Vec::new(),
        }
    }
}

impl Writer {
    pub fn new(active: ActiveFile, storage: Arc<dyn Storage>, dir: PathBuf) -> Writer {
        Writer {
            state: Mutex::new(State {
                active,
                buf: Vec::new(),
                spare: Vec::new(),
                appended: 0,
                durable: 0,
                syncing: false,
                publish: Vec::new(),
                last_sync: Instant::now(),
            }),
            synced: Condvar::new(),
            storage,
            dir,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Buffers the entry for `batch` (sealed: offset and crc stamped) of `topic_id`/
    /// `partition`, whose partition is durable to `end` once the entry is. Returns the
    /// entry's end position, for [`sync_to`](Self::sync_to). Called with the
    /// partition's writer lock held, so a partition's entries are in offset order.
    pub fn add(
        &self,
        topic_id: u64,
        partition: u32,
        batch: &[u8],
        committer: &Arc<Committer>,
        end: u64,
        poison: &Poison,
    ) -> u64 {
        let mut s = self.lock();
        let before = s.buf.len();
        entry::encode_batch(&mut s.buf, topic_id, partition, batch);
        s.appended += (s.buf.len() - before) as u64;
        s.publish.push((Arc::clone(committer), end));
        let id = s.active.id;
        if committer.journal_file.swap(id, Ordering::AcqRel) != id {
            s.active.dirty.push(Arc::clone(committer));
        }
        let lsn = s.appended;
        if s.buf.len() >= SPILL_BYTES && !s.syncing && poison.check().is_ok() {
            drop(self.lead(s, poison, None));
        }
        lsn
    }

    /// Blocks until everything up to `lsn` is durable, leading a sync when none runs.
    pub fn sync_to(&self, lsn: u64, poison: &Poison) -> Result<(), StoreError> {
        let mut s = self.lock();
        loop {
            if s.durable >= lsn {
                return Ok(());
            }
            poison.check()?;
            if s.syncing {
                s = self.synced.wait(s).unwrap_or_else(|e| e.into_inner());
            } else {
                s = self.lead(s, poison, None).0;
            }
        }
    }

    /// The flusher's hook: syncs what is appended and not yet durable, if `interval`
    /// has passed since the last sync.
    pub fn flush_if_due(&self, interval: Duration, poison: &Poison) {
        let s = self.lock();
        if s.appended > s.durable
            && !s.syncing
            && s.last_sync.elapsed() >= interval
            && poison.check().is_ok()
        {
            drop(self.lead(s, poison, None));
        }
    }

    /// The active file's id and its size counting what is buffered for it (0 while it
    /// is not created and nothing is buffered).
    pub fn active_size(&self) -> (u64, u64) {
        let s = self.lock();
        (s.active.id, s.active.len + s.buf.len() as u64)
    }

    /// Makes everything appended durable in the active file, then makes `next` the
    /// active file; returns the file it replaced (which holds no unsynced entry).
    pub fn rotate(&self, next: ActiveFile, poison: &Poison) -> Result<ActiveFile, StoreError> {
        let mut s = self.lock();
        while s.syncing {
            s = self.synced.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        poison.check()?;
        let (s, old) = self.lead(s, poison, Some(next));
        drop(s);
        poison.check()?;
        old.ok_or_else(|| StoreError::InvalidArgument("journal rotation lost its file".into()))
    }

    /// Runs one write and `fdatasync` of the buffer as the leader, releasing the lock
    /// meanwhile, and, with `switch`, makes that the new active file once the buffer
    /// is taken (so the sync covers everything the replaced file will ever hold).
    /// Returns the re-taken lock and the replaced file. On failure, poisons the store:
    /// entries whose segment writes are done cannot be taken back one by one.
    fn lead<'a>(
        &'a self,
        mut s: MutexGuard<'a, State>,
        poison: &Poison,
        switch: Option<ActiveFile>,
    ) -> (MutexGuard<'a, State>, Option<ActiveFile>) {
        s.syncing = true;
        if s.active.file.is_none() && !s.buf.is_empty() {
            // Created without the lock, so appenders keep buffering meanwhile; `syncing`
            // keeps other leaders and rotations off the active file.
            let id = s.active.id;
            drop(s);
            let created = super::create_file(&*self.storage, &self.dir, id);
            s = self.lock();
            match created {
                Ok(created) => {
                    s.active.file = created.file;
                    s.active.len = created.len;
                }
                Err(e) => {
                    poison.set(format!("creating the journal file failed: {e}"));
                    s.syncing = false;
                    self.synced.notify_all();
                    return (s, None);
                }
            }
        }
        let target = s.appended;
        let needs_sync = target > s.durable;
        let spare = std::mem::take(&mut s.spare);
        let mut buf = std::mem::replace(&mut s.buf, spare);
        let publish = std::mem::take(&mut s.publish);
        let (file, path, pos) = (s.active.file.clone(), s.active.path.clone(), s.active.len);
        s.active.len += buf.len() as u64;
        let old = switch.map(|next| std::mem::replace(&mut s.active, next));
        drop(s);
        // A file not created holds nothing to write or sync: entries create it above.
        let result = file.map_or(Ok(()), |file| {
            let written = if buf.is_empty() {
                Ok(())
            } else {
                file.write_at(&buf, pos)
                    .map_err(|e| format!("write to journal {} failed: {e}", path.display()))
            };
            written.and_then(|()| {
                if needs_sync {
                    file.sync_data()
                        .map_err(|e| format!("fdatasync of journal {} failed: {e}", path.display()))
                } else {
                    Ok(())
                }
            })
        });
        if result.is_ok() {
            for (committer, end) in &publish {
                committer.publish_to(*end);
            }
        }
        drop(publish);
        let mut s = self.lock();
        s.syncing = false;
        s.last_sync = Instant::now();
        match result {
            Ok(()) => s.durable = s.durable.max(target),
            Err(reason) => poison.set(reason),
        }
        buf.clear();
        if buf.capacity() <= KEEP_BUF_BYTES && s.spare.capacity() == 0 {
            s.spare = buf;
        }
        // Callers that found this sync running wait for its end, even when it covers
        // nothing new for them: one of them leads the next sync.
        self.synced.notify_all();
        (s, old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durability::{ListenerSlot, Wake};
    use crate::tail::{Budget, Tail};
    use std::sync::atomic::{AtomicBool, AtomicU64};

    /// A file whose writes and `fdatasync`s are counted, whose syncs can fail and can
    /// be held until released.
    #[derive(Default)]
    struct Disk {
        syncs: AtomicU64,
        writes: AtomicU64,
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
            self.writes.fetch_add(1, Ordering::SeqCst);
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

    struct Rig {
        writer: Arc<Writer>,
        disk: Arc<Disk>,
        poison: Arc<Poison>,
        partitions: Vec<Arc<Committer>>,
    }

    fn rig(partitions: u32) -> Rig {
        let disk = Arc::new(Disk::default());
        let file: Arc<dyn StorageFile> = Arc::new(Arc::clone(&disk));
        let writer = Arc::new(Writer::new(
            ActiveFile {
                id: 1,
                path: PathBuf::from("journal/1"),
                file: Some(Arc::clone(&file)),
                len: 0,
                dirty: Vec::new(),
            },
            Arc::new(crate::io::OsStorage),
            PathBuf::from("journal"),
        ));
        let partitions = (0..partitions)
            .map(|p| {
                Arc::new(Committer::new(
                    0,
                    Tail::new(
                        Arc::clone(&file),
                        Path::new("0.log"),
                        0,
                        Budget::new(1024, 1024),
                    ),
                    Wake {
                        slot: ListenerSlot::default(),
                        topic: Arc::from("t"),
                        partition: p,
                    },
                ))
            })
            .collect();
        Rig {
            writer,
            disk,
            poison: Arc::new(Poison::default()),
            partitions,
        }
    }

    fn batch() -> Vec<u8> {
        let mut b = Vec::new();
        crate::codec::encode_batch(&mut b, 0, &[crate::Record::new(None, "v", 0)]).expect("encode");
        b
    }

    type JoinHandle = std::thread::JoinHandle<Result<(), StoreError>>;

    impl Rig {
        /// An appender's part: partition `p` is written up to `end`, then waits for it.
        fn append(&self, p: usize, end: u64) -> JoinHandle {
            let lsn = self
                .writer
                .add(0, 0, &batch(), &self.partitions[p], end, &self.poison);
            let (w, poison) = (Arc::clone(&self.writer), Arc::clone(&self.poison));
            std::thread::spawn(move || w.sync_to(lsn, &poison))
        }

        fn end(&self, p: usize) -> u64 {
            self.partitions[p].durable_end.load(Ordering::Acquire)
        }
    }

    #[test]
    fn appends_to_many_partitions_share_one_write_and_one_sync() {
        let r = rig(1000);
        let lsns: Vec<u64> = (0..1000)
            .map(|p| {
                r.writer.add(
                    0,
                    0,
                    &batch(),
                    &r.partitions[p],
                    1 + p as u64 % 3,
                    &r.poison,
                )
            })
            .collect();
        assert_eq!(r.end(999), 0, "nothing is readable before the sync");
        r.writer.sync_to(lsns[999], &r.poison).expect("sync");
        assert_eq!(r.disk.syncs(), 1);
        assert_eq!(r.disk.writes.load(Ordering::SeqCst), 1);
        for p in 0..1000 {
            assert_eq!(r.end(p), 1 + p as u64 % 3, "partition {p} published");
        }
        // Everything earlier is covered already.
        r.writer.sync_to(lsns[0], &r.poison).expect("sync");
        assert_eq!(r.disk.syncs(), 1);
    }

    #[test]
    fn appenders_that_arrive_during_a_sync_share_the_next_one() {
        let r = rig(5);
        r.disk.hold(true);
        let first = r.append(0, 1);
        r.disk.wait_for_sync();
        // Four more partitions are written while the first one's sync runs.
        let rest: Vec<_> = (1..5).map(|p| r.append(p, 2)).collect();
        r.disk.hold(false);
        first.join().expect("join").expect("durable");
        for h in rest {
            h.join().expect("join").expect("durable");
        }
        assert_eq!(
            r.disk.syncs(),
            2,
            "the first leader's sync, then one for all four"
        );
        assert_eq!(r.end(0), 1);
        for p in 1..5 {
            assert_eq!(r.end(p), 2);
        }
    }

    #[test]
    fn a_failed_sync_poisons_and_publishes_nothing() {
        let r = rig(2);
        r.disk.fail.store(true, Ordering::SeqCst);
        let a = r.append(0, 1);
        let b = r.append(1, 1);
        for h in [a, b] {
            let err = h.join().expect("join").expect_err("poisoned");
            assert!(matches!(err, StoreError::Poisoned(_)), "{err}");
            assert!(err.to_string().contains("fdatasync"), "{err}");
        }
        assert_eq!((r.end(0), r.end(1)), (0, 0), "nothing published");
        // The disk works again, but the store stays poisoned: no sync is even tried.
        r.disk.fail.store(false, Ordering::SeqCst);
        let lsn = r.writer.add(0, 0, &batch(), &r.partitions[0], 2, &r.poison);
        assert!(r.writer.sync_to(lsn, &r.poison).is_err());
        r.writer.flush_if_due(Duration::ZERO, &r.poison);
        assert_eq!(r.disk.syncs(), 0, "a poisoned store is not synced");
    }

    #[test]
    fn the_flusher_syncs_only_what_is_appended_and_only_when_due() {
        let r = rig(1);
        r.writer.flush_if_due(Duration::ZERO, &r.poison);
        assert_eq!(r.disk.syncs(), 0, "nothing appended, nothing to sync");
        r.writer.add(0, 0, &batch(), &r.partitions[0], 4, &r.poison);
        r.writer.flush_if_due(Duration::from_secs(3600), &r.poison);
        assert_eq!(r.disk.syncs(), 0, "not due");
        assert_eq!(r.end(0), 0);
        r.writer.flush_if_due(Duration::ZERO, &r.poison);
        assert_eq!(r.disk.syncs(), 1);
        assert_eq!(r.end(0), 4, "readers see it now");
        r.writer.flush_if_due(Duration::ZERO, &r.poison);
        assert_eq!(r.disk.syncs(), 1, "nothing new");
    }

    #[test]
    fn a_rotation_syncs_the_old_file_and_appends_go_to_the_new_one() {
        let r = rig(2);
        let lsn = r.writer.add(0, 0, &batch(), &r.partitions[0], 1, &r.poison);
        let next_disk = Arc::new(Disk::default());
        let old = r
            .writer
            .rotate(
                ActiveFile {
                    id: 2,
                    path: PathBuf::from("journal/2"),
                    file: Some(Arc::new(Arc::clone(&next_disk))),
                    len: 0,
                    dirty: Vec::new(),
                },
                &r.poison,
            )
            .expect("rotate");
        assert_eq!(old.id, 1);
        assert_eq!(old.dirty.len(), 1, "partition 0 wrote to file 1");
        assert_eq!(r.disk.syncs(), 1, "the old file's entries are durable");
        assert_eq!(r.end(0), 1);
        r.writer.sync_to(lsn, &r.poison).expect("already durable");
        let lsn = r.writer.add(0, 0, &batch(), &r.partitions[1], 1, &r.poison);
        r.writer.sync_to(lsn, &r.poison).expect("sync");
        assert_eq!(next_disk.syncs(), 1);
        assert_eq!(r.disk.syncs(), 1, "the old file is done with");
        assert_eq!(r.writer.active_size().0, 2);
    }
}
