//! Helpers shared by the CLI tests: run the real `millrace` binary against a backend.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_millrace"))
}

/// Where the tests' Kafka broker is. In CI (CI=true) a missing broker fails the run
/// instead of skipping the Kafka half of the suite.
pub fn kafka_bootstrap() -> Option<String> {
    match std::env::var("MILLRACE_TEST_BOOTSTRAP") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but MILLRACE_TEST_BOOTSTRAP is not set: the Kafka tests must run");
            }
            eprintln!(
                "MILLRACE_TEST_BOOTSTRAP unset: Kafka half of this test not run (set it, or use scripts/test.sh)"
            );
            None
        }
    }
}

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
