//! The shared journal: one write-ahead log per data directory, in `<data>/journal/`,
//! that makes durability=batch and interval appends durable with one `fdatasync` per
//! group commit, however many partitions a group touches (BookKeeper's journal,
//! RocksDB's and fjall's shared WAL).
//!
//! An append writes its batch to the partition's segment (the page cache; readers are
//! not shown it yet) and the same bytes, as a journal entry, to the journal's buffer.
//! A group commit writes the buffer to the active journal file and syncs that file
//! once; then every partition whose entries it held publishes its new end. Segments
//! are synced lazily, by checkpoints: when the active file passes `file_bytes` it is
//! rotated (synced whole, and a new file takes the appends), the segments of every
//! partition with entries in the old file are synced, and the old file is deleted. So
//! the journal holds, for each partition, everything appended since the checkpoint
//! before last, and recovery replays it into the segments (`recovery`).
//!
//! Layout: `entry` (the bytes), `writer` (appending and the group commit), `reader`
//! (reading a file back, checked), `recovery` (replay on open). Format:
//! `docs/format.md`.

mod entry;
mod reader;
pub(crate) mod recovery;
mod writer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::durability::{Committer, Poison};
use crate::error::StoreError;
use crate::io::Storage;
use crate::recovery::RecoveryReport;
use crate::tail::Tail;
pub(crate) use recovery::Recovered;
use writer::ActiveFile;
pub(crate) use writer::Writer;

/// The journal's directory in a data directory.
pub(crate) const DIR: &str = "journal";
/// The size at which the active file is rotated and a checkpoint retires it.
pub(crate) const DEFAULT_FILE_BYTES: u64 = 64 << 20;
/// Segment syncs a checkpoint runs at once: a sync mostly waits for the device, and
/// many in flight let it write them together.
const SYNC_THREADS: usize = 16;

/// The name of journal file `id`: 20 digits, so names sort like ids.
fn file_name(id: u64) -> String {
    format!("{id:020}.log")
}

/// A file rotated out, waiting for the checkpoint that deletes it.
struct Sealed {
    id: u64,
    path: PathBuf,
    dirty: Vec<Arc<Committer>>,
}

pub(crate) struct Journal {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    writer: Writer,
    /// Oldest first.
    sealed: Mutex<Vec<Sealed>>,
    /// Held by a checkpoint, so two never interleave.
    checkpointing: Mutex<()>,
    file_bytes: u64,
}

impl Journal {
    /// Opens the journal of data directory `data` (creating its directory) and reads
    /// what the files there hold (`Recovered`, for [`Journal::replay`]). The active
    /// file, after them, is created by the first entry written to it: a store only read
    /// writes no journal file, so a full disk can still be read.
    pub fn open(
        storage: &Arc<dyn Storage>,
        data: &Path,
        file_bytes: u64,
        report: &mut RecoveryReport,
    ) -> Result<(Journal, Recovered), StoreError> {
        let dir = data.join(DIR);
        if !dir.exists() {
            crate::topic::mkdir(&dir)?;
            storage
                .sync_dir(data)
                .map_err(|e| StoreError::io_at(data, e))?;
        }
        let found = recovery::scan(&**storage, &dir, report)?;
        let next = found.files.last().map_or(1, |f| f.id + 1);
        let active = ActiveFile::uncreated(&dir, next);
        let journal = Journal {
            writer: Writer::new(active, Arc::clone(storage), dir.clone()),
            dir,
            storage: Arc::clone(storage),
            sealed: Mutex::new(Vec::new()),
            checkpointing: Mutex::new(()),
            file_bytes: file_bytes.max(1),
        };
        Ok((journal, found))
    }

    /// Where appends go and wait (the group commit).
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Syncs what is appended but not durable once `interval` passed since the last
    /// sync (the background flusher).
    pub fn flush_if_due(&self, interval: Duration, poison: &Poison) {
        self.writer.flush_if_due(interval, poison);
    }

    /// Whether the active file is full. (Files a failed checkpoint kept are retried by
    /// the next one.)
    pub fn checkpoint_due(&self) -> bool {
        self.writer.active_size().1 >= self.file_bytes
    }

    fn lock_sealed(&self) -> MutexGuard<'_, Vec<Sealed>> {
        self.sealed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Retires full journal files (with `all`, every file that holds entries, a new
    /// empty one taking the appends): rotates the active file if it is full, syncs the
    /// segments of every partition with entries in the rotated files, then deletes
    /// those files. A failed sync poisons the store and keeps the files.
    pub fn checkpoint(&self, poison: &Poison, all: bool) -> Result<(), StoreError> {
        let _one = self.checkpointing.lock().unwrap_or_else(|e| e.into_inner());
        poison.check()?;
        let (id, size) = self.writer.active_size();
        // Size 0: not created and nothing buffered, so there is nothing to retire.
        if size > 0 && (all || size >= self.file_bytes) {
            let next = create_file(&*self.storage, &self.dir, id + 1)?;
            let old = self.writer.rotate(next, poison)?;
            self.lock_sealed().push(Sealed {
                id: old.id,
                path: old.path,
                dirty: old.dirty,
            });
        }
        let retiring: Vec<Sealed> = std::mem::take(&mut *self.lock_sealed());
        if retiring.is_empty() {
            return Ok(());
        }
        let mut seen = HashSet::new();
        let tails: Vec<Arc<Tail>> = retiring
            .iter()
            .flat_map(|s| s.dirty.iter())
            .filter(|c| seen.insert(Arc::as_ptr(c)))
            .map(|c| c.segment_tail())
            .collect();
        // Each segment's buffered tail is written out first: the journal drops these
        // entries only once the segment files hold them durably.
        if let Err(e) = sync_all(&tails) {
            poison.set(format!(
                "writing or syncing a segment at a checkpoint failed: {e}"
            ));
            let mut sealed = self.lock_sealed();
            let later = std::mem::replace(&mut *sealed, retiring);
            sealed.extend(later);
            return poison.check();
        }
        for s in &retiring {
            match std::fs::remove_file(&s.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StoreError::io_at(&s.path, e));
                }
                _ => tracing::debug!(file = s.id, "journal file retired"),
            }
        }
        // Not needed for safety (a file that comes back is replayed again, to the same
        // end), but keeps a later recovery from reading it.
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| StoreError::io_at(&self.dir, e))
    }

    /// Replays what [`Journal::open`] found into `partitions` (see
    /// [`recovery::replay`]), syncs the segments it wrote to, and deletes the old files.
    pub fn replay(
        &self,
        found: Recovered,
        partitions: &recovery::PartitionMap,
        report: &mut RecoveryReport,
    ) -> Result<(), StoreError> {
        let written = recovery::replay(&found, &*self.storage, partitions, report)?;
        let tails: Vec<Arc<Tail>> = written.iter().map(|p| p.committer.segment_tail()).collect();
        sync_all(&tails).map_err(StoreError::Io)?;
        for f in &found.files {
            std::fs::remove_file(&f.path).map_err(|e| StoreError::io_at(&f.path, e))?;
        }
        if !found.files.is_empty() {
            self.storage
                .sync_dir(&self.dir)
                .map_err(|e| StoreError::io_at(&self.dir, e))?;
        }
        Ok(())
    }
}

/// Creates journal file `id` in `dir` with its header, durably (file and directory).
fn create_file(storage: &dyn Storage, dir: &Path, id: u64) -> Result<ActiveFile, StoreError> {
    let path = dir.join(file_name(id));
    let io = |e| StoreError::io_at(&path, e);
    let file = storage.open(&path, true).map_err(io)?;
    let header = entry::file_header(id);
    let written = file
        .set_len(0)
        .and_then(|()| file.write_at(&header, 0))
        .and_then(|()| file.sync_data());
    if let Err(e) = written {
        // A file with no whole header holds no entry: remove it, so a full disk keeps
        // no stray journal file (best effort; recovery skips a headerless file too).
        let _ = std::fs::remove_file(&path);
        return Err(io(e));
    }
    storage
        .sync_dir(dir)
        .map_err(|e| StoreError::io_at(dir, e))?;
    Ok(ActiveFile {
        id,
        path,
        file: Some(file),
        len: header.len() as u64,
        dirty: Vec::new(),
    })
}

/// Writes out and syncs the segments of `tails`, several at once; the first error, if
/// any.
fn sync_all(tails: &[Arc<Tail>]) -> std::io::Result<()> {
    if tails.len() <= 1 {
        return tails.iter().try_for_each(|t| t.sync());
    }
    let per_thread = tails.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = tails
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || chunk.iter().try_for_each(|t| t.sync())))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a sync thread panicked")))
        })
    })
}
