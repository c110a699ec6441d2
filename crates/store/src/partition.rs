//! One partition: an append-only log made of segments. Appends go to the active (last)
//! segment's tail buffer under the writer lock (written to the file together, `tail`),
//! and (durability batch and interval) to the store's journal, whose group commit makes
//! them durable and readable; reads take no writer lock and see only durable records.
//!
//! Locks, always taken in this order: `writer` → `segments` → a segment's `index` →
//! the committer's state → the journal's. Readers take `segments` and `index` briefly
//! and do their I/O with no lock held.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::codec::{self, BatchHeader, ReadLimits, RecordSink};
use crate::config::{Durability, TopicConfig};
use crate::durability::{Committer, Pending};
use crate::encoded::EncodedBatch;
use crate::error::StoreError;
use crate::index::SegmentIndex;
use crate::record::{Record, RecordRef, StoredRecord};
use crate::segment::{self, Segment, read_index, write_index};
use crate::store::Ctx;
use crate::tail::Tail;

pub struct Partition {
    pub(crate) topic: String,
    /// The topic's id (`topic.json`), which names it in journal entries.
    pub(crate) topic_id: u64,
    pub(crate) id: u32,
    pub(crate) dir: PathBuf,
    /// The topic's config; changed in place when the topic's config is altered.
    pub(crate) config: RwLock<TopicConfig>,
    pub(crate) ctx: Arc<Ctx>,
    pub(crate) writer: Mutex<Writer>,
    /// All segments, oldest first; the last one is active.
    pub(crate) segments: RwLock<Vec<Arc<Segment>>>,
    pub(crate) committer: Arc<Committer>,
    /// The first readable offset: the first segment's base, or further on where
    /// records were deleted on request (`log-start`). Only ever moves forward.
    pub(crate) start_offset: AtomicU64,
    pub(crate) deleted: AtomicBool,
}

pub(crate) struct Writer {
    pub active: Arc<Segment>,
    /// Offset the next record gets.
    pub next_offset: u64,
}

thread_local! {
    /// Each appending thread encodes into its own reused buffer, outside the lock.
    static ENCODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}
/// A thread's encode buffer is given back to the allocator past this size, so one huge
/// batch does not pin memory forever.
const KEEP_BUF_BYTES: usize = 8 << 20;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Partition {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The topic's config as it is now.
    pub fn config(&self) -> TopicConfig {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies an altered topic config. Under the writer lock, so no append sees half of
    /// it; a topic that becomes `durability=none` makes what it already wrote readable.
    /// One that stops being `none` first syncs its segments: records appended from then
    /// on are in the journal, which can only restore them after what the segments hold.
    pub(crate) fn set_config(&self, config: TopicConfig) -> Result<(), StoreError> {
        let _w = self.lock_writer();
        let none = config.durability == Durability::None;
        if !none && self.config().durability == Durability::None {
            let segs: Vec<Arc<Segment>> = self
                .segments
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for seg in segs {
                if let Err(e) = seg.tail.sync() {
                    self.ctx.poison.set(format!(
                        "writing or syncing {} failed: {e}",
                        seg.path.display()
                    ));
                    return self.ctx.poison.check();
                }
            }
        }
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
        if none {
            let mut s = self.committer.lock();
            let written = s.written_end;
            self.committer.publish(&mut s, written);
        }
        Ok(())
    }

    /// Appends `records` as one batch and returns the offset of the first. Returns once
    /// the batch is durable as the topic's durability says. An empty slice writes nothing
    /// and returns the next offset.
    pub fn append(&self, records: &[Record]) -> Result<u64, StoreError> {
        self.append_refs(records.iter().map(Record::as_ref))
    }

    /// [`append`](Self::append) for records the caller does not own: they are encoded
    /// straight from the borrowed fields.
    pub fn append_refs<'a>(
        &self,
        records: impl Iterator<Item = RecordRef<'a>> + Clone,
    ) -> Result<u64, StoreError> {
        let mut pending = Pending::default();
        let base = self.append_pending(records, &mut pending)?;
        pending.wait()?;
        Ok(base)
    }

    /// [`append`](Self::append) for a batch built from stored records
    /// ([`EncodedBatch`]): stamped with its offset and checksum and written as it is.
    /// Returns the offset of its first record.
    pub fn append_encoded(&self, batch: &mut EncodedBatch) -> Result<u64, StoreError> {
        let mut pending = Pending::default();
        let base = self.append_encoded_pending(batch, &mut pending)?;
        pending.wait()?;
        Ok(base)
    }

    /// [`append_refs`](Self::append_refs) that returns as soon as the batch is written,
    /// with its first offset; `pending` holds what it waits for, so that appends to
    /// many partitions are acknowledged together by one group commit
    /// ([`Pending::wait`]). Readers see the batch once it is durable.
    pub fn append_pending<'a>(
        &self,
        records: impl Iterator<Item = RecordRef<'a>> + Clone,
        pending: &mut Pending,
    ) -> Result<u64, StoreError> {
        self.check_writable()?;
        if records.clone().next().is_none() {
            return Ok(self.lock_writer().next_offset);
        }
        let (base, lsn) = ENCODE_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            let result = self.write_batch(&mut buf, records);
            if buf.capacity() > KEEP_BUF_BYTES {
                *buf = Vec::new();
            }
            result
        })?;
        if let Some(lsn) = lsn {
            pending.add(&self.ctx, lsn);
        }
        Ok(base)
    }

    /// [`append_encoded`](Self::append_encoded) that returns as soon as the batch is
    /// written; see [`append_pending`](Self::append_pending).
    pub fn append_encoded_pending(
        &self,
        batch: &mut EncodedBatch,
        pending: &mut Pending,
    ) -> Result<u64, StoreError> {
        self.check_writable()?;
        let (buf, info) = batch.finish()?;
        let (base, lsn) = self.write_encoded(buf, &info)?;
        if let Some(lsn) = lsn {
            pending.add(&self.ctx, lsn);
        }
        Ok(base)
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        self.ctx.poison.check()?;
        if self.deleted.load(Ordering::Acquire) {
            return Err(StoreError::UnknownTopic(self.topic.clone()));
        }
        Ok(())
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Encodes, then under the writer lock: stamps the offset, rolls if needed, writes
    /// with one `write` call, indexes, journals. Returns the base offset and, for
    /// durability=batch, the journal position to wait for.
    fn write_batch<'a>(
        &self,
        buf: &mut Vec<u8>,
        records: impl Iterator<Item = RecordRef<'a>> + Clone,
    ) -> Result<(u64, Option<u64>), StoreError> {
        let info = codec::encode_unsealed(buf, records)?;
        self.write_encoded(buf, &info)
    }

    /// The part of an append under the writer lock, for a batch encoded but for its
    /// base offset and CRC.
    fn write_encoded(
        &self,
        buf: &mut [u8],
        info: &codec::Unsealed,
    ) -> Result<(u64, Option<u64>), StoreError> {
        let mut w = self.lock_writer();
        // Checked again under the lock: a poisoned store must not write another byte.
        self.check_writable()?;
        let config = self.config();
        let base = w.next_offset;
        codec::seal(buf, base, info);
        let header = BatchHeader {
            total_len: buf.len(),
            crc: 0,
            base_offset: base,
            record_count: info.record_count,
            max_timestamp: info.max_timestamp,
        };
        let active_len = read_index(&w.active).len;
        if active_len > 0 && active_len + buf.len() as u64 > config.segment_bytes {
            self.roll(&mut w)?;
        }
        let seg = Arc::clone(&w.active);
        let pos = read_index(&seg).len;
        // For durability=batch into the segment's tail buffer, no system call (`tail`):
        // the acknowledgement waits for the journal's sync, whose replay restores what a
        // crash leaves unwritten. `none` and `interval` acknowledge before any sync, so
        // their bytes go on to the page cache at once and a process crash keeps them. A
        // failed write may have left part of earlier, buffered batches in the file,
        // whose journal entries other appenders may be waiting on: the store is
        // poisoned, and recovery cuts the torn tail and replays the journal.
        let buffered = config.durability == Durability::Batch;
        if let Err(e) = seg.tail.append(buf, pos, buffered) {
            self.ctx
                .poison
                .set(format!("write to {} failed: {e}", seg.path.display()));
            self.ctx.poison.check()?;
            return Err(StoreError::io_at(&seg.path, e));
        }
        write_index(&seg).add(pos, &header);
        let end = base + u64::from(info.record_count);
        w.next_offset = end;
        {
            let mut s = self.committer.lock();
            s.written_end = end;
            if config.durability == Durability::None {
                self.committer.publish(&mut s, end);
                return Ok((base, None));
            }
        }
        // The segment holds the batch first, so the journal's group commit, which
        // publishes it, never shows readers bytes the segment lacks.
        let lsn = self.ctx.journal.writer().add(
            self.topic_id,
            self.id,
            buf,
            &self.committer,
            end,
            &self.ctx.poison,
        );
        Ok((
            base,
            (config.durability == Durability::Batch).then_some(lsn),
        ))
    }

    /// Writes the active segment's buffered tail to its file (no sync): the flusher's
    /// tick for durability=none topics, and closing the store. A failure poisons.
    pub(crate) fn flush_tail(&self) -> Result<(), StoreError> {
        let tail = self.committer.segment_tail();
        if let Err(e) = tail.flush() {
            self.ctx
                .poison
                .set(format!("write to {} failed: {e}", tail.path().display()));
            return self.ctx.poison.check();
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at the next offset. Called with the
    /// writer lock held, so no append runs meanwhile.
    fn roll(&self, w: &mut Writer) -> Result<(), StoreError> {
        let storage = &self.ctx.storage;
        let poison = &self.ctx.poison;
        let old = Arc::clone(&w.active);
        let sync = self.config().durability != Durability::None;
        // The old segment's tail goes to its file whatever the durability (the tail is
        // the active segment's only), and with it everything in the old segment
        // becomes durable before the new one gets data, so recovery only ever has to
        // repair the last segment.
        let sealed = if sync {
            old.tail.sync()
        } else {
            old.tail.flush()
        };
        if let Err(e) = sealed {
            poison.set(format!(
                "writing or syncing {} at a roll failed: {e}",
                old.path.display()
            ));
            return poison.check();
        }
        let index_bytes = read_index(&old).encode();
        let index_path = segment::index_path(&old.path);
        let write_index_file = || -> std::io::Result<()> {
            let f = storage.open(&index_path, true)?;
            f.set_len(0)?;
            f.write_at(&index_bytes, 0)?;
            if sync { f.sync_data() } else { Ok(()) }
        };
        // A missing or bad index only costs a rescan on open, so its failure is not fatal.
        if let Err(e) = write_index_file() {
            tracing::warn!(file = %index_path.display(), error = %e, "could not write segment index");
        }
        let base = w.next_offset;
        let path = self.dir.join(segment::log_file_name(base));
        let file = storage
            .open(&path, true)
            .map_err(|e| StoreError::io_at(&path, e))?;
        if let Err(e) = storage.sync_dir(&self.dir) {
            poison.set(format!(
                "fsync of directory {} failed: {e}",
                self.dir.display()
            ));
            return poison.check();
        }
        let tail = Tail::new(file, &path, 0, Arc::clone(&self.ctx.budget));
        let seg = Arc::new(Segment {
            base_offset: base,
            path,
            tail: Arc::clone(&tail),
            index: RwLock::new(SegmentIndex::new(base, self.ctx.index_interval)),
        });
        self.segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&seg));
        w.active = seg;
        {
            let mut s = self.committer.lock();
            s.tail = tail;
            if sync {
                let written = s.written_end;
                self.committer.publish(&mut s, written);
            }
        }
        self.retain(w, now_ms())
    }

    /// Deletes the oldest sealed segments that retention no longer keeps: by size (the
    /// partition stays at least `retention.bytes` without them) and by age (their newest
    /// record is older than `retention.ms`). The active segment is never deleted.
    pub(crate) fn retain(&self, _w: &Writer, now_ms: i64) -> Result<(), StoreError> {
        let config = self.config();
        let (by_bytes, by_ms) = (config.retention_bytes, config.retention_ms);
        let start = self.start_offset();
        let second_base = |segs: &[Arc<Segment>]| segs.get(1).map(|s| s.base_offset);
        if by_bytes.is_none() && by_ms.is_none() {
            let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
            if second_base(&segs).is_none_or(|b| b > start) {
                return Ok(());
            }
        }
        let mut segs = self.segments.write().unwrap_or_else(|e| e.into_inner());
        let mut total: u64 = segs.iter().map(|s| read_index(s).len).sum();
        let mut removed = false;
        while segs.len() > 1 {
            let (len, max_ts) = {
                let ix = read_index(&segs[0]);
                (ix.len, ix.max_timestamp)
            };
            let too_big = by_bytes.is_some_and(|limit| total - len >= limit);
            let too_old = by_ms.is_some_and(|ms| {
                max_ts < now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))
            });
            // Every record of a segment that ends at or before the log start was
            // deleted on request.
            let deleted = segs[1].base_offset <= start;
            if !too_big && !too_old && !deleted {
                break;
            }
            let seg = segs.remove(0);
            total -= len;
            self.start_offset
                .fetch_max(segs[0].base_offset, Ordering::AcqRel);
            // Readers holding the segment keep reading from the open file; unlink is safe.
            for p in [seg.path.clone(), segment::index_path(&seg.path)] {
                match std::fs::remove_file(&p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(StoreError::io_at(&p, e));
                    }
                    _ => {}
                }
            }
            removed = true;
        }
        drop(segs);
        if removed {
            self.ctx
                .storage
                .sync_dir(&self.dir)
                .map_err(|e| StoreError::io_at(&self.dir, e))?;
        }
        Ok(())
    }

    /// Applies retention now (also done after every roll and on open).
    pub fn apply_retention(&self) -> Result<(), StoreError> {
        let w = self.lock_writer();
        self.retain(&w, now_ms())
    }

    /// Deletes every record before `offset` (Kafka's DeleteRecords): the log start
    /// moves there durably (`log-start`, see `docs/format.md`) and segments wholly
    /// before it are removed. `offset` may be at most the end offset; a start already
    /// past it stays. Returns the log start offset now.
    pub fn delete_records_before(&self, offset: u64) -> Result<u64, StoreError> {
        self.check_writable()?;
        let w = self.lock_writer();
        let end = self.end_offset();
        if offset > end {
            return Err(StoreError::InvalidArgument(format!(
                "cannot delete records before offset {offset} of {}/{}: its end offset is {end}",
                self.topic, self.id
            )));
        }
        if offset <= self.start_offset() {
            return Ok(self.start_offset());
        }
        // The file is replaced whole, so a failure leaves the old start in force.
        crate::log_start::write(&*self.ctx.storage, &self.dir, offset)?;
        self.start_offset.fetch_max(offset, Ordering::AcqRel);
        self.retain(&w, now_ms())?;
        Ok(self.start_offset())
    }

    /// Reads durable records from `from` (or the start offset, if `from` is before it), up
    /// to `max_records` and about `max_bytes` (at least one record is returned if any is
    /// available, however big).
    pub fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let until = self.end_offset();
        let from = from.max(self.start_offset());
        if from >= until || max_records == 0 {
            return Ok(Vec::new());
        }
        let wanted = usize::try_from(until - from)
            .unwrap_or(usize::MAX)
            .min(max_records);
        let mut out = Vec::with_capacity(wanted.min(64 * 1024));
        self.read_into(from, max_records, max_bytes, &mut out)?;
        Ok(out)
    }

    /// [`read`](Self::read) into the caller's collection.
    pub fn read_into(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut (impl RecordSink + ?Sized),
    ) -> Result<(), StoreError> {
        let until = self.end_offset();
        let from = from.max(self.start_offset());
        if from >= until || max_records == 0 {
            return Ok(());
        }
        let mut limits = ReadLimits {
            from,
            until,
            max_records,
            max_bytes,
            bytes_used: 0,
        };
        loop {
            let at = limits.from;
            let seg = {
                // Looked up again per segment: retention may remove segments meanwhile.
                let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
                let i = segs
                    .partition_point(|s| s.base_offset <= at)
                    .saturating_sub(1);
                match segs.get(i) {
                    Some(s) => Arc::clone(s),
                    None => break,
                }
            };
            if seg.read_into(&mut limits, out)? {
                break;
            }
            // This segment has nothing more: continue at the next one.
            let next = read_index(&seg).next_offset;
            if next <= at || next >= until {
                break;
            }
            limits.from = next;
        }
        Ok(())
    }

    /// Offset of the first record (older ones were removed by retention).
    pub fn start_offset(&self) -> u64 {
        self.start_offset.load(Ordering::Acquire)
    }

    /// Offset after the last durable record: the next offset a reader waits for.
    pub fn end_offset(&self) -> u64 {
        self.committer.durable_end.load(Ordering::Acquire)
    }

    /// The first offset whose record has a timestamp `>= ts_ms`, or `end_offset()` if none.
    pub fn offset_for_timestamp(&self, ts_ms: i64) -> Result<u64, StoreError> {
        let segs: Vec<Arc<Segment>> = self
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let end = self.end_offset();
        for seg in segs {
            let mut from = {
                let ix = read_index(&seg);
                if ix.max_timestamp < ts_ms {
                    continue;
                }
                ix.offset_for_timestamp(ts_ms).max(self.start_offset())
            };
            let seg_end = read_index(&seg).next_offset.min(end);
            while from < seg_end {
                let batch = self.read(from, 4096, 4 << 20)?;
                let Some(last) = batch.last() else { break };
                if let Some(hit) = batch.iter().find(|r| r.record.timestamp >= ts_ms) {
                    return Ok(hit.offset);
                }
                from = last.offset + 1;
            }
        }
        Ok(end)
    }

    /// Blocks until a record at `offset` is readable (`end_offset() > offset`) or the
    /// timeout passes; returns whether it is. Woken by appends, never polls.
    pub fn wait_for(&self, offset: u64, timeout: Duration) -> bool {
        self.committer.wait_for(offset, timeout)
    }

    /// Marks the partition deleted: appends fail, waiting appenders and readers wake.
    pub(crate) fn close(&self) {
        self.deleted.store(true, Ordering::Release);
        self.committer.close();
        // The journal may hold the partition until its next checkpoint, long after:
        // its buffer is written out now (to the file old handles still read), so the
        // store's buffers do not count it meanwhile.
        let tail = self.committer.segment_tail();
        if let Err(e) = tail.flush() {
            tracing::warn!(file = %tail.path().display(), error = %e, "writing a deleted partition's tail failed");
        }
    }

    /// Total bytes of the partition's segments.
    pub fn size_bytes(&self) -> u64 {
        let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
        segs.iter().map(|s| read_index(s).len).sum()
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}
