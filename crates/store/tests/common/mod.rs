//! Helpers shared by the store's integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use millrace_store::{
    Durability, Header, Record, RecoveryReport, Store, StoreOptions, TopicConfig,
};

pub fn open(dir: &Path) -> (Store, RecoveryReport) {
    Store::open(dir, StoreOptions::default()).expect("open store")
}

pub fn config(durability: Durability, segment_bytes: u64) -> TopicConfig {
    TopicConfig {
        durability,
        segment_bytes,
        ..TopicConfig::default()
    }
}

pub fn config_pairs(kv: &[(&str, &str)]) -> TopicConfig {
    let m: BTreeMap<String, String> = kv
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TopicConfig::from_pairs(&m).expect("valid config")
}

/// A record whose content says which one it is.
pub fn rec(i: u64) -> Record {
    Record {
        key: if i.is_multiple_of(3) {
            None
        } else {
            Some(Bytes::from(format!("k{i}")))
        },
        value: Bytes::from(format!("value-{i}")),
        headers: if i.is_multiple_of(2) {
            vec![Header::new("h", "1"), Header::new("h", format!("{i}"))]
        } else {
            Vec::new()
        },
        timestamp: 1_000 + i as i64,
    }
}

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use millrace_store::{OsStorage, Storage, StorageFile};

/// Switches for [`FaultyStorage`]; flip them while the store runs.
#[derive(Default)]
pub struct Faults {
    /// `fdatasync` (and directory fsync) fail with EIO.
    pub fail_sync: AtomicBool,
    /// Writes put half their bytes on disk, then fail with ENOSPC.
    pub torn_enospc: AtomicBool,
    /// `set_len` fails with EIO (so a torn write cannot be undone).
    pub fail_set_len: AtomicBool,
    /// Successful `fdatasync` calls on files (not directories), counted.
    pub syncs: AtomicU64,
}

/// The real file system with injectable faults, through the store's I/O seam.
#[derive(Clone, Default)]
pub struct FaultyStorage(pub Arc<Faults>);

struct FaultyFile {
    inner: Arc<dyn StorageFile>,
    faults: Arc<Faults>,
}

fn on(f: &AtomicBool) -> bool {
    f.load(Ordering::SeqCst)
}

impl StorageFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        if on(&self.faults.torn_enospc) {
            self.inner.write_at(&buf[..buf.len() / 2], pos)?;
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.inner.write_at(buf, pos)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if on(&self.faults.fail_set_len) {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        if on(&self.faults.fail_sync) {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        self.inner.sync_data()?;
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

impl Storage for FaultyStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(FaultyFile {
            inner: OsStorage.open(path, create)?,
            faults: Arc::clone(&self.0),
        }))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if on(&self.0.fail_sync) {
            return Err(io::Error::from_raw_os_error(5));
        }
        OsStorage.sync_dir(path)
    }
}

pub fn open_faulty(dir: &Path) -> (Store, FaultyStorage) {
    let storage = FaultyStorage::default();
    let opts = StoreOptions {
        storage: Arc::new(storage.clone()),
        ..StoreOptions::default()
    };
    (Store::open(dir, opts).expect("open store").0, storage)
}

/// The segment files of a partition, oldest first.
pub fn segments(dir: &Path, topic: &str, partition: u32) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> =
        std::fs::read_dir(dir.join("topics").join(topic).join(partition.to_string()))
            .expect("partition dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
    v.sort();
    v
}

pub mod power_loss;
