//! Opening a partition after a clean or unclean shutdown: find its segments, check them,
//! cut a torn tail (and say so), refuse a corrupt middle. The journal's replay
//! (`journal::recovery`) then restores what the active segment lacks.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::TopicConfig;
use crate::durability::{Committer, Wake};
use crate::error::StoreError;
use crate::index::SegmentIndex;
use crate::partition::{Partition, Writer};
use crate::segment::{self, Segment};
use crate::store::Ctx;
use crate::tail::Tail;

/// One cut made by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub file: PathBuf,
    pub bytes_cut: u64,
    pub reason: String,
}

/// What recovery did on open. Empty after a clean shutdown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub truncated: Vec<Truncation>,
    /// Records the journal restored to segments that lacked them (written before the
    /// crash to the page cache only). Restoring loses nothing, so it is not a repair
    /// for [`is_clean`](Self::is_clean).
    pub replayed_records: u64,
}

impl RecoveryReport {
    /// Whether nothing was cut.
    pub fn is_clean(&self) -> bool {
        self.truncated.is_empty()
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.truncated.is_empty() && self.replayed_records == 0 {
            return f.write_str("recovery: nothing to repair");
        }
        if self.replayed_records > 0 {
            write!(
                f,
                "recovery: the journal restored {} records to their segments",
                self.replayed_records
            )?;
        }
        for (i, t) in self.truncated.iter().enumerate() {
            if i > 0 || self.replayed_records > 0 {
                f.write_str("\n")?;
            }
            write!(
                f,
                "recovery: cut {} bytes from the end of {} ({}); records there were never acknowledged",
                t.bytes_cut,
                t.file.display(),
                t.reason
            )?;
        }
        Ok(())
    }
}

/// Base offsets of the `.log` files in a partition directory, sorted. Removes orphan
/// `.index` files (their segment was deleted by retention mid-way).
fn list_segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut bases = Vec::new();
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io_at(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io_at(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".log") {
            if let Ok(base) = stem.parse::<u64>() {
                bases.push(base);
            }
        } else if let Some(stem) = name.strip_suffix(".index")
            && let Ok(base) = stem.parse::<u64>()
        {
            indexes.push(base);
        }
    }
    bases.sort_unstable();
    for ix in indexes {
        if bases.binary_search(&ix).is_err() {
            let p = dir.join(segment::log_file_name(ix)).with_extension("index");
            std::fs::remove_file(&p).map_err(|e| StoreError::io_at(&p, e))?;
        }
    }
    Ok(bases)
}

/// Opens (and if needed repairs) one partition directory. `journal_from` is the first
/// offset the journal holds for it: a bad batch at or past it may be cut even with
/// valid batches after it, since everything acknowledged from there on is in the
/// journal (those batches were written but never made durable).
#[allow(clippy::too_many_arguments)] // One call site each in topic loading and growth.
pub(crate) fn open_partition(
    ctx: &Arc<Ctx>,
    topic: &str,
    topic_id: u64,
    id: u32,
    dir: PathBuf,
    config: &TopicConfig,
    journal_from: Option<u64>,
    report: &mut RecoveryReport,
) -> Result<Partition, StoreError> {
    let storage = &ctx.storage;
    let interval = ctx.index_interval;
    let mut bases = list_segments(&dir)?;
    if bases.is_empty() {
        bases.push(0);
        storage
            .open(&dir.join(segment::log_file_name(0)), true)
            .map_err(|e| StoreError::io_at(&dir, e))?;
        storage
            .sync_dir(&dir)
            .map_err(|e| StoreError::io_at(&dir, e))?;
    }

    // Empty trailing segments come from a crash right after a roll; the segment before
    // them is then the real tail.
    while bases.len() > 1 {
        let Some(&last) = bases.last() else { break };
        let p = dir.join(segment::log_file_name(last));
        let len = std::fs::metadata(&p)
            .map_err(|e| StoreError::io_at(&p, e))?
            .len();
        if len > 0 {
            break;
        }
        std::fs::remove_file(&p).map_err(|e| StoreError::io_at(&p, e))?;
        let _ = std::fs::remove_file(segment::index_path(&p));
        storage
            .sync_dir(&dir)
            .map_err(|e| StoreError::io_at(&dir, e))?;
        bases.pop();
    }

    let mut segments = Vec::with_capacity(bases.len());
    let mut expected: Option<u64> = None;
    let last_i = bases.len() - 1;
    for (i, &base) in bases.iter().enumerate() {
        let path = dir.join(segment::log_file_name(base));
        if let Some(exp) = expected
            && exp != base
        {
            return Err(StoreError::corrupt(
                &path,
                0,
                format!(
                    "segment starts at offset {base} but the previous segment ends at offset {exp} (missing segment?)"
                ),
            ));
        }
        let file = storage
            .open(&path, false)
            .map_err(|e| StoreError::io_at(&path, e))?;
        let file_len = file.len().map_err(|e| StoreError::io_at(&path, e))?;
        let index = if i < last_i {
            // Sealed: trust a whole index that matches the file; otherwise rescan.
            let ix_path = segment::index_path(&path);
            let from_file = std::fs::read(&ix_path)
                .ok()
                .and_then(|b| SegmentIndex::decode(&b, base, interval))
                .filter(|ix| ix.len == file_len);
            match from_file {
                Some(ix) => ix,
                None => {
                    let scan = segment::scan(&*file, &path, base, interval)?;
                    if let Some((pos, reason)) = scan.bad {
                        // Later segments hold data, so this is never a tail.
                        return Err(StoreError::corrupt(&path, pos, reason));
                    }
                    scan.index
                }
            }
        } else {
            let scan = segment::scan(&*file, &path, base, interval)?;
            if let Some((pos, reason)) = scan.bad {
                let next = scan.index.next_offset;
                let journaled = journal_from.is_some_and(|from| from <= next);
                let valid_after = if journaled {
                    None
                } else {
                    segment::valid_batch_after(&*file, &path, pos, scan.file_len, next)?
                };
                if let Some(p) = valid_after {
                    return Err(StoreError::corrupt(
                        &path,
                        pos,
                        format!(
                            "{reason}, and a valid batch follows at byte {p}: refusing to drop acknowledged records"
                        ),
                    ));
                }
                file.set_len(pos).map_err(|e| StoreError::io_at(&path, e))?;
                tracing::warn!(file = %path.display(), bytes = scan.file_len - pos, %reason, "recovery cut a torn tail");
                let reason = if journaled {
                    format!("{reason}; the journal restores what it holds from offset {next}")
                } else {
                    reason
                };
                report.truncated.push(Truncation {
                    file: path.clone(),
                    bytes_cut: scan.file_len - pos,
                    reason,
                });
            }
            // Whatever a reader can now see must be durable, even if the last writer
            // crashed before its fsync.
            file.sync_data().map_err(|e| StoreError::io_at(&path, e))?;
            scan.index
        };
        expected = Some(index.next_offset);
        let tail = Tail::new(file, &path, index.len, Arc::clone(&ctx.budget));
        segments.push(Arc::new(Segment {
            base_offset: base,
            path,
            tail,
            index: RwLock::new(index),
        }));
    }

    let active = Arc::clone(&segments[last_i]);
    let end = segment::read_index(&active).next_offset;
    // A start recorded by DeleteRecords counts when it is inside the log; one past the
    // end (the tail it pointed into was cut as torn) is held at the end.
    let start = match crate::log_start::read(&dir)? {
        Some(s) => s.clamp(segments[0].base_offset, end),
        None => segments[0].base_offset,
    };
    let wake = Wake {
        slot: Arc::clone(&ctx.listener),
        topic: Arc::from(topic),
        partition: id,
    };
    let committer = Arc::new(Committer::new(end, Arc::clone(&active.tail), wake));
    Ok(Partition {
        topic: topic.to_string(),
        topic_id,
        id,
        dir,
        config: RwLock::new(config.clone()),
        ctx: Arc::clone(ctx),
        writer: Mutex::new(Writer {
            active,
            next_offset: end,
        }),
        segments: RwLock::new(segments),
        committer,
        start_offset: AtomicU64::new(start),
        deleted: AtomicBool::new(false),
    })
}
