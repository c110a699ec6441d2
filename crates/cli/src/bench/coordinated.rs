//! `millrace bench coordinated`: the coordinated batch patterns as whole
//! pipelines on the embedded store (every topic durability=none), each run in `--batch`
//! mode built exactly as `millrace run` builds it (`parse_str` → `build::from_plan` →
//! `Runtime::run`). Rows:
//! - `coordinated wordcount <size>`: MapReduce word count over generated text with the
//!   shape of examples/wordcount.yaml (map → sharder by word → reduce count → shape →
//!   join barrier), against a plain single-threaded Rust word count (std `HashMap`,
//!   same tokenisation) of the same text in the same run; target ratio 0.2. The counts
//!   the pipeline writes must equal the baseline's exactly, or the bench fails.
//! - `coordinated reduce count 100B`: one reduce stage (count, grouped by a key) over
//!   pre-produced 100 B records; target 2 M records/s. The counts are checked.
//! - `coordinated join barrier 100B`: one barrier join over pre-produced 100 B
//!   records; the released record count is checked; a memory row holds its peak RSS
//!   against the 256 MiB target.
//!
//! Records/s counts input records: text lines for the word count, so its MB/s is the
//! text's. Peak RSS (`VmHWM`, reset before each run) is on every pipeline row.
//!
//! Sizes default to the targets' (100 MB of text, 2 M reduce records, 10 M join records).
//! Sizes can be changed for profiling with `MILLRACE_BENCH_WORDCOUNT_MB` (below 100 the
//! row name says the size was reduced),
//! `MILLRACE_BENCH_REDUCE_RECORDS` and `MILLRACE_BENCH_JOIN_RECORDS`;
//! `MILLRACE_BENCH_COORDINATED=wordcount,reduce,join` picks the parts to run. Row names
//! carry the size used. Files are removed at the end.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use millrace_broker::Broker;
use millrace_broker::embedded::EmbeddedBroker;
use millrace_runtime::{RunOptions, Runtime};
use millrace_store::{Durability, Record, Store, TopicConfig};
use tokio::sync::watch;

use super::BenchRow;

/// Partitions of every input topic.
const PARTITIONS: u32 = 2;
/// Records per append when loading inputs.
const APPEND_BATCH: usize = 1000;
/// Size of the reduce and join records.
const RECORD_SIZE: usize = 100;
/// Distinct group keys of the reduce input.
const GROUPS: usize = 10_000;

const WORDCOUNT_TARGET: f64 = 0.2;
/// The target's ≥ 100 MB of text (about a minute on a 2-core machine).
const WORDCOUNT_MB: usize = 100;
const REDUCE_TARGET: f64 = 2_000_000.0;
const JOIN_RSS_TARGET_MIB: f64 = 256.0;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// `MILLRACE_BENCH_COORDINATED=reduce,join` runs only those parts.
fn selected(part: &str) -> bool {
    match std::env::var("MILLRACE_BENCH_COORDINATED") {
        Ok(list) if !list.is_empty() => list.split(',').any(|p| p.trim() == part),
        _ => true,
    }
}

/// `10_000_000` → `10M`, `2_500_000` → `2.5M`.
fn count_label(n: usize) -> String {
    if n >= 1_000_000 {
        format!("{}M", n as f64 / 1e6)
    } else if n >= 1000 {
        format!("{}k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

pub async fn run(dir: &Path) -> anyhow::Result<Vec<BenchRow>> {
    let work = super::WorkDir::create(dir, "bench-coordinated")?;
    run_in(work.path()).await
}

async fn run_in(work: &Path) -> anyhow::Result<Vec<BenchRow>> {
    let embedded = EmbeddedBroker::open(&work.join("store"))?;
    let broker: Arc<dyn Broker> = Arc::new(embedded.clone());
    let mut rows = Vec::new();
    if selected("wordcount") {
        let mb = env_or("MILLRACE_BENCH_WORDCOUNT_MB", WORDCOUNT_MB);
        rows.extend(wordcount(&embedded, &broker, mb).await?);
    }
    if selected("reduce") {
        let n = env_or("MILLRACE_BENCH_REDUCE_RECORDS", 2_000_000);
        rows.extend(reduce(&embedded, &broker, n).await?);
    }
    if selected("join") {
        let n = env_or("MILLRACE_BENCH_JOIN_RECORDS", 10_000_000);
        rows.extend(join(&embedded, &broker, n).await?);
    }
    Ok(rows)
}

fn none_config() -> TopicConfig {
    TopicConfig {
        durability: Durability::None,
        ..TopicConfig::default()
    }
}

/// Appends `values` to `topic` (created with [`PARTITIONS`] partitions, durability
/// none) in batches, alternating partitions.
fn load<I: Iterator<Item = Bytes>>(store: &Store, topic: &str, values: I) -> anyhow::Result<u64> {
    store.create_topic(topic, PARTITIONS, none_config())?;
    let t = store.topic(topic)?;
    let parts = (0..PARTITIONS)
        .map(|p| t.partition(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut batch = Vec::with_capacity(APPEND_BATCH);
    let mut b = 0usize;
    let mut n = 0u64;
    for v in values {
        batch.push(Record::new(None, v, 1_700_000_000_000));
        if batch.len() == APPEND_BATCH {
            parts[b % parts.len()].append(&batch)?;
            n += batch.len() as u64;
            batch.clear();
            b += 1;
        }
    }
    if !batch.is_empty() {
        parts[b % parts.len()].append(&batch)?;
        n += batch.len() as u64;
    }
    Ok(n)
}

/// Every record of every partition of `topic`, in partition order.
fn read_all(store: &Store, topic: &str, mut each: impl FnMut(&[u8])) -> anyhow::Result<u64> {
    let t = store.topic(topic)?;
    let mut n = 0u64;
    for p in 0..t.partition_count() {
        let part = t.partition(p)?;
        let mut from = part.start_offset();
        let end = part.end_offset();
        while from < end {
            let recs = part.read(from, 8192, 8 << 20)?;
            let Some(last) = recs.last() else { break };
            from = last.offset + 1;
            for r in &recs {
                each(&r.record.value);
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Resets this process's peak RSS (`VmHWM`) so the next reading covers only what runs
/// after it (Linux: writing 5 to /proc/self/clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Runs a pipeline file in `--batch` mode; seconds taken. Fails on any dead letter.
async fn run_batch(broker: &Arc<dyn Broker>, yaml: &str) -> anyhow::Result<f64> {
    let plan = millrace_pipeline::parse_str(yaml, "bench.yaml")
        .map_err(|d| anyhow::anyhow!("bench pipeline does not validate:\n{d}\n{yaml}"))?;
    let spec = millrace_runtime::build::from_plan(&plan)?;
    let (_stop_tx, stop) = watch::channel(false);
    let opts = RunOptions {
        batch: true,
        ..RunOptions::default()
    };
    let start = Instant::now();
    let summary = Runtime::new(spec).run(broker.clone(), opts, stop).await?;
    let secs = start.elapsed().as_secs_f64();
    for s in &summary.stages {
        if s.counters.dead_lettered > 0 {
            anyhow::bail!(
                "bench coordinated: stage {} dead-lettered {} records",
                s.name,
                s.counters.dead_lettered
            );
        }
    }
    Ok(secs)
}

async fn delete_topics(broker: &Arc<dyn Broker>, prefix: &str) -> anyhow::Result<()> {
    for t in broker.list_topics().await? {
        if t.starts_with(prefix) {
            broker.delete_topic(&t).await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Word count

/// A small deterministic PRNG (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `0..n`, as an index.
    fn pick(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).unwrap_or(0)
    }

    /// True with probability `per_mille`/1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// The most frequent English words, most frequent first: the head of the vocabulary.
const COMMON: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "it",
    "you",
    "that",
    "he",
    "was",
    "for",
    "on",
    "are",
    "with",
    "as",
    "I",
    "his",
    "they",
    "be",
    "at",
    "one",
    "have",
    "this",
    "from",
    "or",
    "had",
    "by",
    "not",
    "word",
    "but",
    "what",
    "some",
    "we",
    "can",
    "out",
    "other",
    "were",
    "all",
    "there",
    "when",
    "up",
    "use",
    "your",
    "how",
    "said",
    "an",
    "each",
    "she",
    "which",
    "do",
    "their",
    "time",
    "if",
    "will",
    "way",
    "about",
    "many",
    "then",
    "them",
    "write",
    "would",
    "like",
    "so",
    "these",
    "her",
    "long",
    "make",
    "thing",
    "see",
    "him",
    "two",
    "has",
    "look",
    "more",
    "day",
    "could",
    "go",
    "come",
    "did",
    "number",
    "sound",
    "no",
    "most",
    "people",
    "my",
    "over",
    "know",
    "water",
    "than",
    "call",
    "first",
    "who",
    "may",
    "down",
    "side",
    "been",
    "now",
    "find",
    "don't",
    "it's",
    "well-known",
    "café",
    "naïve",
];

const ONSETS: &[&str] = &[
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br",
    "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr", "wh", "str",
];
const VOWELS: &[&str] = &[
    "a", "e", "i", "o", "u", "ai", "ea", "ee", "ie", "oa", "ou", "y",
];
const CODAS: &[&str] = &[
    "", "", "", "n", "r", "s", "t", "l", "nd", "ng", "st", "ck", "rm", "ght", "ss",
];

/// Vocabulary size: the common words plus pseudo-words made of syllables.
const VOCABULARY: usize = 50_000;

/// A deterministic vocabulary ordered by rank, and the Zipf (s = 1) cumulative weights.
fn vocabulary() -> (Vec<String>, Vec<f64>) {
    let mut rng = Rng(0x5EED_0001);
    let mut words: Vec<String> = COMMON.iter().map(|w| w.to_string()).collect();
    let mut seen: std::collections::HashSet<String> = words.iter().cloned().collect();
    while words.len() < VOCABULARY {
        let syllables = 1 + rng.pick(4);
        let mut w = String::new();
        for _ in 0..syllables {
            w.push_str(ONSETS[rng.pick(ONSETS.len())]);
            w.push_str(VOWELS[rng.pick(VOWELS.len())]);
            w.push_str(CODAS[rng.pick(CODAS.len())]);
        }
        // A few words with digits in them (model numbers, "mp3"-like).
        if rng.chance(5) {
            w.push_str(&rng.below(100).to_string());
        }
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    let mut cum = Vec::with_capacity(words.len());
    let mut total = 0.0;
    for rank in 1..=words.len() {
        total += 1.0 / rank as f64;
        cum.push(total);
    }
    (words, cum)
}

/// About `bytes` of English-like text in lines of at most ~80 characters: Zipf-ranked
/// words, capitalised sentence starts, some words in capitals, numbers, commas,
/// semicolons, quotes, parentheses, dashes, apostrophes, hyphens and a few non-ASCII
/// letters (which split words). Deterministic.
fn generate_text(bytes: usize) -> String {
    let (words, cum) = vocabulary();
    let total = *cum.last().unwrap_or(&1.0);
    let mut rng = Rng(0xC0FF_EE00_2024);
    let mut text = String::with_capacity(bytes + 128);
    let mut line_len = 0usize;
    let mut sentence_start = true;
    let mut open_quote = false;
    let mut open_paren = false;
    while text.len() < bytes {
        // The next token, with its case.
        let mut token = if rng.chance(15) {
            // A number or a year.
            if rng.chance(400) {
                (1800 + rng.below(230)).to_string()
            } else {
                rng.below(10_000).to_string()
            }
        } else {
            let x = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
            let i = cum.partition_point(|&c| c < x).min(words.len() - 1);
            words[i].clone()
        };
        if rng.chance(8) {
            token = token.to_uppercase();
        } else if sentence_start || rng.chance(30) {
            let mut c = token.chars();
            if let Some(f) = c.next() {
                token = f.to_uppercase().chain(c).collect();
            }
        }
        sentence_start = false;
        if !open_quote && !open_paren && rng.chance(10) {
            token.insert(0, '"');
            open_quote = true;
        } else if !open_quote && !open_paren && rng.chance(6) {
            token.insert(0, '(');
            open_paren = true;
        }
        // Punctuation after it.
        let mut after = String::new();
        if open_quote && rng.chance(200) {
            after.push('"');
            open_quote = false;
        }
        if open_paren && rng.chance(250) {
            after.push(')');
            open_paren = false;
        }
        let p = rng.below(1000);
        if p < 70 {
            after.push(',');
        } else if p < 140 {
            after.push(if p < 125 {
                '.'
            } else if p < 133 {
                '?'
            } else {
                '!'
            });
            if open_quote {
                after.push('"');
                open_quote = false;
            }
            if open_paren {
                after.push(')');
                open_paren = false;
            }
            sentence_start = true;
        } else if p < 150 {
            after.push(';');
        } else if p < 156 {
            after.push_str(" —");
        } else if p < 160 {
            after.push(':');
        }
        token.push_str(&after);
        // Wrap at about 80 characters: each line is one record.
        if line_len > 0 && line_len + 1 + token.len() > 80 {
            text.push('\n');
            line_len = 0;
        } else if line_len > 0 {
            text.push(' ');
            line_len += 1;
        }
        line_len += token.len();
        text.push_str(&token);
    }
    text.push('\n');
    text
}

/// The baseline: a plain single-threaded word count. Words are maximal runs of ASCII
/// letters and digits, lowercased (anything else, non-ASCII included, separates them).
fn count_words(text: &str) -> HashMap<String, u64> {
    fn bump(counts: &mut HashMap<String, u64>, word: &str) {
        if let Some(n) = counts.get_mut(word) {
            *n += 1;
        } else {
            counts.insert(word.to_string(), 1);
        }
    }
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut word = String::with_capacity(64);
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() {
            word.push(char::from(b.to_ascii_lowercase()));
        } else if !word.is_empty() {
            bump(&mut counts, &word);
            word.clear();
        }
    }
    if !word.is_empty() {
        bump(&mut counts, &word);
    }
    counts
}

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

async fn wordcount(
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
    reset_peak_rss();
    let secs = run_batch(broker, &wordcount_yaml(p)).await?;
    let peak_rss_mib = super::peak_rss_mib();

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
        .against(&baseline, base_per_s, WORDCOUNT_TARGET),
    ])
}

// ---------------------------------------------------------------------------------
// Reduce and join over 100 B records

/// Record `i`: a JSON object of exactly [`RECORD_SIZE`] bytes, in group `i % GROUPS`.
fn value(i: usize) -> Bytes {
    let mut v = format!("{{\"n\":{i},\"user\":\"u{}\",\"pad\":\"", i % GROUPS).into_bytes();
    let pad = RECORD_SIZE.saturating_sub(v.len() + 2);
    v.resize(v.len() + pad, b'x');
    v.extend_from_slice(b"\"}");
    Bytes::from(v)
}

/// A pipeline `p` of one stage from `<p>-in` to `<p>-out`, every topic durability=none.
fn one_stage_yaml(p: &str, stage: &str) -> String {
    let none = "config: {durability: none}";
    format!(
        "pipeline: {p}\ndead_letter: {p}-dlq\ntopics:\n  \
         {p}-in: {{partitions: {PARTITIONS}, {none}}}\n  \
         {p}-out: {{partitions: {PARTITIONS}, {none}}}\n  \
         {p}-dlq: {{partitions: 1, {none}}}\n\
         stages:\n  {stage}\n"
    )
}

async fn reduce(
    embedded: &EmbeddedBroker,
    broker: &Arc<dyn Broker>,
    n: usize,
) -> anyhow::Result<Vec<BenchRow>> {
    let p = "rd";
    let store = embedded.store();
    load(store, &format!("{p}-in"), (0..n).map(value))?;
    let yaml = one_stage_yaml(
        p,
        &format!(
            "count: {{kind: reduce, from: {p}-in, to: {p}-out, group_by: .user, reducer: count}}"
        ),
    );
    reset_peak_rss();
    let secs = run_batch(broker, &yaml).await?;
    let peak_rss_mib = super::peak_rss_mib();

    // Every group's final count must be right.
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut bad = 0u64;
    read_all(store, &format!("{p}-out"), |v| {
        let o: serde_json::Value = serde_json::from_slice(v).unwrap_or_default();
        match (
            o["group"].as_str(),
            o["value"].as_u64(),
            o["final"].as_bool(),
        ) {
            (Some(g), Some(c), Some(true)) => *counts.entry(g.to_string()).or_default() += c,
            (_, _, Some(false)) => {}
            _ => bad += 1,
        }
    })?;
    let expected = |g: usize| (n / GROUPS + usize::from(g < n % GROUPS)) as u64;
    let wrong = (0..GROUPS.min(n))
        .filter(|&g| counts.get(&format!("u{g}")).copied() != Some(expected(g)))
        .count();
    if bad > 0 || wrong > 0 || counts.len() != GROUPS.min(n) {
        anyhow::bail!(
            "bench coordinated: reduce count is wrong: {wrong} groups miscounted, \
             {} groups, {bad} unexpected records",
            counts.len()
        );
    }
    delete_topics(broker, &format!("{p}-")).await?;

    let per_s = n as f64 / secs;
    Ok(vec![BenchRow {
        name: format!(
            "coordinated reduce count 100B {} records, {GROUPS} groups (absolute)",
            count_label(n)
        ),
        records: n as u64,
        records_per_s: per_s,
        mb_per_s: per_s * RECORD_SIZE as f64 / 1e6,
        peak_rss_mib,
        target: Some(REDUCE_TARGET),
        ..BenchRow::default()
    }])
}

async fn join(
    embedded: &EmbeddedBroker,
    broker: &Arc<dyn Broker>,
    n: usize,
) -> anyhow::Result<Vec<BenchRow>> {
    let p = "jn";
    let store = embedded.store();
    load(store, &format!("{p}-in"), (0..n).map(value))?;
    let yaml = one_stage_yaml(
        p,
        &format!("barrier: {{kind: join, from: {p}-in, to: {p}-out, mode: barrier}}"),
    );
    reset_peak_rss();
    let secs = run_batch(broker, &yaml).await?;
    let peak_rss_mib = super::peak_rss_mib();

    // Every record released exactly once (the sum of the `n` fields checks for
    // duplicates that would hide a loss).
    let mut released = 0u64;
    let mut sum_n = 0u128;
    read_all(store, &format!("{p}-out"), |v| {
        released += 1;
        if let Some(at) = v.windows(4).position(|w| w == b"\"n\":") {
            let digits = v[at + 4..].iter().take_while(|b| b.is_ascii_digit());
            let x = digits.fold(0u128, |a, d| a * 10 + u128::from(d - b'0'));
            sum_n += x;
        }
    })?;
    let want_sum = (n as u128) * (n as u128).saturating_sub(1) / 2;
    if released != n as u64 || sum_n != want_sum {
        anyhow::bail!(
            "bench coordinated: the barrier released {released} records of {n} \
             (sum of n {sum_n}, expected {want_sum})"
        );
    }
    delete_topics(broker, &format!("{p}-")).await?;
    // Give the file system a moment to drop the deleted files.
    tokio::time::sleep(Duration::from_millis(10)).await;

    let per_s = n as f64 / secs;
    let label = count_label(n);
    Ok(vec![
        BenchRow {
            name: format!("coordinated join barrier 100B {label} records"),
            records: n as u64,
            records_per_s: per_s,
            mb_per_s: per_s * RECORD_SIZE as f64 / 1e6,
            peak_rss_mib,
            ..BenchRow::default()
        },
        BenchRow {
            name: format!("memory: peak RSS (VmHWM) of the join barrier over {label} records"),
            records: n as u64,
            peak_rss_mib,
            target: Some(JOIN_RSS_TARGET_MIB),
            ..BenchRow::default()
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_text_is_deterministic_and_varied() {
        let a = generate_text(20_000);
        assert_eq!(a, generate_text(20_000));
        assert!(a.len() >= 20_000);
        assert!(a.lines().all(|l| l.len() <= 120), "lines are wrapped");
        assert!(a.contains(',') && a.contains('.'), "punctuation");
        assert!(a.chars().any(|c| c.is_ascii_uppercase()), "mixed case");
        let counts = count_words(&a);
        assert!(
            counts.len() > 500,
            "a realistic vocabulary: {}",
            counts.len()
        );
        assert!(
            counts["the"] > counts.values().sum::<u64>() / 50,
            "Zipf head"
        );
    }

    #[test]
    fn baseline_tokenises_like_the_example() {
        let c = count_words("Don't PANIC — naïve café, the THE the2 42\n");
        let mut got: Vec<(&str, u64)> = c.iter().map(|(w, n)| (w.as_str(), *n)).collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("42", 1),
                ("caf", 1),
                ("don", 1),
                ("na", 1),
                ("panic", 1),
                ("t", 1),
                ("the", 2),
                ("the2", 1),
                ("ve", 1)
            ]
        );
    }

    #[test]
    fn records_are_100_bytes() {
        assert_eq!(value(0).len(), RECORD_SIZE);
        assert_eq!(value(9_999_999).len(), RECORD_SIZE);
    }
}
