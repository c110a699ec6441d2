//! Records: order per partition, the Java client's key partitioning, null keys and
//! empty values, headers, records up to 1 MiB.

use super::*;

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
