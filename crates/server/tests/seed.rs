//! The book's hands-on against the server, as a reader runs it on Kafka: the
//! kafka-python copier (`tests/seed/copier.py`) copies what Kafka's console producer
//! wrote to `photos-topic` into `photos-topic-2`, and the two-topic script
//! (`tests/seed/reduce.py`) reads one record of each topic and prints them as a pair.
//! The scripts are the book's listings; the only line the test changes is the
//! bootstrap address, to the server's.
//!
//! Both scripts use kafka-python's default `auto_offset_reset` (latest) for groups
//! that have no offsets yet, so, as in the book, records are produced once the script
//! is reading: the test waits until the script's group has committed a position for
//! every partition (kafka-python commits positions every 5 s) before producing.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Lines, PRODUCER, Server, TOPICS, WAIT, have_kafka_python, java_tool, kafka_libs, run,
};

/// Bounds each wait: kafka-python's group joins and 5 s commits, the session timeout
/// (kafka-python's 45 s) of a member that was killed, JVM tools starting on a busy
/// machine.
const LIMIT: Duration = Duration::from_secs(180);

/// The address the book's listings connect to.
const BOOK_BOOTSTRAP: &str = "bootstrap_servers = ['kafka-headless:9092']";

const PARTITIONS: u32 = 10;

/// One of the book's scripts running against `server`, its output collected.
struct Script {
    child: Child,
    out: Lines,
    _dir: tempfile::TempDir,
}

impl Script {
    fn start(name: &str, server: &Server) -> Script {
        let listing = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/seed")
                .join(name),
        )
        .unwrap();
        assert_eq!(listing.matches(BOOK_BOOTSTRAP).count(), 1, "{name}");
        let ours = format!("bootstrap_servers = ['{}']", server.bootstrap());
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join(name);
        std::fs::write(&script, listing.replace(BOOK_BOOTSTRAP, &ours)).unwrap();
        let mut child = Command::new("python3")
            .arg(&script)
            // Lines as printed, not when a pipe's buffer fills.
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = Lines::collect(child.stdout.take().unwrap());
        Script {
            child,
            out,
            _dir: dir,
        }
    }

    /// Waits until `done` holds for the lines printed so far; fails if the script
    /// exits or [`LIMIT`] passes first.
    fn wait_for(&mut self, what: &str, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + LIMIT;
        loop {
            if done(&self.out.get()) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the script exited ({status}) before {what}; it printed {:?}",
                    self.out.get()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} after {LIMIT:?}; the script printed {:?}",
                self.out.get()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `group` has committed offsets on every partition of `topic` that sum
/// to `total`.
fn wait_for_commits(server: &Server, group: &str, topic: &str, total: u64, script: &mut Script) {
    let store = server.hub.store();
    let committed = || -> Option<u64> {
        (0..PARTITIONS)
            .map(|p| store.committed_offset(group, topic, p))
            .sum()
    };
    script.wait_for(
        &format!("commits of {group} on {topic} summing to {total}"),
        |_| committed() == Some(total),
    );
}

fn create_topic(libs: &Path, server: &Server, topic: &str) {
    let partitions = PARTITIONS.to_string();
    let out = run(
        &mut java_tool(
            libs,
            server,
            TOPICS,
            &["--create", "--topic", topic, "--partitions", &partitions],
        ),
        b"",
        LIMIT,
    );
    assert!(out.contains(&format!("Created topic {topic}")), "{out}");
}

fn console_produce(libs: &Path, server: &Server, topic: &str, lines: &[String]) {
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    run(
        &mut java_tool(libs, server, PRODUCER, &["--topic", topic]),
        input.as_bytes(),
        LIMIT,
    );
}

/// The values `topic` holds, sorted.
fn values(server: &Server, topic: &str) -> Vec<String> {
    let topic = server.hub.store().topic(topic).unwrap();
    let mut out: Vec<String> = topic
        .partitions()
        .iter()
        .flat_map(|p| p.read(0, usize::MAX, usize::MAX).unwrap())
        .map(|r| String::from_utf8(r.record.value.to_vec()).unwrap())
        .collect();
    out.sort();
    out
}

#[test]
fn the_books_copier_and_two_topic_script_run_on_the_server() {
    let Some(libs) = kafka_libs() else { return };
    if !have_kafka_python() {
        return;
    }
    let server = Server::start();
    create_topic(&libs, &server, "photos-topic");
    create_topic(&libs, &server, "photos-topic-2");

    // Terminal 1: the copier. Terminal 2, once it reads: the console producer.
    let mut copier = Script::start("copier.py", &server);
    wait_for_commits(&server, "group1", "photos-topic", 0, &mut copier);
    let photos: Vec<String> = (1..=20).map(|i| format!("photo-{i}.jpg")).collect();
    console_produce(&libs, &server, "photos-topic", &photos);
    copier.wait_for("a line per copied photo", |lines| {
        lines.len() >= photos.len()
    });
    let mut printed = copier.out.get();
    printed.sort();
    let mut want: Vec<String> = photos
        .iter()
        .map(|p| format!("Topic Name=photos-topic,Message=b'{p}'"))
        .collect();
    want.sort();
    assert_eq!(printed, want);
    // Sent, not yet flushed, until the producer's linger passes: wait for the copies.
    let deadline = Instant::now() + WAIT;
    let mut sorted = photos.clone();
    sorted.sort();
    while values(&server, "photos-topic-2") != sorted {
        assert!(
            Instant::now() < deadline,
            "photos-topic-2 holds {:?}",
            values(&server, "photos-topic-2")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The copier's group has committed what it copied; then the copier is stopped as
    // a reader stops it (kafka-python's consumer does not leave its group on exit).
    let copied = u64::try_from(photos.len()).unwrap();
    wait_for_commits(&server, "group1", "photos-topic", copied, &mut copier);
    drop(copier);

    // The two-topic script: one record of photos-topic, then one of photos-topic-2.
    // Its first consumer joins group1 once the copier's session expired, and reads
    // from the copier's commits on.
    let mut reduce = Script::start("reduce.py", &server);
    console_produce(&libs, &server, "photos-topic", &["sample-1".to_string()]);
    // Its second consumer joins group2 once the first has a record, at the end of
    // photos-topic-2 (the copies are behind it).
    wait_for_commits(&server, "group2", "photos-topic-2", copied, &mut reduce);
    console_produce(&libs, &server, "photos-topic-2", &["sample-2".to_string()]);
    reduce.wait_for("a pair", |lines| !lines.is_empty());
    assert_eq!(
        reduce.out.get()[0],
        "Message1=b'sample-1' Message2=b'sample-2'"
    );
}
