//! The committed-offsets journal across power cuts: compaction (a new file renamed
//! over the old, then the directory fsynced), a new data directory, a deleted topic.

use millrace_store::Store;

use crate::common::power_loss::{PowerLoss, Tear};
use crate::common::rec;
use crate::reopen;

/// Commits until one fails; returns (last acknowledged, last attempted).
fn commit_many(store: &Store, n: u64) -> (Option<u64>, u64) {
    let mut acked = None;
    for i in 1..=n {
        if store.commit_offset("g", "t", 0, i).is_err() {
            return (acked, i);
        }
        acked = Some(i);
    }
    (acked, n)
}

#[test]
fn compacting_the_offsets_journal_keeps_every_acknowledged_commit_at_every_crash_point() {
    const COMMITS: u64 = 1100;
    let prepare = |dir: &std::path::Path| {
        let (store, _) = Store::open(dir, Default::default()).unwrap();
        store.create_topic("t", 1, Default::default()).unwrap();
    };
    // Where compaction runs: the commit whose ops are more than a write and a sync.
    let layer = PowerLoss::after(1, prepare);
    let (store, _) = layer.open().unwrap();
    let mut compaction = None;
    for i in 1..=COMMITS {
        let before = layer.ops();
        store.commit_offset("g", "t", 0, i).unwrap();
        if layer.ops() - before > 2 {
            compaction = Some(before..layer.ops());
        }
    }
    let compaction = compaction.expect("the journal was compacted");
    drop(store);
    // Cuts during the compaction, and after it once a few commits went to the new file.
    for op in compaction.start..=compaction.end + 8 {
        for tear in [Tear::Nothing, Tear::Random] {
            let layer = PowerLoss::after(op, prepare);
            layer.set_tear(tear);
            let (store, _) = layer.open().unwrap();
            layer.cut_at(op);
            let (acked, attempted) = commit_many(&store, COMMITS);
            layer.cut();
            let store = reopen(&layer, store, "compaction");
            let got = store.committed_offset("g", "t", 0);
            assert!(
                got >= acked && got.unwrap_or(0) <= attempted,
                "cut at op {op} ({tear:?}): committed {got:?}, acknowledged {acked:?}"
            );
        }
    }
}

#[test]
fn committed_offsets_of_a_new_data_directory_survive_a_power_cut() {
    let layer = PowerLoss::new(1);
    let (store, _) = layer.open().unwrap();
    store.create_topic("t", 1, Default::default()).unwrap();
    store.commit_offset("g", "t", 0, 5).unwrap();
    layer.cut();
    let store = reopen(&layer, store, "new directory");
    assert_eq!(store.committed_offset("g", "t", 0), Some(5));
}

#[test]
fn a_topic_deleted_as_the_power_is_cut_leaves_no_committed_offsets() {
    let prepare = |dir: &std::path::Path| {
        let (store, _) = Store::open(dir, Default::default()).unwrap();
        store.create_topic("t", 1, Default::default()).unwrap();
        store
            .topic("t")
            .unwrap()
            .partition(0)
            .unwrap()
            .append(&[rec(0)])
            .unwrap();
        store.commit_offset("g", "t", 0, 1).unwrap();
    };
    let layer = PowerLoss::after(1, prepare);
    let (store, _) = layer.open().unwrap();
    store.delete_topic("t").unwrap();
    let ops = layer.ops();
    drop(store);
    for op in 0..=ops {
        let layer = PowerLoss::after(op, prepare);
        let (store, _) = layer.open().unwrap();
        layer.cut_at(op);
        let _ = store.delete_topic("t");
        layer.cut();
        let store = reopen(&layer, store, "delete");
        if store.topic("t").is_err() {
            assert_eq!(store.committed_offset("g", "t", 0), None, "cut at op {op}");
        }
    }
}
