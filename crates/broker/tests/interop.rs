//! Interop with clients nobody here wrote: `kcat` (librdkafka's command-line client) and
//! the Python `kafka-python` client (`tests/interop/kafka_python_client.py`).
//!
//! Records millrace produces are read by them with the same key, value, headers and
//! partition; records they produce are read by millrace the same way, and keyed records
//! land where the Java client (and millrace) would put them.
//!
//! Needs `MILLRACE_TEST_BOOTSTRAP`. In CI (`CI=true`) a missing broker, `kcat` or
//! `kafka-python` fails these tests; elsewhere they are skipped with a message.
#![cfg(feature = "kafka")]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{kafka_bootstrap, poll_n, unique};
use millrace_broker::kafka::KafkaBroker;
use millrace_broker::{
    Broker, ConsumedRecord, ConsumerConfig, Header, NewTopic, OffsetReset, ProduceRecord,
};
use serde_json::Value;

const PARTITIONS: i32 = 4;

fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// True when `program args…` runs; otherwise fails in CI and skips elsewhere.
fn have(what: &str, program: &str, args: &[&str], install: &str) -> bool {
    let ok = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            !in_ci(),
            "{what} is missing but CI=true: the interop tests must run ({install})"
        );
        eprintln!("{what} is missing ({install}): interop test skipped");
    }
    ok
}

fn have_kcat() -> bool {
    have("kcat", "kcat", &["-V"], "apt-get install -y kcat")
}

fn have_kafka_python() -> bool {
    have(
        "kafka-python",
        "python3",
        &["-c", "import kafka"],
        "pip install kafka-python",
    )
}

fn python_client() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/kafka_python_client.py")
}

/// Runs a command with `input` on stdin; fails the test if it runs over 90 s or fails.
fn run(cmd: &mut Command, input: &[u8]) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).expect("write stdin");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} ran over 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

async fn broker() -> Option<(String, KafkaBroker)> {
    let bootstrap = kafka_bootstrap()?;
    let k = KafkaBroker::connect(&bootstrap, BTreeMap::new(), Duration::from_secs(10))
        .await
        .expect("connect");
    Some((bootstrap, k))
}

/// What millrace produces for the other clients to read: keyed and unkeyed, an empty
/// value, duplicate header names, an empty header, non-ASCII text.
fn sample() -> Vec<ProduceRecord> {
    let h = |k: &str, v: &str| Header::new(k, v.to_string());
    vec![
        ProduceRecord {
            headers: vec![h("trace", "1"), h("trace", "2")],
            ..ProduceRecord::keyed("user:1001", r#"{"n":1}"#)
        },
        ProduceRecord {
            partition: Some(2),
            ..ProduceRecord::value("no key, partition 2")
        },
        ProduceRecord {
            headers: vec![h("empty", "")],
            ..ProduceRecord::keyed("k-empty-value", "")
        },
        ProduceRecord {
            headers: vec![h("lang", "dé")],
            ..ProduceRecord::keyed("order-42", "ünïcödé")
        },
        ProduceRecord::keyed("key-0", "zero"),
        ProduceRecord::keyed("key-1", "one"),
    ]
}

/// (partition, key, value, headers) as strings, sorted, for comparing clients.
type Row = (i32, Option<String>, String, Vec<(String, String)>);

fn row_of(r: &ConsumedRecord) -> Row {
    (
        r.partition,
        r.key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        String::from_utf8_lossy(&r.value).into_owned(),
        r.headers
            .iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8_lossy(&h.value).into_owned(),
                )
            })
            .collect(),
    )
}

fn expected_rows(records: &[ProduceRecord], partitions: &[i32]) -> Vec<Row> {
    let mut rows: Vec<Row> = records
        .iter()
        .zip(partitions)
        .map(|(r, p)| {
            (
                *p,
                r.key
                    .as_ref()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                String::from_utf8_lossy(&r.value).into_owned(),
                r.headers
                    .iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(&h.value).into_owned(),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn java_partition(key: &[u8]) -> i32 {
    let p = millrace_store::murmur2::partition_for_key(key, PARTITIONS.unsigned_abs());
    i32::try_from(p).expect("small partition number")
}

async fn read_all(k: &KafkaBroker, topic: &str, n: usize) -> Vec<ConsumedRecord> {
    let mut c = k
        .consumer(ConsumerConfig {
            group: None,
            topics: vec![topic.to_string()],
            offset_reset: OffsetReset::Earliest,
            properties: BTreeMap::new(),
            co_partitioned: false,
            reads_written: false,
        })
        .await
        .expect("consumer");
    let got = poll_n(c.as_mut(), n).await;
    c.close().await.expect("close");
    assert_eq!(got.len(), n, "millrace read {} of {n} records", got.len());
    got
}

async fn new_topic(k: &KafkaBroker, prefix: &str) -> String {
    let t = unique(prefix);
    k.create_topic(&NewTopic::new(&t, PARTITIONS))
        .await
        .expect("create");
    t
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> String {
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect();
    String::from_utf8(bytes).expect("utf-8")
}

// ---------------------------------------------------------------- kcat

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_reads_what_millrace_produces() {
    let Some((bootstrap, k)) = broker().await else {
        return;
    };
    if !have_kcat() {
        return;
    }
    let t = new_topic(&k, "kcat-read").await;
    let records = sample();
    let delivered = k.produce(&t, &records).await.expect("produce");
    let partitions: Vec<i32> = delivered.iter().map(|d| d.partition).collect();
    for (r, p) in records.iter().zip(&partitions) {
        if let Some(key) = &r.key {
            assert_eq!(
                *p,
                java_partition(key),
                "millrace put key {key:?} elsewhere"
            );
        }
    }

    let out = run(
        Command::new("kcat").args([
            "-b",
            &bootstrap,
            "-C",
            "-t",
            &t,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-J",
        ]),
        b"",
    );
    let mut rows: Vec<Row> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let headers: Vec<String> = v["headers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            (
                i32::try_from(v["partition"].as_i64().expect("partition")).expect("i32"),
                v["key"].as_str().map(str::to_string),
                v["payload"].as_str().unwrap_or("").to_string(),
                headers
                    .chunks(2)
                    .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
                    .collect(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(rows, expected_rows(&records, &partitions));
    k.delete_topic(&t).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn millrace_reads_what_kcat_produces() {
    let Some((bootstrap, k)) = broker().await else {
        return;
    };
    if !have_kcat() {
        return;
    }
    let t = new_topic(&k, "kcat-write").await;
    let keys: Vec<String> = (0..20).map(|i| format!("key-{i}")).collect();
    let input: String = keys
        .iter()
        .map(|key| format!("{key}|value of {key}\n"))
        .collect();
    // murmur2_random: librdkafka's Java-compatible partitioner, as millrace uses.
    run(
        Command::new("kcat").args([
            "-b",
            &bootstrap,
            "-P",
            "-t",
            &t,
            "-K",
            "|",
            "-H",
            "origin=kcat",
            "-H",
            "origin=again",
            "-X",
            "partitioner=murmur2_random",
        ]),
        input.as_bytes(),
    );
    let got = read_all(&k, &t, keys.len()).await;
    for r in &got {
        let key = r.key.clone().expect("kcat sent a key");
        assert_eq!(
            String::from_utf8_lossy(&r.value),
            format!("value of {}", String::from_utf8_lossy(&key))
        );
        assert_eq!(r.partition, java_partition(&key), "key {key:?}");
        assert_eq!(
            r.headers,
            vec![
                Header::new("origin", "kcat"),
                Header::new("origin", "again")
            ]
        );
    }
    // The same keys produced by millrace land in the same partitions.
    let mine: Vec<ProduceRecord> = keys
        .iter()
        .map(|key| ProduceRecord::keyed(Bytes::from(key.clone()), "x"))
        .collect();
    let delivered = k.produce(&t, &mine).await.expect("produce");
    for (key, d) in keys.iter().zip(&delivered) {
        let theirs = got
            .iter()
            .find(|r| r.key.as_deref() == Some(key.as_bytes()))
            .expect("kcat's record");
        assert_eq!(d.partition, theirs.partition, "key {key}");
    }
    k.delete_topic(&t).await.expect("delete");
}

// ---------------------------------------------------------------- kafka-python

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_reads_what_millrace_produces() {
    let Some((bootstrap, k)) = broker().await else {
        return;
    };
    if !have_kafka_python() {
        return;
    }
    let t = new_topic(&k, "py-read").await;
    let records = sample();
    let delivered = k.produce(&t, &records).await.expect("produce");
    let partitions: Vec<i32> = delivered.iter().map(|d| d.partition).collect();
    let out = run(
        Command::new("python3").arg(python_client()).args([
            "consume",
            &bootstrap,
            &t,
            &records.len().to_string(),
        ]),
        b"",
    );
    let mut rows: Vec<Row> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (
                i32::try_from(v["partition"].as_i64().expect("partition")).expect("i32"),
                v["key"].as_str().map(unhex),
                unhex(v["value"].as_str().expect("value")),
                v["headers"]
                    .as_array()
                    .expect("headers")
                    .iter()
                    .map(|h| {
                        (
                            h[0].as_str().expect("name").to_string(),
                            unhex(h[1].as_str().expect("value")),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(rows, expected_rows(&records, &partitions));
    k.delete_topic(&t).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn millrace_reads_what_kafka_python_produces() {
    let Some((bootstrap, k)) = broker().await else {
        return;
    };
    if !have_kafka_python() {
        return;
    }
    let t = new_topic(&k, "py-write").await;
    let records = sample();
    let input: String = records
        .iter()
        .map(|r| {
            let headers: Vec<Value> = r
                .headers
                .iter()
                .map(|h| {
                    Value::from(vec![
                        Value::from(&*h.key),
                        Value::from(hex(&String::from_utf8_lossy(&h.value))),
                    ])
                })
                .collect();
            let line = serde_json::json!({
                "key": r.key.as_ref().map(|k| hex(&String::from_utf8_lossy(k))),
                "value": hex(&String::from_utf8_lossy(&r.value)),
                "headers": headers,
            });
            format!("{line}\n")
        })
        .collect();
    let out = run(
        Command::new("python3")
            .arg(python_client())
            .args(["produce", &bootstrap, &t]),
        input.as_bytes(),
    );
    let partitions: Vec<i32> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            i32::try_from(v["partition"].as_i64().expect("partition")).expect("i32")
        })
        .collect();
    assert_eq!(partitions.len(), records.len());
    // kafka-python's default partitioner is the Java client's: keyed records agree.
    for (r, p) in records.iter().zip(&partitions) {
        if let Some(key) = &r.key {
            assert_eq!(
                *p,
                java_partition(key),
                "kafka-python put key {key:?} elsewhere"
            );
        }
    }
    let got = read_all(&k, &t, records.len()).await;
    let mut rows: Vec<Row> = got.iter().map(row_of).collect();
    rows.sort();
    // The unkeyed record had no fixed partition on the Python side: take where it went.
    assert_eq!(rows, expected_rows(&records, &partitions));
    k.delete_topic(&t).await.expect("delete");
}
