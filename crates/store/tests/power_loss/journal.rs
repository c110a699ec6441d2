//! The shared journal's path cut at every one of its crash points: appends to many
//! partitions acknowledged together (segment writes, the journal's write and its one
//! sync), checkpoints (the new journal file, the segment syncs, the old file's
//! deletion), and the replay of a journal into segments that lost their unsynced
//! writes, itself cut at each of its steps and replayed again.

use bytes::Bytes;
use millrace_store::{Durability, Pending, Record, Store, StoreError};

use super::crash_points::{Log, cut_and_check, reboot_and_check};
use crate::common::power_loss::{PowerLoss, Tear};
use crate::value;

const PARTITIONS: u32 = 6;

/// Appends each batch to its partition of `topic` and waits for all of them at once
/// (one group commit), noting what was written and, once durable, acknowledged.
pub(super) fn append_together(
    log: &mut Log,
    store: &Store,
    topic: &str,
    batches: &[(u32, Vec<Record>)],
) -> Result<(), StoreError> {
    let t = store.topic(topic)?;
    let mut pending = Pending::default();
    let mut ends = Vec::new();
    for (p, records) in batches {
        log.written
            .entry((topic.to_string(), *p))
            .or_default()
            .extend_from_slice(records);
        let base = t
            .partition(*p)?
            .append_pending(records.iter().map(Record::as_ref), &mut pending)?;
        ends.push((*p, base + records.len() as u64));
    }
    pending.wait()?;
    for (p, end) in ends {
        log.acked.insert((topic.to_string(), p), end);
    }
    Ok(())
}

/// `rounds` appends to most of the partitions of a durability=batch topic at once
/// (segments small enough to roll), a commit every fourth, a checkpoint where
/// `checkpoint_after` says.
fn rounds(
    store: &Store,
    log: &mut Log,
    rounds: u64,
    checkpoint_after: impl Fn(u64) -> bool,
) -> Result<(), StoreError> {
    log.create(store, "j", PARTITIONS, Durability::Batch, 400)?;
    let mut n = 0;
    for i in 0..rounds {
        let batches: Vec<(u32, Vec<Record>)> = (0..PARTITIONS)
            .filter(|p| (u64::from(*p) + i) % 3 != 0)
            .map(|p| {
                let records: Vec<Record> = (0..1 + (i + u64::from(p)) % 3)
                    .map(|k| value("j", n + k))
                    .collect();
                n += records.len() as u64;
                (p, records)
            })
            .collect();
        append_together(log, store, "j", &batches)?;
        if i % 4 == 1 {
            log.commit(store, "g", "j", &[0, 1, 2])?;
        }
        if checkpoint_after(i) {
            store.checkpoint()?;
        }
    }
    Ok(())
}

pub(super) fn checkpointing_workload(store: &Store, log: &mut Log) -> Result<(), StoreError> {
    rounds(store, log, 12, |i| i % 5 == 4)
}

#[test]
fn appends_to_many_partitions_and_checkpoints_survive_a_power_cut_at_every_crash_point() {
    let total = cut_and_check(None, Tear::Nothing, checkpointing_workload);
    assert!(total > 100, "the workload has {total} crash points");
    for op in 0..=total {
        for tear in [Tear::Nothing, Tear::Random] {
            cut_and_check(Some(op), tear, checkpointing_workload);
        }
    }
    eprintln!("journal: {} crash points, each cut twice", total + 1);
}

/// Appends (one checkpoint early on, so segments hold part of what the journal holds),
/// then a cut that loses every unsynced segment write: only the journal keeps the
/// acknowledged records. The open after the reboot replays it, cut at op `replay_cut`
/// (or not cut); the open after that must find everything acknowledged. Returns the
/// ops the uncut replay took.
fn cut_during_replay(replay_cut: Option<u64>, tear: Tear) -> u64 {
    let layer = PowerLoss::with_store(replay_cut.unwrap_or(0) * 104_729 + 3);
    let mut log = Log::default();
    {
        let (store, _) = layer.open().expect("open");
        rounds(&store, &mut log, 10, |i| i == 2).expect("the workload runs through");
        // Before the store closes, whose last checkpoint would leave nothing to replay.
        layer.cut();
    }
    layer.reboot();
    layer.set_tear(tear);
    let what = format!("replay cut at op {replay_cut:?} ({tear:?})");
    if let Some(op) = replay_cut {
        layer.cut_at(op);
    }
    let replay_ops = match layer.open() {
        Ok((store, report)) => {
            let ops = layer.ops();
            if replay_cut.is_none() {
                assert!(
                    report.replayed_records > 0,
                    "{what}: the segments lost nothing, so the test shows nothing: {report}"
                );
                log.check(&store, &format!("{what}, the replaying open"));
            }
            layer.cut();
            ops
        }
        Err(e) => {
            assert!(layer.is_cut(), "{what}: the open failed with no cut: {e}");
            layer.ops()
        }
    };
    reboot_and_check(&layer, &log, &what);
    replay_ops
}

#[test]
fn a_replay_cut_at_any_step_is_replayed_again_to_the_same_end() {
    let total = cut_during_replay(None, Tear::Nothing);
    assert!(total > 10, "the replay has {total} crash points");
    for op in 0..=total {
        for tear in [Tear::Nothing, Tear::Random] {
            cut_during_replay(Some(op), tear);
        }
    }
    eprintln!("journal replay: {} crash points, each cut twice", total + 1);
}

/// A journal entry whose bytes a crash garbled in the middle of a synced file (not a
/// torn tail) fails the open with a clear error naming the journal, and panics nowhere.
#[test]
fn a_journal_entry_garbled_mid_file_fails_the_open_with_a_clear_error() {
    let layer = PowerLoss::with_store(11);
    let mut log = Log::default();
    {
        let (store, _) = layer.open().expect("open");
        rounds(&store, &mut log, 6, |_| false).expect("the workload runs through");
        layer.cut();
    }
    layer.reboot();
    let dir = layer.dir().join("journal");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let file = files
        .iter()
        .find(|f| std::fs::metadata(f).unwrap().len() > 200)
        .expect("a journal file with entries");
    let mut bytes = std::fs::read(file).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid..mid + 8].copy_from_slice(&Bytes::from_static(b"garbage!"));
    std::fs::write(file, &bytes).unwrap();
    let Err(err) = layer.open() else {
        panic!("the open succeeds on a garbled journal")
    };
    let text = err.to_string();
    assert!(text.contains("journal"), "{text}");
}
