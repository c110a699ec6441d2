//! The examples in examples/, run end to end through the real `millrace` binary with
//! their outputs asserted, on every backend (the embedded store, and Kafka when
//! MILLRACE_TEST_BOOTSTRAP is set — always in CI). On Kafka each test runs a copy of
//! the example whose topics and pipeline name carry a unique suffix, since the broker
//! is shared between tests.

mod common;
#[path = "reliability/inspect.rs"]
mod inspect;

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

/// One sign-up of the generated sample: regions and notification choices cycle so
/// every combination appears; two users in three click the verification link.
fn signup(i: usize) -> Value {
    let regions = ["eu", "us", "ap", "eu", "ap"];
    let choices: [&[&str]; 4] = [&[], &["email"], &["sms"], &["email", "sms"]];
    json!({
        "user_id": format!("u{i:04}"),
        "email": format!("user{i}@example.com"),
        "phone": format!("+1555{i:07}"),
        "region": regions[i % regions.len()],
        "notify": choices[(i / 2) % choices.len()],
    })
}

fn jsonl(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

/// Parses JSON lines keyed by user_id; every record must have one, and only once.
fn by_user(lines: &[String]) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        let id = v["user_id"]
            .as_str()
            .unwrap_or_else(|| panic!("output without user_id: {l}"))
            .to_string();
        assert!(m.insert(id, v).is_none(), "duplicate user: {l}");
    }
    m
}

fn keyed(users: &[&Value]) -> BTreeMap<String, Value> {
    users
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().unwrap_or("").to_string(),
                (*u).clone(),
            )
        })
        .collect()
}

fn wants(u: &Value, channel: &str) -> bool {
    u["notify"]
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c == channel))
}

/// Conservation in a run's summary: in = out + filtered + dead-lettered for every stage
/// (a finished --batch run has nothing in flight).
fn assert_conserved(summary: &BTreeMap<String, (String, [u64; 5])>, err: &str) {
    assert!(!summary.is_empty(), "no summary in:\n{err}");
    for (stage, (_, [i, o, f, d, _])) in summary {
        assert_eq!(*i, o + f + d, "stage {stage} does not conserve:\n{err}");
    }
}

/// The book's sign-up flow on generated users: every output checked record by record.
#[test]
fn signup_flow_lands_every_user_where_it_belongs() {
    const N: usize = 90;
    for b in Backend::all() {
        let file = b.example("signup.yaml", SIGNUP_TOPICS);
        let file = path_str(&file);
        let t = |name: &str| b.topic(name);
        let users: Vec<Value> = (0..N).map(signup).collect();
        let verified: Vec<&Value> = users.iter().filter(|u| has_verified(u)).collect();

        // The first (empty) batch run creates the pipeline's topics, as the README does.
        b.root_ok(&["run", file, "--batch", "--no-http"], b"");
        b.ok(
            &["produce", "--topic", &t("signups")],
            jsonl(&users).as_bytes(),
        );
        let v: Vec<Value> = verified.iter().map(|u| (*u).clone()).collect();
        b.ok(
            &["produce", "--topic", &t("verified")],
            jsonl(&v).as_bytes(),
        );
        let out = b.root_ok(&["run", file, "--batch", "--no-http"], b"");
        let err = stderr(&out);

        // Verification e-mails: one per sign-up, {user_id, email, region} as signed up.
        let emails = by_user(&b.read_exactly(&t("verification-emails"), N));
        let want: BTreeMap<String, Value> = users
            .iter()
            .map(|u| {
                let id = u["user_id"].as_str().unwrap_or("").to_string();
                let e = json!({"user_id": id, "email": u["email"], "region": u["region"]});
                (id, e)
            })
            .collect();
        assert_eq!(emails, want, "[{}] verification-emails", b.name);

        // Each region's shard holds exactly that region's users, untouched.
        for region in ["eu", "us", "ap"] {
            let of_region: Vec<&Value> = users.iter().filter(|u| u["region"] == region).collect();
            let topic = t(&format!("signups-{region}"));
            let got = by_user(&b.read_exactly(&topic, of_region.len()));
            assert_eq!(got, keyed(&of_region), "[{}] {topic}", b.name);
        }

        // Verified users: all welcomed; notifications by choice — either, both or
        // neither, nothing dropped.
        let welcome = by_user(&b.read_exactly(&t("welcome-email"), verified.len()));
        assert_eq!(welcome, keyed(&verified), "[{}] welcome-email", b.name);
        let email: Vec<&Value> = verified
            .iter()
            .copied()
            .filter(|u| wants(u, "email"))
            .collect();
        let sms: Vec<&Value> = verified
            .iter()
            .copied()
            .filter(|u| wants(u, "sms"))
            .collect();
        let none: Vec<&Value> = verified
            .iter()
            .copied()
            .filter(|u| !wants(u, "email") && !wants(u, "sms"))
            .collect();
        assert!(!email.is_empty() && !sms.is_empty() && !none.is_empty());
        assert!(email.iter().any(|u| wants(u, "sms")), "someone chose both");
        for (topic, want) in [
            ("notify-email", &email),
            ("notify-sms", &sms),
            ("notify-none", &none),
        ] {
            let got = by_user(&b.read_exactly(&t(topic), want.len()));
            assert_eq!(&got, &keyed(want), "[{}] {topic}", b.name);
        }
        assert_eq!(
            b.records_in(&b.dead_letter("signup")),
            0,
            "[{}] dead letters",
            b.name
        );

        // The summary conserves records and says where they went.
        let s = parse_summary(&err);
        assert_conserved(&s, &err);
        let n = N as u64;
        let v = verified.len() as u64;
        let row = |st: &str| {
            s.get(st)
                .map(|r| r.1)
                .unwrap_or_else(|| panic!("{st}: {err}"))
        };
        assert_eq!(row("shard-by-region"), [n, n, 0, 0, n], "{err}");
        let verify_in: u64 = ["verify-eu", "verify-us", "verify-ap"]
            .iter()
            .map(|st| row(st)[0])
            .sum();
        assert_eq!(verify_in, n, "{err}");
        assert_eq!(row("welcome"), [v, v, 0, 0, 2 * v], "{err}");
        let notified = (email.len() + sms.len() + none.len()) as u64;
        assert_eq!(row("notify"), [v, v, 0, 0, notified], "{err}");
        assert_eq!(s.get("notify").map(|r| r.0.as_str()), Some("splitter"));
    }
}

fn has_verified(u: &Value) -> bool {
    u["user_id"]
        .as_str()
        .and_then(|id| id[1..].parse::<usize>().ok())
        .is_some_and(|i| i % 3 != 0)
}

/// Bad sign-ups end in the dead-letter topic with headers saying why and from where;
/// the good ones go through and the run exits 0.
#[test]
fn signup_bad_records_are_dead_lettered_and_the_run_goes_on() {
    for b in Backend::all() {
        let file = b.example("signup.yaml", SIGNUP_TOPICS);
        let file = path_str(&file);
        let t = |name: &str| b.topic(name);
        b.root_ok(&["run", file, "--batch", "--no-http"], b"");
        let good: Vec<Value> = (0..6).map(signup).collect();
        let mut input = jsonl(&good);
        input.push_str("this is not json\n");
        input
            .push_str(r#"{"user_id":"mars1","email":"m@example.com","region":"mars","notify":[]}"#);
        input.push('\n');
        // Sharded fine, then refused by the worker: no e-mail address.
        input.push_str(r#"{"user_id":"noemail","region":"eu","notify":[]}"#);
        input.push('\n');
        b.ok(&["produce", "--topic", &t("signups")], input.as_bytes());

        let out = b.root_ok(&["run", file, "--batch", "--no-http"], b"");
        let err = stderr(&out);
        let s = parse_summary(&err);
        assert_conserved(&s, &err);
        assert_eq!(s["shard-by-region"].1, [9, 7, 0, 2, 7], "{err}");
        let emails = by_user(&b.read_exactly(&t("verification-emails"), 6));
        assert_eq!(
            emails.keys().cloned().collect::<Vec<_>>(),
            (0..6).map(|i| format!("u{i:04}")).collect::<Vec<_>>()
        );

        let dlq = b.dead_letter("signup");
        assert_eq!(b.records_in(&dlq), 3, "[{}] {err}", b.name);
        let out = b.ok(
            &[
                "consume",
                "--topic",
                &dlq,
                "--from-beginning",
                "--max-messages",
                "3",
                "--timeout-ms",
                "20000",
                "--property",
                "print.headers=true",
            ],
            b"",
        );
        let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
        let find = |needle: &str| -> &String {
            lines
                .iter()
                .find(|l| l.ends_with(needle))
                .unwrap_or_else(|| panic!("[{}] no dead letter for {needle}: {lines:?}", b.name))
        };
        let not_json = find("\tthis is not json");
        let signups = t("signups");
        for h in [
            "millrace.stage:shard-by-region",
            "millrace.error:value is not JSON",
            "millrace.attempts:1",
            &format!("millrace.source.topic:{signups}"),
            "millrace.source.partition:",
            "millrace.source.offset:",
        ] {
            assert!(not_json.contains(h), "[{}] {h} in {not_json}", b.name);
        }
        let mars = find(r#""region":"mars","notify":[]}"#);
        assert!(
            mars.contains("millrace.stage:shard-by-region")
                && mars.contains("shard key 'mars' names no shard"),
            "[{}] {mars}",
            b.name
        );
        let no_email = find(r#"{"user_id":"noemail","region":"eu","notify":[]}"#);
        assert!(
            no_email.contains("millrace.stage:verify-eu")
                && no_email.contains("sign-up has no email")
                && no_email.contains(&format!("millrace.source.topic:{}", t("signups-eu"))),
            "[{}] {no_email}",
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

/// SIGTERM stops a continuous run cleanly: exit 0, offsets committed, so a second run
/// processes only what came after — no record copied twice.
#[test]
fn sigterm_commits_and_the_next_run_does_not_reprocess() {
    for b in Backend::all() {
        let file = b.example("copier.yaml", COPIER_TOPICS);
        let file = path_str(&file);
        let (src, dst) = (b.topic("photos-topic"), b.topic("photos-topic-2"));
        let first: Vec<String> = (0..100).map(|i| format!("photo-{i:03}.jpg")).collect();
        let second: Vec<String> = (100..150).map(|i| format!("photo-{i:03}.jpg")).collect();

        let run = Running::held(&b, &["run", file]);
        wait_for_topic(&b, &dst);
        b.ok(&["produce", "--topic", &src], first.join("\n").as_bytes());
        // Quiet: everything copied and committed before the signal.
        wait_until(Duration::from_secs(60), "the copier to commit", || {
            stdout(&b.run(&["status", file], b"")).contains("lag 0") && b.records_in(&dst) == 100
        });
        let (ok, err) = run.stop("TERM");
        assert!(ok, "[{}] SIGTERM should exit 0:\n{err}", b.name);
        assert!(err.contains("stopping"), "{err}");
        assert_eq!(
            parse_summary(&err)["copy"].1,
            [100, 100, 0, 0, 100],
            "{err}"
        );
        let group = format!("{}.copy", b.topic("copier"));
        assert_eq!(
            inspect::committed_total(&b, &group, &src),
            100,
            "[{}] the group committed everything it copied",
            b.name
        );

        b.ok(&["produce", "--topic", &src], second.join("\n").as_bytes());
        let out = b.root_ok(&["run", file, "--batch", "--no-http"], b"");
        let err = stderr(&out);
        assert_eq!(
            parse_summary(&err)["copy"].1,
            [50, 50, 0, 0, 50],
            "[{}] the second run starts at the committed offset:\n{err}",
            b.name
        );
        let mut got = b.read_exactly(&dst, 150);
        got.sort();
        let want: Vec<String> = first.iter().chain(&second).cloned().collect();
        assert_eq!(got, want, "[{}] each record once", b.name);
    }
}

/// SIGTERM in the middle of a stream, then a `--batch` run for the rest: every record
/// copied exactly once (nothing lost, no output written twice), and everything committed.
#[test]
fn sigterm_under_load_loses_nothing_and_writes_nothing_twice() {
    for b in Backend::all() {
        let file = b.example("copier.yaml", COPIER_TOPICS);
        let file = path_str(&file);
        let (src, dst) = (b.topic("photos-topic"), b.topic("photos-topic-2"));
        let n = 30_000;
        // Create the topics with a batch run (empty), then load the input.
        b.root_ok(&["run", file, "--batch", "--no-http"], b"");
        let input: String = (0..n).map(|i| format!("r{i:06}\n")).collect();
        b.ok(&["produce", "--topic", &src], input.as_bytes());

        let run = Running::held(&b, &["run", file]);
        wait_until(Duration::from_secs(60), "the first copies", || {
            b.records_in(&dst) > 0
        });
        let (ok, err) = run.stop("TERM");
        assert!(ok, "[{}] SIGTERM should exit 0:\n{err}", b.name);
        b.root_ok(&["run", file, "--batch", "--no-http"], b"");

        let total = usize::try_from(b.records_in(&dst)).expect("count");
        let got = b.read_exactly(&dst, total);
        let distinct: BTreeSet<&String> = got.iter().collect();
        assert_eq!(distinct.len(), n, "[{}] every record copied", b.name);
        assert_eq!(total, n, "[{}] {} records copied twice", b.name, total - n);
        inspect::assert_no_duplicates(&b, &[&dst], b.name);
        let group = format!("{}.copy", b.topic("copier"));
        assert_eq!(
            inspect::committed_total(&b, &group, &src),
            n as i64,
            "[{}] everything copied is committed",
            b.name
        );
    }
}

/// An exec worker that takes its time: it notes each item it starts in the file named
/// by its argument, then answers after 20 ms.
const SLOW_WORKER: &str = r#"
import json, sys, time
progress = open(sys.argv[1], "a")
for line in sys.stdin:
    req = json.loads(line)
    progress.write("started\n"); progress.flush()
    time.sleep(0.02)
    print(json.dumps({"id": req["id"], "out": [req["value"]]}), flush=True)
"#;

/// SIGTERM while an exec stage is in the middle of a batch: the run finishes the batch
/// in hand, produces it and commits it before exiting 0. Checked through the group's
/// committed offsets, which lineage skipping on the next run could not hide.
#[test]
fn sigterm_mid_batch_finishes_the_batch_in_hand_and_commits_it() {
    for b in Backend::all() {
        let dir = b.data_dir();
        let worker = dir.join("slow.py");
        std::fs::write(&worker, SLOW_WORKER).expect("write worker");
        let progress = dir.join("progress");
        let started = || {
            std::fs::read_to_string(&progress)
                .map(|s| s.lines().count())
                .unwrap_or(0)
        };
        let (pipeline, jobs, done) = (b.topic("sigterm"), b.topic("jobs"), b.topic("done"));
        let file = dir.join("sigterm.yaml");
        std::fs::write(
            &file,
            format!(
                "pipeline: {pipeline}\ntopics:\n  {jobs}: {{partitions: 1}}\nstages:\n  work:\n    kind: exec\n    from: {jobs}\n    to: {done}\n    command: [python3, {}, {}]\n",
                worker.display(),
                progress.display()
            ),
        )
        .expect("write pipeline");
        let file = path_str(&file);
        let group = format!("{pipeline}.work");
        b.root_ok(&["run", file, "--batch", "--no-http"], b"");

        // A first small batch, done and committed; then a big one the stage takes in
        // hand and is signalled in the middle of.
        let run = Running::held(&b, &["run", file]);
        let first: String = (0..5).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        b.ok(&["produce", "--topic", &jobs], first.as_bytes());
        wait_until(Duration::from_secs(60), "the first batch", || {
            b.records_in(&done) == 5
        });
        let more: String = (5..305).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        b.ok(&["produce", "--topic", &jobs], more.as_bytes());
        // Mid-batch: the worker has begun items whose outputs are not written yet
        // (read in that order, so the items counted were begun before the outputs were).
        let mut at_signal = 0;
        wait_until(
            Duration::from_secs(60),
            "the worker in the middle of a batch",
            || {
                at_signal = started();
                at_signal > 5 && b.records_in(&done) < at_signal as i64
            },
        );
        let (ok, err) = run.stop("TERM");
        assert!(ok, "[{}] SIGTERM should exit 0:\n{err}", b.name);

        let outputs = b.records_in(&done);
        assert!(
            outputs >= at_signal as i64,
            "[{}] {outputs} outputs after the stop: the batch in hand ({at_signal} items begun) was abandoned\n{err}",
            b.name
        );
        assert_eq!(
            inspect::committed_total(&b, &group, &jobs),
            outputs,
            "[{}] what was produced is what was committed\n{err}",
            b.name
        );

        // The rest, in a batch run: every item once, all committed.
        b.root_ok(&["run", file, "--batch", "--no-http"], b"");
        let got = b.read_exactly(&done, 305);
        let distinct: BTreeSet<&String> = got.iter().collect();
        assert_eq!(distinct.len(), 305, "[{}] every item once", b.name);
        inspect::assert_no_duplicates(&b, &[&done], b.name);
        assert_eq!(inspect::committed_total(&b, &group, &jobs), 305);
    }
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
