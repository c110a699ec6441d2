//! Kafka Streams against the server: the topology of Apache Kafka's WordCountDemo
//! (`tests/streams/WordCountDemo.java`, at least once) runs as real JVM processes and
//! its counts come out exact. It takes the paths a Streams application takes: its
//! internal topics created with their configs (a changelog with
//! `cleanup.policy=compact`, a repartition topic), records repartitioned by word,
//! consumed repartition records purged with DeleteRecords, and rebalances — a second
//! instance joins, then the first leaves and the second restores its state from the
//! changelog.
//!
//! The application is compiled once per test run with the JDK's `javac` against the
//! jars `scripts/kafka.sh fetch-streams` puts in `.kafka/`; the class files are kept
//! under the target directory, by a hash of the source and the jar directory.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Lines, Server, WAIT, admin, config, fetched_jars, have, unique};
use millrace_server::group::GroupState;
use rdkafka::admin::{AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sha2::{Digest, Sha256};

const SOURCE: &str = include_str!("streams/WordCountDemo.java");
const LOG_CONFIG: &str = "streams/log4j2.properties";

/// Bounds the waits for a JVM application (start-up, rebalances, state restoration),
/// which take longer than a librdkafka client's on a busy machine.
const APP_WAIT: Duration = Duration::from_secs(180);

/// The jars of `scripts/kafka.sh fetch-streams`, if fetched and `javac` runs.
fn streams_libs() -> Option<PathBuf> {
    let javac = have(
        "javac",
        "javac",
        &["-version"],
        "apt-get install -y openjdk-17-jdk-headless",
    );
    fetched_jars(
        "kafka-streams-",
        "Kafka Streams' jars",
        "scripts/kafka.sh fetch-streams",
    )
    .filter(|_| javac)
}

/// The directory of the compiled application: compiled now unless a run before
/// compiled the same source against the same jars.
fn compiled(libs: &Path) -> PathBuf {
    let mut h = Sha256::new();
    h.update(SOURCE.as_bytes());
    h.update(libs.as_os_str().as_encoded_bytes());
    let stamp: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("streams-{stamp}"));
    if dir.join("WordCountDemo.class").exists() {
        return dir;
    }
    // Compiled beside and renamed into place, so a run cut short leaves no half.
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/streams/WordCountDemo.java");
    let out = Command::new("javac")
        .arg("-d")
        .arg(&tmp)
        .arg("-cp")
        .arg(format!("{}/*", libs.display()))
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "javac failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => {}
        // Another test process compiled it meanwhile.
        Err(_) if dir.join("WordCountDemo.class").exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(e) => panic!("keep the compiled classes in {}: {e}", dir.display()),
    }
    dir
}

/// One instance of the application: a JVM whose state changes are collected.
struct App {
    child: Child,
    /// Its standard output: "state NAME" lines.
    out: Lines,
    /// Its log.
    err: Lines,
    _state_dir: tempfile::TempDir,
}

impl App {
    fn start(libs: &Path, classes: &Path, server: &Server, app_id: &str, topics: &Topics) -> App {
        let state_dir = tempfile::tempdir().unwrap();
        let log_config = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join(LOG_CONFIG);
        let mut child = Command::new("java")
            .arg("-Xmx256m")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                log_config.display()
            ))
            .arg("-cp")
            .arg(format!("{}:{}/*", classes.display(), libs.display()))
            .arg("WordCountDemo")
            .arg(server.bootstrap())
            .arg(app_id)
            .arg(&topics.input)
            .arg(&topics.output)
            .arg(state_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Lines::collect(child.stdout.take().unwrap());
        let err = Lines::collect(child.stderr.take().unwrap());
        App {
            child,
            out,
            err,
            _state_dir: state_dir,
        }
    }

    /// Fails the test if the application exited (an error in a stream thread).
    fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "the Streams application exited ({status}); it printed {:?}; its log:\n{}",
                self.out.get(),
                self.err.get().join("\n")
            );
        }
    }

    /// Stops the application as SIGTERM does (it closes and leaves its group) and
    /// waits for it to exit cleanly.
    fn stop(mut self) {
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(signalled.success());
        let deadline = Instant::now() + APP_WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the Streams application did not stop; its log:\n{}",
                self.err.get().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        // The JVM's exit status after SIGTERM with a shutdown hook is 143.
        assert!(
            status.success() || status.code() == Some(143),
            "the Streams application stopped with {status}; its log:\n{}",
            self.err.get().join("\n")
        );
        let printed = self.out.finish();
        assert_eq!(
            printed.last().map(String::as_str),
            Some("state NOT_RUNNING"),
            "it printed {printed:?}"
        );
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Topics {
    input: String,
    output: String,
}

async fn create_topics(server: &Server, topics: &Topics) {
    let new: Vec<NewTopic> = [&topics.input, &topics.output]
        .into_iter()
        .map(|t| NewTopic::new(t, 2, TopicReplication::Fixed(1)))
        .collect();
    let r = admin(server)
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap();
    assert!(r.iter().all(Result::is_ok), "{r:?}");
}

/// Produces `lines` (unkeyed, as the demo's console producer does) and waits for the
/// acknowledgements.
fn produce(server: &Server, topic: &str, lines: &[String]) {
    let p: BaseProducer = config(server).set("acks", "all").create().unwrap();
    for line in lines {
        p.send(BaseRecord::<(), _>::to(topic).payload(line))
            .map_err(|(e, _)| e)
            .unwrap();
        p.poll(Duration::ZERO);
    }
    p.flush(WAIT).unwrap();
}

/// The demo's split, as Java's `toLowerCase().split("\\W+")` does it on ASCII: runs of
/// characters other than letters, digits and `_` separate words; a line that starts
/// with one gives an empty first word; trailing empty words are dropped.
fn words(line: &str) -> Vec<String> {
    let lower = line.to_ascii_lowercase();
    let mut out: Vec<String> = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .enumerate()
        .filter(|(i, w)| *i == 0 || !w.is_empty())
        .map(|(_, w)| w.to_string())
        .collect();
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out
}

/// Lines of words from a small vocabulary, with capitals, punctuation and a few lines
/// that start with punctuation (an empty word, which the demo counts too).
fn lines(from: usize, n: usize) -> Vec<String> {
    const VOCAB: [&str; 12] = [
        "kafka", "Streams", "millrace", "copier", "filter", "Splitter", "sharder", "merger",
        "join", "reduce", "batch", "topic",
    ];
    (from..from + n)
        .map(|i| {
            let mut line = String::new();
            if i % 50 == 7 {
                line.push_str("... ");
            }
            for j in 0..(3 + i % 5) {
                if j > 0 {
                    line.push_str(if (i + j) % 4 == 0 { ", " } else { " " });
                }
                line.push_str(VOCAB[(i * 7 + j * 3 + i / 13) % VOCAB.len()]);
                if (i + j) % 9 == 0 {
                    line.push_str(&format!("{}", i % 3));
                }
            }
            if i % 3 == 0 {
                line.push('.');
            }
            line
        })
        .collect()
}

/// Reads the output topic from the beginning and keeps each word's last count.
struct Counts {
    consumer: BaseConsumer,
    last: BTreeMap<String, i64>,
}

impl Counts {
    fn new(server: &Server, topic: &str) -> Counts {
        // Assigned, not subscribed: librdkafka wants a group id all the same.
        let consumer: BaseConsumer = config(server)
            .set("group.id", unique("wordcount-reader"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        Counts {
            consumer,
            last: BTreeMap::new(),
        }
    }

    /// Reads until the counts equal `want`, failing at once when a count passes its
    /// word's (a record counted twice) and after [`APP_WAIT`] otherwise.
    fn wait_for(&mut self, want: &BTreeMap<String, i64>, apps: &mut [&mut App]) {
        let deadline = Instant::now() + APP_WAIT;
        while self.last != *want {
            for app in apps.iter_mut() {
                app.check_alive();
            }
            assert!(
                Instant::now() < deadline,
                "the counts did not reach the words' counts:\nwant {want:?}\ngot  {:?}",
                self.last
            );
            let Some(m) = self.consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = m.unwrap();
            let word = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            let count = i64::from_be_bytes(m.payload().unwrap().try_into().unwrap());
            let expected = want.get(&word).copied().unwrap_or(0);
            assert!(
                count <= expected,
                "'{word}' counted {count} times, but it occurs {expected} times (offset {} of \
                 partition {})",
                m.offset(),
                m.partition()
            );
            self.last.insert(word, count);
        }
    }
}

fn add_counts(counts: &mut BTreeMap<String, i64>, lines: &[String]) {
    for l in lines {
        for w in words(l) {
            *counts.entry(w).or_default() += 1;
        }
    }
}

/// Waits until the application's group is Stable with `members` members.
fn wait_for_group(server: &Server, group: &str, members: usize, apps: &mut [&mut App]) {
    let deadline = Instant::now() + APP_WAIT;
    loop {
        let d = server.hub.coordinator().describe_group(group);
        if d.as_ref()
            .is_some_and(|d| d.state == GroupState::Stable && d.members.len() == members)
        {
            return;
        }
        for app in apps.iter_mut() {
            app.check_alive();
        }
        assert!(
            Instant::now() < deadline,
            "group {group} did not settle with {members} members: {d:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_word_count_demo_counts_exactly_through_rebalances() {
    assert_eq!(
        words("... Hello, hello world_1."),
        ["", "hello", "hello", "world_1"]
    );
    let Some(libs) = streams_libs() else { return };
    let classes = compiled(&libs);
    let server = Server::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let topics = Topics {
        input: unique("streams-plaintext-input"),
        output: unique("streams-wordcount-output"),
    };
    rt.block_on(create_topics(&server, &topics));
    let app_id = unique("streams-wordcount");
    let mut want = BTreeMap::new();
    let mut counts = Counts::new(&server, &topics.output);

    // One instance counts what is there when it starts, and what comes after.
    let first_lines = lines(0, 400);
    produce(&server, &topics.input, &first_lines);
    add_counts(&mut want, &first_lines);
    let mut first = App::start(&libs, &classes, &server, &app_id, &topics);
    counts.wait_for(&want, &mut [&mut first]);

    // A second instance joins: the tasks are spread over both.
    let mut second = App::start(&libs, &classes, &server, &app_id, &topics);
    wait_for_group(&server, &app_id, 2, &mut [&mut first, &mut second]);
    let more = lines(400, 400);
    produce(&server, &topics.input, &more);
    add_counts(&mut want, &more);
    counts.wait_for(&want, &mut [&mut first, &mut second]);

    // The first leaves: the second takes every task, restoring the counts it did not
    // hold from the changelog, and goes on from them.
    first.stop();
    wait_for_group(&server, &app_id, 1, &mut [&mut second]);
    let last = lines(800, 400);
    produce(&server, &topics.input, &last);
    add_counts(&mut want, &last);
    counts.wait_for(&want, &mut [&mut second]);

    // The internal topics: a compacted changelog and a repartition topic whose
    // consumed records were deleted.
    let names = server.hub.store().topic_names();
    let internal = |suffix: &str| {
        names
            .iter()
            .find(|n| n.starts_with(&app_id) && n.ends_with(suffix))
            .unwrap_or_else(|| panic!("no *{suffix} topic among {names:?}"))
            .clone()
    };
    let changelog = internal("-changelog");
    let repartition = internal("-repartition");
    let described = rt
        .block_on(admin(&server).describe_configs(
            [&ResourceSpecifier::Topic(&changelog)],
            &AdminOptions::new(),
        ))
        .unwrap();
    let policy = described[0]
        .as_ref()
        .unwrap()
        .get("cleanup.policy")
        .and_then(|e| e.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"));
    let deadline = Instant::now() + APP_WAIT;
    let purged = || {
        let topic = server.hub.store().topic(&repartition).unwrap();
        topic
            .partitions()
            .iter()
            .map(|p| p.start_offset())
            .sum::<u64>()
    };
    while purged() == 0 {
        second.check_alive();
        assert!(
            Instant::now() < deadline,
            "the repartition topic {repartition} was never purged"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    second.stop();
}
