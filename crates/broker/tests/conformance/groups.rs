//! Consumer groups: members split the partitions and hand them over, co-partitioned
//! members, disjoint reads, committed offsets surviving a restart.

use super::*;

conformance!(
    two_consumers_in_a_group_split_the_partitions_and_a_leaver_hands_over,
    group_split_and_handover
);
async fn group_split_and_handover(b: &Backend) {
    let t = topic(b, "group", 4).await;
    let g = unique("g");
    let all: Vec<TopicPartition> = (0..4).map(|p| TopicPartition::new(t.as_str(), p)).collect();
    let mut c1 = b
        .broker
        .consumer(group_config(&g, &t, OffsetReset::Earliest))
        .await
        .expect("c1");
    poll_until(&mut [&mut c1], "c1 to own all partitions", |a| a[0] == all).await;
    let first = c1.take_rebalances();
    assert!(
        first.iter().any(|r| matches!(r, Rebalance::Assigned(_))),
        "{}: c1 saw no assignment: {first:?}",
        b.name
    );

    let mut c2 = b
        .broker
        .consumer(group_config(&g, &t, OffsetReset::Earliest))
        .await
        .expect("c2");
    poll_until(
        &mut [&mut c1, &mut c2],
        "the group to split the partitions",
        |a| {
            let mut both: Vec<TopicPartition> = a[0].iter().chain(&a[1]).cloned().collect();
            both.sort();
            !a[0].is_empty() && !a[1].is_empty() && both == all
        },
    )
    .await;
    let c2_owned = sorted(c2.assignment());
    assert!(
        c1.take_rebalances()
            .iter()
            .any(|r| matches!(r, Rebalance::Revoked(_))),
        "{}: c1 was not told of the revocation",
        b.name
    );

    // c2 leaves: c1 gets its partitions back.
    c2.close().await.expect("close c2");
    poll_until(
        &mut [&mut c1],
        "c1 to take over the leaver's partitions",
        |a| a[0] == all,
    )
    .await;
    let regained: Vec<TopicPartition> = c1
        .take_rebalances()
        .into_iter()
        .filter_map(|r| match r {
            Rebalance::Assigned(tps) => Some(tps),
            _ => None,
        })
        .flatten()
        .collect();
    for tp in &c2_owned {
        assert!(
            regained.contains(tp),
            "{}: {tp} was not handed over to c1",
            b.name
        );
    }
    c1.close().await.expect("close c1");
    b.broker.delete_topic(&t).await.expect("delete");
}

conformance!(
    co_partitioned_members_own_the_same_partitions_of_every_topic,
    co_partitioned_members
);

/// Two members of a co-partitioned group (as a join by key or a reduce reads its
/// inputs) over two topics of four partitions: whichever member owns partition p of one
/// topic owns partition p of the other, so the records of one key meet in one member.
async fn co_partitioned_members(b: &Backend) {
    let (left, right) = (topic(b, "co-left", 4).await, topic(b, "co-right", 4).await);
    let g = unique("co-group");
    let config = || ConsumerConfig {
        topics: vec![left.clone(), right.clone()],
        co_partitioned: true,
        ..group_config(&g, &left, OffsetReset::Earliest)
    };
    let mut c1 = b.broker.consumer(config()).await.expect("c1");
    let mut c2 = b.broker.consumer(config()).await.expect("c2");
    poll_until(
        &mut [&mut c1, &mut c2],
        "the two members to share the eight partitions",
        |a| !a[0].is_empty() && !a[1].is_empty() && a[0].len() + a[1].len() == 8,
    )
    .await;
    for (name, c) in [("c1", &c1), ("c2", &c2)] {
        let owned = c.assignment();
        let of = |t: &str| -> Vec<i32> {
            let mut ps: Vec<i32> = (owned.iter())
                .filter(|tp| *tp.topic == *t)
                .map(|tp| tp.partition)
                .collect();
            ps.sort();
            ps
        };
        assert_eq!(
            of(&left),
            of(&right),
            "{}: {name} owns other partitions of the two topics: {owned:?}",
            b.name
        );
    }
    c1.close().await.expect("close c1");
    c2.close().await.expect("close c2");
    for t in [&left, &right] {
        b.broker.delete_topic(t).await.expect("delete");
    }
}

conformance!(
    group_members_each_read_their_own_partitions,
    group_members_read_disjoint_records
);
async fn group_members_read_disjoint_records(b: &Backend) {
    let t = topic(b, "split", 4).await;
    let g = unique("g");
    let records: Vec<ProduceRecord> = (0..40)
        .map(|i| to_partition(i % 4, format!("r{i}")))
        .collect();
    b.broker.produce(&t, &records).await.expect("produce");
    let all: Vec<TopicPartition> = (0..4).map(|p| TopicPartition::new(t.as_str(), p)).collect();
    let mut c1 = b
        .broker
        .consumer(group_config(&g, &t, OffsetReset::Earliest))
        .await
        .expect("c1");
    let mut c2 = b
        .broker
        .consumer(group_config(&g, &t, OffsetReset::Earliest))
        .await
        .expect("c2");
    let mut seen = poll_until(&mut [&mut c1, &mut c2], "a split assignment", |a| {
        let mut both: Vec<TopicPartition> = a[0].iter().chain(&a[1]).cloned().collect();
        both.sort();
        !a[0].is_empty() && !a[1].is_empty() && both == all
    })
    .await;
    let deadline = std::time::Instant::now() + WAIT;
    // Counted distinct: a record read twice across the rebalance must not stand in for
    // one not read yet.
    let distinct = |seen: &[Vec<ConsumedRecord>]| {
        let mut v: Vec<&[u8]> = seen.iter().flatten().map(|r| &r.value[..]).collect();
        v.sort();
        v.dedup();
        v.len()
    };
    while distinct(&seen) < 40 && std::time::Instant::now() < deadline {
        seen[0].extend(
            c1.poll(100, Duration::from_millis(100))
                .await
                .expect("poll"),
        );
        seen[1].extend(
            c2.poll(100, Duration::from_millis(100))
                .await
                .expect("poll"),
        );
    }
    // A record may be read twice across a rebalance (at-least-once), never lost.
    let mut values: Vec<String> = seen
        .iter()
        .flatten()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 40, "{}: every record read", b.name);
    // Once split, each member reads only partitions it owns.
    let (a1, a2) = (sorted(c1.assignment()), sorted(c2.assignment()));
    assert!(
        a1.iter().all(|tp| !a2.contains(tp)),
        "{}: overlapping {a1:?} {a2:?}",
        b.name
    );
    c1.close().await.expect("close");
    c2.close().await.expect("close");
    b.broker.delete_topic(&t).await.expect("delete");
}

conformance!(
    committed_offsets_survive_a_restart,
    committed_offsets_survive_restart
);
async fn committed_offsets_survive_restart(b: &Backend) {
    let t = topic(b, "commit", 1).await;
    let g = unique("g");
    let records: Vec<ProduceRecord> = (0..10)
        .map(|i| ProduceRecord::value(format!("v{i}")))
        .collect();
    b.broker.produce(&t, &records).await.expect("produce");
    let before = b.broker.committed(&g, &t).await.expect("committed");
    assert_eq!(before, vec![(0, None)], "{}: nothing committed yet", b.name);

    let mut c = b
        .broker
        .consumer(group_config(&g, &t, OffsetReset::Earliest))
        .await
        .expect("consumer");
    let got = poll_n(c.as_mut(), 10).await;
    assert_eq!(got.len(), 10, "{}", b.name);
    // Commit half way: the next offset to read is 5.
    c.commit(&[(TopicPartition::new(t.as_str(), 0), 5)])
        .await
        .expect("commit");
    c.close().await.expect("close");
    assert_eq!(
        b.broker.committed(&g, &t).await.expect("committed"),
        vec![(0, Some(5))],
        "{}",
        b.name
    );

    let mut again = b
        .broker
        .consumer(group_config(&g, &t, OffsetReset::Earliest))
        .await
        .expect("consumer");
    let rest = poll_n(again.as_mut(), 5).await;
    let offsets: Vec<i64> = rest.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        vec![5, 6, 7, 8, 9],
        "{}: resumed at the committed offset",
        b.name
    );
    assert!(
        poll_for(again.as_mut(), Duration::from_millis(500))
            .await
            .is_empty(),
        "{}",
        b.name
    );
    again.close().await.expect("close");

    // A consumer without a group cannot commit.
    let mut free = b
        .broker
        .consumer(all_config(&t, OffsetReset::Earliest))
        .await
        .expect("consumer");
    let err = free
        .commit(&[(TopicPartition::new(t.as_str(), 0), 1)])
        .await
        .expect_err("no group");
    assert!(matches!(err, BrokerError::Invalid(_)), "{}: {err}", b.name);
    free.close().await.expect("close");
    b.broker.delete_topic(&t).await.expect("delete");
}
