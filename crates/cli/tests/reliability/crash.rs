//! kill -9 of `millrace run` on the embedded store (durability=batch, the default), again
//! and again, over the sign-up and word-count examples. Input arrives in chunks between
//! runs so every run has work in hand when it is killed. A final `--batch` run drains
//! what is left; then every input must be accounted for in the outputs. Duplicates
//! (at-least-once replays) are counted and reported, not failed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{Backend, parse_summary, stderr};
use crate::support::{
    Rng, drain_stderr, figure, heavy, kill9, knob, no_panic, only_tail_truncations, tail,
    wait_with_deadline,
};

/// `millrace run FILE [--batch] --no-http` from the repository root, quiet stdout.
fn spawn_run(b: &Backend, file: &Path, batch: bool) -> std::process::Child {
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
fn produce_lines(b: &Backend, topic: &str, lines: &str, scratch: &Path) {
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

/// What a kill loop did.
struct Kills {
    kills: u64,
    finished_on_their_own: u64,
    truncations: usize,
    /// Records in the pipeline's final output topic when the kill loop ended.
    outputs_before_drain: i64,
}

/// Starts `file` `kills` times (feeding `chunks[i]` before start i), kills each run
/// with SIGKILL after a random delay, then feeds the last chunk and runs `--batch` to
/// completion. Returns the figures and the final run's stderr.
fn kill_loop(
    b: &Backend,
    file: &Path,
    batch_runs: bool,
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
        // Every other run is killed only once it has written to `working_topic`
        // (then after a random delay), so kills land mid-work and not only during
        // start-up and recovery; the rest die at a random moment from their start.
        // (`--batch` runs on a small chunk finish quickly: they get no such wait.)
        if !batch_runs && rng.next().is_multiple_of(2) {
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
fn store_opens_clean(b: &Backend, topic: &str) {
    let out = b.ok(&["topics", "describe", "--topic", topic], b"");
    let e = stderr(&out);
    no_panic("describe", &e);
    assert!(
        !e.contains("recovery:"),
        "a clean exit left something to repair: {e}"
    );
}

fn split_chunks(lines: &[String], n: usize) -> Vec<String> {
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

// ---------------------------------------------------------------- sign-up

const REGIONS: [&str; 3] = ["eu", "us", "ap"];
const NOTIFY: [&str; 4] = ["[]", "[\"email\"]", "[\"sms\"]", "[\"email\",\"sms\"]"];

fn signup(i: u64) -> String {
    format!(
        r#"{{"user_id":"u{i:07}","email":"user{i}@example.com","phone":"+1555{i:07}","region":"{}","notify":{}}}"#,
        REGIONS[(i % 3) as usize],
        NOTIFY[((i / 3) % 4) as usize]
    )
}

fn user_ids(values: &[String], what: &str) -> HashMap<String, u64> {
    let mut seen = HashMap::new();
    for v in values {
        let j: serde_json::Value =
            serde_json::from_str(v).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {v}"));
        let id = j["user_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no user_id in {v}"))
            .to_string();
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

/// Every expected user id appears at least once; returns the duplicate count.
fn all_present(seen: &HashMap<String, u64>, expected: &HashSet<String>, what: &str) -> u64 {
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: LOST records: {} of {} user ids missing, e.g. {missing:?}",
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
    seen.values().map(|n| n - 1).sum()
}

#[test]
fn signup_survives_kill_9_without_losing_a_user() {
    let _heavy = heavy();
    let users = knob("MILLRACE_REL_SIGNUPS", 80_000, 1_000_000);
    let kills = knob("MILLRACE_REL_KILLS", 20, 25);
    let max_delay = knob("MILLRACE_REL_KILL_MAX_MS", 2_500, 6_000);
    let mut rng = Rng::new("signup kill -9");
    let b = Backend::embedded();
    let file = b.example("signup.yaml", &[]);
    // An empty --batch run creates the pipeline's topics (durability=batch by default).
    b.root_ok(
        &["run", file.to_str().expect("path"), "--batch", "--no-http"],
        b"",
    );

    let all: Vec<String> = (0..users).map(signup).collect();
    // Every third user clicks the verification link.
    let verified: Vec<String> = (0..users).step_by(3).map(signup).collect();
    let scratch = tempfile::tempdir().expect("scratch");
    produce_lines(
        &b,
        "verified",
        &(verified.join("\n") + "\n"),
        scratch.path(),
    );
    let chunks = split_chunks(&all, kills as usize + 1);
    let t0 = Instant::now();
    let (k, final_err) = kill_loop(
        &b,
        &file,
        false,
        "signups",
        "signups-eu",
        "verification-emails",
        &chunks,
        kills,
        &mut rng,
        max_delay,
    );
    let elapsed = t0.elapsed();
    assert!(k.kills >= kills, "only {} kills happened", k.kills);

    let summary = parse_summary(&final_err);
    assert!(
        summary.contains_key("shard-by-region"),
        "no summary:\n{final_err}"
    );

    let expected: HashSet<String> = (0..users).map(|i| format!("u{i:07}")).collect();
    let emails = read_all(&b, "verification-emails");
    let dup_emails = all_present(
        &user_ids(&emails, "verification-emails"),
        &expected,
        "verification-emails",
    );

    let verified_ids: HashSet<String> = (0..users).step_by(3).map(|i| format!("u{i:07}")).collect();
    let welcome = read_all(&b, "welcome-email");
    let dup_welcome = all_present(
        &user_ids(&welcome, "welcome-email"),
        &verified_ids,
        "welcome-email",
    );
    // Each verified user lands in exactly the notify routes its `notify` list names.
    let mut dup_notify = 0;
    for (topic, wants) in [("notify-email", "email"), ("notify-sms", "sms")] {
        let want: HashSet<String> = (0..users)
            .step_by(3)
            .filter(|i| NOTIFY[((i / 3) % 4) as usize].contains(wants))
            .map(|i| format!("u{i:07}"))
            .collect();
        dup_notify += all_present(&user_ids(&read_all(&b, topic), topic), &want, topic);
    }
    let none: HashSet<String> = (0..users)
        .step_by(3)
        .filter(|i| (i / 3) % 4 == 0)
        .map(|i| format!("u{i:07}"))
        .collect();
    dup_notify += all_present(
        &user_ids(&read_all(&b, "notify-none"), "notify-none"),
        &none,
        "notify-none",
    );

    // No sign-up was bad, so nothing may be dead-lettered.
    let dlq = b.run(&["topics", "describe", "--topic", "signup.dlq"], b"");
    if dlq.status.success() {
        assert_eq!(
            b.records_in("signup.dlq"),
            0,
            "good sign-ups were dead-lettered"
        );
    }
    store_opens_clean(&b, "verification-emails");

    let checked = emails.len() + welcome.len();
    figure(
        "signup_kill_9",
        &[
            ("users", users.to_string()),
            ("verified", verified_ids.len().to_string()),
            ("kills", k.kills.to_string()),
            (
                "runs_finished_before_kill",
                k.finished_on_their_own.to_string(),
            ),
            ("tail_truncations_reported", k.truncations.to_string()),
            ("outputs_before_drain", k.outputs_before_drain.to_string()),
            ("output_records_checked", checked.to_string()),
            ("duplicates_verification_emails", dup_emails.to_string()),
            ("duplicates_welcome", dup_welcome.to_string()),
            ("duplicates_notify", dup_notify.to_string()),
            ("lost", "0".to_string()),
            ("seconds", elapsed.as_secs().to_string()),
        ],
    );
}

// ---------------------------------------------------------------- word count

const VOCAB: usize = 400;

fn word(k: usize) -> String {
    // Letters and digits only, so the example's scan("[a-z0-9]+") keeps each word whole.
    const SYL: [&str; 8] = ["ka", "lo", "mi", "ne", "ru", "sa", "te", "vo"];
    format!("{}{}{}", SYL[k % 8], SYL[(k / 8) % 8], k / 64)
}

/// A line of 6..14 words with mixed case and punctuation; `counts` gets each word.
fn text_line(rng: &mut Rng, counts: &mut BTreeMap<String, u64>) -> String {
    let n = 6 + (rng.next() % 9) as usize;
    let mut line = String::new();
    for j in 0..n {
        // Skewed: low word numbers are much more frequent (like real text).
        let r = rng.next() % (VOCAB as u64 * VOCAB as u64);
        let k = (r as f64).sqrt() as usize;
        let k = VOCAB - 1 - k.min(VOCAB - 1);
        let w = word(k);
        *counts.entry(w.clone()).or_insert(0) += 1;
        let shown = if rng.next().is_multiple_of(5) {
            w.to_uppercase()
        } else {
            w
        };
        if j > 0 {
            line.push_str([" ", ", ", "! ", " -- ", "; "][(rng.next() % 5) as usize]);
        }
        line.push_str(&shown);
    }
    line
}

/// What the word-count kill loop saw: exact counts, and the counts the pipeline gave.
struct WordcountOutcome {
    exact: BTreeMap<String, u64>,
    got: BTreeMap<String, u64>,
    lines: u64,
    words: u64,
    kills: Kills,
    result_records: usize,
}

fn wordcount_outcome() -> &'static WordcountOutcome {
    static OUTCOME: OnceLock<WordcountOutcome> = OnceLock::new();
    OUTCOME.get_or_init(|| run_wordcount_kill_loop(true))
}

/// The word count without its combiner: the reduce reads one record per word.
fn plain_wordcount_outcome() -> &'static WordcountOutcome {
    static OUTCOME: OnceLock<WordcountOutcome> = OnceLock::new();
    OUTCOME.get_or_init(|| run_wordcount_kill_loop(false))
}

fn run_wordcount_kill_loop(combine: bool) -> WordcountOutcome {
    let _heavy = heavy();
    let lines_n = knob("MILLRACE_REL_LINES", 20_000, 100_000);
    let kills = knob("MILLRACE_REL_KILLS", 20, 25);
    let max_delay = knob("MILLRACE_REL_KILL_MAX_MS", 2_500, 6_000);
    let mut rng = Rng::new("wordcount kill -9");
    let b = Backend::embedded();
    let mut file = b.example("wordcount.yaml", &[]);
    if !combine {
        let src = std::fs::read_to_string(&file).expect("read example");
        let plain: String = src
            .lines()
            .filter(|l| l.trim() != "combine: true")
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(plain, src, "the example combines");
        file = b.data_dir().join("wordcount-plain.yaml");
        std::fs::write(&file, plain).expect("write plain copy");
    }
    b.root_ok(
        &["run", file.to_str().expect("path"), "--batch", "--no-http"],
        b"",
    );

    let mut exact = BTreeMap::new();
    let lines: Vec<String> = (0..lines_n)
        .map(|_| text_line(&mut rng, &mut exact))
        .collect();
    // More chunks than kills: a `--batch` run that finishes before its kill still
    // leaves the next run new input to be killed over.
    let chunks = split_chunks(&lines, 3 * kills as usize);
    let (k, _err) = kill_loop(
        &b,
        &file,
        true,
        "lines",
        "words",
        "word-counts",
        &chunks,
        kills,
        &mut rng,
        max_delay,
    );

    assert!(k.kills >= kills, "only {} kills happened", k.kills);

    // A sink upserts by (batch, word): the last result for a pair wins; a word's total
    // is the sum over batches.
    let results = read_all(&b, "word-counts");
    let mut by_batch: HashMap<(String, String), u64> = HashMap::new();
    for v in &results {
        let j: serde_json::Value = serde_json::from_str(v).expect("word-counts value is JSON");
        let w = j["word"].as_str().expect("word").to_string();
        let c = j["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("count in {v}"));
        by_batch.insert((j["batch"].to_string(), w), c);
    }
    let mut got = BTreeMap::new();
    for ((_, w), c) in by_batch {
        *got.entry(w).or_insert(0) += c;
    }
    store_opens_clean(&b, "word-counts");
    let words = exact.values().sum();
    WordcountOutcome {
        exact,
        got,
        lines: lines_n,
        words,
        kills: k,
        result_records: results.len(),
    }
}

#[test]
fn wordcount_survives_kill_9_without_losing_a_word() {
    let o = wordcount_outcome();
    let mut lost = Vec::new();
    let mut excess = 0u64;
    for (w, &n) in &o.exact {
        let g = o.got.get(w).copied().unwrap_or(0);
        if g < n {
            lost.push(format!("{w}: {g} < {n}"));
        } else {
            excess += g - n;
        }
    }
    let invented: Vec<&String> = o.got.keys().filter(|w| !o.exact.contains_key(*w)).collect();
    assert!(
        invented.is_empty(),
        "words never input were counted: {invented:?}"
    );
    assert!(lost.is_empty(), "LOST words after kill -9: {lost:?}");
    figure(
        "wordcount_kill_9",
        &[
            ("lines", o.lines.to_string()),
            ("words", o.words.to_string()),
            ("distinct_words", o.exact.len().to_string()),
            ("kills", o.kills.kills.to_string()),
            (
                "runs_finished_before_kill",
                o.kills.finished_on_their_own.to_string(),
            ),
            ("tail_truncations_reported", o.kills.truncations.to_string()),
            ("result_records", o.result_records.to_string()),
            (
                "results_before_drain",
                o.kills.outputs_before_drain.to_string(),
            ),
            ("duplicate_words_counted", excess.to_string()),
            ("lost", "0".to_string()),
        ],
    );
}

/// Exactly-once counts across kill -9: needs deduplication in the runtime (lineage
/// headers). Fails while replays after a crash count some words twice.
#[test]
fn wordcount_counts_are_exact_after_kill_9() {
    assert_exact(wordcount_outcome());
}

/// The same without the combiner: a reduce whose results were written before a kill
/// counts the records it reads again under their batch, not a second time.
#[test]
fn plain_wordcount_counts_are_exact_after_kill_9() {
    assert_exact(plain_wordcount_outcome());
}

fn assert_exact(o: &WordcountOutcome) {
    let wrong: Vec<String> = o
        .exact
        .iter()
        .filter(|(w, n)| o.got.get(*w) != Some(n))
        .map(|(w, n)| format!("{w}: got {:?}, exact {n}", o.got.get(w)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} words have inexact counts after {} kills, e.g. {:?}",
        wrong.len(),
        o.exact.len(),
        o.kills.kills,
        &wrong[..wrong.len().min(10)]
    );
}
