//! The file I/O seam. Every byte of topic data and committed offsets goes through
//! [`Storage`] and [`StorageFile`], so tests can swap in an implementation that tears
//! writes, runs out of space or fails `fdatasync` (see `tests/faults.rs`). Directory
//! operations (create, rename, remove) use `std::fs` directly; their durability comes from
//! [`Storage::sync_dir`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;

/// One open file. Positional reads and writes only: the store tracks positions itself, so
/// readers and the writer never share a cursor.
#[allow(clippy::len_without_is_empty)] // `len` is the file size, an I/O call; emptiness is never asked.
pub trait StorageFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Reads up to `len` bytes at `pos`, appended to `buf`, as many as the file has;
    /// returns how many. The default zero-fills the room first and reads with
    /// `read_at`; the real file reads into the room as it is (see `OsFile`).
    fn read_full_into(&self, buf: &mut BytesMut, len: usize, pos: u64) -> io::Result<usize> {
        let start = buf.len();
        buf.resize(start + len, 0);
        let n = read_full_at(self, &mut buf[start..], pos);
        buf.truncate(start + *n.as_ref().unwrap_or(&0));
        n
    }
    /// Writes all of `buf` at `pos`, or fails. A failure may leave part of it written.
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// `fdatasync(2)`: makes the written data durable.
    fn sync_data(&self) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
}

/// Opens files and makes directory entries durable.
pub trait Storage: Send + Sync {
    /// Opens `path` for reading and writing; creates it (empty) when `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// fsyncs a directory, so files created, renamed or removed in it stay that way.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsStorage;

struct OsFile(File);

impl StorageFile for OsFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        loop {
            match self.0.read_at(buf, pos) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    /// `pread(2)` straight into the buffer's spare room: zero-filling a read buffer
    /// before the kernel overwrites it was a sixth of an embedded copier's work (its
    /// reads are chunks of up to megabytes, for records of 100 bytes).
    #[allow(unsafe_code)]
    fn read_full_into(&self, buf: &mut BytesMut, len: usize, pos: u64) -> io::Result<usize> {
        buf.reserve(len);
        let mut done = 0;
        while done < len {
            let at = pos
                .checked_add(done as u64)
                .and_then(|p| libc::off_t::try_from(p).ok())
                .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
            let room = &mut buf.spare_capacity_mut()[..len - done];
            // SAFETY: `room` is memory `buf` owns and nothing else refers to, at least
            // `room.len()` bytes long; pread only writes into it, at most that many bytes.
            let n = unsafe {
                libc::pread(self.0.as_raw_fd(), room.as_mut_ptr().cast(), room.len(), at)
            };
            let Ok(n) = usize::try_from(n) else {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            };
            if n == 0 {
                break;
            }
            // SAFETY: pread initialised the first `n` (<= `room.len()`) bytes of the room,
            // which begins at `buf.len()`.
            unsafe { buf.set_len(buf.len() + n) };
            done += n;
        }
        Ok(done)
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl Storage for OsStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(OsFile(file)))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// Reads exactly `buf.len()` bytes at `pos`, or fails with `UnexpectedEof`.
pub(crate) fn read_exact_at(
    file: &dyn StorageFile,
    mut buf: &mut [u8],
    mut pos: u64,
) -> io::Result<()> {
    while !buf.is_empty() {
        let n = file.read_at(buf, pos)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        pos += n as u64;
    }
    Ok(())
}

/// Reads as many bytes as the file has at `pos`, up to `buf.len()`; returns the count.
pub(crate) fn read_full_at(
    file: &(impl StorageFile + ?Sized),
    buf: &mut [u8],
    pos: u64,
) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], pos + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_into_spare_room_append_what_the_file_has_there() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let file = OsStorage.open(&path, false).expect("open");
        // (pos, len): inside, up to the end, past the end, at the end, past it.
        for (pos, len) in [
            (0, 4096),
            (99_000, 1000),
            (99_500, 4096),
            (100_000, 10),
            (200_000, 10),
        ] {
            let mut buf = BytesMut::from(&b"kept"[..]);
            let n = file.read_full_into(&mut buf, len, pos).expect("read");
            let start = usize::try_from(pos).expect("pos").min(data.len());
            let want = &data[start..(start + len).min(data.len())];
            assert_eq!(n, want.len(), "pos {pos} len {len}");
            assert_eq!(&buf[..4], b"kept", "what the buffer held stays");
            assert_eq!(&buf[4..], want, "pos {pos} len {len}");
        }
    }
}
