//! The README's "Getting started" session, run as written: the console block is read
//! from README.md itself, so the README and this test cannot drift apart. It runs on
//! the embedded store and on Kafka (MILLRACE_TEST_BOOTSTRAP; always in CI).
//!
//! How the block is read, as a person would follow it:
//! - `$ millrace …` is a command, run from the repository root; a `# terminal N`
//!   comment after it means it keeps running in a terminal of its own while the
//!   session goes on;
//! - lines starting with `>` are typed into the command above (then Ctrl-D);
//! - other lines are what the command prints on standard output; the order of those
//!   lines is not checked for a consumer of several partitions (the README says so);
//! - `^C` interrupts the command once its output is there; the rest of that line is
//!   what it then prints on standard error;
//! - a background command without `^C` is interrupted when the session ends, and
//!   must exit 0.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// The comment that precedes the tested block in README.md.
const MARKER: &str = "crates/cli/tests/readme.rs";

/// One `$` line of the block and what follows it.
#[derive(Debug, Default)]
struct Step {
    args: Vec<String>,
    background: bool,
    input: Vec<String>,
    output: Vec<String>,
    /// `Some(text)`: interrupt after the output, then expect `text` on stderr.
    interrupt: Option<String>,
}

fn session() -> Vec<Step> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let after = readme
        .split_once(MARKER)
        .map(|(_, rest)| rest)
        .expect("README.md has the tested console block");
    let block = after
        .split_once("```console\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(block, _)| block)
        .expect("a ```console block after the marker");
    let mut steps: Vec<Step> = Vec::new();
    for line in block.lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            let (cmd, comment) = cmd.split_once('#').unwrap_or((cmd, ""));
            let args: Vec<String> = cmd.split_whitespace().map(String::from).collect();
            assert_eq!(args.first().map(String::as_str), Some("millrace"), "{line}");
            steps.push(Step {
                args: args[1..].to_vec(),
                background: comment.contains("terminal"),
                ..Step::default()
            });
            continue;
        }
        let step = steps.last_mut().expect("the block starts with a command");
        if let Some(typed) = line.strip_prefix('>') {
            step.input.push(typed.to_string());
        } else if let Some(rest) = line.strip_prefix("^C") {
            step.interrupt = Some(rest.to_string());
        } else {
            step.output.push(line.to_string());
        }
    }
    steps
}

/// A command running in its own "terminal": its output collected as it comes.
struct Terminal {
    args: Vec<String>,
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
            s.push_str(&line);
            s.push('\n');
        }
    });
    text
}

fn text(t: &Arc<Mutex<String>>) -> String {
    t.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

impl Terminal {
    fn start(b: &Backend, step: &Step) -> Terminal {
        let mut child = b
            .root_cmd()
            .args(&step.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn millrace");
        let out = collect(child.stdout.take().expect("stdout"));
        let err = collect(child.stderr.take().expect("stderr"));
        let mut stdin = child.stdin.take().expect("stdin");
        for line in &step.input {
            writeln!(stdin, "{line}").expect("type a line");
        }
        Terminal {
            args: step.args.clone(),
            child,
            // Typed lines end with Ctrl-D; other commands keep their input open, as a
            // terminal does.
            stdin: (step.input.is_empty()).then_some(stdin),
            out,
            err,
        }
    }

    fn describe(&self) -> String {
        format!(
            "millrace {}\n--- stdout\n{}--- stderr\n{}",
            self.args.join(" "),
            text(&self.out),
            text(&self.err)
        )
    }

    fn wait_until(&mut self, what: &str, mut done: impl FnMut(&Terminal) -> bool) {
        let start = Instant::now();
        while !done(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                // One last look: the readers may not have caught up with the exit.
                std::thread::sleep(Duration::from_millis(200));
                if done(self) {
                    return;
                }
                panic!("exited ({status}) before {what}:\n{}", self.describe());
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "timed out waiting for {what}:\n{}",
                self.describe()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends Ctrl-C and waits for the exit; returns whether it exited 0.
    fn interrupt(self) -> (bool, String) {
        signal(&self.child, "INT");
        drop(self.stdin);
        let describe = (self.args.clone(), self.out.clone(), self.err.clone());
        let out = wait_for_exit(self.child, Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(200));
        let report = format!(
            "millrace {}\n--- stdout\n{}--- stderr\n{}",
            describe.0.join(" "),
            text(&describe.1),
            text(&describe.2)
        );
        (out.status.success(), report)
    }
}

fn sorted(lines: &[String]) -> Vec<String> {
    let mut v = lines.to_vec();
    v.sort();
    v
}

/// Topics of an earlier run of this test on a shared Kafka broker are deleted first
/// (with them go the copier group's offsets into them).
fn forget_earlier_runs(b: &Backend, topics: &[&str]) {
    for t in topics {
        let _ = b.run(&["topics", "delete", "--topic", t], b"");
    }
    wait_until(Duration::from_secs(60), "the deleted topics to go", || {
        let out = b.run(&["topics", "list"], b"");
        out.status.success() && !stdout(&out).lines().any(|l| topics.contains(&l))
    });
}

fn run_session(b: &Backend) {
    let steps = session();
    assert!(steps.len() >= 4, "the session has its commands: {steps:?}");
    let mut background: Vec<Terminal> = Vec::new();
    for step in &steps {
        let args: Vec<&str> = step.args.iter().map(String::as_str).collect();
        if !step.background {
            let out = b.root_ok(&args, b"");
            assert_eq!(
                stdout(&out).lines().collect::<Vec<_>>(),
                step.output,
                "[{}] millrace {}",
                b.name,
                args.join(" ")
            );
            continue;
        }
        let mut term = Terminal::start(b, step);
        if args.first() == Some(&"run") {
            // Terminal 1 is up once the pipeline says where its page is.
            term.wait_until("the pipeline to start", |t| {
                text(&t.err).contains("serving http://")
            });
        }
        if args.first() == Some(&"produce") {
            let out = wait_for_exit(term.child, Duration::from_secs(60));
            assert!(
                out.status.success(),
                "[{}] produce failed: {}",
                b.name,
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        let want = sorted(&step.output);
        term.wait_until("the output the README shows", |t| {
            let got: Vec<String> = text(&t.out).lines().map(String::from).collect();
            sorted(&got) == want
        });
        match &step.interrupt {
            Some(expected) => {
                let (ok, report) = term.interrupt();
                assert!(ok, "[{}] exit after Ctrl-C:\n{report}", b.name);
                assert!(
                    report.contains(expected.as_str()),
                    "[{}] `{expected}` after Ctrl-C:\n{report}",
                    b.name
                );
            }
            None => background.push(term),
        }
    }
    for term in background.into_iter().rev() {
        let (ok, report) = term.interrupt();
        assert!(ok, "[{}] exit after Ctrl-C:\n{report}", b.name);
    }
}

#[test]
fn readme_getting_started_session_runs_as_written() {
    for b in Backend::all() {
        if b.bootstrap.is_some() {
            // Kafka is shared between tests; this one alone uses the README's names.
            forget_earlier_runs(&b, &["photos-topic", "photos-topic-2", "copier.dlq"]);
        }
        run_session(&b);
    }
}

#[test]
fn the_session_is_read_from_the_readme() {
    let steps = session();
    let commands: Vec<String> = steps.iter().map(|s| s.args.join(" ")).collect();
    assert_eq!(
        commands.first().map(String::as_str),
        Some("topics create --topic photos-topic --partitions 10"),
        "{commands:?}"
    );
    let produce = steps
        .iter()
        .find(|s| s.args.first().map(String::as_str) == Some("produce"))
        .expect("a produce step");
    assert!(!produce.input.is_empty(), "typed lines: {produce:?}");
    let consume = steps
        .iter()
        .find(|s| s.args.first().map(String::as_str) == Some("consume"))
        .expect("a consume step");
    assert_eq!(sorted(&consume.output), sorted(&produce.input));
    assert!(consume.interrupt.is_some(), "{consume:?}");
}
