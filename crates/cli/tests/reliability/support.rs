//! Shared machinery of the reliability suite: how big a run is, seeded randomness,
//! kill -9, memory readings and the figures the suite reports.

use std::io::Write;
use std::process::Child;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Heavy scenarios (kill loops, the load test) take this lock so that they do not
/// compete for the two CPU cores CI has, which would make timings meaningless.
static HEAVY: Mutex<()> = Mutex::new(());

pub fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// True in soak mode (`MILLRACE_REL_SOAK=1`, set by scripts/soak.sh).
pub fn soak() -> bool {
    std::env::var("MILLRACE_REL_SOAK").is_ok_and(|v| v == "1")
}

/// A size knob: the environment variable when set, else the soak or CI default.
pub fn knob(var: &str, ci: u64, soak_default: u64) -> u64 {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v} is not a number")),
        Err(_) if soak() => soak_default,
        Err(_) => ci,
    }
}

pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// xorshift64*: small, seeded, reproducible. The seed is printed so a failing run can
/// be repeated with `MILLRACE_REL_SEED`.
pub struct Rng(u64);

impl Rng {
    pub fn new(what: &str) -> Rng {
        let seed = match std::env::var("MILLRACE_REL_SEED") {
            Ok(s) => s.parse().expect("MILLRACE_REL_SEED is a number"),
            Err(_) => {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    | 1
            }
        };
        eprintln!("{what}: seed {seed} (repeat with MILLRACE_REL_SEED={seed})");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo).max(1))
    }
}

/// kill -9, then reap.
pub fn kill9(child: &mut Child) -> std::process::ExitStatus {
    // SIGKILL: no handler runs, exactly a crash.
    let _ = child.kill();
    child.wait().expect("reap killed child")
}

/// Reports a figure: a line on stderr, and a JSON line in `MILLRACE_REL_FIGURES`.
pub fn figure(test: &str, fields: &[(&str, String)]) {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| {
            let quoted = v.parse::<f64>().is_err();
            if quoted {
                format!("\"{k}\":{}", serde_json::Value::String(v.clone()))
            } else {
                format!("\"{k}\":{v}")
            }
        })
        .collect();
    let line = format!("{{\"test\":\"{test}\",{}}}", body.join(","));
    eprintln!("reliability figure: {line}");
    if let Ok(path) = std::env::var("MILLRACE_REL_FIGURES")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Asserts that a command's standard error shows no panic.
pub fn no_panic(what: &str, stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{what}: the process panicked:\n{stderr}"
    );
}

/// Checks the warnings of a restart: the only recovery the store may report after a
/// kill -9 is cutting a torn tail (Truncation); never a corrupt middle.
pub fn only_tail_truncations(what: &str, stderr: &str) -> usize {
    no_panic(what, stderr);
    assert!(
        !stderr.contains("corrupt"),
        "{what}: the store reported corruption after kill -9:\n{stderr}"
    );
    stderr
        .lines()
        .filter(|l| l.contains("recovery:"))
        .inspect(|l| {
            assert!(
                l.contains("Truncation") || l.contains("cut"),
                "{what}: unexpected recovery report: {l}"
            )
        })
        .count()
}

/// Waits for a child with a deadline; kills it (and fails) past it.
pub fn wait_with_deadline(child: Child, limit: Duration, what: &str) -> std::process::Output {
    let start = Instant::now();
    let mut child = child;
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("wait"),
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("wait");
                panic!(
                    "{what}: did not finish within {limit:?}; stderr tail:\n{}",
                    tail(&String::from_utf8_lossy(&out.stderr), 40)
                );
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

pub fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Drains a child's stderr on a thread so a chatty child never blocks on a full pipe;
/// the text is returned when the thread is joined.
pub fn drain_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut err = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    })
}
