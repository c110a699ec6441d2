//! Fault tests: damaged segment files on open, and I/O failures injected through the
//! store's I/O seam while it runs.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{FaultyStorage, config, open, open_faulty, rec, segments};
use millrace_store::{Durability, Store, StoreError, StoreOptions};

/// A topic "t" with one partition holding 10 batches of 3 records (offsets 0..30).
fn ten_batches(dir: &Path, segment_bytes: u64) {
    let (store, _) = open(dir);
    store
        .create_topic("t", 1, config(Durability::Batch, segment_bytes))
        .unwrap();
    let t = store.topic("t").unwrap();
    for b in 0..10 {
        t.partition(0)
            .unwrap()
            .append(&[rec(b * 3), rec(b * 3 + 1), rec(b * 3 + 2)])
            .unwrap();
    }
}

fn read_all(store: &Store) -> Vec<u64> {
    let t = store.topic("t").unwrap();
    let p = t.partition(0).unwrap();
    let got = p.read(0, usize::MAX, usize::MAX).unwrap();
    for r in &got {
        assert_eq!(r.record, rec(r.offset), "record {} intact", r.offset);
    }
    got.into_iter().map(|r| r.offset).collect()
}

fn flip_byte(path: &Path, at: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn journal_truncation_torn_last_batch_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    ten_batches(dir.path(), 1 << 20);
    let seg = &segments(dir.path(), "t", 0)[0];
    let full = len(seg);
    let f = OpenOptions::new().write(true).open(seg).unwrap();
    f.set_len(full - 7).unwrap(); // a torn write: the last batch lacks its last 7 bytes
    let (store, report) = open(dir.path());
    assert_eq!(report.truncated.len(), 1, "{report}");
    let cut = &report.truncated[0];
    assert_eq!(&cut.file, seg);
    assert!(
        cut.bytes_cut > 0 && cut.bytes_cut < full / 10 + 10,
        "{cut:?}"
    );
    assert!(report.to_string().contains("cut"), "{report}");
    assert_eq!(read_all(&store), (0..27).collect::<Vec<_>>());
    // The log continues where the good part ends.
    let t = store.topic("t").unwrap();
    assert_eq!(t.partition(0).unwrap().append(&[rec(27)]).unwrap(), 27);
    drop(t);
    drop(store);
    let (store, report) = open(dir.path());
    assert!(report.is_clean(), "{report}");
    assert_eq!(read_all(&store), (0..28).collect::<Vec<_>>());
}

#[test]
fn journal_truncation_garbage_after_last_batch_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    ten_batches(dir.path(), 1 << 20);
    let seg = &segments(dir.path(), "t", 0)[0];
    let full = len(seg);
    let mut f = OpenOptions::new().append(true).open(seg).unwrap();
    f.write_all(&[0u8; 4096]).unwrap(); // zeros, as a file system may leave after a crash
    f.write_all(b"\x01\x02garbage").unwrap();
    let (store, report) = open(dir.path());
    assert_eq!(report.truncated.len(), 1);
    assert_eq!(report.truncated[0].bytes_cut, 4096 + 9);
    assert_eq!(len(seg), full);
    assert_eq!(read_all(&store).len(), 30);
}

#[test]
fn journal_truncation_corrupt_last_batch_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    ten_batches(dir.path(), 1 << 20);
    let seg = &segments(dir.path(), "t", 0)[0];
    flip_byte(seg, len(seg) - 3);
    let (store, report) = open(dir.path());
    assert_eq!(report.truncated.len(), 1);
    assert!(report.truncated[0].reason.contains("crc"), "{report}");
    assert_eq!(read_all(&store), (0..27).collect::<Vec<_>>());
}

#[test]
fn corrupt_batch_in_the_middle_fails_open_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    ten_batches(dir.path(), 1 << 20);
    let seg = &segments(dir.path(), "t", 0)[0];
    let before = std::fs::read(seg).unwrap();
    flip_byte(seg, 40); // inside the first batch
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    match &err {
        StoreError::Corrupt {
            file,
            offset,
            reason,
        } => {
            assert_eq!(file, seg);
            assert_eq!(*offset, 0);
            assert!(reason.contains("valid batch follows"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&seg.display().to_string()) && msg.contains("byte 0"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(seg).unwrap().len(),
        before.len(),
        "nothing was cut"
    );
}

#[test]
fn corrupt_length_field_in_the_middle_is_not_mistaken_for_a_tail() {
    let dir = tempfile::tempdir().unwrap();
    ten_batches(dir.path(), 1 << 20);
    let seg = &segments(dir.path(), "t", 0)[0];
    // The second batch's length says 1 GiB: a reader can no longer find the next batch
    // by length, but the batches after it are still there and valid.
    let first_len = {
        let b = std::fs::read(seg).unwrap();
        u32::from_le_bytes(b[0..4].try_into().unwrap()) as u64 + 4
    };
    let f = OpenOptions::new().write(true).open(seg).unwrap();
    f.write_all_at(&(1u32 << 30).to_le_bytes(), first_len)
        .unwrap();
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { offset, .. } if offset == first_len),
        "{err}"
    );
}

#[test]
fn corrupt_sealed_segment_is_a_clear_error_on_read_and_on_open_without_its_index() {
    let dir = tempfile::tempdir().unwrap();
    ten_batches(dir.path(), 200); // a segment per batch or so
    let segs = segments(dir.path(), "t", 0);
    assert!(segs.len() > 3);
    let sealed = &segs[1];
    flip_byte(sealed, len(sealed) - 2);
    {
        // The sealed segment's index is trusted on open; the CRC check on read catches it.
        let (store, report) = open(dir.path());
        assert!(report.is_clean());
        let t = store.topic("t").unwrap();
        let err = t
            .partition(0)
            .unwrap()
            .read(0, usize::MAX, usize::MAX)
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { file, .. } if file == sealed),
            "{err}"
        );
    }
    std::fs::remove_file(sealed.with_extension("index")).unwrap();
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { file, .. } if file == sealed),
        "{err}"
    );
}

#[test]
fn missing_sealed_index_is_rebuilt_by_scanning() {
    let dir = tempfile::tempdir().unwrap();
    ten_batches(dir.path(), 200);
    for s in segments(dir.path(), "t", 0) {
        let _ = std::fs::remove_file(s.with_extension("index"));
    }
    let (store, report) = open(dir.path());
    assert!(report.is_clean());
    assert_eq!(read_all(&store), (0..30).collect::<Vec<_>>());
}

#[test]
fn missing_segment_in_the_middle_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    ten_batches(dir.path(), 200);
    let segs = segments(dir.path(), "t", 0);
    std::fs::remove_file(&segs[2]).unwrap();
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("missing segment"), "{err}");
}

#[test]
fn failed_fsync_poisons_the_store_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, faults) = open_faulty(dir.path());
        store
            .create_topic("t", 1, config(Durability::Batch, 1 << 20))
            .unwrap();
        store
            .create_topic("u", 1, config(Durability::None, 1 << 20))
            .unwrap();
        let t = store.topic("t").unwrap();
        let p = t.partition(0).unwrap();
        p.append(&[rec(0)]).unwrap();
        faults.0.fail_sync.store(true, Ordering::SeqCst);
        let err = p.append(&[rec(1)]).unwrap_err();
        assert!(matches!(err, StoreError::Poisoned(_)), "{err}");
        assert!(err.to_string().contains("fsync"), "{err}");
        assert_eq!(
            p.end_offset(),
            1,
            "the unsynced batch is never shown to readers"
        );
        // Even with fsync working again, every write is refused.
        faults.0.fail_sync.store(false, Ordering::SeqCst);
        assert!(store.is_poisoned());
        assert!(matches!(p.append(&[rec(2)]), Err(StoreError::Poisoned(_))));
        let u = store.topic("u").unwrap();
        assert!(matches!(
            u.partition(0).unwrap().append(&[rec(2)]),
            Err(StoreError::Poisoned(_))
        ));
        assert!(matches!(
            store.commit_offset("g", "t", 0, 1),
            Err(StoreError::Poisoned(_))
        ));
        assert!(matches!(
            store.create_topic("v", 1, Default::default()),
            Err(StoreError::Poisoned(_))
        ));
        // Reads of what was durable still work.
        assert_eq!(p.read(0, 10, 1000).unwrap().len(), 1);
    }
    let (store, _) = open(dir.path());
    let t = store.topic("t").unwrap();
    let got = t.partition(0).unwrap().read(0, 10, 10_000).unwrap();
    assert_eq!(got[0].record, rec(0));
    t.partition(0).unwrap().append(&[rec(9)]).unwrap();
}

/// A full disk fails the journal's group commit, which holds other partitions'
/// entries too and cannot take one back: the store is poisoned, the batch never shown,
/// and reopening cuts the torn journal tail and continues the log.
#[test]
fn full_disk_fails_the_append_poisons_and_the_log_continues_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, faults) = open_faulty(dir.path());
        store
            .create_topic("t", 1, config(Durability::Batch, 1 << 20))
            .unwrap();
        let t = store.topic("t").unwrap();
        let p = t.partition(0).unwrap();
        p.append(&[rec(0)]).unwrap();
        faults.0.torn_enospc.store(true, Ordering::SeqCst);
        let err = p.append(&[rec(1), rec(2)]).unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
        assert!(store.is_poisoned());
        assert_eq!(p.end_offset(), 1, "the failed batch is never shown");
        faults.0.torn_enospc.store(false, Ordering::SeqCst);
    }
    let (store, report) = open(dir.path());
    for cut in &report.truncated {
        assert!(cut.file.starts_with(dir.path().join("journal")), "{report}");
    }
    assert_eq!(read_all(&store), vec![0]);
    let t = store.topic("t").unwrap();
    assert_eq!(t.partition(0).unwrap().append(&[rec(1)]).unwrap(), 1);
    drop(t);
    drop(store);
    let (store, report) = open(dir.path());
    assert!(report.is_clean(), "{report}");
    assert_eq!(read_all(&store), vec![0, 1]);
}

#[test]
fn a_full_disk_is_opened_and_read_without_writing_a_journal_file() {
    let dir = tempfile::tempdir().unwrap();
    ten_batches(dir.path(), 1 << 20);
    let journal = dir.path().join("journal");
    let journal_files = || std::fs::read_dir(&journal).unwrap().count();
    let full = FaultyStorage::default();
    full.0.torn_enospc.store(true, Ordering::SeqCst);
    {
        let opts = StoreOptions {
            storage: Arc::new(full.clone()),
            ..StoreOptions::default()
        };
        let (store, _) = Store::open(dir.path(), opts).expect("a full disk opens");
        assert_eq!(read_all(&store), (0..30).collect::<Vec<_>>());
        assert_eq!(journal_files(), 0, "opening wrote no journal file");
        let t = store.topic("t").unwrap();
        let err = t.partition(0).unwrap().append(&[rec(30)]).unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
    }
    assert_eq!(journal_files(), 0, "closing wrote no journal file either");
    full.0.torn_enospc.store(false, Ordering::SeqCst);
    let (store, report) = open(dir.path());
    assert!(report.is_clean(), "{report}");
    let t = store.topic("t").unwrap();
    assert_eq!(t.partition(0).unwrap().append(&[rec(30)]).unwrap(), 30);
    assert_eq!(read_all(&store), (0..31).collect::<Vec<_>>());
}

#[test]
fn torn_write_that_cannot_be_undone_poisons_and_recovery_cuts_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, faults) = open_faulty(dir.path());
        store
            .create_topic("t", 1, config(Durability::Batch, 1 << 20))
            .unwrap();
        let t = store.topic("t").unwrap();
        let p = t.partition(0).unwrap();
        p.append(&[rec(0)]).unwrap();
        faults.0.torn_enospc.store(true, Ordering::SeqCst);
        faults.0.fail_set_len.store(true, Ordering::SeqCst);
        assert!(p.append(&[rec(1)]).is_err());
        assert!(store.is_poisoned());
    }
    let (store, report) = open(dir.path());
    assert_eq!(report.truncated.len(), 1, "{report}");
    assert_eq!(read_all(&store), vec![0]);
}

#[test]
fn offsets_journal_torn_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path());
        store.create_topic("t", 1, Default::default()).unwrap();
        store.commit_offset("g", "t", 0, 5).unwrap();
        store.commit_offset("g", "t", 0, 6).unwrap();
    }
    let path = dir.path().join("offsets.log");
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len(&path) - 3).unwrap();
    let (store, report) = open(dir.path());
    assert_eq!(report.truncated.len(), 1);
    assert_eq!(report.truncated[0].file, path);
    assert_eq!(store.committed_offset("g", "t", 0), Some(5));
}

#[test]
fn recovery_never_panics_on_random_damage() {
    // Many random cuts and flips; each open either succeeds (and then reads work or fail
    // with Corrupt) or fails with Corrupt. Never a panic, never wrong records.
    let base = tempfile::tempdir().unwrap();
    ten_batches(base.path(), 400);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let segs = segments(dir.path(), "t", 0);
        let seg = &segs[(next() as usize) % segs.len()];
        let l = len(seg);
        if round % 2 == 0 {
            flip_byte(seg, next() % l);
        } else {
            OpenOptions::new()
                .write(true)
                .open(seg)
                .unwrap()
                .set_len(next() % l)
                .unwrap();
        }
        match Store::open(dir.path(), StoreOptions::default()) {
            Ok((store, _)) => {
                let t = store.topic("t").unwrap();
                match t.partition(0).unwrap().read(0, usize::MAX, usize::MAX) {
                    Ok(got) => {
                        for r in got {
                            assert_eq!(r.record, rec(r.offset));
                        }
                    }
                    Err(e) => assert!(matches!(e, StoreError::Corrupt { .. }), "{e}"),
                }
            }
            Err(e) => assert!(
                matches!(e, StoreError::Corrupt { .. }),
                "round {round}: {e}"
            ),
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&e.path(), &dest);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn commit_offsets_of_many_partitions_take_one_fdatasync_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, faults) = open_faulty(dir.path());
        store
            .create_topic("t", 3, config(Durability::Batch, 1 << 20))
            .unwrap();
        store
            .create_topic("u", 1, config(Durability::None, 1 << 20))
            .unwrap();
        let before = faults.0.syncs.load(Ordering::SeqCst);
        store
            .commit_offsets("g", &[("t", 0, 5), ("t", 1, 6), ("t", 2, 7), ("u", 0, 8)])
            .unwrap();
        assert_eq!(faults.0.syncs.load(Ordering::SeqCst) - before, 1);
        assert_eq!(store.committed_offset("g", "t", 1), Some(6));
        assert_eq!(store.committed_offset("g", "u", 0), Some(8));
        // Offsets are as durable as their records: none on durability=none topics
        // alone (written, not synced; reopening below still finds them).
        let before = faults.0.syncs.load(Ordering::SeqCst);
        store.commit_offsets("g", &[("u", 0, 10)]).unwrap();
        assert_eq!(faults.0.syncs.load(Ordering::SeqCst) - before, 0);
        assert_eq!(store.committed_offset("g", "u", 0), Some(10));
        // One bad partition: refused before anything is written.
        assert!(
            store
                .commit_offsets("g", &[("t", 0, 9), ("t", 3, 9)])
                .is_err()
        );
        assert!(matches!(
            store.commit_offsets("g", &[("t", 0, 9), ("nope", 0, 9)]),
            Err(StoreError::UnknownTopic(_))
        ));
        assert_eq!(store.committed_offset("g", "t", 0), Some(5));
        // A torn write of several entries is cut back; nothing of it is visible.
        faults.0.torn_enospc.store(true, Ordering::SeqCst);
        assert!(
            store
                .commit_offsets("g", &[("t", 0, 10), ("t", 1, 11)])
                .is_err()
        );
        faults.0.torn_enospc.store(false, Ordering::SeqCst);
        assert_eq!(store.committed_offset("g", "t", 0), Some(5));
        store.commit_offsets("g", &[("t", 2, 12)]).unwrap();
        store.commit_offsets("g", &[]).unwrap();
    }
    let (store, report) = open(dir.path());
    assert!(report.truncated.is_empty(), "{report:?}");
    assert_eq!(store.committed_offset("g", "t", 0), Some(5));
    assert_eq!(store.committed_offset("g", "t", 1), Some(6));
    assert_eq!(store.committed_offset("g", "u", 0), Some(10));
    assert_eq!(store.committed_offset("g", "t", 2), Some(12));
}

#[test]
fn offsets_journal_torn_multi_entry_commit_keeps_its_whole_entries() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path());
        store
            .create_topic("t", 3, config(Durability::None, 1 << 20))
            .unwrap();
        store.commit_offsets("g", &[("t", 0, 1)]).unwrap();
        store
            .commit_offsets("g", &[("t", 0, 2), ("t", 1, 3), ("t", 2, 4)])
            .unwrap();
    }
    // A crash tore the last write: its last entry lost some bytes.
    let path = dir.path().join("offsets.log");
    let len = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let (store, report) = open(dir.path());
    assert_eq!(report.truncated.len(), 1, "{report:?}");
    assert_eq!(store.committed_offset("g", "t", 0), Some(2));
    assert_eq!(store.committed_offset("g", "t", 1), Some(3));
    assert_eq!(store.committed_offset("g", "t", 2), None);
}
