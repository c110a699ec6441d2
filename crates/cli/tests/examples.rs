//! The examples in examples/, run end to end through the real `millrace` binary with
//! their outputs asserted, on every backend (the embedded store, and Kafka when
//! MILLRACE_TEST_BOOTSTRAP is set — always in CI). On Kafka each test runs a copy of
//! the example whose topics and pipeline name carry a unique suffix, since the broker
//! is shared between tests.
//!
//! Here: the copier's three terminals, `validate`, `graph`, and a partition-count
//! conflict; `examples/signup.rs` the sign-up example, `examples/shutdown.rs` stopping
//! a run with SIGTERM.

mod common;
#[path = "reliability/inspect.rs"]
mod inspect;
#[path = "examples/shutdown.rs"]
mod shutdown;
#[path = "examples/signup.rs"]
mod signup;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const COPIER_TOPICS: &[&str] = &["photos-topic", "photos-topic-2"];
const SIGNUP_TOPICS: &[&str] = &[
    "signups",
    "verified",
    "signups-eu",
    "signups-us",
    "signups-ap",
    "verification-emails",
    "welcome-email",
    "notify-setup",
    "notify-email",
    "notify-sms",
    "notify-none",
];

/// A `millrace run` in the background, its standard error collected as it comes so a
/// test can wait for a line and still show everything when it fails.
struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Running {
    fn start(b: &Backend, args: &[&str]) -> Running {
        let mut child = b.spawn(args);
        let pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        Running {
            child,
            stderr,
            reader,
        }
    }

    /// Starts a continuous run and waits until it holds its backend: on the embedded
    /// store another command opening the directory first would make the run fail to
    /// lock it. The run says it serves HTTP once the store is held.
    fn held(b: &Backend, args: &[&str]) -> Running {
        let mut run = Running::start(b, args);
        run.wait_for_stderr("serving http://");
        run
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn wait_for_stderr(&mut self, needle: &str) {
        let start = std::time::Instant::now();
        while !self.stderr().contains(needle) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "run exited ({status}) before `{needle}`:\n{}",
                    self.stderr()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no `{needle}` from the run:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `sig`, waits for the exit, and returns (success, standard error).
    fn stop(self, sig: &str) -> (bool, String) {
        signal(&self.child, sig);
        let out = wait_for_exit(self.child, Duration::from_secs(60));
        let _ = self.reader.join();
        let err = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (out.status.success(), err)
    }
}

/// Waits until the held store's topics are reachable through the pipeline holding it
/// (embedded) or the pipeline created them (Kafka).
fn wait_for_topic(b: &Backend, topic: &str) {
    wait_until(Duration::from_secs(60), "the pipeline's topics", || {
        let out = b.run(&["topics", "list"], b"");
        out.status.success() && stdout(&out).lines().any(|l| l == topic)
    });
}

fn path_str(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The book's three terminals: the copier runs (holding the embedded store), a
/// producer types into photos-topic from a second process, a consumer reads
/// photos-topic-2 from a third; `topics list` and `status` work meanwhile; Ctrl-C ends
/// the run cleanly with its summary.
#[test]
fn copier_three_terminal_session() {
    for b in Backend::all() {
        let file = b.example("copier.yaml", COPIER_TOPICS);
        let (src, dst) = (b.topic("photos-topic"), b.topic("photos-topic-2"));
        let run = Running::held(&b, &["run", path_str(&file)]);
        wait_for_topic(&b, &dst);

        let photos = ["photo-1.jpg", "photo-2.jpg", "photo-3.jpg"];
        b.ok(&["produce", "--topic", &src], photos.join("\n").as_bytes());
        let out = b.ok(
            &[
                "consume",
                "--topic",
                &dst,
                "--from-beginning",
                "--max-messages",
                "3",
                "--timeout-ms",
                "30000",
            ],
            b"",
        );
        let mut got: Vec<String> = stdout(&out).lines().map(String::from).collect();
        // Ten partitions: order is kept per partition only, so compare the sets.
        got.sort();
        assert_eq!(got, photos, "[{}] {}", b.name, run.stderr());
        assert!(stderr(&out).contains("Processed a total of 3 messages"));

        let list = stdout(&b.ok(&["topics", "list"], b""));
        for t in [&src, &dst] {
            assert!(list.lines().any(|l| l == t), "[{}] list: {list}", b.name);
        }
        // The copier commits after its outputs are durable: its lag drops to 0.
        wait_until(Duration::from_secs(30), "copier lag 0", || {
            let out = b.run(&["status", path_str(&file)], b"");
            let s = stdout(&out);
            s.contains("stage copy (copier)") && s.contains("lag 0")
        });
        if b.bootstrap.is_none() {
            let s = stdout(&b.ok(&["status"], b""));
            assert!(s.contains("through the process holding the store"), "{s}");
            assert!(
                s.contains(&format!("topic {dst}: 10 partitions, 3 records")),
                "{s}"
            );
        }

        let (ok, err) = run.stop("INT");
        assert!(ok, "[{}] Ctrl-C should exit 0:\n{err}", b.name);
        let summary = parse_summary(&err);
        assert_eq!(
            summary.get("copy"),
            Some(&("copier".to_string(), [3, 3, 0, 0, 3])),
            "[{}] {err}",
            b.name
        );
    }
}

/// `millrace validate` reports every error of a bad file as file:line:col and exits
/// non-zero; the shipped examples all validate.
#[test]
fn validate_reports_every_error_with_its_position() {
    let b = Backend::embedded();
    let bad = b.data_dir().join("bad.yaml");
    std::fs::write(
        &bad,
        "pipeline: bad\n\
         topics:\n  in: { partitions: 2 }\n\
         stages:\n\
         \x20 first:\n    kind: coper\n    from: in\n    to: out\n\
         \x20 second:\n    kind: filter\n    from: in\n    to: kept\n    where: '.x =='\n    colour: red\n",
    )
    .expect("write");
    let out = b.run(&["validate", path_str(&bad)], b"");
    assert!(!out.status.success());
    let err = stderr(&out);
    let p = path_str(&bad);
    for (pos, what) in [
        ("6:11", "unknown stage kind `coper`"),
        ("13:18", "does not compile"),
        ("14:5", "unknown field `colour`"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("{p}:{pos}: error: ")) && l.contains(what)),
            "{pos} {what}:\n{err}"
        );
    }
    assert!(err.contains("did you mean `copier`?"), "{err}");
    assert!(err.contains("3 errors"), "{err}");

    for example in ["copier.yaml", "signup.yaml"] {
        let out = b.root_ok(&["validate", &format!("examples/{example}")], b"");
        assert!(stdout(&out).contains(": ok ("), "{}", stdout(&out));
    }
}

/// `millrace graph` draws each stage with its pattern, in Mermaid and in dot.
#[test]
fn graph_labels_each_stage_with_its_pattern() {
    let b = Backend::embedded();
    let stages = [
        ("shard-by-region", "sharder"),
        ("verify-eu", "exec"),
        ("verify-us", "exec"),
        ("verify-ap", "exec"),
        ("welcome", "copier"),
        ("notify", "splitter"),
    ];
    for (format, sep) in [("mermaid", "<br/>("), ("dot", "\\n(")] {
        let out = b.root_ok(&["graph", "examples/signup.yaml", "--format", format], b"");
        let g = stdout(&out);
        for (stage, pattern) in stages {
            assert!(
                g.contains(&format!("\"{stage}{sep}{pattern}")),
                "{format}: {stage} ({pattern}):\n{g}"
            );
        }
        for topic in SIGNUP_TOPICS {
            assert!(g.contains(&format!("\"{topic}")), "{format}: {topic}:\n{g}");
        }
    }
    let g = stdout(&b.root_ok(&["graph", "examples/signup.yaml"], b""));
    assert!(
        g.starts_with("flowchart LR"),
        "mermaid is the default:\n{g}"
    );
    let g = stdout(&b.root_ok(&["graph", "examples/signup.yaml", "--format", "dot"], b""));
    assert!(g.starts_with("digraph"), "{g}");
    assert!(g.contains("[label=\"default\"]"), "{g}");
}

/// A declared topic that already exists with another partition count stops the run
/// before any stage starts, with a message naming the topic and both counts.
#[test]
fn partition_count_conflict_is_a_clear_error_and_starts_nothing() {
    for b in Backend::all() {
        let file = b.example("copier.yaml", COPIER_TOPICS);
        let (src, dst) = (b.topic("photos-topic"), b.topic("photos-topic-2"));
        b.ok(
            &["topics", "create", "--topic", &src, "--partitions", "3"],
            b"",
        );
        b.ok(&["produce", "--topic", &src], b"photo-1.jpg\n");
        let out = run_with(
            b.root_cmd(),
            &["run", path_str(&file), "--http", "127.0.0.1:0"],
            b"",
        );
        assert!(!out.status.success(), "[{}] should fail", b.name);
        let err = stderr(&out);
        assert!(
            !err.contains("serving"),
            "[{}] the run fails before it says it serves: {err}",
            b.name
        );
        assert!(
            err.starts_with("error: ")
                && err.contains(&format!("'{src}'"))
                && err.contains("3 partitions")
                && err.contains("declares 10"),
            "[{}] {err}",
            b.name
        );
        assert!(
            parse_summary(&err).is_empty(),
            "[{}] nothing ran: {err}",
            b.name
        );
        let list = stdout(&b.ok(&["topics", "list"], b""));
        assert!(
            !list.lines().any(|l| l == dst),
            "[{}] the output topic was not created: {list}",
            b.name
        );
        assert_eq!(b.records_in(&src), 1, "[{}] input untouched", b.name);
    }
}
