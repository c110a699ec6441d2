//! kill -9 of `millrace run --batch`, again and again (`kill_loop.rs`), over the
//! MapReduce word count (map with its combiner, sharder, reduce, barrier join) on the
//! embedded store, with and without the combiner: every word's count must be exact (no
//! word lost, none counted twice) and no stage may write any output twice (by lineage,
//! in every topic a stage writes).

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use crate::common::Backend;
use crate::inspect::written_twice;
use crate::kill_loop::{Kills, Runs, kill_loop, read_all, split_chunks, store_opens_clean};
use crate::support::{Rng, figure, heavy, knob};

/// Every topic the word count's stages write.
const WORDCOUNT_OUTPUTS: &[&str] = &[
    "words-unsharded",
    "words",
    "partial-counts",
    "counted",
    "word-counts",
];

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
    /// What each topic a stage writes holds.
    written: Vec<Written>,
}

/// A topic read back after a kill loop.
struct Written {
    topic: &'static str,
    records: usize,
    /// Outputs found more than once (by lineage), with their counts.
    twice: Vec<(String, usize)>,
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
        Runs::Batch,
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
    let written = WORDCOUNT_OUTPUTS
        .iter()
        .map(|t| {
            let (records, twice) = written_twice(&b, t);
            Written {
                topic: t,
                records,
                twice,
            }
        })
        .collect();
    let words = exact.values().sum();
    WordcountOutcome {
        exact,
        got,
        lines: lines_n,
        words,
        kills: k,
        result_records: results.len(),
        written,
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
            ("words_counted_twice", excess.to_string()),
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

/// No stage of the word count writes any output twice across kill -9, with or without
/// the combiner (a sink that upserts results would hide a repeated one; this does not).
#[test]
fn wordcount_writes_no_output_twice_under_kill_9() {
    for (what, o) in [
        ("with the combiner", wordcount_outcome()),
        ("without it", plain_wordcount_outcome()),
    ] {
        for w in &o.written {
            assert!(
                w.twice.is_empty(),
                "word count {what}: {} of {} outputs in {} written more than once, e.g. {:?}",
                w.twice.len(),
                w.records,
                w.topic,
                &w.twice[..w.twice.len().min(5)]
            );
        }
        let checked: usize = o.written.iter().map(|w| w.records).sum();
        figure(
            "wordcount_kill_9_lineage",
            &[
                ("combiner", (what == "with the combiner").to_string()),
                ("outputs_checked_by_lineage", checked.to_string()),
                ("duplicates", "0".to_string()),
            ],
        );
    }
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
