//! A data directory written before the shared journal (`fixtures/base-v1`, made by the
//! release binary of that version: see `fixtures/README.md`) opens under this version
//! with every record and committed offset, upgrades its `topic.json` files to version
//! 2 (topic ids), and takes appends that survive a reopen.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::path::{Path, PathBuf};

use common::open;
use millrace_store::{Durability, Store, partition_for_key};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A copy of the fixture to open (opening writes to it).
fn copy_of_base() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy(&fixture().join("base-v1"), dir.path());
    dir
}

fn copy(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The (key, value) lines the fixture's orders topic was produced from.
fn orders() -> Vec<(String, String)> {
    std::fs::read_to_string(fixture().join("base-v1-orders.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn values(store: &Store, topic: &str, p: u32) -> Vec<(Option<String>, String)> {
    let t = store.topic(topic).unwrap();
    let part = t.partition(p).unwrap();
    let got = part.read(0, usize::MAX, usize::MAX).unwrap();
    assert_eq!(got.len() as u64, part.end_offset());
    got.iter()
        .map(|r| {
            let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
            (r.record.key.as_deref().map(text), text(&r.record.value))
        })
        .collect()
}

fn topic_json(dir: &Path, topic: &str) -> serde_json::Value {
    let path = dir.join("topics").join(topic).join("topic.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_data_directory_written_before_the_journal_opens_with_everything_in_it() {
    let dir = copy_of_base();
    assert!(
        !dir.path().join("journal").exists(),
        "the fixture predates it"
    );
    let (store, report) = open(dir.path());
    assert!(report.is_clean(), "{report}");
    assert_eq!(store.topic_names(), vec!["clicks", "metrics", "orders"]);

    // Every order, in the partition its key hashes to, in the order produced (three
    // times over).
    let lines = orders();
    for p in 0..3 {
        let mine: Vec<(Option<String>, String)> = lines
            .iter()
            .filter(|(k, _)| partition_for_key(k.as_bytes(), 3) == p)
            .map(|(k, v)| (Some(k.clone()), v.clone()))
            .collect();
        let want: Vec<_> = (0..3).flat_map(|_| mine.iter().cloned()).collect();
        assert_eq!(values(&store, "orders", p), want, "orders/{p}");
    }
    let clicks: Vec<String> = (0..2)
        .flat_map(|p| values(&store, "clicks", p))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        clicks,
        (0..40).map(|i| format!("click-{i}")).collect::<Vec<_>>()
    );
    let metrics: Vec<String> = values(&store, "metrics", 0)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        metrics,
        (0..10).map(|i| format!("m-{i}")).collect::<Vec<_>>()
    );
    let t = store.topic("clicks").unwrap();
    assert_eq!(t.config().durability, Durability::None, "configs kept");

    // Committed offsets as the old binary's consumers left them.
    let committed = |g: &str, t: &str, p: u32| store.committed_offset(g, t, p);
    assert_eq!(
        (0..3)
            .map(|p| committed("billing", "orders", p))
            .collect::<Vec<_>>(),
        vec![Some(3), Some(4), Some(3)]
    );
    assert_eq!(committed("audit", "clicks", 0), Some(40));

    // Every topic.json is version 2 now, with an id the topic keeps.
    let mut ids = Vec::new();
    for name in store.topic_names() {
        let meta = topic_json(dir.path(), &name);
        assert_eq!(meta["version"], 2, "{name}: {meta}");
        let id = store.topic(&name).unwrap().id();
        assert_eq!(meta["id"], format!("{id:016x}"), "{name}");
        ids.push(id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "ids are distinct");

    // The upgraded directory takes appends, through the journal, and keeps them.
    let orders_t = store.topic("orders").unwrap();
    let base = orders_t
        .partition(0)
        .unwrap()
        .append(&[common::rec(1)])
        .unwrap();
    assert_eq!(base, 123);
    store.commit_offset("billing", "orders", 0, 124).unwrap();
    let ids_before: Vec<u64> = store
        .topic_names()
        .iter()
        .map(|n| store.topic(n).unwrap().id())
        .collect();
    drop(orders_t);
    drop(store);
    let (store, report) = open(dir.path());
    assert!(report.is_clean(), "{report}");
    let ids_after: Vec<u64> = store
        .topic_names()
        .iter()
        .map(|n| store.topic(n).unwrap().id())
        .collect();
    assert_eq!(ids_before, ids_after, "a topic keeps its id");
    let t = store.topic("orders").unwrap();
    let p0 = t.partition(0).unwrap();
    assert_eq!(p0.end_offset(), 124);
    assert_eq!(
        p0.read(123, 1, usize::MAX).unwrap()[0].record,
        common::rec(1)
    );
    assert_eq!(store.committed_offset("billing", "orders", 0), Some(124));
}

#[test]
fn a_torn_tail_left_by_the_old_version_is_cut_as_before() {
    let dir = copy_of_base();
    // A crash of the old version mid-append: half a batch after the last whole one.
    let seg = dir.path().join("topics/orders/0/00000000000000000082.log");
    let whole = std::fs::read(&seg).unwrap();
    let mut torn = whole.clone();
    torn.extend_from_slice(&whole[..whole.len() / 2]);
    std::fs::write(&seg, &torn).unwrap();
    let (store, report) = open(dir.path());
    assert_eq!(report.truncated.len(), 1, "{report}");
    assert_eq!(report.truncated[0].file, seg);
    assert_eq!(report.truncated[0].bytes_cut, (whole.len() / 2) as u64);
    assert_eq!(std::fs::read(&seg).unwrap(), whole);
    assert_eq!(
        store
            .topic("orders")
            .unwrap()
            .partition(0)
            .unwrap()
            .end_offset(),
        123
    );
}

#[test]
fn a_topic_json_from_a_newer_version_is_refused_with_a_clear_error() {
    let dir = copy_of_base();
    let path = dir.path().join("topics/metrics/topic.json");
    let mut meta = topic_json(dir.path(), "metrics");
    meta["version"] = 3.into();
    meta["id"] = "00000000000000ff".into();
    std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let err = Store::open(dir.path(), Default::default()).unwrap_err();
    assert!(err.to_string().contains("newer version"), "{err}");
    assert!(err.to_string().contains("topic.json"), "{err}");
}
