//! Commits checked against the group, fetches, deletes, listing, and a reopen.

use std::time::Duration;

use super::*;
use crate::group::{CommitOffsets, GroupState, PartitionCommit};

const DELAY: Duration = Duration::from_secs(3);

fn commit(
    m: Option<&Sim>,
    group: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> CommitOffsets {
    CommitOffsets {
        group_id: group.into(),
        member_id: m.map(|m| m.id.clone()).unwrap_or_default(),
        group_instance_id: None,
        generation,
        offsets: offsets
            .iter()
            .map(|&(topic, partition, offset)| PartitionCommit {
                topic: topic.into(),
                partition,
                offset,
                metadata: Some(format!("at {offset}")),
            })
            .collect(),
    }
}

fn codes(r: &[Result<(), GroupError>]) -> Vec<i16> {
    r.iter()
        .map(|r| r.as_ref().err().map_or(0, GroupError::code))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn commits_from_a_stale_generation_or_a_stranger_are_refused() {
    let (c, _dir) = setup(DELAY);
    let mut m = [Sim::new(&c, "g", &["t"]), Sim::new(&c, "g", &["t"])];
    rebalance(&mut m).await;
    m[0].leave().await.unwrap();
    let parts = m[1].join_and_sync().await.unwrap();
    assert_eq!(parts.len(), 4);
    let b = &m[1];
    assert_eq!(b.generation, 2);
    let stale = c
        .commit_offsets(commit(Some(b), "g", 1, &[("t", 0, 5)]))
        .await;
    assert!(
        matches!(stale, Err(GroupError::IllegalGeneration)),
        "{stale:?}"
    );
    let gone = c
        .commit_offsets(commit(Some(&m[0]), "g", 2, &[("t", 0, 5)]))
        .await;
    assert!(matches!(gone, Err(GroupError::UnknownMemberId)), "{gone:?}");
    // A commit outside group management while the group has members.
    let simple = c
        .commit_offsets(commit(None, "g", -1, &[("t", 0, 5)]))
        .await;
    assert!(
        matches!(simple, Err(GroupError::UnknownMemberId)),
        "{simple:?}"
    );
    assert_eq!(c.store().committed_offset("g", "t", 0), None);
    let ok = c
        .commit_offsets(commit(
            Some(b),
            "g",
            2,
            &[("t", 0, 5), ("t", 9, 1), ("nope", 0, 1), ("t", 1, -4)],
        ))
        .await
        .unwrap();
    assert_eq!(codes(&ok), vec![0, 3, 3, 1]);
    assert_eq!(c.store().committed_offset("g", "t", 0), Some(5));
}

#[tokio::test(start_paused = true)]
async fn commits_are_refused_while_the_new_generation_is_unsynced_and_allowed_while_rejoining() {
    let (c, _dir) = setup(DELAY);
    let mut a = Sim::new(&c, "g", &["t"]);
    let mut b = Sim::new(&c, "g", &["t"]);
    let (ja, jb) = tokio::join!(a.join(), b.join());
    ja.unwrap();
    jb.unwrap();
    // CompletingRebalance: a member of the new generation commits once it has synced.
    let early = c
        .commit_offsets(commit(Some(&a), "g", 1, &[("t", 0, 1)]))
        .await;
    assert!(
        matches!(early, Err(GroupError::RebalanceInProgress)),
        "{early:?}"
    );
    let (sa, sb) = tokio::join!(a.sync(), b.sync());
    let (sa, _) = (sa.unwrap(), sb.unwrap());
    // A third member starts a rebalance: the others still commit what they processed
    // (as consumers do when their partitions are revoked), then rejoin.
    let third = tokio::spawn({
        let mut m = Sim::new(&c, "g", &["t"]);
        async move { m.join_and_sync().await.unwrap() }
    });
    while a.heartbeat().await.is_ok() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (p, _) = &sa[0];
    let r = c
        .commit_offsets(commit(Some(&a), "g", 1, &[(p, sa[0].1, 7)]))
        .await
        .unwrap();
    assert_eq!(codes(&r), vec![0]);
    let (ra, rb) = tokio::join!(a.join_and_sync(), b.join_and_sync());
    let all = [ra.unwrap(), rb.unwrap(), third.await.unwrap()];
    assert_eq!(union(&all), all_of("t", 4));
}

#[tokio::test(start_paused = true)]
async fn a_simple_commit_makes_a_group_that_lists_as_empty_and_fetches_back() {
    let (c, _dir) = setup(DELAY);
    let r = c
        .commit_offsets(commit(None, "simple", -1, &[("t", 2, 40), ("u", 0, 3)]))
        .await
        .unwrap();
    assert_eq!(codes(&r), vec![0, 0]);
    // The store's own API (what `millrace consume --group` uses) sees the same group.
    assert_eq!(c.store().committed_offset("simple", "t", 2), Some(40));
    c.store().commit_offset("simple", "u", 1, 8).unwrap();
    let all = c.fetch_offsets("simple", None).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].topic, "t");
    let t2 = all[0].partitions[0].1.clone().unwrap();
    assert_eq!(
        (all[0].partitions[0].0, t2.next, t2.metadata.as_str()),
        (2, 40, "at 40")
    );
    assert_eq!(all[1].partitions.len(), 2);
    let some = c
        .fetch_offsets(
            "simple",
            Some(&[("t".into(), vec![2, 3, -1]), ("zz".into(), vec![0])]),
        )
        .unwrap();
    assert_eq!(some[0].partitions[0].1.as_ref().map(|c| c.next), Some(40));
    assert!(some[0].partitions[1].1.is_none() && some[0].partitions[2].1.is_none());
    assert!(some[1].partitions[0].1.is_none());
    assert!(c.fetch_offsets("nobody", None).unwrap().is_empty());
    let listed = c.list_groups();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].group_id.as_str(), listed[0].state),
        ("simple", GroupState::Empty)
    );
    let d = c.describe_group("simple").unwrap();
    assert_eq!((d.state, d.members.len()), (GroupState::Empty, 0));
    assert!(c.describe_group("nobody").is_none());
    let big = CommitOffsets {
        offsets: vec![PartitionCommit {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            metadata: Some("m".repeat(5000)),
        }],
        ..commit(None, "simple", -1, &[])
    };
    let r = c.commit_offsets(big).await.unwrap();
    assert!(matches!(
        r[0],
        Err(GroupError::OffsetMetadataTooLarge { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn delete_groups_refuses_a_live_group_and_deletes_an_empty_ones_offsets() {
    let (c, _dir) = setup(DELAY);
    let mut m = [Sim::new(&c, "g", &["t"])];
    rebalance(&mut m).await;
    let r = c
        .commit_offsets(commit(Some(&m[0]), "g", 1, &[("t", 0, 3)]))
        .await
        .unwrap();
    assert_eq!(codes(&r), vec![0]);
    assert!(matches!(
        c.delete_group("g").await,
        Err(GroupError::NonEmptyGroup)
    ));
    assert_eq!(c.store().committed_offset("g", "t", 0), Some(3));
    m[0].leave().await.unwrap();
    let listed = c.list_groups();
    assert_eq!(
        (listed[0].group_id.as_str(), listed[0].state),
        ("g", GroupState::Empty)
    );
    c.delete_group("g").await.unwrap();
    assert_eq!(c.store().committed_offset("g", "t", 0), None);
    assert!(c.list_groups().is_empty());
    assert!(matches!(
        c.delete_group("g").await,
        Err(GroupError::GroupIdNotFound)
    ));
    assert!(matches!(
        c.delete_group("").await,
        Err(GroupError::InvalidGroupId)
    ));
}

#[tokio::test(start_paused = true)]
async fn offset_delete_spares_the_topics_a_live_member_subscribes_to() {
    let (c, _dir) = setup(DELAY);
    let mut m = [Sim::new(&c, "g", &["t"])];
    rebalance(&mut m).await;
    let r = c
        .commit_offsets(commit(Some(&m[0]), "g", 1, &[("t", 0, 3), ("t", 1, 4)]))
        .await
        .unwrap();
    assert_eq!(codes(&r), vec![0, 0]);
    // Offsets of a topic nobody in the group subscribes to (committed by hand).
    c.store()
        .commit_offsets("g", &[("u", 0, 9), ("u", 1, 9)])
        .unwrap();
    let r = c
        .delete_offsets("g", &[("t".into(), 0), ("u".into(), 0), ("u".into(), -2)])
        .await
        .unwrap();
    assert_eq!(codes(&r), vec![86, 0, 3]);
    assert_eq!(c.store().committed_offset("g", "t", 0), Some(3));
    assert_eq!(c.store().committed_offset("g", "u", 0), None);
    assert_eq!(c.store().committed_offset("g", "u", 1), Some(9));
    m[0].leave().await.unwrap();
    let r = c.delete_offsets("g", &[("t".into(), 0)]).await.unwrap();
    assert_eq!(codes(&r), vec![0]);
    assert_eq!(c.store().committed_offset("g", "t", 0), None);
    assert!(matches!(
        c.delete_offsets("nobody", &[("t".into(), 0)]).await,
        Err(GroupError::GroupIdNotFound)
    ));
}

#[tokio::test]
async fn committed_offsets_and_their_metadata_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = open(dir.path(), Duration::ZERO);
        c.store().create_topic("t", 2, Default::default()).unwrap();
        let r = c
            .commit_offsets(commit(None, "g", -1, &[("t", 0, 11), ("t", 1, 12)]))
            .await
            .unwrap();
        assert_eq!(codes(&r), vec![0, 0]);
    }
    let c = open(dir.path(), Duration::ZERO);
    let all = c.fetch_offsets("g", None).unwrap();
    let got: Vec<(i32, u64, String)> = all[0]
        .partitions
        .iter()
        .map(|(p, c)| {
            let c = c.clone().unwrap();
            (*p, c.next, c.metadata)
        })
        .collect();
    assert_eq!(got, vec![(0, 11, "at 11".into()), (1, 12, "at 12".into())]);
}
