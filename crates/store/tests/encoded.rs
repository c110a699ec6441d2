//! Records read and appended as stored (what a copier moves): an encoded read hands out
//! exactly the records a decoded read does, whole stored batches at a time, and a batch
//! built from them reads back as those records with the added header.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use bytes::Bytes;
use common::{config, open, rec};
use millrace_store::{
    Durability, EncodedBatch, EncodedRecords, Header, Names, Record, RecordSink, StoredRecord,
};

/// A sink that takes records as stored.
#[derive(Default)]
struct Runs {
    runs: Vec<EncodedRecords>,
    taken: usize,
}

impl RecordSink for Runs {
    fn taken(&self) -> usize {
        self.taken
    }
    fn take(&mut self, _offset: u64, _record: Record) {
        panic!("an encoded read decoded a record");
    }
    fn takes_encoded(&self) -> bool {
        true
    }
    fn take_encoded(&mut self, records: EncodedRecords) {
        self.taken += records.len();
        self.runs.push(records);
    }
}

fn decoded(runs: &[EncodedRecords]) -> Vec<StoredRecord> {
    let mut names = Names::default();
    runs.iter()
        .flat_map(|r| r.iter())
        .map(|r| StoredRecord {
            offset: r.offset,
            record: r.to_record(&mut names).unwrap(),
        })
        .collect()
}

#[test]
fn an_encoded_read_takes_whole_batches_from_the_position_on() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    // Small segments: reads cross segment boundaries.
    store
        .create_topic("in", 1, config(Durability::None, 400))
        .unwrap();
    let topic = store.topic("in").unwrap();
    let p = topic.partition(0).unwrap();
    for b in 0..20u64 {
        let batch: Vec<Record> = (b * 5..b * 5 + 5).map(rec).collect();
        p.append(&batch).unwrap();
    }
    assert!(p.segment_count() > 3);
    for from in [0u64, 3, 5, 37, 99] {
        for max in [1usize, 4, 12, 1000] {
            let mut runs = Runs::default();
            p.read_into(from, max, 1 << 20, &mut runs).unwrap();
            let got = decoded(&runs.runs);
            let first = got.first().map(|r| r.offset);
            assert_eq!(first, Some(from), "from {from} max {max}");
            // Whole batches: up to the end of the batch in which `max` is reached.
            let end = (from + max as u64).div_ceil(5).max(1) * 5;
            let want: Vec<StoredRecord> = (from..end.min(100))
                .map(|i| StoredRecord {
                    offset: i,
                    record: rec(i),
                })
                .collect();
            assert_eq!(got, want, "from {from} max {max}");
            assert_eq!(runs.taken, want.len());
            assert!(runs.runs.iter().all(|r| !r.is_empty()));
        }
    }
    // A byte limit stops before a batch that would pass it, but takes one at least.
    let mut runs = Runs::default();
    p.read_into(0, 1000, 1, &mut runs).unwrap();
    assert_eq!(runs.taken, 5);
}

#[test]
fn a_batch_built_from_stored_records_appends_and_reads_back_with_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    for (name, durability) in [("in", Durability::None), ("out", Durability::Batch)] {
        store
            .create_topic(name, 1, config(durability, 1 << 20))
            .unwrap();
    }
    let want = {
        let (tin, tout) = (store.topic("in").unwrap(), store.topic("out").unwrap());
        let (input, output) = (tin.partition(0).unwrap(), tout.partition(0).unwrap());
        input.append(&(0..7).map(rec).collect::<Vec<_>>()).unwrap();
        output.append(&[rec(100)]).unwrap();
        let mut runs = Runs::default();
        input.read_into(2, 100, 1 << 20, &mut runs).unwrap();
        let mut batch = EncodedBatch::default();
        for r in runs.runs.iter().flat_map(|r| r.iter()) {
            let at = r.offset.to_string();
            batch
                .push_with_header(&r, "from", &[b"in#", at.as_bytes()])
                .unwrap();
        }
        assert_eq!(output.append_encoded(&mut batch).unwrap(), 1);
        let back = output.read(1, 100, 1 << 20).unwrap();
        let want: Vec<StoredRecord> = (2..7)
            .map(|i| {
                let mut r = rec(i);
                r.headers
                    .push(Header::new("from", Bytes::from(format!("in#{i}"))));
                StoredRecord {
                    offset: i - 1,
                    record: r,
                }
            })
            .collect();
        assert_eq!(back, want);
        want
    };
    // The batch survives a reopen (its checksum and layout are checked there).
    drop(store);
    let (store, report) = open(dir.path());
    assert!(report.is_clean(), "{report}");
    let tout = store.topic("out").unwrap();
    let p = tout.partition(0).unwrap();
    assert_eq!(p.read(1, 100, 1 << 20).unwrap(), want);
    // An empty batch is refused, not written.
    assert!(p.append_encoded(&mut EncodedBatch::default()).is_err());
    assert_eq!(p.end_offset(), 6);
}
