//! Concurrent appenders and a committer cut at random moments, and a roll that
//! acknowledges batches while the leader's sync is still held.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use millrace_store::{Durability, Record};

use crate::common::power_loss::{PowerLoss, Tear, read_partition};
use crate::{reopen, rng, store_with, value, wait_until};

#[test]
fn batch_appenders_and_commits_running_together_lose_nothing_acknowledged() {
    let mut next = rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..16u64 {
        let tear = [Tear::Nothing, Tear::Random][(round % 2) as usize];
        let (layer, store) = store_with(round + 1, tear, "c", 3, Durability::Batch, 2048);
        let store = Arc::new(store);
        let acks = Arc::new(AtomicU64::new(0));
        // Four appenders, each its own sequence spread over the partitions; each
        // returns the batches acknowledged to it: (partition, base offset, records).
        let appenders: Vec<_> = (0..4u64)
            .map(|w| {
                let (store, acks) = (Arc::clone(&store), Arc::clone(&acks));
                std::thread::spawn(move || {
                    let t = store.topic("c").unwrap();
                    let mut acked = Vec::new();
                    for seq in 0.. {
                        let p = (seq % 3) as u32;
                        let records: Vec<Record> = (0..1 + seq % 4)
                            .map(|k| value(&format!("w{w}"), seq * 10 + k))
                            .collect();
                        match t.partition(p).unwrap().append(&records) {
                            Ok(base) => {
                                acked.push((p, base, records));
                                acks.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(_) => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        // A consumer's commits: each partition's readable end, as a stage commits
        // what it has read.
        let done = Arc::new(AtomicBool::new(false));
        let committer = {
            let (store, done) = (Arc::clone(&store), Arc::clone(&done));
            std::thread::spawn(move || {
                let t = store.topic("c").unwrap();
                let mut acked = [0u64; 3];
                while !done.load(Ordering::SeqCst) {
                    let ends: Vec<u64> = (0..3)
                        .map(|p| t.partition(p).unwrap().end_offset())
                        .collect();
                    let commits: Vec<_> = (0..3u32).map(|p| ("c", p, ends[p as usize])).collect();
                    if store.commit_offsets("g", &commits).is_err() {
                        break;
                    }
                    acked.copy_from_slice(&ends);
                }
                acked
            })
        };
        // The cut comes at a random write or sync once the appenders are under way.
        wait_until("the first acknowledgements", || {
            acks.load(Ordering::SeqCst) >= 4
        });
        let cut_at = layer.cut_in(1 + next() % 600);
        let acked: Vec<(u32, u64, Vec<Record>)> = appenders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        done.store(true, Ordering::SeqCst);
        let commits = committer.join().unwrap();
        assert!(
            layer.is_cut(),
            "round {round}: the appenders stop only at the cut"
        );
        let what = format!("round {round} (cut at op {cut_at})");
        let store = reopen(&layer, Arc::into_inner(store).unwrap(), &what);
        let t = store.topic("c").unwrap();
        for p in 0..3u32 {
            let got = read_partition(&store, "c", p);
            let mut last: BTreeMap<String, u64> = BTreeMap::new();
            for (i, r) in got.iter().enumerate() {
                assert_eq!(r.offset, i as u64, "{what}: offsets dense");
                // Every writer's records in the order it appended them.
                let v = String::from_utf8_lossy(&r.record.value).into_owned();
                let mut parts = v.split('-');
                let (w, seq) = (
                    parts.next().unwrap().to_string(),
                    parts.next().unwrap().parse::<u64>().unwrap(),
                );
                assert!(
                    last.get(&w).is_none_or(|&prev| prev < seq),
                    "{what}: {v} out of order"
                );
                last.insert(w, seq);
            }
            let end = t.partition(p).unwrap().end_offset();
            let committed = store.committed_offset("g", "c", p).unwrap_or(0);
            assert!(
                committed >= commits[p as usize] && committed <= end,
                "{what}: partition {p} committed {committed}: acknowledged {}, recovered end {end}",
                commits[p as usize]
            );
        }
        for (p, base, records) in &acked {
            let got = t
                .partition(*p)
                .unwrap()
                .read(*base, records.len(), usize::MAX)
                .unwrap();
            let got: Vec<&Record> = got.iter().map(|r| &r.record).collect();
            assert_eq!(
                got,
                records.iter().collect::<Vec<_>>(),
                "{what}: LOST the batch acknowledged at {p}/{base}"
            );
        }
        assert!(
            !acked.is_empty(),
            "{what}: nothing was acknowledged before the cut"
        );
    }
}

#[test]
fn a_roll_makes_the_old_segment_durable_before_the_new_one_takes_data() {
    // Two batches fill a segment; the third rolls it. Each append writes its segment at
    // once (no tail buffer), so the writes counted below say where the appends are.
    let layer = PowerLoss::with_store(13);
    layer.set_tear(Tear::Nothing);
    layer.set_segment_buffer_bytes(1);
    let (store, _) = layer.open().unwrap();
    store
        .create_topic("r", 1, crate::config(Durability::Batch, 200))
        .unwrap();
    let t = store.topic("r").unwrap();
    let batch = |i: u64| vec![Record::new(None, Bytes::from(vec![b'0' + i as u8; 40]), 0)];
    let append = |i: u64| {
        let t = Arc::clone(&t);
        std::thread::spawn(move || t.partition(0).unwrap().append(&batch(i)))
    };
    let segments = || crate::common::segments(layer.dir(), "r", 0);
    // The first append after an open creates the journal's file (with a sync of its
    // own); one to another topic does it here, so the next sync held is an entry's.
    store
        .create_topic("other", 1, crate::config(Durability::Batch, 200))
        .unwrap();
    store
        .topic("other")
        .unwrap()
        .partition(0)
        .unwrap()
        .append(&batch(9))
        .unwrap();
    // Its segment synced, so every write the cut can lose is one of the batches below.
    store.checkpoint().unwrap();
    // The journal's first entry sync is held and then cut: no journal sync ever completes.
    layer.hold_next_sync();
    let first = append(0);
    wait_until("the first batch's journal sync runs", || {
        layer.unsynced_writes() == 2
    });
    let second = append(1);
    wait_until("the second batch is written", || {
        layer.unsynced_writes() == 3
    });
    // The third rolls the segment, and is written to the new one.
    let third = append(2);
    wait_until("the third batch is in a new segment", || {
        segments()
            .get(1)
            .is_some_and(|s| std::fs::metadata(s).is_ok_and(|m| m.len() > 0))
    });
    layer.cut();
    layer.release_sync();
    for (i, h) in [first, second, third].into_iter().enumerate() {
        assert!(
            h.join().unwrap().is_err(),
            "batch {i} was acknowledged without a completed journal sync"
        );
    }
    drop(t);
    let store = reopen(&layer, store, "roll");
    let got = read_partition(&store, "r", 0);
    // The roll synced the sealed segment: its two batches survive, and recovery never
    // meets a damaged sealed segment.
    let got: Vec<&Record> = got.iter().map(|r| &r.record).collect();
    assert_eq!(got, vec![&batch(0)[0], &batch(1)[0]]);
}
