//! Topics admin: create, describe, delete, their config, duplicate and unknown topics,
//! a partition that does not exist.

use super::*;

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
