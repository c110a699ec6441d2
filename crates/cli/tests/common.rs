//! Helpers shared by the CLI tests: run the real `millrace` binary against a backend.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_millrace"))
}

/// Where the tests' Kafka broker is; in CI (CI=true) a missing broker fails the run
/// instead of skipping the Kafka half of the suite.
#[allow(unused_imports)]
pub use millrace_testkit::kafka_bootstrap;

/// A backend under test: the embedded store in a fresh directory, or Kafka.
pub struct Backend {
    pub name: &'static str,
    pub data: tempfile::TempDir,
    pub bootstrap: Option<String>,
    /// Kafka is shared between tests: topic names get a unique suffix there.
    pub suffix: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Backend {
    pub fn embedded() -> Backend {
        Backend {
            name: "embedded",
            data: tempfile::tempdir().expect("tempdir"),
            bootstrap: None,
            suffix: String::new(),
        }
    }

    pub fn kafka(bootstrap: String) -> Backend {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Backend {
            name: "kafka",
            data: tempfile::tempdir().expect("tempdir"),
            bootstrap: Some(bootstrap),
            suffix: format!("-{}-{n}-{}", std::process::id(), nanos % 1_000_000),
        }
    }

    /// Every backend the tests can reach.
    pub fn all() -> Vec<Backend> {
        let mut v = vec![Backend::embedded()];
        if let Some(b) = kafka_bootstrap() {
            v.push(Backend::kafka(b));
        }
        v
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{name}{}", self.suffix)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env_remove("MILLRACE_BOOTSTRAP");
        c.env("MILLRACE_DATA", self.data.path());
        if let Some(b) = &self.bootstrap {
            c.env("MILLRACE_BOOTSTRAP", b);
        }
        c
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Runs with the given stdin; panics with the output if it fails to start.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_with(self.cmd(), args, stdin)
    }

    /// Runs and asserts success.
    pub fn ok(&self, args: &[&str], stdin: &[u8]) -> Output {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "[{}] millrace {:?} failed: {}\n{}",
            self.name,
            args,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

pub fn run_with(mut c: Command, args: &[&str], stdin: &[u8]) -> Output {
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn millrace");
    {
        let mut si = child.stdin.take().expect("stdin");
        let _ = si.write_all(stdin);
    }
    child.wait_with_output().expect("wait millrace")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---- Helpers for the examples' end-to-end tests (tests/examples.rs). ----

/// The repository root: the examples name their worker scripts relative to it, as the
/// README runs them.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// Replaces every whole-word occurrence of each name with `name{suffix}`. A word is a
/// run of `[A-Za-z0-9_.-]`, so `signups` does not match inside `signups-eu`.
pub fn rename_words(src: &str, names: &[&str], suffix: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let mut out = String::with_capacity(src.len() + 64);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(word);
        if names.contains(&word.as_str()) {
            out.push_str(suffix);
        }
        word.clear();
    };
    for c in src.chars() {
        if is_word(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Sends a signal ("INT", "TERM") to a child process, as a user's `kill -s` would.
pub fn signal(child: &std::process::Child, sig: &str) {
    let status = Command::new("kill")
        .args(["-s", sig, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {sig} {}", child.id());
}

/// Waits for a child for at most `limit`; kills it and panics if it does not exit.
pub fn wait_for_exit(mut child: std::process::Child, limit: std::time::Duration) -> Output {
    let start = std::time::Instant::now();
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("wait"),
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("wait");
                panic!(
                    "process did not exit within {limit:?}; stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}

/// Polls `f` until it returns true, for at most `limit`.
pub fn wait_until(limit: std::time::Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A pipeline's per-stage summary as `millrace run` prints it on standard error:
/// stage → (pattern, in, out, filtered, dead-lettered, emitted).
pub fn parse_summary(stderr: &str) -> std::collections::BTreeMap<String, (String, [u64; 5])> {
    let mut rows = std::collections::BTreeMap::new();
    let mut in_table = false;
    for line in stderr.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.first() == Some(&"stage") && cols.get(1) == Some(&"pattern") {
            in_table = true;
            continue;
        }
        if !in_table || cols.len() != 7 {
            continue;
        }
        let mut n = [0u64; 5];
        for (slot, c) in n.iter_mut().zip(&cols[2..]) {
            *slot = c.parse().expect("counter");
        }
        rows.insert(cols[0].to_string(), (cols[1].to_string(), n));
    }
    rows
}

impl Backend {
    /// A command run from the repository root (the examples' worker paths are relative).
    pub fn root_cmd(&self) -> Command {
        let mut c = self.cmd();
        c.current_dir(repo_root());
        c
    }

    /// Runs from the repository root and asserts success.
    pub fn root_ok(&self, args: &[&str], stdin: &[u8]) -> Output {
        let out = run_with(self.root_cmd(), args, stdin);
        assert!(
            out.status.success(),
            "[{}] millrace {:?} failed: {}\n{}",
            self.name,
            args,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts `millrace ARGS` from the repository root in the background.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.root_cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn millrace")
    }

    /// An example pipeline as this backend runs it: the file itself on the embedded
    /// store; on Kafka (shared between tests) a copy whose topics (`topics`) and
    /// pipeline name (so its consumer groups and dead-letter topic) carry this backend's
    /// suffix.
    pub fn example(&self, file: &str, topics: &[&str]) -> PathBuf {
        let path = repo_root().join("examples").join(file);
        if self.suffix.is_empty() {
            return path;
        }
        let src = std::fs::read_to_string(&path).expect("read example");
        let renamed: String = rename_words(&src, topics, &self.suffix)
            .lines()
            .map(|l| match l.strip_prefix("pipeline: ") {
                Some(name) => format!("pipeline: {}{}\n", name.trim(), self.suffix),
                None => format!("{l}\n"),
            })
            .collect();
        let copy = self.data_dir().join(file);
        std::fs::write(&copy, renamed).expect("write copy");
        copy
    }

    /// The dead-letter topic of an example pipeline as this backend names it (the
    /// pipeline name carries the suffix on Kafka).
    pub fn dead_letter(&self, pipeline: &str) -> String {
        format!("{pipeline}{}.dlq", self.suffix)
    }

    /// Records in a topic now (it must exist): the sum of its partitions' end offsets.
    pub fn records_in(&self, topic: &str) -> i64 {
        let out = self.ok(&["topics", "describe", "--topic", topic], b"");
        stdout(&out)
            .lines()
            .filter_map(|l| l.split("EndOffset: ").nth(1))
            .map(|e| e.trim().parse::<i64>().expect("end offset"))
            .sum()
    }

    /// Every value of a topic, which must hold exactly `n` records (checked against the
    /// end offsets, so a stray extra record fails the test without a long idle wait).
    pub fn read_exactly(&self, topic: &str, n: usize) -> Vec<String> {
        self.read_exactly_with(topic, n, &[])
    }

    /// `read_exactly` with more `consume` arguments (`--property print.partition=true`).
    pub fn read_exactly_with(&self, topic: &str, n: usize, extra: &[&str]) -> Vec<String> {
        assert_eq!(
            self.records_in(topic),
            i64::try_from(n).expect("n"),
            "[{}] records in {topic}",
            self.name
        );
        if n == 0 {
            return Vec::new();
        }
        let max = n.to_string();
        let mut args = vec![
            "consume",
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            &max,
            "--timeout-ms",
            "20000",
        ];
        args.extend_from_slice(extra);
        let out = self.ok(&args, b"");
        let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
        assert_eq!(lines.len(), n, "[{}] values read from {topic}", self.name);
        lines
    }
}
