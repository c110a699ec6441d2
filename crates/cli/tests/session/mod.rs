//! Terminals for the tests of one data directory shared by several `millrace`
//! processes: each command runs as a person would run it in a terminal of its own —
//! lines typed into its standard input, what it prints collected as it comes — and
//! the data directory's lock file says which of them holds the store.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::Backend;

/// Every wait in these tests ends by this bound.
pub const WAIT: Duration = Duration::from_secs(90);

/// The book's copier over two topics of ten partitions.
pub const COPIER: &str = "pipeline: copier\ntopics:\n  photos-topic: { partitions: 10 }\n\
    stages:\n  copy: { kind: copier, from: photos-topic, to: photos-topic-2 }\n";

/// One command running in a terminal of its own.
pub struct Terminal {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Terminal {
    /// Starts `millrace ARGS` on `b`'s data directory, in `dir`.
    pub fn start(b: &Backend, name: &str, dir: &Path, args: &[&str]) -> Terminal {
        let mut child = b
            .cmd()
            .current_dir(dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn millrace");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let errs = child.stderr.take().expect("stderr");
        let l = Arc::clone(&lines);
        let e = Arc::clone(&err);
        let readers = vec![
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    lock(&l).push(line);
                }
            }),
            std::thread::spawn(move || {
                let mut r = BufReader::new(errs);
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    lock(&e).push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }),
        ];
        Terminal {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            err,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Types `line` and Enter.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("standard input still open");
        writeln!(stdin, "{line}").expect("type into the terminal");
        stdin.flush().expect("flush");
    }

    /// Ctrl-D.
    pub fn end_input(&mut self) {
        self.stdin.take();
    }

    /// What it printed on standard output so far, line by line.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.lines).clone()
    }

    pub fn stderr(&self) -> String {
        lock(&self.err).clone()
    }

    /// Waits until standard output holds every line of `want` (in any order).
    pub fn wait_for_lines(&self, want: &[String]) {
        let start = Instant::now();
        loop {
            let got = self.lines();
            let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "[{}] still missing {} of {} lines, e.g. {:?}; stderr:\n{}",
                self.name,
                missing.len(),
                want.len(),
                missing.first(),
                self.stderr()
            );
            self.assert_running();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails the test if the command has exited.
    pub fn assert_running(&self) {
        // `try_wait` needs `&mut`; the pid in /proc says as much without reaping.
        let state =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let zombie = state
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        assert!(
            !state.is_empty() && !zombie,
            "[{}] exited early; stderr:\n{}",
            self.name,
            self.stderr()
        );
    }

    /// Sends `sig` ("INT", "KILL", …).
    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {sig} {}", self.pid());
    }

    /// Waits for the exit; its status and everything it printed on standard error.
    pub fn wait(mut self) -> (ExitStatus, String) {
        self.stdin.take();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if start.elapsed() > WAIT {
                let _ = self.child.kill();
                panic!(
                    "[{}] did not exit within {WAIT:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status, self.stderr())
    }

    /// Stops it with `sig` and checks it exits 0 without an error line.
    pub fn stop_cleanly(self, sig: &str) -> String {
        self.signal(sig);
        self.exits_cleanly()
    }

    /// Waits for the exit and checks it is 0 without an error or warning line.
    pub fn exits_cleanly(self) -> String {
        let name = self.name.clone();
        let (status, err) = self.wait();
        assert!(status.success(), "[{name}] exited with {status}:\n{err}");
        assert_no_complaint(&name, &err);
        err
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Neither an error nor a warning: the other processes go on as if nothing happened.
pub fn assert_no_complaint(name: &str, stderr: &str) {
    for line in stderr.lines() {
        assert!(
            !line.contains("error") && !line.contains("WARN"),
            "[{name}] complained: {line}\n{stderr}"
        );
    }
}

/// The pid of the process holding `data` (its lock file names it, and it runs).
pub fn holder(data: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(data.join("LOCK"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// Waits until one of `terminals` holds `data`; which one.
pub fn wait_for_holder(data: &Path, terminals: &[&Terminal]) -> u32 {
    let start = Instant::now();
    loop {
        if let Some(pid) = holder(data)
            && terminals.iter().any(|t| t.pid() == pid)
        {
            return pid;
        }
        assert!(
            start.elapsed() < WAIT,
            "none of {:?} holds the store (lock: {:?})",
            terminals.iter().map(|t| &t.name).collect::<Vec<_>>(),
            std::fs::read_to_string(data.join("LOCK"))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `photo-<first>.jpg` … `photo-<last>.jpg`.
pub fn photos(first: usize, last: usize) -> Vec<String> {
    (first..=last).map(|i| format!("photo-{i}.jpg")).collect()
}
