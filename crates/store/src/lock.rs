//! One process per data directory: an exclusive `flock` on `<dir>/LOCK` (std's
//! `File::try_lock`), which the kernel drops when the holder exits, even by `kill -9` —
//! so there is no stale lock to clean up. The holder writes its pid into the file so a
//! second opener can say who holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use crate::error::StoreError;

/// Holds the lock until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

pub(crate) fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
    let path = dir.join("LOCK");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::io_at(&path, e))?;
    // A lock this very process released can still look held for a moment: a child
    // forked by another thread shares the lock's open file until it execs (and closes
    // it, O_CLOEXEC). So a lock whose holder is this process is retried briefly.
    let mut tries = 0;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let pid = holder_pid(&mut file);
                if pid == std::process::id() && tries < 100 {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                return Err(StoreError::Locked {
                    pid,
                    path: dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(StoreError::io_at(&path, e)),
        }
    }
    let pid = std::process::id().to_string();
    file.set_len(0).map_err(|e| StoreError::io_at(&path, e))?;
    file.write_all_at(pid.as_bytes(), 0)
        .map_err(|e| StoreError::io_at(&path, e))?;
    Ok(DirLock { _file: file })
}

/// The pid the holder wrote. The holder writes it just after taking the lock, so a
/// racing opener retries briefly before giving up (0 = unknown).
fn holder_pid(file: &mut File) -> u32 {
    for _ in 0..20 {
        let mut s = String::new();
        if file.seek(SeekFrom::Start(0)).is_ok()
            && file.read_to_string(&mut s).is_ok()
            && let Ok(pid) = s.trim().parse::<u32>()
        {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    0
}
