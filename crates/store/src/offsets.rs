//! Committed consumer-group offsets: an append-only journal (`offsets.log`), one
//! CRC-framed entry per committed partition. A commit of several partitions writes all
//! of their entries with one write and one `fdatasync`, before the commit returns.
//! Replayed on open (last entry wins) and compacted when it holds many more entries than
//! live keys. Format in `docs/format.md`.
//!
//! The offsets a reader sees live in a [`SharedOffsets`] map beside the journal: it is
//! updated only once the entries are durable, and reading it never waits for a sync.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::error::StoreError;
use crate::io::{self, StorageFile};
use crate::recovery::{RecoveryReport, Truncation};
use crate::store::Ctx;

const KIND_COMMIT: u8 = 1;
const KIND_DELETE_TOPIC: u8 = 2;
const MAX_ENTRY: usize = 64 * 1024;

/// group → topic → partition → next offset to consume. Nested so that a lookup borrows
/// the names instead of building an owned key.
#[derive(Default)]
pub(crate) struct OffsetMap(BTreeMap<String, BTreeMap<String, BTreeMap<u32, u64>>>);

impl OffsetMap {
    pub fn get(&self, group: &str, topic: &str, partition: u32) -> Option<u64> {
        self.0.get(group)?.get(topic)?.get(&partition).copied()
    }

    fn insert(&mut self, group: &str, topic: &str, partition: u32, next: u64) {
        // Look up before inserting, so the common case (a known key) allocates nothing.
        if let Some(slot) = self
            .0
            .get_mut(group)
            .and_then(|t| t.get_mut(topic))
            .and_then(|p| p.get_mut(&partition))
        {
            *slot = next;
            return;
        }
        self.0
            .entry(group.to_string())
            .or_default()
            .entry(topic.to_string())
            .or_default()
            .insert(partition, next);
    }

    fn forget_topic(&mut self, topic: &str) {
        for topics in self.0.values_mut() {
            topics.remove(topic);
        }
        self.0.retain(|_, topics| !topics.is_empty());
    }

    /// Number of live (group, topic, partition) keys.
    fn len(&self) -> usize {
        self.0
            .values()
            .flat_map(|t| t.values())
            .map(BTreeMap::len)
            .sum()
    }

    /// Every key and offset, sorted.
    fn iter(&self) -> impl Iterator<Item = (&str, &str, u32, u64)> {
        self.0.iter().flat_map(|(g, topics)| {
            topics.iter().flat_map(move |(t, parts)| {
                parts
                    .iter()
                    .map(move |(p, n)| (g.as_str(), t.as_str(), *p, *n))
            })
        })
    }
}

/// The committed offsets as readers see them: only what is durable.
pub(crate) type SharedOffsets = Arc<RwLock<OffsetMap>>;

pub(crate) struct OffsetsJournal {
    ctx: Arc<Ctx>,
    dir: PathBuf,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    len: u64,
    entries: u64,
    /// Written only while the journal (which the store keeps under a mutex) is held, and
    /// only after the entries it reflects are durable.
    map: SharedOffsets,
}

/// One committed position: (topic, partition, next offset to consume).
pub type OffsetCommit<'a> = (&'a str, u32, u64);

enum Entry {
    Commit {
        group: String,
        topic: String,
        partition: u32,
        next: u64,
    },
    DeleteTopic(String),
}

fn put_str(b: &mut Vec<u8>, s: &str) -> Result<(), StoreError> {
    let n = u16::try_from(s.len()).map_err(|_| {
        StoreError::InvalidArgument(format!("name longer than 65535 bytes: {s:.40}…"))
    })?;
    b.extend_from_slice(&n.to_le_bytes());
    b.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Appends one framed commit entry to `b`.
fn encode_commit(
    b: &mut Vec<u8>,
    group: &str,
    topic: &str,
    partition: u32,
    next: u64,
) -> Result<(), StoreError> {
    let start = begin(b);
    b.push(KIND_COMMIT);
    put_str(b, group)?;
    put_str(b, topic)?;
    b.extend_from_slice(&partition.to_le_bytes());
    b.extend_from_slice(&next.to_le_bytes());
    finish(b, start)
}

/// Appends one framed topic-deleted entry to `b`.
fn encode_delete_topic(b: &mut Vec<u8>, topic: &str) -> Result<(), StoreError> {
    let start = begin(b);
    b.push(KIND_DELETE_TOPIC);
    put_str(b, topic)?;
    finish(b, start)
}

/// Reserves the length and CRC fields of an entry that starts at the end of `b`.
fn begin(b: &mut Vec<u8>) -> usize {
    let start = b.len();
    b.extend_from_slice(&[0u8; 8]);
    start
}

/// Fills in the length and CRC of the entry that starts at `start` and runs to the end.
fn finish(b: &mut [u8], start: usize) -> Result<(), StoreError> {
    let len = u32::try_from(b.len() - start - 4)
        .ok()
        .filter(|&n| n as usize <= MAX_ENTRY)
        .ok_or_else(|| StoreError::InvalidArgument("offset entry too large".into()))?;
    b[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&b[start + 8..]);
    b[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// A bounds-checked reader over one entry's body.
struct Body<'a>(&'a [u8]);
impl Body<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.0.len() {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn str(&mut self) -> Option<String> {
        let n = usize::from(u16::from_le_bytes(self.take(2)?.try_into().ok()?));
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// Decodes the entry at the start of `b`: `Ok((entry, size))`, or why it is bad.
fn decode(b: &[u8]) -> Result<(Entry, usize), String> {
    let head = b.get(..8).ok_or("torn entry header")?;
    let len = usize::try_from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]))
        .map_err(|_| "bad length")?;
    if !(1..=MAX_ENTRY).contains(&len) {
        return Err(format!("entry length {len} out of range"));
    }
    let whole = b
        .get(..4 + len)
        .ok_or("entry runs past the end of the file (torn write)")?;
    if len < 4
        || crc32c::crc32c(&whole[8..]) != u32::from_le_bytes([head[4], head[5], head[6], head[7]])
    {
        return Err("entry checksum (crc32c) mismatch".into());
    }
    let mut body = Body(&whole[8..]);
    let bad = || "malformed entry".to_string();
    let kind = body.take(1).ok_or_else(bad)?[0];
    let entry = match kind {
        KIND_COMMIT => {
            let group = body.str().ok_or_else(bad)?;
            let topic = body.str().ok_or_else(bad)?;
            let partition = u32::from_le_bytes(
                body.take(4)
                    .ok_or_else(bad)?
                    .try_into()
                    .map_err(|_| bad())?,
            );
            let next = u64::from_le_bytes(
                body.take(8)
                    .ok_or_else(bad)?
                    .try_into()
                    .map_err(|_| bad())?,
            );
            Entry::Commit {
                group,
                topic,
                partition,
                next,
            }
        }
        KIND_DELETE_TOPIC => Entry::DeleteTopic(body.str().ok_or_else(bad)?),
        k => return Err(format!("unknown entry kind {k}")),
    };
    if !body.0.is_empty() {
        return Err(bad());
    }
    Ok((entry, 4 + len))
}

fn apply(map: &mut OffsetMap, e: Entry) {
    match e {
        Entry::Commit {
            group,
            topic,
            partition,
            next,
        } => map.insert(&group, &topic, partition, next),
        Entry::DeleteTopic(topic) => map.forget_topic(&topic),
    }
}

impl OffsetsJournal {
    pub fn open(
        ctx: &Arc<Ctx>,
        dir: &Path,
        report: &mut RecoveryReport,
    ) -> Result<Self, StoreError> {
        let path = dir.join("offsets.log");
        let _ = std::fs::remove_file(dir.join("offsets.log.tmp"));
        let file = ctx
            .storage
            .open(&path, true)
            .map_err(|e| StoreError::io_at(&path, e))?;
        // The file may be new, or made by a run that stopped before syncing its name:
        // until the directory is synced, a power cut can take the file and its commits.
        ctx.storage
            .sync_dir(dir)
            .map_err(|e| StoreError::io_at(dir, e))?;
        let file_len = file.len().map_err(|e| StoreError::io_at(&path, e))?;
        let mut bytes = vec![
            0u8;
            usize::try_from(file_len).map_err(|_| StoreError::corrupt(
                &path,
                0,
                "journal too large"
            ))?
        ];
        io::read_exact_at(&*file, &mut bytes, 0).map_err(|e| StoreError::io_at(&path, e))?;
        let mut map = OffsetMap::default();
        let mut pos = 0usize;
        let mut entries = 0u64;
        while pos < bytes.len() {
            match decode(&bytes[pos..]) {
                Ok((e, n)) => {
                    apply(&mut map, e);
                    entries += 1;
                    pos += n;
                }
                Err(reason) => {
                    if let Some(p) = (pos + 1..bytes.len()).find(|&p| decode(&bytes[p..]).is_ok()) {
                        return Err(StoreError::corrupt(
                            &path,
                            pos as u64,
                            format!("{reason}, and a valid entry follows at byte {p}"),
                        ));
                    }
                    file.set_len(pos as u64)
                        .map_err(|e| StoreError::io_at(&path, e))?;
                    file.sync_data().map_err(|e| StoreError::io_at(&path, e))?;
                    report.truncated.push(Truncation {
                        file: path.clone(),
                        bytes_cut: (bytes.len() - pos) as u64,
                        reason,
                    });
                    break;
                }
            }
        }
        let mut j = OffsetsJournal {
            ctx: Arc::clone(ctx),
            dir: dir.to_path_buf(),
            path,
            file,
            len: pos as u64,
            entries,
            map: Arc::new(RwLock::new(map)),
        };
        if j.should_compact() {
            j.compact()?;
        }
        Ok(j)
    }

    /// The map readers look committed offsets up in.
    pub fn shared(&self) -> SharedOffsets {
        Arc::clone(&self.map)
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, OffsetMap> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, OffsetMap> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    fn should_compact(&self) -> bool {
        self.entries > 1024 && self.entries > 4 * self.read_map().len() as u64
    }

    /// Writes `count` framed entries with one write and, with `sync`, makes them durable
    /// with one `fdatasync`. On a failed write the tail is cut again; a failed sync
    /// poisons the store (the kernel may have dropped the pages).
    fn append(&mut self, b: &[u8], count: u64, sync: bool) -> Result<(), StoreError> {
        self.ctx.poison.check()?;
        if let Err(e) = self.file.write_at(b, self.len) {
            if self.file.set_len(self.len).is_err() {
                self.ctx.poison.set(format!(
                    "write to {} failed and could not be undone: {e}",
                    self.path.display()
                ));
            }
            return Err(StoreError::io_at(&self.path, e));
        }
        let synced = if sync { self.file.sync_data() } else { Ok(()) };
        if let Err(e) = synced {
            self.ctx
                .poison
                .set(format!("fdatasync of {} failed: {e}", self.path.display()));
            return self.ctx.poison.check();
        }
        self.len += b.len() as u64;
        self.entries += count;
        Ok(())
    }

    /// Records the next offsets of `group` for several partitions: every entry is
    /// written, then one `fdatasync` covers them all. Durable when it returns; readers
    /// see the new offsets only then.
    /// Journals `commits`; with `sync`, durably (one `fdatasync`).
    pub fn commit(
        &mut self,
        group: &str,
        commits: &[OffsetCommit<'_>],
        sync: bool,
    ) -> Result<(), StoreError> {
        if commits.is_empty() {
            return Ok(());
        }
        let mut b = Vec::with_capacity(commits.len() * (8 + 1 + 4 + group.len() + 32 + 12));
        for &(topic, partition, next) in commits {
            encode_commit(&mut b, group, topic, partition, next)?;
        }
        self.append(&b, commits.len() as u64, sync)?;
        {
            let mut map = self.write_map();
            for &(topic, partition, next) in commits {
                map.insert(group, topic, partition, next);
            }
        }
        if self.should_compact() {
            self.compact()?;
        }
        Ok(())
    }

    pub fn forget_topic(&mut self, topic: &str) -> Result<(), StoreError> {
        let mut b = Vec::new();
        encode_delete_topic(&mut b, topic)?;
        self.append(&b, 1, true)?;
        self.write_map().forget_topic(topic);
        Ok(())
    }

    /// Rewrites the journal with one entry per live key: write a temp file, fsync it,
    /// rename it over, fsync the directory.
    fn compact(&mut self) -> Result<(), StoreError> {
        let tmp = self.dir.join("offsets.log.tmp");
        let mut b = Vec::new();
        let live = {
            let map = self.read_map();
            for (group, topic, partition, next) in map.iter() {
                encode_commit(&mut b, group, topic, partition, next)?;
            }
            map.len()
        };
        let storage = &self.ctx.storage;
        let f = storage
            .open(&tmp, true)
            .map_err(|e| StoreError::io_at(&tmp, e))?;
        f.set_len(0).map_err(|e| StoreError::io_at(&tmp, e))?;
        f.write_at(&b, 0).map_err(|e| StoreError::io_at(&tmp, e))?;
        f.sync_data().map_err(|e| StoreError::io_at(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| StoreError::io_at(&self.path, e))?;
        storage
            .sync_dir(&self.dir)
            .map_err(|e| StoreError::io_at(&self.dir, e))?;
        self.file = f;
        self.len = b.len() as u64;
        self.entries = live as u64;
        Ok(())
    }
}
