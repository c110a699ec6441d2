//! `coordinated wordcount <size>`: MapReduce word count over generated text, with the
//! shape of examples/wordcount.yaml, against a plain Rust word count of the same text
//! in the same run. The counts the pipeline writes must equal the baseline's exactly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use millrace_broker::Broker;
use millrace_broker::embedded::EmbeddedBroker;

use super::harness::{PARTITIONS, delete_topics, load, read_all, run_batch};
use super::text::{count_words, generate_text};
use crate::bench::BenchRow;

/// The target ratio to the baseline.
const TARGET: f64 = 0.2;
/// The target's ≥ 100 MB of text (about a minute on a 2-core machine).
pub(super) const TARGET_MB: usize = 100;

/// examples/wordcount.yaml with every topic durability=none and names prefixed.
fn wordcount_yaml(p: &str) -> String {
    let none = "config: {durability: none}";
    format!(
        "pipeline: {p}
dead_letter: {p}-dlq
topics:
  {p}-lines: {{partitions: {PARTITIONS}, {none}}}
  {p}-words-unsharded: {{partitions: {PARTITIONS}, {none}}}
  {p}-words: {{partitions: 4, {none}}}
  {p}-partial-counts: {{partitions: 4, {none}}}
  {p}-counted: {{partitions: 4, {none}}}
  {p}-word-counts: {{partitions: {PARTITIONS}, {none}}}
  {p}-dlq: {{partitions: 1, {none}}}
stages:
  split-words:
    kind: map
    from: {p}-lines
    format: text
    to: {p}-words-unsharded
    expr: 'ascii_downcase | scan(\"[a-z0-9]+\") | {{word: .}}'
  shard-words:
    kind: sharder
    from: {p}-words-unsharded
    by: .word
    to: {p}-words
    shards: 4
  count-words:
    kind: reduce
    from: {p}-words
    to: {p}-partial-counts
    group_by: .word
    reducer: count
    combine: true
  shape:
    kind: map
    from: {p}-partial-counts
    to: {p}-counted
    expr: '{{word: .group, count: .value, batch: .batch}}'
  all-counted:
    kind: join
    from: {p}-counted
    to: {p}-word-counts
    mode: barrier
"
    )
}

pub(super) async fn run(
    embedded: &EmbeddedBroker,
    broker: &Arc<dyn Broker>,
    mb: usize,
) -> anyhow::Result<Vec<BenchRow>> {
    let text = generate_text(mb * 1_000_000);
    let bytes = text.len() as f64;
    let lines = text.lines().count() as u64;
    let label = if mb < 100 {
        format!("{mb}MB (target: 100MB, reduced to fit the run time)")
    } else {
        format!("{mb}MB")
    };

    // Baseline: best of three, so noise from other processes does not flatter the ratio.
    let mut best = f64::MAX;
    let mut want = HashMap::new();
    for _ in 0..3 {
        let start = Instant::now();
        want = std::hint::black_box(count_words(&text));
        best = best.min(start.elapsed().as_secs_f64());
    }
    let base_per_s = lines as f64 / best;
    let words: u64 = want.values().sum();

    let p = "wc";
    let store = embedded.store();
    load(
        store,
        &format!("{p}-lines"),
        text.lines().map(|l| Bytes::copy_from_slice(l.as_bytes())),
    )?;
    crate::bench::reset_peak_rss();
    let secs = run_batch(broker, &wordcount_yaml(p)).await?;
    let peak_rss_mib = crate::bench::peak_rss_mib();

    // The pipeline's counts must be the baseline's, one record per word.
    let mut got: HashMap<String, u64> = HashMap::with_capacity(want.len());
    let mut problems: Vec<String> = Vec::new();
    read_all(store, &format!("{p}-word-counts"), |v| {
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(v);
        match parsed {
            Ok(o) => match (o["word"].as_str(), o["count"].as_u64()) {
                (Some(w), Some(c)) => {
                    let twice = got.insert(w.to_string(), c).is_some();
                    if twice && problems.len() < 10 {
                        problems.push(format!("'{w}' released twice"));
                    }
                }
                _ if problems.len() < 10 => problems.push(format!("unexpected record {o}")),
                _ => {}
            },
            Err(e) if problems.len() < 10 => problems.push(format!("not JSON: {e}")),
            Err(_) => {}
        }
    })?;
    if got != want {
        let mut diffs: Vec<String> = want
            .iter()
            .filter(|(w, c)| got.get(*w) != Some(c))
            .map(|(w, c)| format!("'{w}': baseline {c}, pipeline {:?}", got.get(w)))
            .chain(
                got.iter()
                    .filter(|(w, _)| !want.contains_key(*w))
                    .map(|(w, c)| format!("'{w}': not in the baseline, pipeline {c}")),
            )
            .collect();
        let n = diffs.len();
        diffs.truncate(10);
        problems.push(format!(
            "{n} of {} words differ from the baseline, e.g. {}",
            want.len(),
            diffs.join("; ")
        ));
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "bench coordinated: the word count pipeline's output is wrong: {}",
            problems.join("; ")
        );
    }
    delete_topics(broker, &format!("{p}-")).await?;

    let per_s = lines as f64 / secs;
    let baseline = format!(
        "single-threaded Rust word count {label} (same run, best of 3; {} words, {} distinct)",
        words,
        want.len()
    );
    Ok(vec![
        BenchRow {
            name: format!("baseline: single-threaded Rust word count {label}"),
            records: lines,
            records_per_s: base_per_s,
            mb_per_s: bytes / best / 1e6,
            ..BenchRow::default()
        },
        BenchRow {
            name: format!("coordinated wordcount {label} (map→sharder→reduce→join)"),
            records: lines,
            records_per_s: per_s,
            mb_per_s: bytes / secs / 1e6,
            peak_rss_mib,
            ..BenchRow::default()
        }
        .against(&baseline, base_per_s, TARGET),
    ])
}
