//! One segment file (`<base offset>.log`): reading batches back, and the scan that
//! recovery uses to validate a segment and rebuild its index.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};

use crate::codec::{self, BATCH_HEADER_LEN, BatchHeader, ReadLimits, RecordSink};
use crate::error::StoreError;
use crate::index::SegmentIndex;
use crate::io::{self, StorageFile};
use crate::tail::Tail;

/// A segment: its file, its tail (the appended bytes not yet in the file) and its
/// index. The index's `len` is the number of bytes, file and tail together, that hold
/// whole batches; readers never look past it, so they never see a half-written batch.
pub(crate) struct Segment {
    pub base_offset: u64,
    pub path: PathBuf,
    pub tail: Arc<Tail>,
    pub index: RwLock<SegmentIndex>,
}

/// The 20-digit file name of a segment, so names sort like offsets.
pub(crate) fn log_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}.log")
}

pub(crate) fn index_path(log_path: &Path) -> PathBuf {
    log_path.with_extension("index")
}

/// Reads `rd`'s lock, ignoring poisoning: the index is plain data that is updated in one
/// assignment, so a panic elsewhere cannot leave it half-changed.
pub(crate) fn read_index(seg: &Segment) -> std::sync::RwLockReadGuard<'_, SegmentIndex> {
    seg.index.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write_index(seg: &Segment) -> std::sync::RwLockWriteGuard<'_, SegmentIndex> {
    seg.index.write().unwrap_or_else(|e| e.into_inner())
}

/// Reads and parses the batch header at `pos`; `Ok(None)` if fewer than 32 bytes remain.
fn header_at(
    file: &dyn StorageFile,
    path: &Path,
    pos: u64,
) -> Result<Option<Result<BatchHeader, String>>, StoreError> {
    let mut head = [0u8; BATCH_HEADER_LEN];
    let n = io::read_full_at(file, &mut head, pos).map_err(|e| StoreError::io_at(path, e))?;
    if n < BATCH_HEADER_LEN {
        return Ok(None);
    }
    Ok(Some(codec::parse_header(&head)))
}

/// Reads land in a few buffers shared by the process; records are slices of them. A
/// buffer is reused once every record cut from it is dropped, so a busy reader keeps
/// touching the same warm pages instead of faulting in (and zeroing) fresh ones for
/// every read — that was a fifth of a copier's time. The pool is the process's, not a
/// thread's: reads run on whichever blocking thread is free, and pools per thread came
/// to 16 MiB for every thread that ever read (over 100 MiB of a pipeline's resident
/// memory after a few runs).
const READ_BUFFERS: usize = 8;
/// The size of a pooled buffer (a read larger than this gets a buffer of its own).
const READ_BUFFER_BYTES: usize = 4 << 20;

static READ_POOL: std::sync::Mutex<Vec<BytesMut>> = std::sync::Mutex::new(Vec::new());

/// An empty buffer with room for `len` bytes to read into: one of the pool's when one
/// has the room (or is free again), taken out of the pool for the read (so no lock is
/// held during it) with its slot, where [`give_back`] returns what room is left.
fn read_buffer(len: usize) -> (BytesMut, Option<usize>) {
    let mut pool = READ_POOL.lock().unwrap_or_else(|e| e.into_inner());
    let free = pool
        .iter_mut()
        .position(|b| b.capacity() >= len || b.try_reclaim(len));
    let at = match free {
        Some(i) => i,
        None if len <= READ_BUFFER_BYTES && pool.len() < READ_BUFFERS => {
            pool.push(BytesMut::with_capacity(READ_BUFFER_BYTES));
            pool.len() - 1
        }
        None => return (BytesMut::with_capacity(len), None),
    };
    // Meanwhile the slot holds an empty buffer, which no reader picks.
    (std::mem::take(&mut pool[at]), Some(at))
}

/// Puts a buffer taken by [`read_buffer`] back in its slot, with what was read split off.
fn give_back(slot: Option<usize>, rest: BytesMut) {
    if let Some(at) = slot {
        let mut pool = READ_POOL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = pool.get_mut(at) {
            *b = rest;
        }
    }
}

impl Segment {
    /// Appends to `out` the records at offsets `>= limits.from` from this segment, up to the
    /// limits. Returns `true` when a limit was reached (the caller stops).
    pub fn read_into(
        &self,
        limits: &mut ReadLimits,
        out: &mut (impl RecordSink + ?Sized),
    ) -> Result<bool, StoreError> {
        let (mut pos, end, avg) = {
            let ix = read_index(self);
            let records = ix.next_offset.saturating_sub(ix.base_offset).max(1);
            (
                ix.position_for(limits.from),
                ix.len,
                (ix.len / records).max(1),
            )
        };
        let wanted_records =
            u64::try_from(limits.max_records.saturating_sub(out.taken())).unwrap_or(u64::MAX);
        let wanted_bytes =
            u64::try_from(limits.max_bytes.saturating_sub(limits.bytes_used)).unwrap_or(u64::MAX);
        // Read roughly what the caller asked for, plus the index's granularity (the
        // first wanted batch may start up to one interval after `pos`).
        let chunk = wanted_records
            .saturating_mul(avg)
            .min(wanted_bytes)
            .saturating_add(64 * 1024)
            .clamp(16 * 1024, 16 << 20);
        while pos < end {
            let len = usize::try_from(chunk.min(end - pos)).unwrap_or(usize::MAX);
            let buf = self.read_chunk(pos, len)?;
            let mut at = 0usize;
            while let Some(head) = buf.get(at..at + BATCH_HEADER_LEN) {
                let h = self.header(head, pos + at as u64)?;
                if at + h.total_len > buf.len() {
                    break;
                }
                if h.next_offset() > limits.from
                    && self.decode(&buf, at, &h, pos + at as u64, limits, out)?
                {
                    return Ok(true);
                }
                at += h.total_len;
            }
            if at > 0 {
                pos += at as u64;
                continue;
            }
            // The first batch does not fit in the chunk: read exactly that batch.
            let head = buf.get(..BATCH_HEADER_LEN).ok_or_else(|| {
                self.corrupt(pos, "batch header runs past the end of the segment")
            })?;
            let h = self.header(head, pos)?;
            if pos + h.total_len as u64 > end {
                return Err(self.corrupt(pos, "batch runs past the end of the segment"));
            }
            let whole = self.read_chunk(pos, h.total_len)?;
            if h.next_offset() > limits.from && self.decode(&whole, 0, &h, pos, limits, out)? {
                return Ok(true);
            }
            pos += h.total_len as u64;
        }
        Ok(false)
    }

    fn header(&self, head: &[u8], pos: u64) -> Result<BatchHeader, StoreError> {
        let head: &[u8; BATCH_HEADER_LEN] = head
            .try_into()
            .map_err(|_| self.corrupt(pos, "short batch header"))?;
        codec::parse_header(head).map_err(|r| self.corrupt(pos, r))
    }

    fn decode(
        &self,
        buf: &Bytes,
        at: usize,
        h: &BatchHeader,
        file_pos: u64,
        limits: &mut ReadLimits,
        out: &mut (impl RecordSink + ?Sized),
    ) -> Result<bool, StoreError> {
        if !codec::crc_matches(&buf[at..at + h.total_len], h) {
            return Err(self.corrupt(file_pos, "batch checksum (crc32c) mismatch"));
        }
        codec::decode_batch_into(buf, at, h, limits, out).map_err(|r| self.corrupt(file_pos, r))
    }

    fn read_chunk(&self, pos: u64, len: usize) -> Result<Bytes, StoreError> {
        let (mut buf, slot) = read_buffer(len);
        let read = self.tail.read_into(&mut buf, len, pos);
        let chunk = buf.split().freeze();
        give_back(slot, buf);
        let n = read.map_err(|e| StoreError::io_at(&self.path, e))?;
        if n < len {
            return Err(self.corrupt(pos + n as u64, "segment is shorter than its index says"));
        }
        Ok(chunk)
    }

    pub fn corrupt(&self, pos: u64, reason: impl Into<String>) -> StoreError {
        StoreError::corrupt(&self.path, pos, reason)
    }
}

/// What a scan of a segment found.
pub(crate) struct Scan {
    pub index: SegmentIndex,
    /// The first bad batch, if any: its position and why. Everything from there on was
    /// not indexed.
    pub bad: Option<(u64, String)>,
    pub file_len: u64,
}

/// Reads a whole segment, checking every batch (framing, CRC, record layout, offset
/// continuity). Stops at the first bad batch.
pub(crate) fn scan(
    file: &dyn StorageFile,
    path: &Path,
    base_offset: u64,
    interval: u64,
) -> Result<Scan, StoreError> {
    let file_len = file.len().map_err(|e| StoreError::io_at(path, e))?;
    let mut index = SegmentIndex::new(base_offset, interval);
    let mut pos = 0u64;
    let mut batch = Vec::new();
    let bad = loop {
        if pos == file_len {
            break None;
        }
        let h = match header_at(file, path, pos)? {
            None => {
                break Some((
                    pos,
                    format!("{} stray bytes, too few for a batch header", file_len - pos),
                ));
            }
            Some(Err(reason)) => break Some((pos, reason)),
            Some(Ok(h)) => h,
        };
        if h.base_offset != index.next_offset {
            break Some((
                pos,
                format!(
                    "batch base offset {} where {} was expected",
                    h.base_offset, index.next_offset
                ),
            ));
        }
        if pos + h.total_len as u64 > file_len {
            break Some((
                pos,
                format!(
                    "batch of {} bytes runs past the end of the file (torn write)",
                    h.total_len
                ),
            ));
        }
        batch.resize(h.total_len, 0);
        io::read_exact_at(file, &mut batch, pos).map_err(|e| StoreError::io_at(path, e))?;
        if !codec::crc_matches(&batch, &h) {
            break Some((pos, "batch checksum (crc32c) mismatch".to_string()));
        }
        if let Err(reason) = codec::validate_records(&batch, &h) {
            break Some((pos, reason));
        }
        index.add(pos, &h);
        pos += h.total_len as u64;
    };
    Ok(Scan {
        index,
        bad,
        file_len,
    })
}

/// Looks for any whole, valid batch starting after `from` with an offset at or past
/// `min_offset`. Recovery uses it to tell a torn tail (nothing valid follows: cut it)
/// from a corrupt middle (valid data follows: refuse to cut acknowledged records).
pub(crate) fn valid_batch_after(
    file: &dyn StorageFile,
    path: &Path,
    from: u64,
    file_len: u64,
    min_offset: u64,
) -> Result<Option<u64>, StoreError> {
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK + BATCH_HEADER_LEN];
    let mut start = from + 1;
    let mut batch = Vec::new();
    while start + (BATCH_HEADER_LEN as u64) <= file_len {
        let n = io::read_full_at(file, &mut buf, start).map_err(|e| StoreError::io_at(path, e))?;
        if n < BATCH_HEADER_LEN {
            break;
        }
        for i in 0..=(n - BATCH_HEADER_LEN).min(CHUNK - 1) {
            // Cheap filters first: only a plausible header is worth a CRC.
            if !codec::known_magic(buf[i + 8]) {
                continue;
            }
            let Ok(head) = <&[u8; BATCH_HEADER_LEN]>::try_from(&buf[i..i + BATCH_HEADER_LEN])
            else {
                continue;
            };
            let Ok(h) = codec::parse_header(head) else {
                continue;
            };
            let p = start + i as u64;
            if h.base_offset < min_offset || p + h.total_len as u64 > file_len {
                continue;
            }
            batch.resize(h.total_len, 0);
            io::read_exact_at(file, &mut batch, p).map_err(|e| StoreError::io_at(path, e))?;
            if codec::crc_matches(&batch, &h) {
                return Ok(Some(p));
            }
        }
        start += CHUNK as u64;
    }
    Ok(None)
}
