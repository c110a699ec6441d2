//! `millrace groups list|describe|reset-offsets|delete` and the groups in `millrace
//! status`, as a user runs them: on the embedded store (the command opens the data
//! directory), and over Kafka's protocol with a group of foreign clients — a kcat `-G`
//! consumer and a kafka-python one — against `millrace serve` and against Apache Kafka
//! (when MILLRACE_TEST_BOOTSTRAP names one). Where Kafka's own `kafka-consumer-groups`
//! is at hand (`scripts/kafka.sh fetch`), its describe and reset rows must equal ours
//! on the same group.
//!
//! A missing tool (kcat, kafka-python, Java or Kafka's jars) fails the test in CI
//! (`CI=true`) and skips that part elsewhere, saying so.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, bin, signal, stderr, stdout, wait_for_exit, wait_until};
use millrace_testkit::kafka_libs;

/// Every wait here ends by this bound.
const WAIT: Duration = Duration::from_secs(90);

/// Whether `program args…` runs; a missing tool fails in CI and skips elsewhere.
fn have(what: &str, program: &str, args: &[&str]) -> bool {
    millrace_testkit::have(what, program, args, "install it")
}

/// `kafka-consumer-groups` with `args`; its standard output.
fn consumer_groups_tool(libs: &Path, args: &[&str]) -> String {
    let out = Command::new("java")
        .args(["-Xmx256m", "-cp"])
        .arg(libs.join("*"))
        .arg("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kafka-consumer-groups");
    ok(out, &format!("kafka-consumer-groups {args:?}"))
}

/// `kafka-consumer-groups --describe --group G`.
fn kafka_describe(libs: &Path, bootstrap: &str, group: &str) -> String {
    consumer_groups_tool(
        libs,
        &[
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--group",
            group,
        ],
    )
}

/// The table rows of `group` with `fields` columns, split on whitespace, as a set.
fn rows(text: &str, group: &str, fields: usize) -> BTreeSet<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|f| f.len() == fields && f[0] == group)
        .collect()
}

/// The arguments of `groups reset-offsets --group G --topic T …`.
fn reset_args<'a>(group: &'a str, topic: &'a str, how: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "groups",
        "reset-offsets",
        "--group",
        group,
        "--topic",
        topic,
    ];
    args.extend_from_slice(how);
    args
}

/// `millrace` against the Kafka protocol at `bootstrap`.
fn millrace(bootstrap: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .env_remove("MILLRACE_BOOTSTRAP")
        .env_remove("MILLRACE_DATA")
        .arg("--bootstrap-server")
        .arg(bootstrap)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run millrace")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn refused(out: &Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} should fail: {}", stdout(out));
    stderr(out)
}

/// A name no other test (or earlier run against a shared Kafka) uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

#[test]
fn groups_on_the_embedded_store_list_describe_reset_and_delete() {
    let b = Backend::embedded();
    b.ok(
        &["topics", "create", "--topic", "orders", "--partitions", "2"],
        b"",
    );
    b.ok(
        &["produce", "--topic", "orders", "--partition", "0"],
        b"a\nb\nc\nd\n",
    );
    b.ok(
        &["produce", "--topic", "orders", "--partition", "1"],
        b"e\nf\ng\nh\ni\nj\n",
    );
    let group = "orders-audit";
    b.ok(
        &[
            "consume",
            "--topic",
            "orders",
            "--group",
            group,
            "--from-beginning",
            "--max-messages",
            "10",
        ],
        b"",
    );

    assert_eq!(stdout(&b.ok(&["groups", "list"], b"")), "orders-audit\n");
    let stable = stdout(&b.ok(&["groups", "list", "--state", "Stable"], b""));
    assert_eq!(stable.lines().count(), 1, "only the header: {stable}");
    let empty = stdout(&b.ok(&["groups", "list", "--state", "empty"], b""));
    assert_eq!(rows(&empty, group, 2), set(&[&[group, "Empty"]]));
    let bad = b.run(&["groups", "list", "--state", "Stabel"], b"");
    assert!(refused(&bad, "--state Stabel").contains("did you mean Stable?"));

    let described = stdout(&b.ok(&["groups", "describe", "--group", group], b""));
    assert_eq!(
        rows(&described, group, 4),
        set(&[&[group, "-", "Empty", "0"]])
    );
    assert_eq!(
        rows(&described, group, 9),
        set(&[
            &[group, "orders", "0", "4", "4", "0", "-", "-", "-"],
            &[group, "orders", "1", "6", "6", "0", "-", "-", "-"],
        ])
    );

    // A dry run prints the new offsets and changes nothing.
    let dry = reset(&b, group, "orders", &["--to-earliest"]);
    assert_eq!(
        rows(&stdout(&dry), group, 4),
        set(&[&[group, "orders", "0", "0"], &[group, "orders", "1", "0"]])
    );
    assert!(stderr(&dry).contains("--execute"), "{}", stderr(&dry));
    let same = stdout(&b.ok(&["groups", "describe", "--group", group], b""));
    assert_eq!(rows(&same, group, 9), rows(&described, group, 9));

    reset(&b, group, "orders", &["--shift-by", "-2", "--execute"]);
    let shifted = stdout(&b.ok(&["groups", "describe"], b""));
    assert_eq!(
        rows(&shifted, group, 9),
        set(&[
            &[group, "orders", "0", "2", "4", "2", "-", "-", "-"],
            &[group, "orders", "1", "4", "6", "2", "-", "-", "-"],
        ])
    );
    let status = stdout(&b.ok(&["status"], b""));
    assert!(
        status.contains("group orders-audit: Empty, 0 members, lag 4"),
        "{status}"
    );

    // Past the end: kept at the end, with Kafka's warning.
    let to = reset(&b, group, "orders", &["--to-offset", "5", "--execute"]);
    assert_eq!(
        rows(&stdout(&to), group, 4),
        set(&[&[group, "orders", "0", "4"], &[group, "orders", "1", "5"]])
    );
    assert!(
        stderr(&to).contains(
            "New offset (5) is higher than latest offset for topic partition orders-0. Value will be set to 4."
        ),
        "{}",
        stderr(&to)
    );

    // The group's consumers read from the reset offsets.
    let again = b.ok(
        &[
            "consume",
            "--topic",
            "orders",
            "--group",
            group,
            "--timeout-ms",
            "1000",
        ],
        b"",
    );
    assert_eq!(stdout(&again), "j\n");

    let typo = b.run(&["groups", "describe", "--group", "orders-audt"], b"");
    let e = refused(&typo, "describe of a mistyped group");
    assert!(
        e.contains("consumer group 'orders-audt' does not exist")
            && e.contains("did you mean 'orders-audit'?"),
        "{e}"
    );
    let no_topic = try_reset(&b, group, "ordres", &["--to-earliest"]);
    let e = refused(&no_topic, "reset of a mistyped topic");
    assert!(
        e.contains("unknown topic 'ordres'") && e.contains("did you mean 'orders'?"),
        "{e}"
    );

    // A new group can be placed before its consumers start (as Kafka's tool allows),
    // with a note; shifting needs a committed offset to shift.
    let no_commit = try_reset(&b, "billing", "orders", &["--shift-by", "1"]);
    assert!(refused(&no_commit, "shift without a commit").contains("no current committed offset"));
    let placed = reset(&b, "billing", "orders", &["--to-latest", "--execute"]);
    assert!(
        stderr(&placed).contains("no members and no committed offsets"),
        "{}",
        stderr(&placed)
    );
    assert_eq!(
        stdout(&b.ok(&["groups", "list"], b"")),
        "billing\norders-audit\n"
    );

    let deleted = stdout(&b.ok(&["groups", "delete", "--group", group], b""));
    assert_eq!(
        deleted,
        "Deletion of requested consumer groups ('orders-audit') was successful.\n"
    );
    assert_eq!(stdout(&b.ok(&["groups", "list"], b"")), "billing\n");
    let twice = b.run(&["groups", "delete", "--group", group], b"");
    assert!(refused(&twice, "a second delete").contains("does not exist"));
}

/// `groups reset-offsets --group G --topic T …`, which must succeed.
fn reset(b: &Backend, group: &str, topic: &str, how: &[&str]) -> Output {
    let out = try_reset(b, group, topic, how);
    assert!(out.status.success(), "reset {how:?}: {}", stderr(&out));
    out
}

fn try_reset(b: &Backend, group: &str, topic: &str, how: &[&str]) -> Output {
    b.run(&reset_args(group, topic, how), b"")
}

fn set(rows: &[&[&str]]) -> BTreeSet<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// Children killed however the test ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A kafka-python consumer in `group` until SIGTERM, when it commits and leaves.
const KAFKA_PYTHON_MEMBER: &str = r#"
import signal, sys, threading
from kafka import KafkaConsumer
bootstrap, topic, group = sys.argv[1:4]
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                  client_id="kafka-python-member", auto_offset_reset="earliest",
                  auto_commit_interval_ms=200)
while not stop.is_set():
    c.poll(timeout_ms=200)
c.close()
"#;

/// `describe` rows of `group` once both foreign members own partitions and have
/// committed everything (10 records on each of 4 partitions).
fn settled(bootstrap: &str, group: &str) -> BTreeSet<Vec<String>> {
    let mut last = String::new();
    let mut rows_now = BTreeSet::new();
    wait_until(
        WAIT,
        "both members own partitions and committed everything",
        || {
            let out = millrace(bootstrap, &["groups", "describe", "--group", group]);
            last = format!("{}{}", stdout(&out), stderr(&out));
            rows_now = rows(&stdout(&out), group, 9);
            let members: BTreeSet<&String> = rows_now.iter().map(|r| &r[6]).collect();
            let stable = rows(&stdout(&out), group, 4)
                .iter()
                .any(|r| r[2] == "Stable" && r[3] == "2");
            stable
                && rows_now.len() == 4
                && members.len() == 2
                && !members.contains(&"-".to_string())
                && rows_now.iter().all(|r| r[3] == "10" && r[5] == "0")
        },
    );
    assert!(!rows_now.is_empty(), "{last}");
    rows_now
}

/// The scenario on one server: a group of a kcat and a kafka-python consumer, seen
/// (also through `--data` for a store `held` by the server), protected while they
/// run, compared with Kafka's tool, reset and deleted after.
fn foreign_members(bootstrap: &str, held: Option<&Path>) {
    if !have("kcat", "kcat", &["-V"]) || !have("kafka-python", "python3", &["-c", "import kafka"]) {
        return;
    }
    let libs = kafka_libs();
    let topic = unique("groups-foreign");
    let group = unique("foreign");
    ok(
        millrace(
            bootstrap,
            &["topics", "create", "--topic", &topic, "--partitions", "4"],
        ),
        "topics create",
    );
    for p in 0..4 {
        let mut c = Command::new(bin());
        c.env_remove("MILLRACE_BOOTSTRAP")
            .args([
                "--bootstrap-server",
                bootstrap,
                "produce",
                "--topic",
                &topic,
            ])
            .args(["--partition", &p.to_string()]);
        let lines: String = (0..10).map(|i| format!("p{p}-{i}\n")).collect();
        let out = common::run_with(c, &[], lines.as_bytes());
        ok(out, "produce");
    }

    let mut children = Children(Vec::new());
    children.0.push(
        Command::new("kcat")
            .args(["-b", bootstrap, "-G", &group, "-q"])
            .args([
                "-X",
                "auto.offset.reset=earliest",
                "-X",
                "auto.commit.interval.ms=200",
            ])
            .args(["-X", "client.id=kcat-member", &topic])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kcat"),
    );
    children.0.push(
        Command::new("python3")
            .args(["-c", KAFKA_PYTHON_MEMBER, bootstrap, &topic, &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kafka-python"),
    );

    let ours = settled(bootstrap, &group);
    let clients: BTreeSet<&str> = ours.iter().map(|r| r[8].as_str()).collect();
    assert_eq!(
        clients,
        ["kafka-python-member", "kcat-member"].into(),
        "{ours:?}"
    );
    assert!(ours.iter().all(|r| r[7] == "/127.0.0.1"), "{ours:?}");
    let listed = ok(millrace(bootstrap, &["groups", "list"]), "groups list");
    assert!(listed.lines().any(|l| l == group), "{listed}");
    if let Some(dir) = held {
        // The data directory's commands reach the store through the process holding it.
        let out = Command::new(bin())
            .env_remove("MILLRACE_BOOTSTRAP")
            .arg("--data")
            .arg(dir)
            .args(["groups", "describe", "--group", &group])
            .stdin(Stdio::null())
            .output()
            .expect("run millrace");
        let through_dir = ok(out, "groups describe --data");
        assert_eq!(rows(&through_dir, &group, 9), ours, "{through_dir}");
    }
    let status = ok(millrace(bootstrap, &["status"]), "status");
    assert!(
        status.contains(&format!("group {group}: Stable, 2 members, lag 0")),
        "{status}"
    );

    // Live members: no reset (not even a dry run, as Kafka's tool) and no delete.
    for how in [&["--to-earliest"][..], &["--to-earliest", "--execute"][..]] {
        let args = reset_args(&group, &topic, how);
        let e = refused(&millrace(bootstrap, &args), "reset of a live group");
        assert!(
            e.contains(&format!(
                "Assignments can only be reset if the group '{group}' is inactive, but the current state is Stable."
            )),
            "{e}"
        );
    }
    let e = refused(
        &millrace(bootstrap, &["groups", "delete", "--group", &group]),
        "delete of a live group",
    );
    assert!(e.contains("The group is not empty"), "{e}");

    if let Some(libs) = &libs {
        let theirs = kafka_describe(libs, bootstrap, &group);
        assert_eq!(rows(&theirs, &group, 9), ours, "Kafka's tool:\n{theirs}");
    }

    for c in &children.0 {
        signal(c, "TERM");
    }
    for c in std::mem::take(&mut children.0) {
        wait_for_exit(c, WAIT);
    }
    wait_until(WAIT, "the members left", || {
        let out = millrace(bootstrap, &["groups", "describe", "--group", &group]);
        rows(&stdout(&out), &group, 4)
            .iter()
            .any(|r| r[2] == "Empty" && r[3] == "0")
    });

    let reset = |how: &[&str]| {
        let args = reset_args(&group, &topic, how);
        ok(millrace(bootstrap, &args), "reset-offsets")
    };
    let dry = reset(&["--to-earliest"]);
    assert_eq!(rows(&dry, &group, 4).len(), 4, "{dry}");
    assert!(rows(&dry, &group, 4).iter().all(|r| r[3] == "0"), "{dry}");
    if let Some(libs) = &libs {
        let theirs = consumer_groups_tool(
            libs,
            &[
                "--bootstrap-server",
                bootstrap,
                "--reset-offsets",
                "--group",
                &group,
                "--topic",
                &topic,
                "--to-earliest",
                "--dry-run",
            ],
        );
        assert_eq!(
            rows(&theirs, &group, 4),
            rows(&dry, &group, 4),
            "Kafka's tool:\n{theirs}"
        );
    }
    reset(&["--shift-by", "-3", "--execute"]);
    let after = ok(
        millrace(bootstrap, &["groups", "describe", "--group", &group]),
        "describe",
    );
    let expected: BTreeSet<Vec<String>> = (0..4)
        .map(|p| {
            [
                group.as_str(),
                &topic,
                &p.to_string(),
                "7",
                "10",
                "3",
                "-",
                "-",
                "-",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        })
        .collect();
    assert_eq!(rows(&after, &group, 9), expected, "{after}");
    if let Some(libs) = &libs {
        let theirs = kafka_describe(libs, bootstrap, &group);
        assert_eq!(
            rows(&theirs, &group, 9),
            expected,
            "Kafka's tool:\n{theirs}"
        );
    }

    let deleted = ok(
        millrace(bootstrap, &["groups", "delete", "--group", &group]),
        "delete",
    );
    assert!(deleted.contains("was successful"), "{deleted}");
    let listed = ok(millrace(bootstrap, &["groups", "list"]), "groups list");
    assert!(!listed.lines().any(|l| l == group), "{listed}");
    let e = refused(
        &millrace(bootstrap, &["groups", "describe", "--group", &group]),
        "describe of a deleted group",
    );
    assert!(e.contains("does not exist"), "{e}");
    ok(
        millrace(bootstrap, &["topics", "delete", "--topic", &topic]),
        "topics delete",
    );
}

/// `millrace serve` over a fresh data directory; stopped on drop.
struct Serve {
    child: Option<Child>,
    addr: String,
    dir: tempfile::TempDir,
}

impl Serve {
    fn start() -> Serve {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn millrace serve");
        let endpoint = dir.path().join("endpoint");
        let deadline = Instant::now() + WAIT;
        let addr = loop {
            if let Ok(a) = std::fs::read_to_string(&endpoint)
                && !a.trim().is_empty()
            {
                break a.trim().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "millrace serve wrote no endpoint"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Serve {
            child: Some(child),
            addr,
            dir,
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            signal(&c, "TERM");
            wait_for_exit(c, WAIT);
        }
    }
}

#[test]
fn a_group_of_foreign_clients_on_millrace_serve_as_kafkas_tool_sees_it() {
    let serve = Serve::start();
    foreign_members(&serve.addr, Some(serve.dir.path()));
}

#[test]
fn a_group_of_foreign_clients_on_kafka_as_kafkas_tool_sees_it() {
    let Some(bootstrap) = common::kafka_bootstrap() else {
        return;
    };
    foreign_members(&bootstrap, None);
}
