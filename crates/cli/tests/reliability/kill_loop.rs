//! The kill -9 loop: `millrace run` started again and again over input that arrives in
//! chunks between runs (so every run has work in hand when it is killed), each run
//! killed with SIGKILL at a random moment, then a final `--batch` run drains the rest.
//! The scenarios that use it are in `crash.rs` and `crash_wordcount.rs`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Backend, stderr};
use crate::support::{
    Rng, drain_stderr, kill9, no_panic, only_tail_truncations, tail, wait_with_deadline,
};

/// `millrace run FILE [--batch] --no-http` from the repository root, quiet stdout.
pub fn spawn_run(b: &Backend, file: &Path, batch: bool) -> std::process::Child {
    let mut c: Command = b.root_cmd();
    c.arg("run").arg(file).arg("--no-http");
    if batch {
        c.arg("--batch");
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn millrace run")
}

/// Produces `lines` (newline-terminated) into `topic` with `millrace produce --file`.
pub fn produce_lines(b: &Backend, topic: &str, lines: &str, scratch: &Path) {
    let f = scratch.join(format!("{topic}.chunk"));
    std::fs::write(&f, lines).expect("write chunk");
    let out = b.run(
        &[
            "produce",
            "--topic",
            topic,
            "--file",
            f.to_str().expect("utf-8 path"),
        ],
        b"",
    );
    no_panic("produce", &stderr(&out));
    assert!(out.status.success(), "produce failed: {}", stderr(&out));
}

/// Every value of a topic (which may be large) as strings.
pub fn read_all(b: &Backend, topic: &str) -> Vec<String> {
    let n = b.records_in(topic);
    if n == 0 {
        return Vec::new();
    }
    let out = b.ok(
        &[
            "consume",
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            &n.to_string(),
            "--timeout-ms",
            "30000",
        ],
        b"",
    );
    let v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        v.len() as i64,
        n,
        "{topic}: consumed fewer values than its end offsets"
    );
    v
}

/// Every expected id appears exactly once in `seen` (id → times seen): nothing lost,
/// nothing written twice, nothing invented.
pub fn exactly_once(seen: &HashMap<String, u64>, expected: &HashSet<String>, what: &str) {
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: LOST records: {} of {} ids missing, e.g. {missing:?}",
        expected.iter().filter(|id| !seen.contains_key(*id)).count(),
        expected.len()
    );
    let extra: Vec<&String> = seen
        .keys()
        .filter(|id| !expected.contains(*id))
        .take(5)
        .collect();
    assert!(
        extra.is_empty(),
        "{what}: ids that were never input: {extra:?}"
    );
    let twice: Vec<(&String, &u64)> = seen.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(
        twice.is_empty(),
        "{what}: DUPLICATES: {} ids more than once, e.g. {twice:?}",
        seen.values().filter(|n| **n > 1).count()
    );
}

/// How the runs of a kill loop run and when they die.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// `millrace run --batch`, each killed within a ceiling that adapts to how long a
    /// run takes (join and reduce release at a batch's end).
    Batch,
    /// Continuous runs: every other one is killed a random moment after it has written
    /// to the working topic, the rest a random moment after their start.
    Continuous,
    /// Continuous runs, each killed within the delay after it has written to the
    /// working topic: for stages that would finish their chunk before a later kill.
    MidWork,
}

/// What a kill loop did.
pub struct Kills {
    pub kills: u64,
    pub finished_on_their_own: u64,
    pub truncations: usize,
    /// Records in the pipeline's final output topic when the kill loop ended.
    pub outputs_before_drain: i64,
}

/// Starts `file` `kills` times (feeding `chunks[i]` before start i), kills each run
/// with SIGKILL after a random delay, then feeds the last chunk and runs `--batch` to
/// completion. Returns the figures and the final run's stderr.
pub fn kill_loop(
    b: &Backend,
    file: &Path,
    runs: Runs,
    topic: &str,
    working_topic: &str,
    progress_topic: &str,
    chunks: &[String],
    kills: u64,
    rng: &mut Rng,
    max_delay_ms: u64,
) -> (Kills, String) {
    let scratch = tempfile::tempdir().expect("scratch");
    let mut k = Kills {
        kills: 0,
        finished_on_their_own: 0,
        truncations: 0,
        outputs_before_drain: 0,
    };
    let started = Instant::now();
    let batch_runs = runs == Runs::Batch;
    // Until `kills` runs were killed (a run may finish its batch before its moment
    // comes; that is counted, not a kill). One run in four gets a longer life, so some
    // batches complete between crashes.
    let mut i = 0usize;
    // `--batch` runs are killed within this many ms, adapted to how long they take
    // (a debug build of a slow stage takes seconds, a fast one a tenth): halved when
    // a run finished before its moment, grown when one was killed.
    let mut ceiling = max_delay_ms / 2;
    while k.kills < kills && i < 3 * kills as usize {
        i += 1;
        if let Some(c) = chunks.get(i - 1) {
            produce_lines(b, topic, c, scratch.path());
        }
        let seen_before = b.records_in(working_topic);
        let mut child = spawn_run(b, file, batch_runs);
        let err = drain_stderr(&mut child);
        // Every other run (every run, mid-work) is killed only once it has written to
        // `working_topic` (then after a random delay), so kills land mid-work and not
        // only during start-up and recovery; the rest die at a random moment from their
        // start. (`--batch` runs on a small chunk finish quickly: they get no such wait.)
        let toss = rng.next().is_multiple_of(2);
        if runs == Runs::MidWork || (runs == Runs::Continuous && toss) {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(30)
                && child.try_wait().expect("try_wait").is_none()
                && b.records_in(working_topic) <= seen_before
            {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let long_life = rng.next().is_multiple_of(4);
        let delay = if long_life {
            rng.millis(max_delay_ms, 4 * max_delay_ms)
        } else if batch_runs {
            rng.millis(ceiling / 8, ceiling)
        } else if runs == Runs::MidWork {
            rng.millis(0, max_delay_ms)
        } else {
            rng.millis(150, max_delay_ms)
        };
        let deadline = Instant::now() + delay;
        let mut exited = None;
        while Instant::now() < deadline {
            if let Some(s) = child.try_wait().expect("try_wait") {
                exited = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        match exited {
            Some(status) => {
                let e = err.join().unwrap_or_default();
                assert!(
                    status.success(),
                    "run {i} failed on its own: {status}\n{}",
                    tail(&e, 30)
                );
                k.finished_on_their_own += 1;
                if batch_runs && !long_life {
                    ceiling = (ceiling / 2).max(40);
                }
                k.truncations += only_tail_truncations(&format!("run {i}"), &e);
            }
            None => {
                kill9(&mut child);
                let e = err.join().unwrap_or_default();
                k.truncations += only_tail_truncations(&format!("run {i} (killed)"), &e);
                k.kills += 1;
                if batch_runs && !long_life {
                    ceiling = (ceiling + ceiling / 4).min(max_delay_ms);
                }
            }
        }
    }
    for c in chunks.iter().skip(i) {
        produce_lines(b, topic, c, scratch.path());
    }
    k.outputs_before_drain = b.records_in(progress_topic);
    eprintln!(
        "{} kills in {:?}; draining with --batch",
        k.kills,
        started.elapsed()
    );
    let child = spawn_run(b, file, true);
    let out = wait_with_deadline(child, Duration::from_secs(240), "final --batch run");
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "final --batch run failed:\n{}",
        tail(&e, 40)
    );
    k.truncations += only_tail_truncations("final --batch run", &e);
    (k, e)
}

/// The store opens clean after everything: `topics describe` works and reports no cut.
pub fn store_opens_clean(b: &Backend, topic: &str) {
    let out = b.ok(&["topics", "describe", "--topic", topic], b"");
    let e = stderr(&out);
    no_panic("describe", &e);
    assert!(
        !e.contains("recovery:"),
        "a clean exit left something to repair: {e}"
    );
}

pub fn split_chunks(lines: &[String], n: usize) -> Vec<String> {
    let per = lines.len().div_ceil(n.max(1)).max(1);
    lines
        .chunks(per)
        .map(|c| {
            let mut s = c.join("\n");
            s.push('\n');
            s
        })
        .collect()
}
