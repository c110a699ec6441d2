//! Segments written behind the journal: appends land in each partition's tail buffer
//! and reach the segment file later, together. A cut while bytes are buffered, a cut in
//! the middle of a buffer's write, and a checkpoint after buffered appends must each
//! keep every acknowledged record.

use millrace_store::{Durability, Record, Store, StoreError};

use super::crash_points::{Log, batch_workload, cut_and_check_buffered, reboot_and_check};
use super::journal::{append_together, checkpointing_workload};
use crate::common::power_loss::{PowerLoss, Tear};
use crate::value;

const PARTITIONS: u32 = 20;

/// Rounds of appends to every partition of "w", acknowledged together.
fn appends(store: &Store, log: &mut Log, rounds: u64) -> Result<(), StoreError> {
    let mut n = 0;
    for _ in 0..rounds {
        let batches: Vec<(u32, Vec<Record>)> = (0..PARTITIONS)
            .map(|p| {
                let records = vec![value("w", n), value("w", n + 1)];
                n += 2;
                (p, records)
            })
            .collect();
        append_together(log, store, "w", &batches)?;
    }
    Ok(())
}

/// The real length of each partition's first segment file of "w" now.
fn segment_lengths(layer: &PowerLoss) -> Vec<u64> {
    (0..PARTITIONS)
        .map(|p| {
            let path = layer.dir().join(format!("topics/w/{p}/{:020}.log", 0));
            std::fs::metadata(&path).unwrap().len()
        })
        .collect()
}

#[test]
fn acknowledged_appends_still_buffered_survive_a_cut_through_the_journal() {
    let layer = PowerLoss::with_store(11);
    let mut log = Log::default();
    {
        let (store, _) = layer.open().unwrap();
        log.create(&store, "w", PARTITIONS, Durability::Batch, 1 << 20)
            .unwrap();
        appends(&store, &mut log, 5).unwrap();
        assert!(
            segment_lengths(&layer).iter().all(|&l| l == 0),
            "acknowledged appends wait in the tail buffers, not the segment files: {:?}",
            segment_lengths(&layer)
        );
        layer.cut();
    }
    layer.reboot();
    let (store, report) = layer.open().unwrap();
    assert_eq!(
        report.replayed_records,
        u64::from(PARTITIONS) * 10,
        "the journal restored every record: {report}"
    );
    log.check(&store, "a cut with every append buffered");
    drop(store);
    reboot_and_check(&layer, &log, "the reopen after the replay");
}

#[test]
fn a_checkpoint_writes_buffered_tails_before_the_journal_drops_them() {
    let layer = PowerLoss::with_store(12);
    let mut log = Log::default();
    {
        let (store, _) = layer.open().unwrap();
        log.create(&store, "w", PARTITIONS, Durability::Batch, 1 << 20)
            .unwrap();
        appends(&store, &mut log, 5).unwrap();
        store.checkpoint().unwrap();
        assert!(
            segment_lengths(&layer).iter().all(|&l| l > 0),
            "the checkpoint wrote every tail: {:?}",
            segment_lengths(&layer)
        );
        // Every unsynced byte is lost: what the checkpoint did not make durable is gone.
        layer.set_tear(Tear::Nothing);
        layer.cut();
    }
    layer.reboot();
    let (store, report) = layer.open().unwrap();
    assert_eq!(
        report.replayed_records, 0,
        "the journal was retired, so the segments alone hold the records: {report}"
    );
    log.check(&store, "a cut after a checkpoint");
}

/// Tail buffers of 150 bytes: a few batches each, so the workloads write buffers out
/// (and roll 300-byte segments) all along, and the cuts land before, in and after
/// those writes, torn or not.
const SMALL_BUFFER: usize = 150;

#[test]
fn small_buffers_cut_at_every_crash_point_keep_every_acknowledged_record() {
    for workload in [batch_workload, checkpointing_workload] {
        let total = cut_and_check_buffered(None, Tear::Nothing, workload, SMALL_BUFFER);
        assert!(total > 100, "the workload has {total} crash points");
        for op in 0..=total {
            for tear in [Tear::Nothing, Tear::Random] {
                cut_and_check_buffered(Some(op), tear, workload, SMALL_BUFFER);
            }
        }
        eprintln!("tail buffers: {} crash points, each cut twice", total + 1);
    }
}
