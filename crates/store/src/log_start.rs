//! A partition's log start offset (`<partition>/log-start`): where its log begins for
//! readers once records before it were deleted on request (Kafka's DeleteRecords),
//! which may be inside a segment. Retention moves the start too, but only by whole
//! segments, which the segment files themselves show; this file is needed only for a
//! start inside one. Format (also in `docs/format.md`), little-endian:
//!
//! ```text
//! | off | size | field   | type     | meaning                              |
//! |   0 |    4 | magic   | "MRLS"   |                                      |
//! |   4 |    4 | version | u32      | 1                                    |
//! |   8 |    8 | offset  | u64      | the log start offset                 |
//! |  16 |    4 | crc     | u32      | CRC32C of bytes [0, 16)              |
//! ```
//!
//! The file is replaced whole: written as `log-start.tmp`, fsynced, renamed over, and the
//! directory fsynced, so a crash leaves the old start or the new one, never a torn one.

use std::path::Path;

use crate::error::StoreError;
use crate::io::Storage;

pub(crate) const FILE: &str = "log-start";
const MAGIC: &[u8; 4] = b"MRLS";
const VERSION: u32 = 1;
const LEN: usize = 20;

fn encode(offset: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[0..4].copy_from_slice(MAGIC);
    b[4..8].copy_from_slice(&VERSION.to_le_bytes());
    b[8..16].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32c::crc32c(&b[..16]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Parses the file's bytes; `Err` says why they are not a valid log start.
fn decode(b: &[u8]) -> Result<u64, String> {
    let b: &[u8; LEN] = b
        .try_into()
        .map_err(|_| format!("{} bytes where {LEN} were expected", b.len()))?;
    if &b[0..4] != MAGIC {
        return Err("bad magic".into());
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&b[16..20]);
    if crc32c::crc32c(&b[..16]) != u32::from_le_bytes(crc) {
        return Err("checksum (crc32c) mismatch".into());
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&b[4..8]);
    if u32::from_le_bytes(version) != VERSION {
        return Err(format!("unknown version {}", u32::from_le_bytes(version)));
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&b[8..16]);
    Ok(u64::from_le_bytes(offset))
}

/// The log start offset recorded in partition directory `dir`, if any. A leftover
/// `log-start.tmp` (a crash mid-replace) is removed. A file that fails its checks is
/// reported and ignored: the start falls back to the first segment, so deleted records
/// may reappear, but no record is lost.
pub(crate) fn read(dir: &Path) -> Result<Option<u64>, StoreError> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(StoreError::io_at(&tmp, e));
        }
        _ => {}
    }
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io_at(&path, e)),
    };
    match decode(&bytes) {
        Ok(offset) => Ok(Some(offset)),
        Err(reason) => {
            tracing::warn!(file = %path.display(), %reason, "ignoring an unreadable log start; the partition starts at its first segment");
            Ok(None)
        }
    }
}

/// Durably records `offset` as the log start of partition directory `dir`.
pub(crate) fn write(storage: &dyn Storage, dir: &Path, offset: u64) -> Result<(), StoreError> {
    replace_file(storage, dir, FILE, &encode(offset))
}

/// Replaces `dir/name` with `bytes` so that a crash leaves the old file or the new one:
/// written to `name.tmp`, fsynced, renamed over `name`, then `dir` is fsynced.
pub(crate) fn replace_file(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let f = storage
        .open(&tmp, true)
        .map_err(|e| StoreError::io_at(&tmp, e))?;
    f.set_len(0).map_err(|e| StoreError::io_at(&tmp, e))?;
    f.write_at(bytes, 0)
        .map_err(|e| StoreError::io_at(&tmp, e))?;
    f.sync_data().map_err(|e| StoreError::io_at(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| StoreError::io_at(&path, e))?;
    storage.sync_dir(dir).map_err(|e| StoreError::io_at(dir, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_log_start_round_trips_and_a_damaged_one_is_refused() {
        assert_eq!(decode(&encode(42)), Ok(42));
        for i in 0..LEN {
            let mut b = encode(42);
            b[i] ^= 0x10;
            assert!(decode(&b).is_err(), "flipped byte {i} accepted");
        }
        assert!(decode(&encode(42)[..LEN - 1]).is_err());
    }

    #[test]
    fn a_written_log_start_is_read_back_and_a_stray_tmp_file_removed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(&crate::io::OsStorage, dir.path(), 7).unwrap();
        write(&crate::io::OsStorage, dir.path(), 9).unwrap();
        std::fs::write(dir.path().join("log-start.tmp"), b"half").unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(9));
        assert!(!dir.path().join("log-start.tmp").exists());
        std::fs::write(dir.path().join(FILE), b"garbage").unwrap();
        assert_eq!(read(dir.path()).unwrap(), None, "a bad file is ignored");
    }
}
