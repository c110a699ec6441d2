//! librdkafka (through the `rdkafka` crate) against the server: an idempotent producer
//! with acks=all, a consumer group, every compression codec, the admin calls (topics,
//! partitions, configs, DeleteRecords) and offsets by time.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Server, WAIT, admin, config, unique};
use rdkafka::admin::{
    AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

async fn create_topic(server: &Server, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let r = admin(server)
        .create_topics([&t], &AdminOptions::new())
        .await
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
}

fn producer(server: &Server, extra: &[(&str, &str)]) -> BaseProducer {
    let mut c = config(server);
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().unwrap()
}

/// Sends `n` records `key-i`/`value-i` (header `i`) and waits until all are acknowledged.
fn produce(p: &BaseProducer, topic: &str, n: usize) {
    for i in 0..n {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let index = i.to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: "i",
            value: Some(index.as_bytes()),
        });
        p.send(
            BaseRecord::to(topic)
                .key(&key)
                .payload(&value)
                .headers(headers),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        p.poll(Duration::ZERO);
    }
    p.flush(WAIT).unwrap();
}

fn consumer(server: &Server, group: &str) -> BaseConsumer {
    config(server)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "10000")
        .create()
        .unwrap()
}

/// Polls until `n` records arrived; returns (key, value, header i) of each.
fn consume(c: &BaseConsumer, n: usize) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let text =
                |b: Option<&[u8]>| String::from_utf8(b.unwrap_or_default().to_vec()).unwrap();
            let header = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "i").map(|h| text(h.value)))
                .unwrap_or_default();
            got.push((text(m.key()), text(m.payload()), header));
        }
    }
    got
}

fn expected(n: usize) -> Vec<(String, String, String)> {
    (0..n)
        .map(|i| (format!("key-{i}"), format!("value-{i}"), i.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_producer_and_a_consumer_group_move_every_record_once() {
    let server = Server::start();
    let topic = unique("orders");
    create_topic(&server, &topic, 3, &[]).await;
    let p = producer(&server, &[("enable.idempotence", "true"), ("acks", "all")]);
    produce(&p, &topic, 300);

    let group = unique("readers");
    let c = consumer(&server, &group);
    c.subscribe(&[&topic]).unwrap();
    let mut got = consume(&c, 300);
    c.commit_consumer_state(CommitMode::Sync).unwrap();
    got.sort_by_key(|(k, _, _)| k[4..].parse::<usize>().unwrap());
    assert_eq!(
        got,
        expected(300),
        "every record once, with key, value and header"
    );
    drop(c);

    // The group resumes where it committed: nothing is read again.
    produce(&p, &topic, 1);
    let c = consumer(&server, &group);
    c.subscribe(&[&topic]).unwrap();
    let again = consume(&c, 1);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1, "value-0", "only the new record: {again:?}");
    let end: i64 = (0..3)
        .map(|p| c.fetch_watermarks(&topic, p, WAIT).unwrap().1)
        .sum();
    assert_eq!(
        end, 301,
        "the idempotent producer appended each record once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_is_produced_and_read_back() {
    let server = Server::start();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = unique(codec);
        create_topic(&server, &topic, 1, &[]).await;
        let p = producer(&server, &[("compression.type", codec), ("linger.ms", "20")]);
        produce(&p, &topic, 500);
        let c = consumer(&server, &unique("g"));
        c.subscribe(&[&topic]).unwrap();
        assert_eq!(consume(&c, 500), expected(500), "{codec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_describes_alters_grows_and_deletes_topics() {
    let server = Server::start();
    let admin = admin(&server);
    let opts = AdminOptions::new();
    let topic = unique("admin");
    create_topic(
        &server,
        &topic,
        2,
        &[("durability", "none"), ("cleanup.policy", "compact")],
    )
    .await;
    let bad = NewTopic::new("refused", 1, TopicReplication::Fixed(1)).set("flush.messages", "10");
    let r = admin.create_topics([&bad], &opts).await.unwrap();
    assert!(r[0].is_err(), "an unsupported config is refused: {r:?}");
    let twice = NewTopic::new(&topic, 1, TopicReplication::Fixed(1));
    let r = admin.create_topics([&twice], &opts).await.unwrap();
    assert!(r[0].is_err(), "a topic that exists is refused: {r:?}");

    let describe = || async {
        let r = admin
            .describe_configs([&ResourceSpecifier::Topic(&topic)], &opts)
            .await
            .unwrap();
        let entries = r.into_iter().next().unwrap().unwrap().entries;
        entries
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect::<BTreeMap<_, _>>()
    };
    let configs = describe().await;
    assert_eq!(configs["durability"], "none");
    assert_eq!(configs["cleanup.policy"], "compact");
    assert_eq!(configs["min.insync.replicas"], "1");

    let alter = AlterConfig::new(ResourceSpecifier::Topic(&topic))
        .set("retention.ms", "60000")
        .set("durability", "batch");
    let r = admin.alter_configs([&alter], &opts).await.unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let configs = describe().await;
    assert_eq!(configs["retention.ms"], "60000");
    assert_eq!(configs["durability"], "batch");
    assert_eq!(
        configs["cleanup.policy"], "delete",
        "AlterConfigs replaces the whole set"
    );
    assert_eq!(
        server
            .hub
            .store()
            .topic(&topic)
            .unwrap()
            .config()
            .retention_ms,
        Some(60_000)
    );

    let r = admin
        .create_partitions([&NewPartitions::new(&topic, 5)], &opts)
        .await
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let md = admin.inner().fetch_metadata(Some(&topic), WAIT).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 5);

    let r = admin.delete_topics(&[&topic], &opts).await.unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    assert!(server.hub.store().topic(&topic).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_low_watermark_and_offsets_are_found_by_time() {
    let server = Server::start();
    let topic = unique("trim");
    create_topic(&server, &topic, 1, &[("durability", "none")]).await;
    let p = producer(&server, &[]);
    let base = 1_700_000_000_000i64;
    for i in 0..10i64 {
        p.send(
            BaseRecord::<(), str>::to(&topic)
                .payload("x")
                .timestamp(base + i * 1000),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    p.flush(WAIT).unwrap();
    let c = consumer(&server, &unique("g"));

    let mut times = TopicPartitionList::new();
    times
        .add_partition_offset(&topic, 0, Offset::Offset(base + 4500))
        .unwrap();
    let found = c.offsets_for_times(times, WAIT).unwrap();
    assert_eq!(
        found.find_partition(&topic, 0).unwrap().offset(),
        Offset::Offset(5),
        "the first record at or after the time"
    );

    let mut before = TopicPartitionList::new();
    before
        .add_partition_offset(&topic, 0, Offset::Offset(6))
        .unwrap();
    let r = admin(&server)
        .delete_records(&before, &AdminOptions::new())
        .await
        .unwrap();
    assert_eq!(
        r.find_partition(&topic, 0).unwrap().offset(),
        Offset::Offset(6)
    );
    assert_eq!(c.fetch_watermarks(&topic, 0, WAIT).unwrap(), (6, 10));
    let mut from_start = TopicPartitionList::new();
    from_start
        .add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&from_start).unwrap();
    let first = loop {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            break m.unwrap().offset();
        }
    };
    assert_eq!(
        first, 6,
        "reading from the beginning starts at the new low watermark"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_producer_is_refused_at_once_with_a_clear_error() {
    let server = Server::start();
    let p = producer(&server, &[("transactional.id", "tx-1")]);
    let started = Instant::now();
    let e = p.init_transactions(WAIT).unwrap_err();
    assert!(
        started.elapsed() < WAIT / 2,
        "refused, not timed out: {e} after {:?}",
        started.elapsed()
    );
    assert!(
        e.to_string().to_lowercase().contains("authoriz"),
        "the error names the refusal: {e}"
    );
}
