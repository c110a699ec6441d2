//! Apache Kafka's own Java tools against the server, from the jars
//! `scripts/kafka.sh fetch` puts in `.kafka/`: kafka-topics, the console producer (its
//! defaults: idempotent, acks=all) and consumer (with and without a group),
//! kafka-consumer-groups, and the producer and consumer perf tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{CONSUMER, GROUPS, PRODUCER, Server, TOPICS, java_tool, kafka_libs, run, unique};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn topics_console_producer_and_consumer_and_consumer_groups() {
    let Some(libs) = kafka_libs() else { return };
    let server = Server::start();
    let topic = unique("java");
    let out = run(
        &mut java_tool(
            &libs,
            &server,
            TOPICS,
            &["--create", "--topic", &topic, "--partitions", "3"],
        ),
        b"",
        LIMIT,
    );
    assert!(out.contains(&format!("Created topic {topic}")), "{out}");
    let out = run(
        &mut java_tool(&libs, &server, TOPICS, &["--list"]),
        b"",
        LIMIT,
    );
    assert!(out.lines().any(|l| l == topic), "{out}");
    let out = run(
        &mut java_tool(&libs, &server, TOPICS, &["--describe", "--topic", &topic]),
        b"",
        LIMIT,
    );
    assert!(out.contains("PartitionCount: 3"), "{out}");
    assert!(out.contains("Leader: 1"), "{out}");

    // The console producer with its defaults: idempotent, acks=all.
    let lines: String = (0..30).map(|i| format!("line-{i}\n")).collect();
    run(
        &mut java_tool(&libs, &server, PRODUCER, &["--topic", &topic]),
        lines.as_bytes(),
        LIMIT,
    );
    let ends: u64 = server
        .hub
        .store()
        .topic(&topic)
        .unwrap()
        .partitions()
        .iter()
        .map(|p| p.end_offset())
        .sum();
    assert_eq!(ends, 30);

    let consume = |group: Option<&str>| {
        let mut args = vec![
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "30",
        ];
        if let Some(g) = group {
            args.extend(["--group", g]);
        }
        let out = run(&mut java_tool(&libs, &server, CONSUMER, &args), b"", LIMIT);
        let mut got: Vec<String> = out.lines().map(str::to_string).collect();
        got.sort_by_key(|l| l[5..].parse::<u32>().unwrap());
        got
    };
    let want: Vec<String> = (0..30).map(|i| format!("line-{i}")).collect();
    assert_eq!(consume(None), want);
    let group = unique("java-group");
    assert_eq!(consume(Some(&group)), want);

    let out = run(
        &mut java_tool(&libs, &server, GROUPS, &["--list"]),
        b"",
        LIMIT,
    );
    assert!(out.lines().any(|l| l == group), "{out}");
    let out = run(
        &mut java_tool(&libs, &server, GROUPS, &["--describe", "--group", &group]),
        b"",
        LIMIT,
    );
    let lag_zero = out
        .lines()
        .filter(|l| l.starts_with(&group))
        .all(|l| l.split_whitespace().nth(5) == Some("0"));
    assert!(lag_zero && out.contains(&topic), "{out}");
    let out = run(
        &mut java_tool(
            &libs,
            &server,
            GROUPS,
            &[
                "--reset-offsets",
                "--group",
                &group,
                "--topic",
                &topic,
                "--to-earliest",
                "--execute",
            ],
        ),
        b"",
        LIMIT,
    );
    assert!(out.contains(&topic), "{out}");
    for p in 0..3 {
        assert_eq!(
            server.hub.store().committed_offset(&group, &topic, p),
            Some(0)
        );
    }

    let out = run(
        &mut java_tool(&libs, &server, TOPICS, &["--delete", "--topic", &topic]),
        b"",
        LIMIT,
    );
    assert!(!out.contains("Error"), "{out}");
    assert!(server.hub.store().topic(&topic).is_err());
}

#[test]
fn producer_and_consumer_perf_tests_run_to_the_end() {
    let Some(libs) = kafka_libs() else { return };
    let server = Server::start();
    let topic = unique("perf");
    run(
        &mut java_tool(
            &libs,
            &server,
            TOPICS,
            &[
                "--create",
                "--topic",
                &topic,
                "--partitions",
                "2",
                "--config",
                "flush.messages=9223372036854775807",
            ],
        ),
        b"",
        LIMIT,
    );
    // Kafka's "never fsync" is the store's durability=none.
    let durability = server
        .hub
        .store()
        .topic(&topic)
        .unwrap()
        .config()
        .durability;
    assert_eq!(durability, millrace_store::Durability::None);
    let bootstrap = format!("bootstrap.servers={}", server.bootstrap());
    let mut perf = Command::new("java");
    perf.arg("-Xmx256m")
        .arg("-cp")
        .arg(format!("{}/*", libs.display()))
        .arg("org.apache.kafka.tools.ProducerPerformance")
        .args([
            "--topic",
            &topic,
            "--num-records",
            "20000",
            "--record-size",
            "100",
        ])
        .args([
            "--throughput",
            "-1",
            "--producer-props",
            &bootstrap,
            "acks=all",
        ]);
    let out = run(&mut perf, b"", LIMIT);
    assert!(out.contains("20000 records sent"), "{out}");
    let out = run(
        &mut java_tool(
            &libs,
            &server,
            "org.apache.kafka.tools.ConsumerPerformance",
            &[
                "--topic",
                &topic,
                "--messages",
                "20000",
                "--timeout",
                "60000",
            ],
        ),
        b"",
        LIMIT,
    );
    // The data line: start, end, MB, MB/s, records, records/s, ...
    let data = out.lines().last().unwrap_or_default();
    let records = data.split(',').nth(4).map(str::trim);
    assert_eq!(records, Some("20000"), "{out}");
}
