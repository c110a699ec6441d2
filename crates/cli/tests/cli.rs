//! The CLI as a user meets it: the book's console session, Kafka-style flags and clear
//! errors. Each test runs against every backend (the embedded store, and Kafka when
//! MILLRACE_TEST_BOOTSTRAP is set — always in CI).

mod common;

use common::*;

/// The book's hands-on: a topic with 10 partitions, five messages typed into the
/// producer, read back from the beginning.
#[test]
fn book_console_session_photos_topic() {
    for b in Backend::all() {
        let t = b.topic("photos-topic");
        let out = b.ok(
            &["topics", "create", "--topic", &t, "--partitions", "10"],
            b"",
        );
        assert!(
            stdout(&out).contains(&format!("Created topic {t}.")),
            "[{}]",
            b.name
        );
        let list = stdout(&b.ok(&["topics", "list"], b""));
        assert!(list.lines().any(|l| l == t), "[{}] list: {list}", b.name);
        b.ok(
            &["produce", "--topic", &t],
            b"photo-1.jpg\nphoto-2.jpg\nphoto-3.jpg\nphoto-4.jpg\nphoto-5.jpg\n",
        );
        let out = b.ok(
            &[
                "consume",
                "--topic",
                &t,
                "--from-beginning",
                "--timeout-ms",
                "3000",
            ],
            b"",
        );
        let mut got: Vec<String> = stdout(&out).lines().map(String::from).collect();
        got.sort();
        assert_eq!(
            got,
            [
                "photo-1.jpg",
                "photo-2.jpg",
                "photo-3.jpg",
                "photo-4.jpg",
                "photo-5.jpg"
            ],
            "[{}]",
            b.name
        );
        assert!(
            stderr(&out).contains("Processed a total of 5 messages"),
            "[{}] stderr: {}",
            b.name,
            stderr(&out)
        );
        let d = stdout(&b.ok(&["topics", "describe", "--topic", &t], b""));
        assert!(d.contains("PartitionCount: 10"), "[{}] {d}", b.name);
        let ends: i64 = d
            .lines()
            .filter_map(|l| l.split("EndOffset: ").nth(1))
            .map(|e| e.trim().parse::<i64>().expect("end offset"))
            .sum();
        assert_eq!(ends, 5, "[{}] {d}", b.name);
    }
}

#[test]
fn keys_are_parsed_and_printed_and_land_where_kafka_puts_them() {
    for b in Backend::all() {
        let t = b.topic("keyed");
        b.ok(
            &["topics", "create", "--topic", &t, "--partitions", "4"],
            b"",
        );
        b.ok(
            &[
                "produce",
                "--topic",
                &t,
                "--property",
                "parse.key=true",
                "--property",
                "key.separator=:",
            ],
            b"alice:1\nbob:2\nalice:3\n",
        );
        let out = b.ok(
            &[
                "consume",
                "--topic",
                &t,
                "--from-beginning",
                "--timeout-ms",
                "3000",
                "--property",
                "print.key=true",
                "--property",
                "print.partition=true",
            ],
            b"",
        );
        let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
        assert_eq!(lines.len(), 3, "[{}] {lines:?}", b.name);
        // Where Java's client puts "alice" and "bob" among 4 (murmur2).
        let alice: Vec<&String> = lines.iter().filter(|l| l.contains("alice\t")).collect();
        assert_eq!(alice.len(), 2);
        let p_alice = millrace_store::partition_for_key(b"alice", 4);
        let p_bob = millrace_store::partition_for_key(b"bob", 4);
        assert!(
            alice
                .iter()
                .all(|l| l.starts_with(&format!("Partition:{p_alice}\t"))),
            "[{}] {lines:?}",
            b.name
        );
        // Order within the key's partition is kept.
        assert!(
            alice[0].ends_with("\t1") && alice[1].ends_with("\t3"),
            "[{}] {lines:?}",
            b.name
        );
        assert!(
            lines
                .iter()
                .any(|l| *l == format!("Partition:{p_bob}\tbob\t2")),
            "[{}] {lines:?}",
            b.name
        );
    }
}

#[test]
fn missing_key_separator_is_a_clear_error() {
    let b = Backend::embedded();
    b.ok(
        &["topics", "create", "--topic", "k", "--partitions", "1"],
        b"",
    );
    let out = b.run(
        &["produce", "--topic", "k", "--property", "parse.key=true"],
        b"no-separator-here\n",
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("line 1") && err.contains("separator"), "{err}");
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
}

#[test]
fn consumer_group_continues_where_it_stopped() {
    for b in Backend::all() {
        let t = b.topic("grouped");
        let g = b.topic("readers");
        b.ok(
            &["topics", "create", "--topic", &t, "--partitions", "3"],
            b"",
        );
        let input: String = (1..=10).map(|i| format!("m{i}\n")).collect();
        b.ok(&["produce", "--topic", &t], input.as_bytes());
        let first = b.ok(
            &[
                "consume",
                "--topic",
                &t,
                "--group",
                &g,
                "--from-beginning",
                "--max-messages",
                "4",
                "--timeout-ms",
                "5000",
            ],
            b"",
        );
        assert_eq!(stdout(&first).lines().count(), 4, "[{}]", b.name);
        assert!(stderr(&first).contains("Processed a total of 4 messages"));
        let second = b.ok(
            &[
                "consume",
                "--topic",
                &t,
                "--group",
                &g,
                "--from-beginning",
                "--timeout-ms",
                "3000",
            ],
            b"",
        );
        let mut all: Vec<String> = stdout(&first)
            .lines()
            .chain(stdout(&second).lines())
            .map(String::from)
            .collect();
        all.sort();
        let mut want: Vec<String> = (1..=10).map(|i| format!("m{i}")).collect();
        want.sort();
        assert_eq!(
            all, want,
            "[{}] the two runs together read each record once",
            b.name
        );
    }
}

#[test]
fn replication_factor_above_one_is_refused_on_the_embedded_store() {
    let b = Backend::embedded();
    let out = b.run(
        &[
            "topics",
            "create",
            "--topic",
            "r",
            "--partitions",
            "1",
            "--replication-factor",
            "3",
        ],
        b"",
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("replication factor 3") && err.contains("Kafka"),
        "{err}"
    );
}

/// An error is one line, `error: …`, with at most an indented hint under it.
#[test]
fn errors_are_one_clear_line() {
    for b in Backend::all() {
        let t = b.topic("nope");
        let out = b.run(&["consume", "--topic", &t, "--timeout-ms", "100"], b"");
        assert!(!out.status.success(), "[{}]", b.name);
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(&t),
            "[{}] {err}",
            b.name
        );
        assert!(
            lines[1..].iter().all(|l| l.starts_with("  hint: ")) && lines.len() <= 2,
            "[{}] {err}",
            b.name
        );

        let t = b.topic("twice");
        b.ok(&["topics", "create", "--topic", &t], b"");
        let out = b.run(&["topics", "create", "--topic", &t], b"");
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("already exists"),
            "[{}] {}",
            b.name,
            stderr(&out)
        );
    }
}

#[test]
fn produce_from_file() {
    for b in Backend::all() {
        let t = b.topic("from-file");
        b.ok(
            &["topics", "create", "--topic", &t, "--partitions", "2"],
            b"",
        );
        let path = b.data_dir().join("input.txt");
        let input: String = (0..5000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        std::fs::write(&path, input).expect("write");
        b.ok(
            &[
                "produce",
                "--topic",
                &t,
                "--file",
                path.to_str().expect("path"),
            ],
            b"",
        );
        let out = b.ok(
            &[
                "consume",
                "--topic",
                &t,
                "--from-beginning",
                "--timeout-ms",
                "3000",
            ],
            b"",
        );
        assert_eq!(stdout(&out).lines().count(), 5000, "[{}]", b.name);
        assert!(stderr(&out).contains("Processed a total of 5000 messages"));
    }
}

#[test]
fn a_holder_that_does_not_answer_is_named() {
    // Every process holding a data directory serves it to the others. One that does
    // not answer (stopped here, as Ctrl-Z would) leaves other commands with a clear
    // message naming its pid and the address it was asked at, once the connect
    // timeout has passed.
    let b = Backend::embedded();
    b.ok(&["topics", "create", "--topic", "held"], b"");
    let mut child = b
        .cmd()
        .args(["consume", "--topic", "held"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id().to_string();
    let lock = b.data_dir().join("LOCK");
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&lock).unwrap_or_default() != pid
        || !b.run(&["topics", "list"], b"").status.success()
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the consumer never held and served the store"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let addr = std::fs::read_to_string(b.data_dir().join("endpoint")).expect("endpoint");
    let kill = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
    };
    assert!(kill("-STOP").success());
    let out = b.run(&["--connect-timeout-ms", "2000", "topics", "list"], b"");
    kill("-CONT");
    let _ = child.kill();
    let _ = child.wait();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("held by process {pid}"))
            && err.contains(&format!("does not answer at {}", addr.trim())),
        "should name pid {pid} and {addr}: {err}"
    );
}

/// Runs `bench <kind> --json` over 20 000 records (`env` sets the count), bounded by
/// `secs`; its pid and rows.
fn bench_json(b: &Backend, kind: &str, env: &str, secs: u64) -> (u32, Vec<serde_json::Value>) {
    let child = b
        .cmd()
        .env(env, "20000")
        .args(["bench", kind, "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let out = wait_for_exit(child, std::time::Duration::from_secs(secs));
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    (pid, rows)
}

/// `bench peers` runs `produce --file` against kcat and the `--batch` copier against the
/// confluent-kafka loop as processes on the broker, each ratio from the same rounds,
/// times a 1000-record run start to exit, and removes its topics.
#[test]
fn bench_peers_reports_produce_and_the_copier_against_their_peers() {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let b = Backend::kafka(bootstrap);
    let (pid, rows) = bench_json(&b, "peers", "MILLRACE_BENCH_PEERS_RECORDS", 300);
    let named = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no row {name:?} in {rows:?}"))
    };
    for (name, target) in [
        ("produce --file 100B on Kafka", 0.9),
        ("copier 100B on Kafka (run --batch)", 1.0),
    ] {
        for (row, target) in [
            (named(name), target),
            (named(&format!("{name}, records per CPU second")), 1.0 / 1.1),
        ] {
            assert_eq!(row["records"].as_u64(), Some(20_000), "{row}");
            assert!(row["records_per_s"].as_f64().expect("rate") > 0.0, "{row}");
            assert!(row["baseline_value"].as_f64().expect("peer") > 0.0, "{row}");
            assert!(row["ratio"].as_f64().expect("ratio") > 0.0, "{row}");
            let got = row["target"].as_f64().expect("target");
            assert!((got - target).abs() < 1e-9, "{row}");
        }
    }
    let start_up = named("run --batch copier, 1000 records, start to exit");
    let p50 = start_up["p50_ms"].as_f64().expect("p50_ms");
    assert!(p50 > 0.0 && p50 < 60_000.0, "{start_up}");
    assert_eq!(start_up["target"].as_f64(), Some(150.0));

    let ours = |t: &str| t.starts_with("millrace-bench-peers-") && t.contains(&pid.to_string());
    wait_until(
        std::time::Duration::from_secs(20),
        "bench topics deleted",
        || !stdout(&b.ok(&["topics", "list"], b"")).lines().any(ours),
    );
}

/// `bench pipeline` given a broker runs the copier on Kafka and reports it against the
/// Kafka produce rate measured in the same run, then removes its
/// topics.
#[test]
fn bench_pipeline_on_kafka_reports_the_copier_against_the_produce_rate() {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let b = Backend::kafka(bootstrap);
    let (pid, rows) = bench_json(&b, "pipeline", "MILLRACE_BENCH_KAFKA_RECORDS", 120);
    let named = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no row {name:?} in {rows:?}"))
    };
    let produce = named("baseline: kafka produce 100B (millrace Kafka backend)");
    let copier = named("pipeline copier 100B on Kafka");
    let produce_rate = produce["records_per_s"].as_f64().expect("produce rate");
    let copy_rate = copier["records_per_s"].as_f64().expect("copier rate");
    assert!(produce_rate > 0.0 && copy_rate > 0.0, "{rows:?}");
    assert!(copier["records"].as_u64().expect("records") >= 20_000);
    assert_eq!(copier["baseline_value"].as_f64(), Some(produce_rate));
    assert_eq!(copier["target"].as_f64(), Some(0.5));
    let ratio = copier["ratio"].as_f64().expect("ratio");
    assert!((ratio - copy_rate / produce_rate).abs() < 1e-9, "{rows:?}");

    // Input, output and dead-letter topics are all named by the bench's pid.
    let ours = |t: &str| t.starts_with("millrace-bench-copier-") && t.contains(&format!("-{pid}-"));
    wait_until(
        std::time::Duration::from_secs(20),
        "bench topics deleted",
        || !stdout(&b.ok(&["topics", "list"], b"")).lines().any(ours),
    );
}
