//! A scripted durability=batch workload — topics made and deleted, appends that roll
//! small segments, commits — cut at every one of its crash points, with and without
//! torn unsynced writes.

use std::collections::BTreeMap;

use crate::common::config;
use crate::common::power_loss::{PowerLoss, Tear, read_partition};
use crate::value;
use millrace_store::{Durability, Record, Store, StoreError};

/// What a workload wrote and what the store acknowledged, to check what survived.
#[derive(Default)]
pub(super) struct Log {
    /// Per (topic, partition): every record handed to `append`, in offset order.
    pub(super) written: BTreeMap<(String, u32), Vec<Record>>,
    /// Per (topic, partition): the end offset acknowledged.
    pub(super) acked: BTreeMap<(String, u32), u64>,
    /// Per (group, topic, partition): the last commit acknowledged, the last attempted.
    commits: BTreeMap<(String, String, u32), (Option<u64>, u64)>,
    /// Topics whose creation was acknowledged (`Some(true)`) or whose deletion was
    /// (`Some(false)`); `None` while a create or delete was cut short (either outcome).
    topics: BTreeMap<String, Option<bool>>,
}

impl Log {
    pub(super) fn append(
        &mut self,
        store: &Store,
        topic: &str,
        p: u32,
        records: &[Record],
    ) -> Result<(), StoreError> {
        let key = (topic.to_string(), p);
        self.written
            .entry(key.clone())
            .or_default()
            .extend_from_slice(records);
        let t = store.topic(topic)?;
        let base = t.partition(p)?.append(records)?;
        self.acked.insert(key, base + records.len() as u64);
        Ok(())
    }

    pub(super) fn commit(
        &mut self,
        store: &Store,
        group: &str,
        topic: &str,
        ps: &[u32],
    ) -> Result<(), StoreError> {
        let mut commits = Vec::new();
        for &p in ps {
            let at = self
                .acked
                .get(&(topic.to_string(), p))
                .copied()
                .unwrap_or(0);
            let e = self
                .commits
                .entry((group.into(), topic.into(), p))
                .or_default();
            e.1 = at;
            commits.push((topic, p, at));
        }
        store.commit_offsets(group, &commits)?;
        for (t, p, at) in commits {
            self.commits
                .get_mut(&(group.to_string(), t.to_string(), p))
                .unwrap()
                .0 = Some(at);
        }
        Ok(())
    }

    pub(super) fn create(
        &mut self,
        store: &Store,
        topic: &str,
        n: u32,
        d: Durability,
        seg: u64,
    ) -> Result<(), StoreError> {
        self.topics.insert(topic.into(), None);
        store.create_topic(topic, n, config(d, seg))?;
        self.topics.insert(topic.into(), Some(true));
        Ok(())
    }

    fn delete(&mut self, store: &Store, topic: &str) -> Result<(), StoreError> {
        self.topics.insert(topic.into(), None);
        store.delete_topic(topic)?;
        self.topics.insert(topic.into(), Some(false));
        for (k, v) in self.commits.iter_mut() {
            if k.1 == topic {
                *v = (None, 0);
            }
        }
        Ok(())
    }

    /// Checks a store reopened after a cut against what was acknowledged: every
    /// acknowledged record and commit is there, and nothing that was never written.
    pub(super) fn check(&self, store: &Store, what: &str) {
        for (topic, alive) in &self.topics {
            let Some(alive) = *alive else { continue };
            assert_eq!(
                store.topic(topic).is_ok(),
                alive,
                "{what}: topic {topic} should {}exist",
                if alive { "" } else { "not " }
            );
        }
        for ((topic, p), written) in &self.written {
            let Ok(t) = store.topic(topic) else {
                assert!(
                    self.topics.get(topic) != Some(&Some(true)),
                    "{what}: topic {topic} lost"
                );
                continue;
            };
            let got = read_partition(store, topic, *p);
            let acked = self.acked.get(&(topic.clone(), *p)).copied().unwrap_or(0);
            assert!(
                got.len() as u64 >= acked,
                "{what}: {topic}/{p} LOST acknowledged records: {} survived, {acked} acknowledged",
                got.len()
            );
            for (i, r) in got.iter().enumerate() {
                assert_eq!(r.offset, i as u64, "{what}: {topic}/{p} offsets dense");
                assert_eq!(
                    Some(&r.record),
                    written.get(i),
                    "{what}: {topic}/{p} offset {i} is not what was written there"
                );
            }
            assert_eq!(t.partition(*p).unwrap().end_offset(), got.len() as u64);
        }
        for ((g, topic, p), (acked, attempted)) in &self.commits {
            let got = store.committed_offset(g, topic, *p);
            match self.topics.get(topic) {
                Some(Some(false)) => {
                    assert_eq!(
                        got, None,
                        "{what}: {g} {topic}/{p}: a deleted topic's offsets"
                    );
                    continue;
                }
                // A delete cut short forgets the offsets before it removes the topic: a
                // topic gone has none, a topic left may have lost them.
                Some(None) if store.topic(topic).is_err() => {
                    assert_eq!(
                        got, None,
                        "{what}: {g} {topic}/{p}: offsets of a topic whose delete was cut short"
                    );
                    continue;
                }
                Some(None) if got.is_none() => continue,
                _ => {}
            }
            assert!(
                got >= *acked && got.unwrap_or(0) <= *attempted,
                "{what}: {g} {topic}/{p} committed {got:?}, acknowledged {acked:?}, last attempted {attempted}"
            );
        }
    }
}

/// The scripted workload: durability=batch topics made, appended to (rolling small
/// segments), committed, one deleted. Stops at the first error (the cut).
pub(super) fn batch_workload(store: &Store, log: &mut Log) -> Result<(), StoreError> {
    log.create(store, "a", 2, Durability::Batch, 300)?;
    let mut n = 0;
    for i in 0..24u64 {
        let p = (i % 2) as u32;
        let records: Vec<Record> = (0..1 + i % 3).map(|k| value("a", n + k)).collect();
        n += records.len() as u64;
        log.append(store, "a", p, &records)?;
        if i % 4 == 3 {
            log.commit(store, "g", "a", &[0, 1])?;
        }
        if i == 6 {
            log.create(store, "b", 1, Durability::Batch, 1 << 20)?;
        }
        if (7..12).contains(&i) {
            log.append(store, "b", 0, &[value("b", i)])?;
            log.commit(store, "g", "b", &[0])?;
        }
        if i == 14 {
            log.delete(store, "b")?;
        }
    }
    Ok(())
}

/// Runs `workload` on a fresh layer cut at `op`, reboots, and checks what survived.
pub(super) fn cut_and_check(
    op: Option<u64>,
    tear: Tear,
    workload: fn(&Store, &mut Log) -> Result<(), StoreError>,
) -> u64 {
    cut_and_check_buffered(op, tear, workload, 0)
}

/// [`cut_and_check`] with segment tail buffers of `buffer_bytes` (0: the default).
pub(super) fn cut_and_check_buffered(
    op: Option<u64>,
    tear: Tear,
    workload: fn(&Store, &mut Log) -> Result<(), StoreError>,
    buffer_bytes: usize,
) -> u64 {
    let layer = PowerLoss::with_store(op.unwrap_or(0) * 7919 + 1);
    layer.set_tear(tear);
    layer.set_segment_buffer_bytes(buffer_bytes);
    let mut log = Log::default();
    {
        let (store, _) = layer.open().expect("open");
        if let Some(op) = op {
            layer.cut_at(op);
        }
        let result = workload(&store, &mut log);
        if op.is_none() {
            result.expect("the uncut workload runs through");
        }
    }
    let ops = layer.ops();
    reboot_and_check(&layer, &log, &format!("cut at op {op:?} ({tear:?})"));
    ops
}

/// Cuts the power (if not cut yet), reboots, and checks the store that opens against
/// `log`; then that recovery left a store that reopens with nothing more to repair.
pub(super) fn reboot_and_check(layer: &PowerLoss, log: &Log, what: &str) {
    layer.cut();
    layer.reboot();
    let (store, report) = layer
        .open()
        .unwrap_or_else(|e| panic!("{what}: the store does not open: {e}"));
    log.check(&store, what);
    drop(store);
    let (_, again) = layer.open().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        again.is_clean(),
        "{what}: the next open still repairs: {again}\nfirst: {report}"
    );
}

#[test]
fn batch_acknowledged_appends_and_commits_survive_a_power_cut_at_every_crash_point() {
    let total = cut_and_check(None, Tear::Nothing, batch_workload);
    assert!(total > 100, "the workload has {total} crash points");
    for op in 0..=total {
        for tear in [Tear::Nothing, Tear::Random] {
            cut_and_check(Some(op), tear, batch_workload);
        }
    }
    eprintln!("power loss: {} crash points, each cut twice", total + 1);
}
