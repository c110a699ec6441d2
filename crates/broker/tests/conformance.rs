//! One conformance suite, the same test code for every backend (the embedded store, and
//! Kafka when `MILLRACE_TEST_BOOTSTRAP` is set; see `common`). Each test runs its
//! scenario once per backend and names the backend in every failure.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, WAIT, backends, poll_for, poll_n, poll_until, sorted, unique};
use millrace_broker::{
    BrokerError, ConsumedRecord, ConsumerConfig, Header, NewTopic, OffsetReset, ProduceRecord,
    Rebalance, Seek, TopicPartition,
};

/// Runs `scenario` against every backend.
macro_rules! conformance {
    ($name:ident, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            for b in backends().await {
                eprintln!("{}: {}", stringify!($name), b.name);
                tokio::time::timeout(Duration::from_secs(120), $scenario(&b))
                    .await
                    .unwrap_or_else(|_| panic!("{}: {} timed out", stringify!($name), b.name));
            }
        }
    };
}

async fn topic(b: &Backend, prefix: &str, partitions: i32) -> String {
    let name = unique(prefix);
    b.broker
        .create_topic(&NewTopic::new(&name, partitions))
        .await
        .unwrap_or_else(|e| panic!("{}: create {name}: {e}", b.name));
    name
}

fn group_config(group: &str, topic: &str, reset: OffsetReset) -> ConsumerConfig {
    ConsumerConfig {
        group: Some(group.to_string()),
        topics: vec![topic.to_string()],
        offset_reset: reset,
        properties: BTreeMap::new(),
        co_partitioned: false,
        reads_written: false,
    }
}

fn all_config(topic: &str, reset: OffsetReset) -> ConsumerConfig {
    ConsumerConfig {
        group: None,
        topics: vec![topic.to_string()],
        offset_reset: reset,
        properties: BTreeMap::new(),
        co_partitioned: false,
        reads_written: false,
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn to_partition(p: i32, value: String) -> ProduceRecord {
    ProduceRecord {
        partition: Some(p),
        ..ProduceRecord::value(value)
    }
}

// ---------------------------------------------------------------- records

conformance!(order_is_kept_per_partition, order_per_partition);
async fn order_per_partition(b: &Backend) {
    let t = topic(b, "order", 3).await;
    let mut records = Vec::new();
    for i in 0..300 {
        records.push(to_partition(i % 3, format!("{}:{i}", i % 3)));
    }
    // Order must hold across produce calls, and across sends with several in flight
    // (each sent before the one before it is acknowledged).
    let sent = records.split_off(100);
    let second = records.split_off(50);
    let mut delivered = b.broker.produce(&t, &records).await.expect("produce");
    delivered.extend(b.broker.produce(&t, &second).await.expect("produce"));
    let mut acks = Vec::new();
    for chunk in sent.chunks(50) {
        acks.push(b.broker.send(&t, chunk).await.expect("send"));
    }
    for a in acks {
        delivered.extend(a.await.expect("acknowledged"));
    }
    assert_eq!(delivered.len(), 300, "{}", b.name);
    for p in 0..3 {
        let offsets: Vec<i64> = delivered
            .iter()
            .filter(|d| d.partition == p)
            .map(|d| d.offset)
            .collect();
        assert_eq!(
            offsets,
            (0..100).collect::<Vec<i64>>(),
            "{}: partition {p}",
            b.name
        );
    }
    let mut c = b
        .broker
        .consumer(all_config(&t, OffsetReset::Earliest))
        .await
        .expect("consumer");
    let got = poll_n(c.as_mut(), 300).await;
    assert_eq!(got.len(), 300, "{}", b.name);
    for p in 0..3 {
        let mine: Vec<&millrace_broker::ConsumedRecord> =
            got.iter().filter(|r| r.partition == p).collect();
        let values: Vec<String> = mine
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect();
        let want: Vec<String> = (0..300)
            .filter(|i| i % 3 == p)
            .map(|i| format!("{p}:{i}"))
            .collect();
        assert_eq!(values, want, "{}: partition {p} out of order", b.name);
        let offsets: Vec<i64> = mine.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..100).collect::<Vec<i64>>(), "{}", b.name);
        assert!(mine.iter().all(|r| *r.topic == *t), "{}", b.name);
    }
    c.close().await.expect("close");
    b.broker.delete_topic(&t).await.expect("delete");
}

/// Keys and the partition (of 12) the Java client's default partitioner picks:
/// `toPositive(murmur2(key)) % 12`. Computed with kafka-python's Java-compatible murmur2;
/// `murmur2("21") == -973932308` is also a vector of Kafka's own `UtilsTest`.
const JAVA_PARTITIONS_OF_12: &[(&[u8], i32)] = &[
    (b"", 9),
    (b"a", 4),
    (b"21", 0),
    (b"key-0", 1),
    (b"key-1", 0),
    (b"key-2", 2),
    (b"order-42", 0),
    (b"customer/7", 3),
    (b"user:1001", 5),
    (b"user:1002", 5),
    (b"millrace", 2),
    (b"\xff\x00\xfe", 8),
    (b"\xc3\xbcn\xc3\xafcode", 1),
    (b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 4),
];

conformance!(
    keyed_records_land_where_the_java_client_puts_them,
    keyed_partitioning
);
async fn keyed_partitioning(b: &Backend) {
    let t = topic(b, "keyed", 12).await;
    let records: Vec<ProduceRecord> = JAVA_PARTITIONS_OF_12
        .iter()
        .map(|(k, _)| ProduceRecord::keyed(Bytes::from_static(k), "v"))
        .collect();
    let delivered = b.broker.produce(&t, &records).await.expect("produce");
    for ((key, want), d) in JAVA_PARTITIONS_OF_12.iter().zip(&delivered) {
        assert_eq!(
            d.partition,
            *want,
            "{}: key {:?} went to partition {} but the Java client picks {want}",
            b.name,
            String::from_utf8_lossy(key),
            d.partition
        );
    }
    // The same key twice lands in the same partition.
    let again = b
        .broker
        .produce(&t, &[ProduceRecord::keyed("user:1001", "again")])
        .await
        .expect("produce");
    assert_eq!(again[0].partition, 5, "{}", b.name);
    b.broker.delete_topic(&t).await.expect("delete");
}

conformance!(
    null_keys_and_empty_values_round_trip,
    null_keys_and_empty_values
);
async fn null_keys_and_empty_values(b: &Backend) {
    let t = topic(b, "nulls", 1).await;
    let records = vec![
        ProduceRecord::value(""),
        ProduceRecord::keyed("", ""),
        ProduceRecord::keyed("k", ""),
        ProduceRecord::value("v"),
    ];
    b.broker.produce(&t, &records).await.expect("produce");
    let mut c = b
        .broker
        .consumer(all_config(&t, OffsetReset::Earliest))
        .await
        .expect("consumer");
    let got = poll_n(c.as_mut(), 4).await;
    assert_eq!(got.len(), 4, "{}", b.name);
    for (r, g) in records.iter().zip(&got) {
        assert_eq!(g.key, r.key, "{}: key", b.name);
        assert_eq!(g.value, r.value, "{}: value", b.name);
        assert!(g.headers.is_empty(), "{}", b.name);
    }
    assert_eq!(got[0].key, None, "{}: a null key stays null", b.name);
    assert_eq!(
        got[1].key,
        Some(Bytes::new()),
        "{}: an empty key stays empty",
        b.name
    );
    c.close().await.expect("close");
    b.broker.delete_topic(&t).await.expect("delete");
}

conformance!(headers_round_trip_with_duplicate_names, headers_round_trip);
async fn headers_round_trip(b: &Backend) {
    let stamp = now_ms() - 1234;
    let t = topic(b, "headers", 1).await;
    let headers = vec![
        Header::new("trace", "a"),
        Header::new("empty", ""),
        Header::new("trace", "b"),
        Header::new("bin", Bytes::from_static(b"\x00\xff\x01")),
        Header::new("ünï", "code"),
    ];
    let r = ProduceRecord {
        key: Some(Bytes::from_static(b"k")),
        value: Bytes::from_static(b"v"),
        headers: headers.clone(),
        timestamp: Some(stamp),
        partition: None,
    };
    b.broker.produce(&t, &[r]).await.expect("produce");
    let mut c = b
        .broker
        .consumer(all_config(&t, OffsetReset::Earliest))
        .await
        .expect("consumer");
    let got = poll_n(c.as_mut(), 1).await;
    assert_eq!(got.len(), 1, "{}", b.name);
    assert_eq!(
        got[0].headers, headers,
        "{}: headers keep names, order and duplicates",
        b.name
    );
    assert_eq!(got[0].timestamp, stamp, "{}: timestamp", b.name);
    c.close().await.expect("close");
    b.broker.delete_topic(&t).await.expect("delete");
}

conformance!(records_up_to_one_mib, one_mib_records);
async fn one_mib_records(b: &Backend) {
    let name = unique("big");
    let mut nt = NewTopic::new(&name, 1);
    if b.broker.backend() == "kafka" {
        // A Kafka broker's default limit is just over 1 MiB per batch; say so explicitly.
        nt.config
            .insert("max.message.bytes".into(), "4194304".into());
    }
    b.broker.create_topic(&nt).await.expect("create");
    let value: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let records = vec![
        ProduceRecord::keyed("big-1", value.clone()),
        ProduceRecord::value("small"),
        ProduceRecord::keyed("big-2", value.clone()),
    ];
    let delivered = b
        .broker
        .produce(&name, &records)
        .await
        .expect("produce 1 MiB records");
    assert_eq!(delivered.len(), 3, "{}", b.name);
    let mut c = b
        .broker
        .consumer(all_config(&name, OffsetReset::Earliest))
        .await
        .expect("consumer");
    let got = poll_n(c.as_mut(), 3).await;
    assert_eq!(got.len(), 3, "{}", b.name);
    assert_eq!(got[0].value.len(), value.len(), "{}", b.name);
    assert!(got[0].value == value[..], "{}: 1 MiB value differs", b.name);
    assert_eq!(&got[1].value[..], b"small", "{}", b.name);
    assert!(got[2].value == value[..], "{}", b.name);
    c.close().await.expect("close");
    b.broker.delete_topic(&name).await.expect("delete");
}

// ---------------------------------------------------------------- consumer groups

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

conformance!(
    from_beginning_reads_old_records_latest_only_new_ones,
    from_beginning_and_latest
);
async fn from_beginning_and_latest(b: &Backend) {
    let t = topic(b, "reset", 2).await;
    let old: Vec<ProduceRecord> = (0..6)
        .map(|i| to_partition(i % 2, format!("old{i}")))
        .collect();
    b.broker.produce(&t, &old).await.expect("produce");

    let mut earliest = b
        .broker
        .consumer(group_config(&unique("g"), &t, OffsetReset::Earliest))
        .await
        .expect("consumer");
    let got = poll_n(earliest.as_mut(), 6).await;
    assert_eq!(
        got.len(),
        6,
        "{}: --from-beginning reads every old record",
        b.name
    );
    earliest.close().await.expect("close");

    let mut latest = b
        .broker
        .consumer(group_config(&unique("g"), &t, OffsetReset::Latest))
        .await
        .expect("consumer");
    let all: Vec<TopicPartition> = (0..2).map(|p| TopicPartition::new(t.as_str(), p)).collect();
    let early = poll_until(&mut [&mut latest], "an assignment", |a| a[0] == all).await;
    assert!(early[0].is_empty(), "{}: latest read old records", b.name);
    // Let the start position (the end) settle before producing the new record.
    assert!(
        poll_for(latest.as_mut(), Duration::from_secs(1))
            .await
            .is_empty(),
        "{}",
        b.name
    );
    b.broker
        .produce(&t, &[to_partition(1, "new".into())])
        .await
        .expect("produce");
    let got = poll_n(latest.as_mut(), 1).await;
    assert_eq!(got.len(), 1, "{}", b.name);
    assert_eq!(&got[0].value[..], b"new", "{}", b.name);
    latest.close().await.expect("close");
    b.broker.delete_topic(&t).await.expect("delete");
}

conformance!(
    small_polls_over_one_batch_return_each_record_once,
    small_polls_over_one_batch
);
async fn small_polls_over_one_batch(b: &Backend) {
    // One produce call: one batch on the embedded store, which polls of 7 records end
    // in the middle of (the rest of it is kept for the next poll).
    let t = topic(b, "small-polls", 1).await;
    let records: Vec<ProduceRecord> = (0..100)
        .map(|i| ProduceRecord::value(format!("v{i}")))
        .collect();
    b.broker.produce(&t, &records).await.expect("produce");
    let tp = TopicPartition::new(t.as_str(), 0);
    let mut c = b
        .broker
        .consumer(all_config(&t, OffsetReset::Earliest))
        .await
        .expect("consumer");
    let mut got = Vec::new();
    for _ in 0..100 {
        if got.len() >= 100 {
            break;
        }
        let polled = poll_n(c.as_mut(), 7.min(100 - got.len())).await;
        assert!(
            polled.len() <= 7,
            "{}: a poll of 7 gave {}",
            b.name,
            polled.len()
        );
        got.extend(polled);
    }
    let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..100).collect::<Vec<i64>>(), "{}", b.name);
    for (r, i) in got.iter().zip(0..) {
        assert_eq!(r.value, Bytes::from(format!("v{i}")), "{}", b.name);
    }
    // Seeks into, behind and past what a poll left over.
    for (to, want) in [(50, 50..57), (53, 53..60), (3, 3..10), (96, 96..100)] {
        c.seek(&tp, Seek::Offset(to)).await.expect("seek");
        let polled = poll_n(c.as_mut(), want.clone().count()).await;
        let offsets: Vec<i64> = polled.iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets,
            want.collect::<Vec<i64>>(),
            "{}: after seek to {to}",
            b.name
        );
        for r in &polled {
            assert_eq!(r.value, Bytes::from(format!("v{}", r.offset)), "{}", b.name);
        }
    }
    c.close().await.expect("close");
    b.broker.delete_topic(&t).await.expect("delete");
}

conformance!(seek_by_offset_and_timestamp, seek_offset_and_timestamp);
async fn seek_offset_and_timestamp(b: &Backend) {
    let t = topic(b, "seek", 1).await;
    // Recent stamps: Kafka's retention (7 days) would delete older records mid-test.
    let base = now_ms() - 60_000;
    let records: Vec<ProduceRecord> = (0..10)
        .map(|i| ProduceRecord {
            timestamp: Some(base + i * 1000),
            ..ProduceRecord::value(format!("v{i}"))
        })
        .collect();
    b.broker.produce(&t, &records).await.expect("produce");
    let tp = TopicPartition::new(t.as_str(), 0);
    let mut c = b
        .broker
        .consumer(all_config(&t, OffsetReset::Earliest))
        .await
        .expect("consumer");
    assert_eq!(c.assignment(), vec![tp.clone()], "{}", b.name);
    assert_eq!(poll_n(c.as_mut(), 10).await.len(), 10, "{}", b.name);

    for (to, want) in [
        (Seek::Offset(7), Some(7)),
        (Seek::Timestamp(base + 3000), Some(3)),
        (Seek::Timestamp(base + 3500), Some(4)),
        (Seek::Timestamp(base - 1), Some(0)),
        (Seek::Beginning, Some(0)),
        (Seek::Offset(2), Some(2)),
        (Seek::End, None),
        (Seek::Timestamp(base + 60_000), None),
    ] {
        c.seek(&tp, to)
            .await
            .unwrap_or_else(|e| panic!("{}: seek {to:?}: {e}", b.name));
        if let Some(want) = want {
            let got = poll_n(c.as_mut(), 1).await;
            assert_eq!(
                got.first().map(|r| r.offset),
                Some(want),
                "{}: after seek {to:?}",
                b.name
            );
            assert_eq!(got[0].timestamp, base + want * 1000, "{}", b.name);
        } else {
            let got = poll_for(c.as_mut(), Duration::from_millis(700)).await;
            assert!(got.is_empty(), "{}: after seek {to:?} read {got:?}", b.name);
        }
    }
    let err = c
        .seek(&TopicPartition::new(t.as_str(), 5), Seek::Beginning)
        .await
        .expect_err("not assigned");
    assert!(matches!(err, BrokerError::Invalid(_)), "{}: {err}", b.name);
    c.close().await.expect("close");
    b.broker.delete_topic(&t).await.expect("delete");
}

// ---------------------------------------------------------------- topics admin

conformance!(topics_create_describe_delete, topics_admin);
async fn topics_admin(b: &Backend) {
    let t = topic(b, "admin", 3).await;
    assert!(
        b.broker.list_topics().await.expect("list").contains(&t),
        "{}",
        b.name
    );
    let d = b.broker.describe_topic(&t).await.expect("describe");
    assert_eq!(d.name, t, "{}", b.name);
    let ids: Vec<i32> = d.partitions.iter().map(|p| p.partition).collect();
    assert_eq!(ids, vec![0, 1, 2], "{}", b.name);
    assert!(
        d.partitions
            .iter()
            .all(|p| p.start_offset == 0 && p.end_offset == 0),
        "{}: {d:?}",
        b.name
    );

    let records: Vec<ProduceRecord> = (0..2).map(|i| to_partition(1, format!("v{i}"))).collect();
    b.broker.produce(&t, &records).await.expect("produce");
    let d = b.broker.describe_topic(&t).await.expect("describe");
    let ends: Vec<i64> = d.partitions.iter().map(|p| p.end_offset).collect();
    assert_eq!(ends, vec![0, 2, 0], "{}: end offsets", b.name);

    b.broker.delete_topic(&t).await.expect("delete");
    assert!(
        !b.broker.list_topics().await.expect("list").contains(&t),
        "{}",
        b.name
    );
    let err = b.broker.describe_topic(&t).await.expect_err("deleted");
    assert!(
        matches!(err, BrokerError::UnknownTopic(_)),
        "{}: {err}",
        b.name
    );
}

conformance!(topic_config_is_kept, topic_config);
async fn topic_config(b: &Backend) {
    let name = unique("config");
    let mut nt = NewTopic::new(&name, 1);
    nt.config.insert("retention.ms".into(), "3600000".into());
    b.broker.create_topic(&nt).await.expect("create");
    let d = b.broker.describe_topic(&name).await.expect("describe");
    assert_eq!(
        d.config.get("retention.ms").map(String::as_str),
        Some("3600000"),
        "{}: {d:?}",
        b.name
    );
    b.broker.delete_topic(&name).await.expect("delete");
}

conformance!(
    duplicate_and_unknown_topics_are_clear_errors,
    duplicate_and_unknown_topics
);
async fn duplicate_and_unknown_topics(b: &Backend) {
    let t = topic(b, "dup", 1).await;
    let err = b
        .broker
        .create_topic(&NewTopic::new(&t, 1))
        .await
        .expect_err("duplicate");
    assert!(
        matches!(&err, BrokerError::TopicExists(n) if *n == t),
        "{}: {err}",
        b.name
    );
    assert!(
        err.to_string().contains("already exists"),
        "{}: {err}",
        b.name
    );

    let missing = unique("missing");
    let err = b
        .broker
        .describe_topic(&missing)
        .await
        .expect_err("unknown");
    assert!(
        matches!(&err, BrokerError::UnknownTopic(n) if *n == missing),
        "{}: {err}",
        b.name
    );
    let err = b
        .broker
        .produce(&missing, &[ProduceRecord::value("x")])
        .await
        .expect_err("unknown");
    assert!(
        matches!(err, BrokerError::UnknownTopic(_)),
        "{}: {err}",
        b.name
    );
    let err = b.broker.delete_topic(&missing).await.expect_err("unknown");
    assert!(
        matches!(err, BrokerError::UnknownTopic(_)),
        "{}: {err}",
        b.name
    );
    let err = match b
        .broker
        .consumer(all_config(&missing, OffsetReset::Earliest))
        .await
    {
        Ok(_) => panic!("{}: a consumer of an unknown topic was created", b.name),
        Err(e) => e,
    };
    assert!(
        matches!(err, BrokerError::UnknownTopic(_)),
        "{}: {err}",
        b.name
    );
    let err = b
        .broker
        .committed("g", &missing)
        .await
        .expect_err("unknown");
    assert!(
        matches!(err, BrokerError::UnknownTopic(_)),
        "{}: {err}",
        b.name
    );
    b.broker.delete_topic(&t).await.expect("delete");
}

conformance!(
    produce_to_a_partition_that_does_not_exist_is_refused,
    bad_partition
);
async fn bad_partition(b: &Backend) {
    let t = topic(b, "badpart", 2).await;
    let err = b
        .broker
        .produce(&t, &[to_partition(7, "x".into())])
        .await
        .expect_err("no partition 7");
    assert!(matches!(err, BrokerError::Invalid(_)), "{}: {err}", b.name);
    b.broker.delete_topic(&t).await.expect("delete");
}
