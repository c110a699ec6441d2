//! Consumer groups with real clients against the server: librdkafka consumers sharing
//! a topic (eager range and cooperative-sticky), a static member restarting, a
//! librdkafka consumer sharing a topic with a member in the server's process,
//! kafka-python's KafkaConsumer, and Apache Kafka's own console consumer and
//! `kafka-consumer-groups` tool. The offsets they commit are the store's: checked
//! through the store's own API.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, WAIT, have_kafka_python, kafka_libs, run, unique};
use millrace_server::group::{GroupError, GroupState, LocalMember};
use millrace_store::TopicConfig;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn topic(server: &Server, partitions: u32) -> String {
    let name = unique("groups");
    server
        .hub
        .store()
        .create_topic(&name, partitions, TopicConfig::default())
        .unwrap();
    name
}

/// Produces records `value-from` .. `value-(to-1)`, keyed so they spread over the
/// partitions, and waits until all are acknowledged.
fn produce(server: &Server, topic: &str, from: usize, to: usize) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("broker.address.family", "v4")
        .create()
        .unwrap();
    for i in from..to {
        let (key, value) = (format!("key-{i}"), format!("value-{i}"));
        p.send(BaseRecord::to(topic).key(&key).payload(&value))
            .unwrap();
    }
    p.flush(WAIT).unwrap();
}

fn consumer(server: &Server, group: &str, topic: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", server.bootstrap())
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("client.id", "groups-test")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let c: BaseConsumer = c.create().unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// Polls every consumer (records would be lost: none are expected) until `done` holds
/// for their assignments; fails after the test's bound.
fn poll_until(
    cs: &[&BaseConsumer],
    mut done: impl FnMut(&[BTreeSet<i32>]) -> bool,
) -> Vec<BTreeSet<i32>> {
    let deadline = Instant::now() + WAIT;
    loop {
        for c in cs {
            if let Some(m) = c.poll(Duration::from_millis(50)) {
                let m = m.unwrap();
                panic!(
                    "no records expected yet, got offset {} of {}",
                    m.offset(),
                    m.partition()
                );
            }
        }
        let now: Vec<BTreeSet<i32>> = cs.iter().map(|c| assigned(c)).collect();
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "assignments stayed {now:?}");
    }
}

/// Polls every consumer until `n` records arrived in all, then a little longer so a
/// record read twice would show; then each commits what it read (the assignments do
/// not change meanwhile). The values each read.
fn consume(cs: &[&BaseConsumer], n: usize) -> Vec<Vec<String>> {
    let mut got: Vec<Vec<String>> = vec![Vec::new(); cs.len()];
    let deadline = Instant::now() + WAIT;
    let mut settle: Option<Instant> = None;
    while settle.is_none_or(|s| Instant::now() < s) {
        for (i, c) in cs.iter().enumerate() {
            if let Some(m) = c.poll(Duration::from_millis(20)) {
                let m = m.unwrap();
                let value = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
                got[i].push(value);
            }
        }
        let total: usize = got.iter().map(Vec::len).sum();
        if total >= n && settle.is_none() {
            settle = Some(Instant::now() + Duration::from_secs(1));
        }
        assert!(Instant::now() < deadline, "read {total} of {n} records");
    }
    for (c, read) in cs.iter().zip(&got) {
        if !read.is_empty() {
            c.commit_consumer_state(CommitMode::Sync).unwrap();
        }
    }
    got
}

fn values(from: usize, to: usize) -> Vec<String> {
    let mut v: Vec<String> = (from..to).map(|i| format!("value-{i}")).collect();
    v.sort();
    v
}

fn all(got: &[Vec<String>]) -> Vec<String> {
    let mut v: Vec<String> = got.iter().flatten().cloned().collect();
    v.sort();
    v
}

fn committed_total(server: &Server, group: &str, topic: &str, partitions: u32) -> u64 {
    (0..partitions)
        .map(|p| {
            server
                .hub
                .store()
                .committed_offset(group, topic, p)
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn two_consumers_split_the_partitions_and_one_leaving_hands_its_share_over() {
    let server = Server::start();
    let t = topic(&server, 4);
    let group = unique("pair");
    let a = consumer(&server, &group, &t, &[]);
    let b = consumer(&server, &group, &t, &[]);
    let split = poll_until(&[&a, &b], |s| s[0].len() == 2 && s[1].len() == 2);
    assert!(split[0].is_disjoint(&split[1]), "{split:?}");

    produce(&server, &t, 0, 400);
    let got = consume(&[&a, &b], 400);
    assert_eq!(all(&got), values(0, 400), "every record once");
    assert!(!got[0].is_empty() && !got[1].is_empty());
    assert_eq!(committed_total(&server, &group, &t, 4), 400);
    let d = server.hub.coordinator().describe_group(&group).unwrap();
    assert_eq!((d.state, d.members.len()), (GroupState::Stable, 2));
    assert!(
        d.members
            .iter()
            .all(|m| m.client_id == "groups-test" && m.client_host == "/127.0.0.1")
    );

    // Closing a consumer leaves the group: the other takes all four partitions and
    // reads on from the group's commits.
    drop(a);
    poll_until(&[&b], |s| s[0].len() == 4);
    produce(&server, &t, 400, 500);
    let got = consume(&[&b], 100);
    assert_eq!(all(&got), values(400, 500), "only the new records");
    assert_eq!(committed_total(&server, &group, &t, 4), 500);
}

#[test]
fn cooperative_sticky_consumers_keep_their_partitions_when_a_third_joins() {
    let server = Server::start();
    let t = topic(&server, 4);
    let group = unique("sticky");
    let coop = [("partition.assignment.strategy", "cooperative-sticky")];
    let a = consumer(&server, &group, &t, &coop);
    let b = consumer(&server, &group, &t, &coop);
    let before = poll_until(&[&a, &b], |s| s[0].len() == 2 && s[1].len() == 2);
    let c = consumer(&server, &group, &t, &coop);
    let after = poll_until(&[&a, &b, &c], |s| {
        let mut sizes: Vec<usize> = s.iter().map(BTreeSet::len).collect();
        sizes.sort();
        sizes == [1, 1, 2]
            && s[0]
                .union(&s[1])
                .chain(&s[2])
                .collect::<BTreeSet<_>>()
                .len()
                == 4
    });
    assert!(after[0].is_subset(&before[0]), "{before:?} -> {after:?}");
    assert!(after[1].is_subset(&before[1]), "{before:?} -> {after:?}");
    let d = server.hub.coordinator().describe_group(&group).unwrap();
    assert_eq!(d.protocol, "cooperative-sticky");

    produce(&server, &t, 0, 300);
    let got = consume(&[&a, &b, &c], 300);
    assert_eq!(all(&got), values(0, 300), "every record once");
    assert!(got.iter().all(|g| !g.is_empty()));
}

#[test]
fn kafka_python_consumers_in_a_group_resume_from_the_groups_commits() {
    if !have_kafka_python() {
        return;
    }
    let server = Server::start();
    let t = topic(&server, 3);
    produce(&server, &t, 0, 90);
    let group = unique("python");
    let script = r#"
import sys
from kafka import KafkaConsumer
bootstrap, topic, group, want = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                  auto_offset_reset="earliest", enable_auto_commit=False,
                  consumer_timeout_ms=8000)
seen = []
for m in c:
    seen.append(m.value.decode())
    if len(seen) == want:
        break
c.commit()
c.close()
print(len(seen))
print("\n".join(seen))
"#;
    let read = |want: usize| {
        let out = run(
            Command::new("python3")
                .args(["-c", script, &server.bootstrap(), &t, &group])
                .arg(want.to_string()),
            b"",
            WAIT,
        );
        let mut lines = out.lines();
        let n: usize = lines.next().unwrap().parse().unwrap();
        let mut seen: Vec<String> = lines.map(str::to_string).collect();
        seen.sort();
        (n, seen)
    };
    let (n, seen) = read(90);
    assert_eq!(n, 90);
    assert_eq!(seen, values(0, 90));
    assert_eq!(committed_total(&server, &group, &t, 3), 90);
    // The group goes on from its commits: only what was produced since.
    produce(&server, &t, 90, 100);
    let (n, seen) = read(10);
    assert_eq!(n, 10);
    assert_eq!(seen, values(90, 100));
}

/// Runs one of Apache Kafka's tools (a class of its jars) and returns its stdout.
fn kafka_tool(libs: &std::path::Path, class: &str, args: &[&str]) -> String {
    run(
        Command::new("java")
            .args(["-Xmx256m", "-cp"])
            .arg(libs.join("*"))
            .arg(class)
            .args(args),
        b"",
        Duration::from_secs(120),
    )
}

const CONSOLE_CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";
const CONSUMER_GROUPS: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";

/// `kafka-console-consumer` in `group` reading 20 records of `topic`.
fn console_consumer(
    libs: &std::path::Path,
    bootstrap: &str,
    topic: &str,
    group: &str,
    extra: &[&str],
) -> String {
    let mut args = vec![
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--max-messages", "20"]);
    kafka_tool(libs, CONSOLE_CONSUMER, &args)
}

#[test]
fn kafka_console_consumer_and_consumer_groups_tool_list_describe_reset_and_delete() {
    let Some(libs) = kafka_libs() else {
        return;
    };
    let server = Server::start();
    let bootstrap = server.bootstrap();
    let t = topic(&server, 2);
    produce(&server, &t, 0, 20);
    let group = unique("console");
    let out = console_consumer(&libs, &bootstrap, &t, &group, &["--from-beginning"]);
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, values(0, 20));
    assert_eq!(
        committed_total(&server, &group, &t, 2),
        20,
        "the console consumer commits on exit"
    );

    let listed = kafka_tool(
        &libs,
        CONSUMER_GROUPS,
        &["--bootstrap-server", &bootstrap, "--list"],
    );
    assert!(listed.lines().any(|l| l.trim() == group), "{listed}");

    let described = kafka_tool(
        &libs,
        CONSUMER_GROUPS,
        &[
            "--bootstrap-server",
            &bootstrap,
            "--describe",
            "--group",
            &group,
        ],
    );
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
    let rows: BTreeMap<String, (String, String, String)> = described
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 6 && f[1] == t)
        .map(|f| {
            (
                f[2].to_string(),
                (f[3].to_string(), f[4].to_string(), f[5].to_string()),
            )
        })
        .collect();
    assert_eq!(rows.len(), 2, "{described}");
    let current: u64 = rows
        .values()
        .map(|(c, _, _)| c.parse::<u64>().unwrap())
        .sum();
    assert_eq!(current, 20, "{described}");
    assert!(
        rows.values().all(|(c, e, lag)| c == e && lag == "0"),
        "{described}"
    );

    let reset = kafka_tool(
        &libs,
        CONSUMER_GROUPS,
        &[
            "--bootstrap-server",
            &bootstrap,
            "--reset-offsets",
            "--group",
            &group,
            "--topic",
            &t,
            "--to-earliest",
            "--execute",
        ],
    );
    assert_eq!(committed_total(&server, &group, &t, 2), 0, "{reset}");
    assert_eq!(server.hub.store().committed_offset(&group, &t, 0), Some(0));

    // The group reads everything again from the reset offsets.
    let again = console_consumer(&libs, &bootstrap, &t, &group, &[]);
    assert_eq!(again.lines().count(), 20, "{again}");

    let deleted = kafka_tool(
        &libs,
        CONSUMER_GROUPS,
        &[
            "--bootstrap-server",
            &bootstrap,
            "--delete",
            "--group",
            &group,
        ],
    );
    assert!(deleted.contains("successful"), "{deleted}");
    assert_eq!(server.hub.store().committed_offset(&group, &t, 0), None);
    let listed = kafka_tool(
        &libs,
        CONSUMER_GROUPS,
        &["--bootstrap-server", &bootstrap, "--list"],
    );
    assert!(!listed.lines().any(|l| l.trim() == group), "{listed}");
}

/// What the in-process member's thread reports: its assignment after each join.
type Assigned = std::sync::mpsc::Receiver<BTreeSet<i32>>;

/// Runs a [`LocalMember`] of `group` on a runtime of its own, as a consumer in the
/// process holding the store: it joins, heartbeats every 300 ms, joins again when the
/// group rebalances, and leaves when `stop` fires. Each new assignment is sent.
fn local_member(
    server: &Server,
    group: &str,
    topic: &str,
) -> (
    Assigned,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let coordinator = server.hub.coordinator().clone();
    let (group, topic) = (group.to_string(), topic.to_string());
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut m = LocalMember::new(&coordinator, &group, &[topic], "millrace-local")
                .with_timeouts(Duration::from_secs(10), Duration::from_secs(30));
            let partitions = |a: Vec<(String, i32)>| a.into_iter().map(|(_, p)| p).collect();
            tx.send(partitions(m.join().await.unwrap())).unwrap();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
                match m.heartbeat().await {
                    Ok(()) => {}
                    Err(GroupError::RebalanceInProgress) => {
                        tx.send(partitions(m.join().await.unwrap())).unwrap();
                    }
                    Err(e) => panic!("heartbeat: {e}"),
                }
            }
            m.leave().await.unwrap();
        });
    });
    (rx, stop, thread)
}

#[test]
fn a_librdkafka_consumer_and_an_in_process_member_share_a_group() {
    let server = Server::start();
    let t = topic(&server, 4);
    let group = unique("mixed");
    let a = consumer(&server, &group, &t, &[]);
    poll_until(&[&a], |s| s[0].len() == 4);
    let (assigned, stop, thread) = local_member(&server, &group, &t);
    let mut local = BTreeSet::new();
    let remote = poll_until(&[&a], |s| {
        while let Ok(l) = assigned.try_recv() {
            local = l;
        }
        s[0].len() == 2 && local.len() == 2
    });
    assert!(remote[0].is_disjoint(&local), "{remote:?} {local:?}");
    let d = server.hub.coordinator().describe_group(&group).unwrap();
    let mut clients: Vec<&str> = d.members.iter().map(|m| m.client_id.as_str()).collect();
    clients.sort();
    assert_eq!(clients, vec!["groups-test", "millrace-local"]);
    // The in-process member leaves: the Kafka client takes its partitions.
    stop.send(()).unwrap();
    thread.join().unwrap();
    poll_until(&[&a], |s| s[0].len() == 4);
}

#[test]
fn a_restarted_static_consumer_takes_its_partitions_back_without_a_rebalance() {
    let server = Server::start();
    let t = topic(&server, 4);
    let group = unique("static");
    let instance = [("group.instance.id", "worker-1")];
    let a = consumer(&server, &group, &t, &instance);
    let b = consumer(&server, &group, &t, &[]);
    let before = poll_until(&[&a, &b], |s| s[0].len() == 2 && s[1].len() == 2);
    let static_member = |server: &Server| {
        let d = server.hub.coordinator().describe_group(&group).unwrap();
        let m = d
            .members
            .iter()
            .find(|m| m.group_instance_id.is_some())
            .unwrap();
        (m.member_id.clone(), d.generation)
    };
    let (first, generation) = static_member(&server);
    // A static member does not leave when it closes: its place waits for it.
    drop(a);
    let a = consumer(&server, &group, &t, &instance);
    let after = poll_until(&[&a, &b], |s| s[0].len() == 2 && s[1].len() == 2);
    assert_eq!(
        after, before,
        "the restarted member has its partitions, the other its own"
    );
    let (restarted, same) = static_member(&server);
    assert_ne!(restarted, first, "the restart joined under a new member id");
    assert_eq!(same, generation, "and the group did not rebalance");
    produce(&server, &t, 0, 100);
    let got = consume(&[&a, &b], 100);
    assert_eq!(all(&got), values(0, 100));
}
