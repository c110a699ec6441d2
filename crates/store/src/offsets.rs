//! Committed consumer-group offsets: an append-only journal (`offsets.log`), one
//! CRC-framed entry per commit, `fdatasync`ed before the commit returns. Replayed on
//! open (last entry wins) and compacted when it holds many more entries than live keys.
//! Format in `docs/format.md`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::StoreError;
use crate::io::{self, StorageFile};
use crate::recovery::{RecoveryReport, Truncation};
use crate::store::Ctx;

const KIND_COMMIT: u8 = 1;
const KIND_DELETE_TOPIC: u8 = 2;
const MAX_ENTRY: usize = 64 * 1024;

/// (group, topic, partition) → next offset to consume.
pub(crate) type OffsetMap = HashMap<(String, String, u32), u64>;

pub(crate) struct OffsetsJournal {
    ctx: Arc<Ctx>,
    dir: PathBuf,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    len: u64,
    entries: u64,
    pub map: OffsetMap,
}

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

fn encode(entry: &Entry) -> Result<Vec<u8>, StoreError> {
    let mut b = vec![0u8; 8];
    match entry {
        Entry::Commit {
            group,
            topic,
            partition,
            next,
        } => {
            b.push(KIND_COMMIT);
            put_str(&mut b, group)?;
            put_str(&mut b, topic)?;
            b.extend_from_slice(&partition.to_le_bytes());
            b.extend_from_slice(&next.to_le_bytes());
        }
        Entry::DeleteTopic(topic) => {
            b.push(KIND_DELETE_TOPIC);
            put_str(&mut b, topic)?;
        }
    }
    let len = u32::try_from(b.len() - 4)
        .map_err(|_| StoreError::InvalidArgument("offset entry too large".into()))?;
    b[0..4].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&b[8..]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(b)
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
        } => {
            map.insert((group, topic, partition), next);
        }
        Entry::DeleteTopic(topic) => map.retain(|k, _| k.1 != topic),
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
        let mut map = OffsetMap::new();
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
            map,
        };
        if j.should_compact() {
            j.compact()?;
        }
        Ok(j)
    }

    fn should_compact(&self) -> bool {
        self.entries > 1024 && self.entries > 4 * self.map.len() as u64
    }

    fn append(&mut self, entry: &Entry) -> Result<(), StoreError> {
        self.ctx.poison.check()?;
        let b = encode(entry)?;
        if let Err(e) = self.file.write_at(&b, self.len) {
            if self.file.set_len(self.len).is_err() {
                self.ctx.poison.set(format!(
                    "write to {} failed and could not be undone: {e}",
                    self.path.display()
                ));
            }
            return Err(StoreError::io_at(&self.path, e));
        }
        if let Err(e) = self.file.sync_data() {
            self.ctx
                .poison
                .set(format!("fdatasync of {} failed: {e}", self.path.display()));
            return self.ctx.poison.check();
        }
        self.len += b.len() as u64;
        self.entries += 1;
        Ok(())
    }

    pub fn commit(
        &mut self,
        group: &str,
        topic: &str,
        partition: u32,
        next: u64,
    ) -> Result<(), StoreError> {
        let e = Entry::Commit {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
            next,
        };
        self.append(&e)?;
        self.map
            .insert((group.to_string(), topic.to_string(), partition), next);
        if self.should_compact() {
            self.compact()?;
        }
        Ok(())
    }

    pub fn forget_topic(&mut self, topic: &str) -> Result<(), StoreError> {
        self.append(&Entry::DeleteTopic(topic.to_string()))?;
        self.map.retain(|k, _| k.1 != topic);
        Ok(())
    }

    /// Rewrites the journal with one entry per live key: write a temp file, fsync it,
    /// rename it over, fsync the directory.
    fn compact(&mut self) -> Result<(), StoreError> {
        let tmp = self.dir.join("offsets.log.tmp");
        let mut b = Vec::new();
        let mut keys: Vec<_> = self.map.iter().collect();
        keys.sort();
        for ((group, topic, partition), next) in keys {
            b.extend(encode(&Entry::Commit {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
                next: *next,
            })?);
        }
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
        self.entries = self.map.len() as u64;
        Ok(())
    }
}
