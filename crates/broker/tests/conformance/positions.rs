//! Where a consumer reads: from the beginning or the latest offset, small polls over
//! one batch, seeks by offset and by timestamp.

use super::*;

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
