//! A segment's tail buffer: the bytes appended to a segment and not yet written to its
//! file. Appends whose acknowledgement waits for the journal's sync (durability=batch)
//! land here instead of costing a `pwrite` each; the buffer goes to the file with one
//! write when it reaches its size, when the store's buffers together pass their cap,
//! at a roll, before a checkpoint syncs the segment (so the journal only drops entries
//! the segment file holds), on the flusher's tick for durability=none topics (a topic
//! changed to `none` may still hold bytes buffered before), and at close. `none` and
//! `interval` appends are written through at once (`Partition`), so a process crash
//! keeps what they acknowledged. A producer that touches 1,000 partitions per batch
//! then costs a memcpy per partition, not a system call.
//!
//! Readers read across the file and the buffer ([`Tail::read_into`]): bytes before
//! `file_len` from the file (they never change once written), bytes after it from the
//! buffer, under its lock.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;

use crate::io::StorageFile;

/// The buffered bytes of every segment of a store, and their limits.
pub(crate) struct Budget {
    /// Bytes buffered now, all segments together.
    buffered: AtomicU64,
    /// A segment's buffer is written out when it would pass this.
    tail_bytes: usize,
    /// Past this, an append writes its segment's buffer (and itself) out at once.
    cap: u64,
}

impl Budget {
    pub fn new(tail_bytes: usize, cap: u64) -> Arc<Budget> {
        Arc::new(Budget {
            buffered: AtomicU64::new(0),
            tail_bytes,
            cap,
        })
    }

    /// Bytes buffered now, all segments together.
    pub fn buffered(&self) -> u64 {
        self.buffered.load(Ordering::Acquire)
    }

    fn over(&self, more: usize) -> bool {
        self.buffered().saturating_add(more as u64) > self.cap
    }
}

struct State {
    /// Bytes of the segment in its file; the buffer holds those from here on.
    file_len: u64,
    buf: Vec<u8>,
}

/// The write side of one segment file.
pub(crate) struct Tail {
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    state: Mutex<State>,
    budget: Arc<Budget>,
}

impl Tail {
    /// The tail of `file`, which holds `file_len` bytes of the segment.
    pub fn new(
        file: Arc<dyn StorageFile>,
        path: &Path,
        file_len: u64,
        budget: Arc<Budget>,
    ) -> Arc<Tail> {
        Arc::new(Tail {
            file,
            path: path.to_path_buf(),
            state: Mutex::new(State {
                file_len,
                buf: Vec::new(),
            }),
            budget,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `bytes` at `pos`, the segment's end: into the buffer, or, when the
    /// buffer would pass its size or the store's buffers their cap, by writing the
    /// buffer out first (and `bytes` with it, if they still do not fit). Not
    /// `buffered`: the buffer and `bytes` go to the file at once. A failure may leave
    /// part of the bytes in the file; the caller poisons the store.
    pub fn append(&self, bytes: &[u8], pos: u64, buffered: bool) -> io::Result<()> {
        let mut s = self.lock();
        if s.file_len + s.buf.len() as u64 != pos {
            return Err(io::Error::other(format!(
                "segment tail out of step: {} bytes written and buffered, appending at {pos}",
                s.file_len + s.buf.len() as u64
            )));
        }
        let full = !buffered || s.buf.len() + bytes.len() > self.budget.tail_bytes;
        if (full || self.budget.over(bytes.len())) && !s.buf.is_empty() {
            self.write_out(&mut s)?;
        }
        if !buffered || bytes.len() > self.budget.tail_bytes || self.budget.over(bytes.len()) {
            self.file.write_at(bytes, pos)?;
            s.file_len += bytes.len() as u64;
        } else {
            s.buf.extend_from_slice(bytes);
            self.budget
                .buffered
                .fetch_add(bytes.len() as u64, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Writes the buffer to the file (one write), if it holds anything.
    pub fn flush(&self) -> io::Result<()> {
        let mut s = self.lock();
        if s.buf.is_empty() {
            return Ok(());
        }
        self.write_out(&mut s)
    }

    /// [`flush`](Self::flush), then `fdatasync`: every byte of the segment is durable.
    pub fn sync(&self) -> io::Result<()> {
        self.flush()?;
        self.file.sync_data()
    }

    fn write_out(&self, s: &mut State) -> io::Result<()> {
        // On failure the buffer stays whole (readers keep reading it); part of it may
        // be in the file, past `file_len`, which recovery cuts as a torn tail.
        self.file.write_at(&s.buf, s.file_len)?;
        s.file_len += s.buf.len() as u64;
        self.budget
            .buffered
            .fetch_sub(s.buf.len() as u64, Ordering::AcqRel);
        s.buf.clear();
        if s.buf.capacity() > self.budget.tail_bytes.saturating_mul(2) {
            s.buf = Vec::new();
        }
        Ok(())
    }

    /// Reads up to `len` bytes of the segment at `pos`, appended to `out`: from the
    /// file up to what it holds, then from the buffer. Returns how many (fewer only at
    /// the segment's end).
    pub fn read_into(&self, out: &mut BytesMut, len: usize, pos: u64) -> io::Result<usize> {
        let mut done = 0usize;
        while done < len {
            let at = pos + done as u64;
            let s = self.lock();
            if at >= s.file_len {
                let from = usize::try_from(at - s.file_len).unwrap_or(usize::MAX);
                let Some(rest) = s.buf.get(from..) else { break };
                let take = rest.len().min(len - done);
                if take == 0 {
                    break;
                }
                out.extend_from_slice(&rest[..take]);
                done += take;
            } else {
                // Bytes before `file_len` are in the file for good: read them unlocked.
                let n = usize::try_from(s.file_len - at)
                    .unwrap_or(usize::MAX)
                    .min(len - done);
                drop(s);
                let got = self.file.read_full_into(out, n, at)?;
                done += got;
                if got < n {
                    break;
                }
            }
        }
        Ok(done)
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let n = self.lock().buf.len() as u64;
        self.budget.buffered.fetch_sub(n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{OsStorage, Storage};

    fn tail_in(dir: &Path, name: &str, budget: &Arc<Budget>) -> Arc<Tail> {
        let path = dir.join(name);
        let file = OsStorage.open(&path, true).expect("open");
        Tail::new(file, &path, 0, Arc::clone(budget))
    }

    fn read(tail: &Tail, pos: u64, len: usize) -> Vec<u8> {
        let mut out = BytesMut::new();
        let n = tail.read_into(&mut out, len, pos).expect("read");
        assert_eq!(n, out.len());
        out.to_vec()
    }

    #[test]
    fn reads_see_every_byte_whether_in_the_file_or_the_buffer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let budget = Budget::new(100, 1 << 20);
        let tail = tail_in(dir.path(), "s", &budget);
        let mut all = Vec::new();
        for i in 0..40u8 {
            let chunk = vec![i; 1 + usize::from(i % 7) * 9];
            tail.append(&chunk, all.len() as u64, true).expect("append");
            all.extend_from_slice(&chunk);
            for pos in [0, all.len() / 3, all.len() - 1] {
                let len = all.len() - pos + 5;
                assert_eq!(read(&tail, pos as u64, len), all[pos..], "pos {pos}");
            }
        }
        let in_file = std::fs::metadata(dir.path().join("s")).expect("meta").len();
        assert!(in_file > 0, "buffers past 100 bytes were written out");
        assert!(
            in_file < all.len() as u64,
            "the last appends are still buffered"
        );
        assert_eq!(budget.buffered(), all.len() as u64 - in_file);
        tail.flush().expect("flush");
        assert_eq!(std::fs::read(dir.path().join("s")).expect("read"), all);
        assert_eq!(budget.buffered(), 0);
    }

    #[test]
    fn an_append_out_of_step_with_the_segment_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tail = tail_in(dir.path(), "s", &Budget::new(100, 1000));
        tail.append(b"abc", 0, true).expect("append");
        assert!(tail.append(b"def", 2, true).is_err());
        assert_eq!(read(&tail, 0, 10), b"abc");
    }

    #[test]
    fn the_store_wide_cap_bounds_what_all_buffers_hold() {
        let dir = tempfile::tempdir().expect("temp dir");
        let budget = Budget::new(1000, 2000);
        let tails: Vec<Arc<Tail>> = (0..50)
            .map(|i| tail_in(dir.path(), &i.to_string(), &budget))
            .collect();
        let mut ends = vec![0u64; tails.len()];
        for round in 0..20 {
            for (i, tail) in tails.iter().enumerate() {
                tail.append(&[round; 30], ends[i], true).expect("append");
                ends[i] += 30;
                assert!(budget.buffered() <= 2000, "{}", budget.buffered());
            }
        }
        // Each tail's bytes are whole, wherever they are.
        for (i, tail) in tails.iter().enumerate() {
            let got = read(tail, 0, 10_000);
            let want: Vec<u8> = (0..20u8).flat_map(|r| [r; 30]).collect();
            assert_eq!(got, want, "tail {i}");
        }
        drop(tails);
        assert_eq!(budget.buffered(), 0, "dropped tails give their bytes back");
    }
}
