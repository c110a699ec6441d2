//! What only the Kafka backend has: connecting (bounded, clear errors, secrets kept out
//! of messages), Kafka's own refusals in plain words, and a replicated cluster.
//!
//! The connection tests need no broker. The others use `MILLRACE_TEST_BOOTSTRAP`
//! (required in CI, see `common`) and, for replication, `MILLRACE_TEST_CLUSTER_BOOTSTRAP`
//! (`scripts/kafka.sh start-cluster` prints it).
#![cfg(feature = "kafka")]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{kafka_bootstrap, unique};
use millrace_broker::kafka::{KafkaBroker, parse_properties};
use millrace_broker::{
    Broker, BrokerError, ConsumerConfig, InFlight, NewTopic, OffsetReset, ProduceRecord,
};
use millrace_testkit::poll_until_assigned;

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn unreachable_broker_is_a_clear_error_within_the_timeout() {
    let started = Instant::now();
    // Port 1 on loopback: nothing listens there, connections are refused at once.
    let err = KafkaBroker::connect("127.0.0.1:1", BTreeMap::new(), Duration::from_secs(2))
        .await
        .expect_err("nothing listens on port 1");
    let took = started.elapsed();
    assert!(
        matches!(err, BrokerError::Unreachable { .. }),
        "expected Unreachable, got {err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("127.0.0.1:1") && msg.contains("2000 ms"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(6), "took {took:?}");
}

#[tokio::test]
async fn an_unknown_client_property_is_named_in_the_error() {
    let err = KafkaBroker::connect(
        "127.0.0.1:1",
        props(&[("no.such.property", "1")]),
        Duration::from_secs(1),
    )
    .await
    .expect_err("bad property");
    assert!(matches!(err, BrokerError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("no.such.property"), "{err}");
}

#[tokio::test]
async fn secrets_never_appear_in_errors() {
    let secret = "hunter2-Sup3rSecret";
    // A bad mechanism makes librdkafka refuse the config and quote values back.
    let err = KafkaBroker::connect(
        "127.0.0.1:1",
        props(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", secret),
            ("sasl.username", "alice"),
            ("sasl.password", secret),
        ]),
        Duration::from_secs(1),
    )
    .await
    .expect_err("bad mechanism");
    assert!(!err.to_string().contains(secret), "secret leaked: {err}");
    assert!(
        !format!("{err:?}").contains(secret),
        "secret leaked: {err:?}"
    );

    // A well-formed SASL config against nothing: Unreachable, still without the secret.
    let err = KafkaBroker::connect(
        "127.0.0.1:1",
        props(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "alice"),
            ("sasl.password", secret),
        ]),
        Duration::from_secs(1),
    )
    .await
    .expect_err("nothing there");
    assert!(matches!(err, BrokerError::Unreachable { .. }), "{err}");
    assert!(
        !format!("{err} {err:?}").contains(secret),
        "secret leaked: {err:?}"
    );
}

#[tokio::test]
async fn command_config_files_use_kafkas_properties_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("client.properties");
    std::fs::write(
        &path,
        "# as for kafka-console-producer --producer.config\n\
         security.protocol=SASL_SSL\n\
         sasl.mechanism=PLAIN\n\
         sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\\n\
         \x20   username=\"alice\" password=\"pw\";\n",
    )
    .expect("write");
    let p = millrace_broker::kafka::read_properties_file(&path).expect("read");
    assert_eq!(p["security.protocol"], "SASL_SSL");
    assert!(p["sasl.jaas.config"].contains("username=\"alice\""));
    assert_eq!(parse_properties("a = b\n")["a"], "b");
    let err = millrace_broker::kafka::read_properties_file(&dir.path().join("missing"))
        .expect_err("missing file");
    assert!(err.to_string().contains("missing"), "{err}");
}

async fn kafka() -> Option<KafkaBroker> {
    let bootstrap = kafka_bootstrap()?;
    Some(
        KafkaBroker::connect(&bootstrap, BTreeMap::new(), Duration::from_secs(10))
            .await
            .expect("connect"),
    )
}

#[tokio::test]
async fn replication_factor_larger_than_the_cluster_is_refused_in_plain_words() {
    let Some(k) = kafka().await else { return };
    let mut nt = NewTopic::new(unique("rf"), 1);
    nt.replication_factor = 5;
    let err = k.create_topic(&nt).await.expect_err("rf 5");
    let msg = err.to_string();
    assert!(matches!(err, BrokerError::Invalid(_)), "{msg}");
    assert!(
        msg.contains("replication factor 5 is larger than the"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_bad_topic_config_is_refused() {
    let Some(k) = kafka().await else { return };
    let mut nt = NewTopic::new(unique("badcfg"), 1);
    nt.config
        .insert("retention.ms".into(), "not-a-number".into());
    let err = k.create_topic(&nt).await.expect_err("bad config");
    assert!(matches!(err, BrokerError::Invalid(_)), "{err}");
    // millrace's own `durability` is not a Kafka config: left out, not refused.
    let mut nt = NewTopic::new(unique("durable"), 1);
    nt.config.insert("durability".into(), "batch".into());
    k.create_topic(&nt)
        .await
        .expect("durability is ignored on Kafka");
    k.delete_topic(&nt.name).await.expect("delete");
}

/// A record the broker refuses fails its send's acknowledgement in plain words, after
/// the records that were written are acknowledged; the producer goes on producing.
#[tokio::test]
async fn a_refused_record_fails_its_send_in_plain_words() {
    let Some(k) = kafka().await else { return };
    let t = unique("refused");
    let mut nt = NewTopic::new(&t, 1);
    nt.config.insert("max.message.bytes".into(), "2000".into());
    k.create_topic(&nt).await.expect("create");
    let small = ProduceRecord::value("small");
    let big = ProduceRecord::value(vec![b'x'; 20_000]);

    // Acknowledged on its own first, so it is not in the refused record's request.
    let first = k
        .produce(&t, std::slice::from_ref(&small))
        .await
        .expect("small");
    assert_eq!(first[0].offset, 0);
    let err = k
        .produce(&t, &[big])
        .await
        .expect_err("the topic accepts 2000 bytes at most");
    assert!(
        matches!(err, BrokerError::Invalid(_)) && err.to_string().contains(&t),
        "{err}"
    );
    assert!(err.to_string().contains("max.message.bytes"), "{err}");
    let after = k
        .produce(&t, &[small.clone(), small])
        .await
        .expect("the producer goes on");
    let offsets: Vec<i64> = after.iter().map(|d| d.offset).collect();
    assert_eq!(offsets, vec![1, 2]);
    k.delete_topic(&t).await.expect("delete");
}

#[tokio::test]
async fn a_closed_consumer_leaves_at_once_and_an_idle_poll_is_bounded() {
    let Some(k) = kafka().await else { return };
    let t = unique("idle");
    k.create_topic(&NewTopic::new(&t, 1)).await.expect("create");
    let mut c = k
        .consumer(ConsumerConfig {
            group: Some(unique("g")),
            topics: vec![t.clone()],
            offset_reset: OffsetReset::Earliest,
            properties: BTreeMap::new(),
            co_partitioned: false,
            reads_written: false,
        })
        .await
        .expect("consumer");
    let started = Instant::now();
    let got = c.poll(10, Duration::from_millis(300)).await.expect("poll");
    assert!(got.is_empty());
    assert!(started.elapsed() < Duration::from_secs(2));
    let started = Instant::now();
    c.close().await.expect("close");
    assert!(started.elapsed() < Duration::from_secs(10));
    k.delete_topic(&t).await.expect("delete");
}

/// Replication factor 3 with `min.insync.replicas=2` on the three-broker cluster: topics
/// are made and described as asked, and a produce is acknowledged while every broker is
/// up. That acknowledgements wait for the in-sync replicas, and that retries write
/// nothing twice, is tested with brokers taken away: the reliability suite's
/// `kafka_durability.rs`.
#[tokio::test]
async fn replicated_topics_on_a_three_broker_cluster() {
    let Some(bootstrap) = common::cluster_bootstrap() else {
        return;
    };
    let k = KafkaBroker::connect(&bootstrap, BTreeMap::new(), Duration::from_secs(10))
        .await
        .expect("connect");
    let mut nt = NewTopic::new(unique("rf3"), 3);
    nt.replication_factor = 3;
    nt.config.insert("min.insync.replicas".into(), "2".into());
    k.create_topic(&nt).await.expect("create rf 3");
    let d = k.describe_topic(&nt.name).await.expect("describe");
    for p in &d.partitions {
        assert_eq!(p.replicas.len(), 3, "{d:?}");
        assert!(p.leader.is_some(), "{d:?}");
    }
    assert_eq!(
        d.config.get("min.insync.replicas").map(String::as_str),
        Some("2")
    );
    let delivered = k
        .produce(
            &nt.name,
            &(0..30)
                .map(|i| ProduceRecord::keyed(format!("k{i}"), "v"))
                .collect::<Vec<_>>(),
        )
        .await
        .expect("acks=all produce");
    assert_eq!(delivered.len(), 30);
    k.delete_topic(&nt.name).await.expect("delete");
}

/// Two clients making the same topic at once (two instances of a pipeline starting
/// together): the one Kafka tells the topic exists may go on to use it at once, as the
/// one that made it does. Each has connections of its own, so each asks brokers whose
/// metadata may trail the controller's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_made_by_another_client_at_the_same_time_is_usable_when_create_returns() {
    let Some(bootstrap) = common::cluster_bootstrap() else {
        return;
    };
    let connect = || KafkaBroker::connect(&bootstrap, BTreeMap::new(), Duration::from_secs(10));
    let (a, b) = (connect().await.expect("a"), connect().await.expect("b"));
    for round in 0..12 {
        let mut nt = NewTopic::new(unique(&format!("both-make-{round}")), 3);
        nt.replication_factor = 3;
        let (made_a, made_b) = tokio::join!(a.create_topic(&nt), b.create_topic(&nt));
        for made in [made_a, made_b] {
            assert!(
                matches!(made, Ok(()) | Err(BrokerError::TopicExists(_))),
                "round {round}: {made:?}"
            );
        }
        let (seen_a, seen_b) = tokio::join!(a.partitions(&nt.name), b.partitions(&nt.name));
        for seen in [seen_a, seen_b] {
            let seen = seen.unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(seen.len(), 3, "round {round}: {seen:?}");
        }
        a.delete_topic(&nt.name).await.expect("delete");
    }
}

/// A consumer of `topic` in `group`, from the earliest offset.
fn member_of(group: &str, topic: &str) -> ConsumerConfig {
    ConsumerConfig {
        group: Some(group.to_string()),
        topics: vec![topic.to_string()],
        offset_reset: OffsetReset::Earliest,
        properties: BTreeMap::new(),
        co_partitioned: false,
        reads_written: false,
    }
}

/// A member that loses partitions in a rebalance first waits for the work its owner
/// has in flight (`hand_over_after`): the partitions' next owner gets them only once
/// that work is done, so it finds every output the old owner wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_partitions_go_to_the_next_owner_only_after_the_work_in_flight() {
    let Some(k) = kafka().await else { return };
    let t = unique("handover");
    k.create_topic(&NewTopic::new(&t, 2)).await.expect("create");
    let group = unique("g");
    let config = || member_of(&group, &t);
    let mut a = k.consumer(config()).await.expect("consumer a");
    let work = InFlight::default();
    a.hand_over_after(work.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.assignment().len() < 2 {
        assert!(Instant::now() < deadline, "a never got both partitions");
        a.poll(10, Duration::from_millis(100))
            .await
            .expect("poll a");
    }
    // A batch of a's is being produced; b joins, and a goes on polling as a stage does.
    let producing = work.begin();
    let b = k.consumer(config()).await.expect("consumer b");
    let stop = Arc::new(AtomicBool::new(false));
    // When a's last poll returned: a poll blocked past its 100 ms is a's rebalance
    // callback waiting for the work in flight before it gives a partition up.
    let last_poll = Arc::new(Mutex::new(Instant::now()));
    let a_polls = {
        let (stop, last_poll) = (Arc::clone(&stop), Arc::clone(&last_poll));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                a.poll(10, Duration::from_millis(100))
                    .await
                    .expect("poll a");
                *last_poll.lock().expect("lock") = Instant::now();
            }
            a
        })
    };
    let assigned: Arc<Mutex<Option<Instant>>> = Arc::default();
    let b_polls = {
        let assigned = Arc::clone(&assigned);
        tokio::spawn(async move {
            let mut b = b;
            poll_until_assigned(b.as_mut(), "b", Duration::from_secs(120)).await;
            *assigned.lock().expect("lock") = Some(Instant::now());
            b
        })
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while last_poll.lock().expect("lock").elapsed() < Duration::from_secs(2) {
        assert!(
            assigned.lock().expect("lock").is_none(),
            "b was given a partition while a still had work in flight for it"
        );
        assert!(
            Instant::now() < deadline,
            "a never waited to give a partition up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        assigned.lock().expect("lock").is_none(),
        "b was given a partition while a still had work in flight for it"
    );
    let released = Instant::now();
    drop(producing);
    let b = b_polls.await.expect("b");
    let assigned = assigned.lock().expect("lock").expect("assigned");
    assert!(assigned >= released);
    stop.store(true, Ordering::Relaxed);
    let a = a_polls.await.expect("a");
    assert_eq!(
        a.assignment().len() + b.assignment().len(),
        2,
        "every partition has one owner"
    );
    a.close().await.expect("close a");
    b.close().await.expect("close b");
    k.delete_topic(&t).await.expect("delete");
}

/// Records reach a consumer through a queue its assigned partitions forward to
/// (`kafka/fetched.rs`); librdkafka drops that forward when a partition is revoked and
/// keeps its own away while an application's was set, so a partition given back must
/// forward again, or its records would wait in librdkafka unseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_given_back_after_a_rebalance_delivers_again() {
    let Some(k) = kafka().await else { return };
    let t = unique("giveback");
    k.create_topic(&NewTopic::new(&t, 2)).await.expect("create");
    let group = unique("g");
    let config = || member_of(&group, &t);
    let produce = |tag: &'static str| {
        let k = k.clone();
        let t = t.clone();
        async move {
            for p in 0..2 {
                let records: Vec<ProduceRecord> = (0..50)
                    .map(|i| ProduceRecord {
                        partition: Some(p),
                        ..ProduceRecord::value(format!("{tag}-{p}-{i}"))
                    })
                    .collect();
                k.produce(&t, &records).await.expect("produce");
            }
        }
    };
    // Polls `c` until it has seen every `tag` record of both partitions.
    async fn read_all(c: &mut Box<dyn millrace_broker::Consumer>, tag: &str) {
        let mut seen = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < 100 {
            assert!(
                Instant::now() < deadline,
                "saw {} of the 100 '{tag}' records: {seen:?}",
                seen.len()
            );
            for r in c.poll(100, Duration::from_millis(100)).await.expect("poll") {
                let v = String::from_utf8_lossy(&r.value).to_string();
                if v.starts_with(tag) {
                    assert!(v.starts_with(&format!("{tag}-{}-", r.partition)), "{v}");
                    seen.insert(v);
                }
            }
        }
    }

    let mut a = k.consumer(config()).await.expect("consumer a");
    produce("before").await;
    read_all(&mut a, "before").await;
    assert_eq!(a.assignment().len(), 2);

    // b takes one partition away from a, then leaves: a gets it back.
    let mut b = k.consumer(config()).await.expect("consumer b");
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.assignment().is_empty() || a.assignment().len() != 1 {
        assert!(Instant::now() < deadline, "b never got a partition");
        a.poll(100, Duration::from_millis(50))
            .await
            .expect("poll a");
        b.poll(100, Duration::from_millis(50))
            .await
            .expect("poll b");
    }
    b.close().await.expect("close b");
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.assignment().len() != 2 {
        assert!(Instant::now() < deadline, "a never got its partition back");
        a.poll(100, Duration::from_millis(50))
            .await
            .expect("poll a");
    }

    produce("after").await;
    read_all(&mut a, "after").await;
    a.close().await.expect("close a");
    k.delete_topic(&t).await.expect("delete");
}
