//! Committed consumer-group offsets: an append-only journal (`offsets.log`), one
//! CRC-framed entry per committed partition (bytes in `entry`). A commit of several
//! partitions writes all of their entries with one write and one `fdatasync`, before the
//! commit returns. Deleting a partition's offset or a whole group's is an entry too.
//! Replayed on open (last entry wins) and compacted when it holds many more entries than
//! live keys. Format in `docs/format.md`.
//!
//! The offsets a reader sees live in a [`SharedOffsets`] map beside the journal: it is
//! updated only once the entries are durable, and reading it never waits for a sync.

mod entry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::error::StoreError;
use crate::io::{self, StorageFile};
use crate::recovery::{RecoveryReport, Truncation};
use crate::store::Ctx;
use entry::{DecodeError, Entry};

/// A group's committed position in one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will consume.
    pub next: u64,
    /// The string the committing client attached (Kafka's commit metadata); empty when
    /// it gave none.
    pub metadata: String,
}

/// group → topic → partition → committed offset. Nested so that a lookup borrows the
/// names instead of building an owned key.
#[derive(Default)]
pub(crate) struct OffsetMap(BTreeMap<String, BTreeMap<String, BTreeMap<u32, CommittedOffset>>>);

impl OffsetMap {
    pub fn get(&self, group: &str, topic: &str, partition: u32) -> Option<&CommittedOffset> {
        self.0.get(group)?.get(topic)?.get(&partition)
    }

    fn insert(&mut self, group: &str, topic: &str, partition: u32, next: u64, metadata: &str) {
        // Look up before inserting, so the common case (a known key, no metadata)
        // allocates nothing.
        if let Some(slot) = self
            .0
            .get_mut(group)
            .and_then(|t| t.get_mut(topic))
            .and_then(|p| p.get_mut(&partition))
        {
            slot.next = next;
            if slot.metadata != metadata {
                slot.metadata = metadata.to_string();
            }
            return;
        }
        self.0
            .entry(group.to_string())
            .or_default()
            .entry(topic.to_string())
            .or_default()
            .insert(
                partition,
                CommittedOffset {
                    next,
                    metadata: metadata.to_string(),
                },
            );
    }

    fn remove(&mut self, group: &str, topic: &str, partition: u32) {
        let Some(topics) = self.0.get_mut(group) else {
            return;
        };
        if let Some(parts) = topics.get_mut(topic) {
            parts.remove(&partition);
            if parts.is_empty() {
                topics.remove(topic);
            }
        }
        if topics.is_empty() {
            self.0.remove(group);
        }
    }

    fn forget_topic(&mut self, topic: &str) {
        for topics in self.0.values_mut() {
            topics.remove(topic);
        }
        self.0.retain(|_, topics| !topics.is_empty());
    }

    fn forget_group(&mut self, group: &str) -> bool {
        self.0.remove(group).is_some()
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
    fn iter(&self) -> impl Iterator<Item = (&str, &str, u32, &CommittedOffset)> {
        self.0
            .keys()
            .flat_map(|g| self.group(g).map(move |(t, p, c)| (g.as_str(), t, p, c)))
    }

    /// Every offset `group` has committed, sorted by topic and partition.
    pub fn group(&self, group: &str) -> impl Iterator<Item = (&str, u32, &CommittedOffset)> {
        self.0.get(group).into_iter().flat_map(|topics| {
            topics
                .iter()
                .flat_map(|(t, parts)| parts.iter().map(move |(p, c)| (t.as_str(), *p, c)))
        })
    }

    /// The groups with at least one committed offset, sorted.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
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

/// One committed position with the string the client attached to it, as Kafka's
/// OffsetCommit carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetCommitWithMetadata<'a> {
    pub topic: &'a str,
    pub partition: u32,
    /// The next offset to consume.
    pub next: u64,
    /// Empty for none; at most a few KiB (the whole entry is limited to 64 KiB).
    pub metadata: &'a str,
}

fn apply(map: &mut OffsetMap, e: Entry) {
    match e {
        Entry::Commit {
            group,
            topic,
            partition,
            next,
            metadata,
        } => map.insert(&group, &topic, partition, next, &metadata),
        Entry::DeleteTopic(topic) => map.forget_topic(&topic),
        Entry::DeleteOffset {
            group,
            topic,
            partition,
        } => map.remove(&group, &topic, partition),
        Entry::DeleteGroup(group) => {
            map.forget_group(&group);
        }
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
            match entry::decode(&bytes[pos..]) {
                Ok((e, n)) => {
                    apply(&mut map, e);
                    entries += 1;
                    pos += n;
                }
                Err(DecodeError::UnknownKind(kind)) => {
                    return Err(StoreError::corrupt(
                        &path,
                        pos as u64,
                        format!(
                            "entry of kind {kind}, which this version of millrace does not \
                             know (written by a newer version?)"
                        ),
                    ));
                }
                Err(DecodeError::Bad(reason)) => {
                    if let Some(p) =
                        (pos + 1..bytes.len()).find(|&p| entry::decode(&bytes[p..]).is_ok())
                    {
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

    /// Records the next offsets of `group` for several partitions, given as
    /// `(topic, partition, next, metadata)`: every entry is written with one write, then
    /// with `sync` one `fdatasync` covers them all. Readers see the new offsets only once
    /// it returns.
    pub fn commit<'a, I>(&mut self, group: &str, commits: I, sync: bool) -> Result<(), StoreError>
    where
        I: Iterator<Item = (&'a str, u32, u64, &'a str)> + Clone,
    {
        let mut b = Vec::new();
        let mut count = 0u64;
        for (topic, partition, next, metadata) in commits.clone() {
            entry::encode_commit(&mut b, group, topic, partition, next, metadata)?;
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        self.append(&b, count, sync)?;
        {
            let mut map = self.write_map();
            for (topic, partition, next, metadata) in commits {
                map.insert(group, topic, partition, next, metadata);
            }
        }
        self.compact_if_due()
    }

    pub fn forget_topic(&mut self, topic: &str) -> Result<(), StoreError> {
        let mut b = Vec::new();
        entry::encode_delete_topic(&mut b, topic)?;
        self.append(&b, 1, true)?;
        self.write_map().forget_topic(topic);
        Ok(())
    }

    /// Deletes the offsets `group` committed for `partitions` (topic, partition), durably;
    /// returns how many there were. Partitions without one write nothing.
    pub fn delete_offsets(
        &mut self,
        group: &str,
        partitions: &[(&str, u32)],
    ) -> Result<usize, StoreError> {
        let mut b = Vec::new();
        let mut doomed = Vec::new();
        {
            let map = self.read_map();
            for &(topic, partition) in partitions {
                if map.get(group, topic, partition).is_some()
                    && !doomed.contains(&(topic, partition))
                {
                    entry::encode_delete_offset(&mut b, group, topic, partition)?;
                    doomed.push((topic, partition));
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        self.append(&b, doomed.len() as u64, true)?;
        {
            let mut map = self.write_map();
            for &(topic, partition) in &doomed {
                map.remove(group, topic, partition);
            }
        }
        self.compact_if_due()?;
        Ok(doomed.len())
    }

    /// Deletes every offset of `group` with one durable entry; whether it had any.
    pub fn delete_group(&mut self, group: &str) -> Result<bool, StoreError> {
        if self.read_map().group(group).next().is_none() {
            return Ok(false);
        }
        let mut b = Vec::new();
        entry::encode_delete_group(&mut b, group)?;
        self.append(&b, 1, true)?;
        self.write_map().forget_group(group);
        self.compact_if_due()?;
        Ok(true)
    }

    fn compact_if_due(&mut self) -> Result<(), StoreError> {
        if self.should_compact() {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the journal with one entry per live key: write a temp file, fsync it,
    /// rename it over, fsync the directory.
    fn compact(&mut self) -> Result<(), StoreError> {
        let tmp = self.dir.join("offsets.log.tmp");
        let mut b = Vec::new();
        let live = {
            let map = self.read_map();
            for (group, topic, partition, c) in map.iter() {
                entry::encode_commit(&mut b, group, topic, partition, c.next, &c.metadata)?;
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
