//! Reading a journal file back: its header, then its entries in order, each checked
//! whole (entry checksum, batch checksum, record framing) before it is handed on.

use std::path::Path;

use super::entry::{self, DecodeError, ENTRY_HEAD_LEN, EntryHead, FILE_HEADER_LEN};
use crate::codec::BATCH_HEADER_LEN;
use crate::error::StoreError;
use crate::io::{self, StorageFile};

/// Bytes read at a time; an entry larger than this is read on its own.
const CHUNK: usize = 4 << 20;
/// The smallest entry: its head and a batch header (a batch holds at least a record,
/// so a real one is longer).
const MIN_ENTRY: usize = ENTRY_HEAD_LEN + BATCH_HEADER_LEN;

/// How far a file's entries are good.
#[derive(Debug)]
pub(crate) struct FileScan {
    pub file_len: u64,
    /// Bytes of header and whole, valid entries.
    pub valid_len: u64,
    /// The first bad bytes, if any: their position and why.
    pub bad: Option<(u64, String)>,
}

/// Reads journal file `id` and calls `each(position, head, batch)` for every valid
/// entry, in order; stops at the first bad one. An entry of a kind this version does
/// not know fails with `Corrupt`.
pub(crate) fn read_entries(
    file: &dyn StorageFile,
    path: &Path,
    id: u64,
    mut each: impl FnMut(u64, &EntryHead, &[u8]) -> Result<(), StoreError>,
) -> Result<FileScan, StoreError> {
    let file_len = file.len().map_err(|e| StoreError::io_at(path, e))?;
    let mut head = [0u8; FILE_HEADER_LEN];
    let n = io::read_full_at(file, &mut head, 0).map_err(|e| StoreError::io_at(path, e))?;
    if let Err(reason) = entry::check_file_header(&head[..n], id) {
        return Ok(FileScan {
            file_len,
            valid_len: 0,
            bad: Some((0, reason)),
        });
    }
    let mut pos = FILE_HEADER_LEN as u64;
    let mut buf = Vec::new();
    let bad = 'file: loop {
        if pos >= file_len {
            break None;
        }
        let want = usize::try_from((file_len - pos).min(CHUNK as u64)).unwrap_or(CHUNK);
        buf.resize(want, 0);
        let got = io::read_full_at(file, &mut buf, pos).map_err(|e| StoreError::io_at(path, e))?;
        buf.truncate(got);
        let mut at = 0usize;
        while at < buf.len() {
            let here = pos + at as u64;
            let h = match entry::parse_head(&buf[at..]) {
                Ok(h) => h,
                Err(DecodeError::Bad(_)) if buf.len() - at < MIN_ENTRY && got == CHUNK => {
                    // The head straddles the chunk: read on from here.
                    break;
                }
                Err(DecodeError::Bad(reason)) => break 'file Some((here, reason)),
                Err(DecodeError::UnknownKind(kind)) => {
                    return Err(StoreError::corrupt(
                        path,
                        here,
                        format!(
                            "journal entry of kind {kind}, which this version of millrace does \
                             not know (written by a newer version?)"
                        ),
                    ));
                }
            };
            if here + h.total_len as u64 > file_len {
                break 'file Some((
                    here,
                    format!(
                        "entry of {} bytes runs past the end of the file (torn write)",
                        h.total_len
                    ),
                ));
            }
            if at + h.total_len > buf.len() {
                if at > 0 {
                    break;
                }
                // Larger than a chunk: read this entry whole.
                let mut whole = vec![0u8; h.total_len];
                io::read_exact_at(file, &mut whole, here)
                    .map_err(|e| StoreError::io_at(path, e))?;
                match entry::check(&whole, &h) {
                    Ok(batch) => each(here, &h, batch)?,
                    Err(reason) => break 'file Some((here, reason)),
                }
                at = h.total_len;
                break;
            }
            match entry::check(&buf[at..at + h.total_len], &h) {
                Ok(batch) => each(here, &h, batch)?,
                Err(reason) => break 'file Some((here, reason)),
            }
            at += h.total_len;
        }
        if at == 0 {
            // Not even one entry head fits in what the file has left.
            break Some((
                pos,
                format!("{} stray bytes, too few for an entry", file_len - pos),
            ));
        }
        pos += at as u64;
    };
    let valid_len = bad.as_ref().map_or(file_len, |(p, _)| *p);
    Ok(FileScan {
        file_len,
        valid_len,
        bad,
    })
}

/// Looks for a whole, valid entry starting after `from`. Recovery uses it to tell a
/// torn tail (nothing valid follows: cut it) from a damaged middle (valid entries
/// follow: refuse to drop what may have been acknowledged).
pub(crate) fn valid_entry_after(
    file: &dyn StorageFile,
    path: &Path,
    from: u64,
    file_len: u64,
) -> Result<Option<u64>, StoreError> {
    let mut buf = vec![0u8; CHUNK + MIN_ENTRY];
    let mut start = from + 1;
    let mut whole = Vec::new();
    while start + (MIN_ENTRY as u64) <= file_len {
        let n = io::read_full_at(file, &mut buf, start).map_err(|e| StoreError::io_at(path, e))?;
        if n < MIN_ENTRY {
            break;
        }
        for i in 0..=(n - MIN_ENTRY).min(CHUNK - 1) {
            let Ok(h) = entry::parse_head(&buf[i..n]) else {
                continue;
            };
            let p = start + i as u64;
            if p + h.total_len as u64 > file_len {
                continue;
            }
            whole.resize(h.total_len, 0);
            io::read_exact_at(file, &mut whole, p).map_err(|e| StoreError::io_at(path, e))?;
            if entry::check(&whole, &h).is_ok() {
                return Ok(Some(p));
            }
        }
        start += CHUNK as u64;
    }
    Ok(None)
}
