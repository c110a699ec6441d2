//! Memory under hostile or careless clients, measured as the resident memory (RSS) of
//! this process, which runs the server: a thousand idle connections, and a client
//! that sends fetches and never reads the answers. Also a seeded mutation loop over
//! real requests through the request decoder (the fuzz target's check, on stable).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{Raw, Server, unique};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use millrace_store::Record;

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

const MIB: u64 = 1 << 20;

#[test]
fn a_thousand_idle_connections_hold_bounded_memory() {
    let server = Server::start();
    // Warm up: the first connections allocate the runtime's and the allocator's pools.
    for _ in 0..20 {
        let mut raw = Raw::connect(server.addr);
        let _: ApiVersionsResponse =
            raw.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    }
    let before = rss();
    let mut idle = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut raw = Raw::connect(server.addr);
        // Each connection is served once, then sits idle.
        let _: ApiVersionsResponse =
            raw.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        idle.push(raw);
    }
    let grown = rss().saturating_sub(before);
    eprintln!(
        "1000 idle connections: resident memory grew by {:.1} MiB ({} bytes each)",
        grown as f64 / MIB as f64,
        grown / 1000
    );
    assert!(grown < 64 * MIB, "1000 idle connections took {grown} bytes");
    // And the server still answers.
    let mut raw = Raw::connect(server.addr);
    let r: ApiVersionsResponse = raw.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
}

fn fetch_frame(topic: &str, correlation: i32) -> Vec<u8> {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(4 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(4 << 20),
                ]),
        ]);
    let mut b = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(12)
        .with_correlation_id(correlation)
        .encode(&mut b, FetchRequest::header_version(12))
        .unwrap();
    req.encode(&mut b, 12).unwrap();
    let mut frame = i32::try_from(b.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(&b);
    frame
}

#[test]
fn a_client_that_stops_reading_does_not_grow_the_server() {
    let server = Server::start();
    let topic = unique("unread");
    let store = server.hub.store();
    store
        .create_topic(&topic, 1, millrace_store::TopicConfig::default())
        .unwrap();
    let value = Bytes::from(vec![b'x'; 64 * 1024]);
    let records: Vec<Record> = (0..64)
        .map(|_| Record::new(None, value.clone(), 1))
        .collect();
    let p = store.topic(&topic).unwrap();
    for _ in 0..2 {
        p.partition(0).unwrap().append(&records).unwrap();
    }
    let before = rss();
    // 200 fetches of 4 MiB each, sent and never read: 800 MiB of answers if the server
    // queued them.
    let mut greedy = std::net::TcpStream::connect(server.addr).unwrap();
    greedy
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut sent = 0;
    for i in 0..200 {
        if greedy.write_all(&fetch_frame(&topic, i)).is_err() {
            // The server stopped reading: its side of the connection pushes back.
            break;
        }
        sent += 1;
    }
    // Give the server time to do all it would do.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut peak = rss();
    while Instant::now() < deadline {
        peak = peak.max(rss());
        std::thread::sleep(Duration::from_millis(100));
    }
    let grown = peak.saturating_sub(before);
    eprintln!(
        "a client that stopped reading after sending {sent} fetches of 4 MiB: resident memory grew by {:.1} MiB at most",
        grown as f64 / MIB as f64
    );
    assert!(
        grown < 96 * MIB,
        "an unread client grew the server by {grown} bytes"
    );
    // Other clients are served meanwhile.
    let mut raw = Raw::connect(server.addr);
    let r: ApiVersionsResponse = raw.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
    drop(greedy);
}

/// A small xorshift generator: the same mutations every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }
}

#[test]
fn mutated_requests_decode_or_are_refused_without_a_panic() {
    let seeds: Vec<Vec<u8>> = vec![fetch_frame("seed", 1)[4..].to_vec(), {
        let mut b = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(ApiKey::ApiVersions as i16)
            .with_request_api_version(3)
            .encode(&mut b, 2)
            .unwrap();
        ApiVersionsRequest::default().encode(&mut b, 3).unwrap();
        b.to_vec()
    }];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut decoded = 0;
    for round in 0..20_000 {
        let mut data = seeds[round % seeds.len()].clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(data.len());
            match rng.below(3) {
                0 => data[at] = u8::try_from(rng.next() & 0xff).unwrap(),
                1 => data.truncate(at),
                _ => data.insert(at, 0xff),
            }
            if data.is_empty() {
                break;
            }
        }
        if millrace_server::dispatch::decode_request(Bytes::from(data)).is_ok() {
            decoded += 1;
        }
    }
    // Some mutations still decode (bytes in values, not lengths): the loop reached
    // past the first checks.
    assert!(decoded > 100, "only {decoded} mutated requests decoded");
}
