//! Long-polling fetches: a fetch with nothing to read waits, and is woken by an append
//! made in this process straight to the store (the hub hears every append, whoever
//! makes it), answers after `max_wait_ms` when nothing comes, and waits for
//! `min_bytes`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Raw, Server, unique};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use millrace_store::{Record, TopicConfig};

fn fetch(topic: &str, offset: i64, max_wait_ms: i32, min_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}

fn records(r: &FetchResponse) -> usize {
    let mut bytes = r.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes)
        .unwrap()
        .iter()
        .map(|s| s.records.len())
        .sum()
}

fn setup(durability: &str) -> (Server, String) {
    let server = Server::start();
    let topic = unique("poll");
    let config =
        TopicConfig::from_pairs(&[("durability".to_string(), durability.to_string())].into())
            .unwrap();
    server.hub.store().create_topic(&topic, 1, config).unwrap();
    (server, topic)
}

fn append_later(server: &Server, topic: &str, after: Duration, value: &'static [u8]) {
    let t = server.hub.store().topic(topic).unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        t.partition(0)
            .unwrap()
            .append(&[Record::new(None, Bytes::from_static(value), 1)])
            .unwrap();
    });
}

#[test]
fn a_waiting_fetch_wakes_when_an_in_process_append_lands() {
    // Every durability: `interval` makes records readable from the flusher thread.
    for durability in ["none", "batch", "interval:50"] {
        let (server, topic) = setup(durability);
        let mut raw = Raw::connect(server.addr);
        append_later(&server, &topic, Duration::from_millis(300), b"late");
        let started = Instant::now();
        let r: FetchResponse = raw.call(ApiKey::Fetch, 12, &fetch(&topic, 0, 20_000, 1));
        let took = started.elapsed();
        assert_eq!(records(&r), 1, "{durability}");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(10),
            "{durability}: answered after {took:?}, not when the record landed"
        );
    }
}

#[test]
fn a_fetch_with_nothing_new_answers_after_max_wait_and_min_bytes_is_waited_for() {
    let (server, topic) = setup("none");
    let mut raw = Raw::connect(server.addr);
    let started = Instant::now();
    let r: FetchResponse = raw.call(ApiKey::Fetch, 12, &fetch(&topic, 0, 500, 1));
    let took = started.elapsed();
    assert_eq!(records(&r), 0);
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(10),
        "{took:?}"
    );

    // 10 bytes land first, then enough for min_bytes: the answer waits for the second.
    append_later(&server, &topic, Duration::from_millis(100), b"tiny");
    append_later(&server, &topic, Duration::from_millis(700), &[b'x'; 2000]);
    let started = Instant::now();
    let r: FetchResponse = raw.call(ApiKey::Fetch, 12, &fetch(&topic, 0, 20_000, 1500));
    let took = started.elapsed();
    assert_eq!(records(&r), 2);
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}
