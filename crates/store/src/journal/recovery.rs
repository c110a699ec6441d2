//! Recovery from the journal, on open: read every journal file (oldest first), note per
//! partition the first offset the journal holds (so the partition's own recovery knows
//! which part of its active segment the journal can restore), then replay each entry
//! into its partition's segment where the segment does not have it yet.
//!
//! What a crash can leave, and what recovery does with it:
//! - the active file's tail after its last sync: torn or partly written entries, cut
//!   (reported) — no entry there was acknowledged, and everything before it was synced;
//! - bad bytes with a valid entry after them in the same file, or in any later file (a
//!   file is synced whole before the next one takes entries): acknowledged entries may
//!   be among them, so the open fails with `Corrupt`, naming the file and position;
//! - a segment that lacks entries the journal holds (its writes were in the page cache
//!   only): the entries are written to it, from the segment's end on;
//! - a segment that has records the journal lacks: kept (written before the crash;
//!   never acknowledged unless an older, retired file held them);
//! - an entry that starts past its partition's end: records in between are missing from
//!   both, which a sync that completed rules out, so the open fails with `Corrupt`;
//! - entries of topics that no longer exist (deleted, or never made durable): skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::reader::{self, FileScan};
use crate::error::StoreError;
use crate::io::Storage;
use crate::partition::Partition;
use crate::recovery::{RecoveryReport, Truncation};
use crate::segment::{read_index, write_index};

/// The partitions that entries may go to, by (topic id, partition).
pub(crate) type PartitionMap = HashMap<(u64, u32), Arc<Partition>>;

/// A journal file found on open.
pub(crate) struct OldFile {
    pub id: u64,
    pub path: PathBuf,
    scan: FileScan,
}

/// What the journal files found on open hold.
#[derive(Default)]
pub(crate) struct Recovered {
    /// Oldest first.
    pub files: Vec<OldFile>,
    /// Per (topic id, partition): the first offset the journal holds.
    pub first: HashMap<(u64, u32), u64>,
}

impl Recovered {
    /// The first offset the journal holds for `topic_id`/`partition`: from there on its
    /// segment may be cut freely, the journal restoring whatever was acknowledged.
    pub fn first_offset(&self, topic_id: u64, partition: u32) -> Option<u64> {
        self.first.get(&(topic_id, partition)).copied()
    }
}

/// The journal files in `dir`, by id, oldest first. Other names are left alone.
fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| StoreError::io_at(dir, e))? {
        let e = e.map_err(|e| StoreError::io_at(dir, e))?;
        let name = e.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            files.push((id, e.path()));
        }
    }
    files.sort_unstable();
    Ok(files)
}

/// Reads every journal file in `dir`, checking every entry, and decides where each
/// file's good part ends (see the module's rules). Cuts are reported; nothing is
/// changed on disk.
pub(crate) fn scan(
    storage: &dyn Storage,
    dir: &Path,
    report: &mut RecoveryReport,
) -> Result<Recovered, StoreError> {
    let mut found = Recovered::default();
    // Damaged spots, waiting to learn whether any later file holds entries.
    let mut torn: Vec<(PathBuf, u64, u64, String)> = Vec::new();
    for (id, path) in list(dir)? {
        let file = storage
            .open(&path, false)
            .map_err(|e| StoreError::io_at(&path, e))?;
        let mut entries = 0u64;
        let scan = reader::read_entries(&*file, &path, id, |_, head, _| {
            found
                .first
                .entry((head.topic_id, head.partition))
                .or_insert(head.batch.base_offset);
            entries += 1;
            Ok(())
        })?;
        if entries > 0
            && let Some((bad_file, pos, _, reason)) = torn.pop()
        {
            return Err(StoreError::corrupt(
                bad_file,
                pos,
                format!(
                    "{reason}, and the later journal file {} holds entries",
                    path.display()
                ),
            ));
        }
        if let Some((pos, reason)) = &scan.bad {
            if let Some(p) = reader::valid_entry_after(&*file, &path, *pos, scan.file_len)? {
                return Err(StoreError::corrupt(
                    &path,
                    *pos,
                    format!(
                        "{reason}, and a valid entry follows at byte {p}: refusing to drop \
                         acknowledged records"
                    ),
                ));
            }
            torn.push((path.clone(), *pos, scan.file_len - pos, reason.clone()));
        }
        found.files.push(OldFile { id, path, scan });
    }
    for (file, pos, bytes_cut, reason) in torn.into_iter().filter(|t| t.2 > 0) {
        tracing::warn!(file = %file.display(), bytes = bytes_cut, %reason, "recovery cut the journal's torn tail");
        report.truncated.push(Truncation {
            file,
            bytes_cut,
            reason: format!("{reason} at byte {pos}"),
        });
    }
    Ok(found)
}

/// Writes every entry of `found` that its partition's segment lacks; returns the
/// partitions written to (their segments need a sync).
pub(crate) fn replay(
    found: &Recovered,
    storage: &dyn Storage,
    partitions: &PartitionMap,
    report: &mut RecoveryReport,
) -> Result<Vec<Arc<Partition>>, StoreError> {
    let mut written: HashMap<(u64, u32), Arc<Partition>> = HashMap::new();
    for f in &found.files {
        let file = storage
            .open(&f.path, false)
            .map_err(|e| StoreError::io_at(&f.path, e))?;
        reader::read_entries(&*file, &f.path, f.id, |pos, head, batch| {
            if pos >= f.scan.valid_len {
                return Ok(());
            }
            let key = (head.topic_id, head.partition);
            let Some(p) = partitions.get(&key) else {
                return Ok(());
            };
            if write_entry(p, head, batch, &f.path, pos)? {
                report.replayed_records += u64::from(head.batch.record_count);
                written.entry(key).or_insert_with(|| Arc::clone(p));
            }
            Ok(())
        })?;
    }
    Ok(written.into_values().collect())
}

/// Writes one entry's batch at the end of `p`'s active segment if the partition ends
/// where it starts; skips it if the partition has it already.
fn write_entry(
    p: &Partition,
    head: &super::entry::EntryHead,
    batch: &[u8],
    journal: &Path,
    pos: u64,
) -> Result<bool, StoreError> {
    let mut w = p.writer.lock().unwrap_or_else(|e| e.into_inner());
    let (base, next) = (head.batch.base_offset, head.batch.next_offset());
    if next <= w.next_offset {
        return Ok(false);
    }
    if base != w.next_offset {
        return Err(StoreError::corrupt(
            journal,
            pos,
            format!(
                "the journal holds offsets {base}..{next} of {}/{}, which ends at offset {}: \
                 records in between are missing",
                p.topic, p.id, w.next_offset
            ),
        ));
    }
    let seg = Arc::clone(&w.active);
    let at = read_index(&seg).len;
    // Into the segment's tail: the replay's sync writes each partition's out at once.
    seg.tail
        .append(batch, at, true)
        .map_err(|e| StoreError::io_at(&seg.path, e))?;
    write_index(&seg).add(at, &head.batch);
    w.next_offset = next;
    let mut s = p.committer.lock();
    s.written_end = next;
    p.committer.publish(&mut s, next);
    Ok(true)
}
