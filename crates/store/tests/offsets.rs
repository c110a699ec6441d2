//! The committed-offsets journal through the public API: commit metadata, deleted
//! offsets and deleted groups are durable, replayed on open and compacted.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs::OpenOptions;
use std::path::Path;

use common::open;
use millrace_store::{CommittedOffset, OffsetCommitWithMetadata, StoreError, TopicConfig};

fn meta<'a>(topic: &'a str, partition: u32, next: u64, m: &'a str) -> OffsetCommitWithMetadata<'a> {
    OffsetCommitWithMetadata {
        topic,
        partition,
        next,
        metadata: m,
    }
}

fn committed(next: u64, metadata: &str) -> Option<CommittedOffset> {
    Some(CommittedOffset {
        next,
        metadata: metadata.to_string(),
    })
}

fn journal_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("offsets.log")).unwrap().len()
}

#[test]
fn commit_metadata_is_kept_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path());
        store.create_topic("t", 2, TopicConfig::default()).unwrap();
        store
            .commit_offsets_with_metadata("g", &[meta("t", 0, 5, "AQID"), meta("t", 1, 9, "")])
            .unwrap();
        store
            .commit_offsets_with_metadata("h", &[meta("t", 0, 2, "first")])
            .unwrap();
        // A later commit without metadata replaces the string too.
        store.commit_offset("h", "t", 0, 3).unwrap();
        assert!(matches!(
            store.commit_offsets_with_metadata("g", &[meta("nope", 0, 1, "x")]),
            Err(StoreError::UnknownTopic(_))
        ));
    }
    let (store, report) = open(dir.path());
    assert!(report.is_clean(), "{report}");
    assert_eq!(store.committed("g", "t", 0), committed(5, "AQID"));
    assert_eq!(store.committed("g", "t", 1), committed(9, ""));
    assert_eq!(store.committed("h", "t", 0), committed(3, ""));
    assert_eq!(store.committed_offset("g", "t", 0), Some(5));
    assert_eq!(
        store.group_offsets("g"),
        vec![
            (
                "t".to_string(),
                0,
                CommittedOffset {
                    next: 5,
                    metadata: "AQID".into()
                }
            ),
            (
                "t".to_string(),
                1,
                CommittedOffset {
                    next: 9,
                    metadata: String::new()
                }
            ),
        ]
    );
    assert_eq!(store.offset_groups(), vec!["g", "h"]);
}

#[test]
fn deleted_offsets_stay_deleted_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path());
        store.create_topic("a", 3, TopicConfig::default()).unwrap();
        store.create_topic("b", 1, TopicConfig::default()).unwrap();
        store
            .commit_offsets("g", &[("a", 0, 1), ("a", 1, 2), ("a", 2, 3), ("b", 0, 4)])
            .unwrap();
        store.commit_offsets("other", &[("a", 0, 7)]).unwrap();
        assert_eq!(
            store
                .delete_offsets("g", &[("a", 0), ("a", 2), ("a", 2)])
                .unwrap(),
            2
        );
        // Nothing to delete writes nothing.
        let len = journal_len(dir.path());
        assert_eq!(
            store.delete_offsets("g", &[("a", 0), ("zz", 4)]).unwrap(),
            0
        );
        assert_eq!(journal_len(dir.path()), len);
    }
    let (store, report) = open(dir.path());
    assert!(report.is_clean(), "{report}");
    assert_eq!(store.committed_offset("g", "a", 0), None);
    assert_eq!(store.committed_offset("g", "a", 1), Some(2));
    assert_eq!(store.committed_offset("g", "a", 2), None);
    assert_eq!(store.committed_offset("g", "b", 0), Some(4));
    assert_eq!(store.committed_offset("other", "a", 0), Some(7));
    // The last offset of a group going leaves no empty group behind.
    store.delete_offsets("other", &[("a", 0)]).unwrap();
    assert_eq!(store.offset_groups(), vec!["g"]);
}

#[test]
fn a_deleted_group_stays_deleted_after_a_reopen_and_can_commit_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path());
        store.create_topic("t", 2, TopicConfig::default()).unwrap();
        store
            .commit_offsets("g", &[("t", 0, 1), ("t", 1, 2)])
            .unwrap();
        store.commit_offsets("keep", &[("t", 0, 3)]).unwrap();
        assert!(store.delete_group_offsets("g").unwrap());
        assert!(!store.delete_group_offsets("g").unwrap());
        assert!(!store.delete_group_offsets("never").unwrap());
    }
    {
        let (store, report) = open(dir.path());
        assert!(report.is_clean(), "{report}");
        assert_eq!(store.group_offsets("g"), vec![]);
        assert_eq!(store.offset_groups(), vec!["keep"]);
        store.commit_offset("g", "t", 1, 8).unwrap();
    }
    let (store, _) = open(dir.path());
    assert_eq!(store.committed_offset("g", "t", 0), None);
    assert_eq!(store.committed_offset("g", "t", 1), Some(8));
}

#[test]
fn compaction_keeps_metadata_and_drops_what_was_deleted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path());
        store.create_topic("t", 4, TopicConfig::default()).unwrap();
        // Written once, before every compaction: only a compaction can carry it on.
        store
            .commit_offsets_with_metadata("early", &[meta("t", 3, 7, "kept")])
            .unwrap();
        for i in 0..1500u64 {
            let m = format!("m{i}");
            store
                .commit_offsets_with_metadata("g", &[meta("t", 0, i, &m), meta("t", 1, i, "")])
                .unwrap();
        }
        store.commit_offsets("gone", &[("t", 2, 1)]).unwrap();
        store
            .commit_offsets("part", &[("t", 2, 1), ("t", 3, 2)])
            .unwrap();
        store.delete_group_offsets("gone").unwrap();
        store.delete_offsets("part", &[("t", 2)]).unwrap();
    }
    // 3000 commit entries compacted as they were written: a few live keys remain.
    assert!(
        journal_len(dir.path()) < 1024 * 40,
        "{}",
        journal_len(dir.path())
    );
    let (store, _) = open(dir.path());
    assert_eq!(store.committed("g", "t", 0), committed(1499, "m1499"));
    assert_eq!(store.committed("g", "t", 1), committed(1499, ""));
    assert_eq!(store.committed("early", "t", 3), committed(7, "kept"));
    assert_eq!(store.offset_groups(), vec!["early", "g", "part"]);
    assert_eq!(store.committed_offset("part", "t", 2), None);
    assert_eq!(store.committed_offset("part", "t", 3), Some(2));
}

#[test]
fn a_torn_delete_is_cut_and_the_offset_it_would_delete_stays() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path());
        store.create_topic("t", 1, TopicConfig::default()).unwrap();
        store.commit_offset("g", "t", 0, 5).unwrap();
        store.delete_group_offsets("g").unwrap();
    }
    let path = dir.path().join("offsets.log");
    let len = journal_len(dir.path());
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 2)
        .unwrap();
    let (store, report) = open(dir.path());
    assert_eq!(report.truncated.len(), 1, "{report}");
    assert_eq!(store.committed_offset("g", "t", 0), Some(5));
}

#[test]
fn an_entry_of_a_kind_from_a_newer_version_refuses_the_open_and_is_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path());
        store.create_topic("t", 1, TopicConfig::default()).unwrap();
        store.commit_offset("g", "t", 0, 5).unwrap();
    }
    // A well-framed entry of kind 200 at the tail: length, CRC, kind, a body.
    let path = dir.path().join("offsets.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let body = [200u8, 1, 2, 3];
    // The length counts the CRC's 4 bytes and the body's 4.
    bytes.extend_from_slice(&(4u32 + 4).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    std::fs::write(&path, &bytes).unwrap();
    let err = millrace_store::Store::open(dir.path(), Default::default()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { reason, .. } if reason.contains("kind 200")),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

/// A group committing while its topic is deleted leaves no offsets for a topic made
/// again under the same name: each commit lands before the delete (and is forgotten
/// with the topic) or fails with `UnknownTopic`.
#[test]
fn a_commit_racing_a_topic_delete_leaves_no_offsets_for_the_topic_made_again() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()).0);
    for round in 0..40 {
        store.create_topic("t", 1, TopicConfig::default()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // Several committers, so one has passed its check and waits for the offsets
        // journal while another's commit is being synced, as the delete comes.
        let committers: Vec<_> = (0..4)
            .map(|_| {
                let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut next = 1;
                    while !stop.load(Ordering::SeqCst) {
                        match store.commit_offset("g", "t", 0, next) {
                            Ok(()) | Err(StoreError::UnknownTopic(_)) => {}
                            Err(e) => panic!("commit failed: {e}"),
                        }
                        next += 1;
                    }
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.committed_offset("g", "t", 0).is_none() {
            assert!(Instant::now() < deadline, "no commit landed");
            std::thread::yield_now();
        }
        store.delete_topic("t").unwrap();
        stop.store(true, Ordering::SeqCst);
        for c in committers {
            c.join().unwrap();
        }
        store.create_topic("t", 1, TopicConfig::default()).unwrap();
        assert_eq!(
            store.committed_offset("g", "t", 0),
            None,
            "round {round}: the topic made again starts from a deleted topic's offset"
        );
        store.delete_topic("t").unwrap();
    }
}
