//! `millrace bench pipeline`: the event-driven patterns as whole pipelines on the
//! embedded store (every topic durability=none), against the store's own append rate
//! measured in the same run.
//!
//! For each record size (100 B and 1 KiB JSON objects) the input is appended straight
//! into the store — that append, timed, is the baseline — and then copier, filter,
//! splitter and sharder pipelines each read all of it in a `--batch` run built exactly
//! as `millrace run` builds one (`parse_str` → `build::from_plan` → `Runtime::run`).
//! The baseline and each pipeline's rate are medians of three runs, each pipeline's
//! after one warm-up run (`REPEATS`).
//! Rows (records/s = input records processed per second):
//! - `pipeline <pattern> <size>`: ratio against the append rate; the copier's target
//!   is 0.4;
//! - `pipeline copier 100B (absolute)`: target 3 M records/s;
//! - p50/p99 end-to-end latency on each row comes from a separate continuous-mode run
//!   of the same pipeline: records stamped with the time they are produced, at a steady
//!   rate, and read from the outputs by a consumer; latency = read time − stamp;
//! - peak RSS (`VmHWM`, reset before each batch run) of the process during the runs
//!   (the highest of its runs), on every row, and a last row with the highest against
//!   the 256 MiB target;
//! - `pipeline copier|sharder 100B keyed to 1000 partitions durability=batch`: against
//!   the same pipeline writing 10 partitions, target 0.5 (`wide`).
//!
//! Then the `load:` rows (`bench/load.rs`): an exec stage under a producer faster than
//! it, its rate over the run and its peak memory.
//!
//! The whole run takes about two minutes (the load rows' 20 s, the wide rows' 45 s);
//! its files are removed at the end.
//! For profiling: `MILLRACE_BENCH_PATTERNS=copier` (a comma-separated list; `wide` for
//! the wide-output rows) runs only those patterns, `MILLRACE_BENCH_MAX_BATCH=N` sets
//! the stages' batch bound, `MILLRACE_BENCH_CPU=1` prints each batch run's CPU time
//! per record, and `MILLRACE_BENCH_RECORD_PATH=1` makes copiers decode and re-encode
//! each record (the record path every other pattern, and Kafka, take) instead of moving
//! them as stored.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use millrace_broker::embedded::EmbeddedBroker;
use millrace_broker::{Broker, ConsumerConfig, OffsetReset, ProduceRecord};
use millrace_runtime::{RunOptions, Runtime};
use millrace_store::{Durability, Record, TopicConfig};
use tokio::sync::watch;

use super::BenchRow;

mod wide;

/// Record sizes and how many input records of each.
const SIZES: [(usize, usize); 2] = [(100, 2_000_000), (1024, 500_000)];
/// Partitions of the input topic (and so of every output).
const PARTITIONS: u32 = 2;
/// Records per append in the input load (and the baseline).
const APPEND_BATCH: usize = 1000;
/// Latency runs: records per second, for how long.
const LATENCY_RATE: u64 = 50_000;
const LATENCY_RUN: Duration = Duration::from_secs(2);

/// A pattern under test: its stage as pipeline-file YAML, with `IN` and `OUT` standing
/// for the input topic and this run's prefix of output topics.
struct Shape {
    name: &'static str,
    outputs: &'static [&'static str],
    stage: &'static str,
}

const SHAPES: [Shape; 4] = [
    Shape {
        name: "copier",
        outputs: &["OUT"],
        stage: "{kind: copier, from: IN, to: OUT}",
    },
    Shape {
        name: "filter",
        outputs: &["OUT"],
        // Keeps half of the records.
        stage: "{kind: filter, from: IN, to: OUT, where: '.n % 2 == 0'}",
    },
    Shape {
        name: "splitter",
        outputs: &["OUT-eu", "OUT-us", "OUT-other"],
        stage: "{kind: splitter, from: IN, routes: [{when: '.region == \"eu\"', to: OUT-eu}, \
                {when: '.region == \"us\"', to: OUT-us}], default: OUT-other}",
    },
    Shape {
        name: "sharder",
        outputs: &["OUT-0", "OUT-1", "OUT-2", "OUT-3"],
        stage: "{kind: sharder, from: IN, by: .user, to: [OUT-0, OUT-1, OUT-2, OUT-3]}",
    },
];

impl Shape {
    fn outputs(&self, out: &str) -> Vec<String> {
        self.outputs.iter().map(|o| o.replace("OUT", out)).collect()
    }

    /// The pipeline file: every topic declared durability=none.
    fn yaml(&self, pipeline: &str, input: &str, out: &str) -> String {
        let none = "config: {durability: none}";
        let mut y = format!(
            "pipeline: {pipeline}\ndead_letter: {pipeline}.dlq\ntopics:\n  \
             {input}: {{partitions: {PARTITIONS}, {none}}}\n  \
             {pipeline}.dlq: {{partitions: 1, {none}}}\n"
        );
        for o in self.outputs(out) {
            y.push_str(&format!("  {o}: {{partitions: {PARTITIONS}, {none}}}\n"));
        }
        y.push_str(&format!(
            "stages:\n  {}: {}\n",
            self.name,
            self.stage.replace("IN", input).replace("OUT", out)
        ));
        y
    }
}

pub async fn run(dir: &Path) -> anyhow::Result<Vec<BenchRow>> {
    let work = super::WorkDir::create(dir, "bench-pipeline")?;
    run_in(work.path()).await
}

async fn run_in(work: &Path) -> anyhow::Result<Vec<BenchRow>> {
    let embedded = EmbeddedBroker::open(&work.join("store"))?;
    let broker: Arc<dyn Broker> = Arc::new(embedded.clone());
    let mut rows = Vec::new();
    for (size, n) in SIZES {
        let label = size_label(size);
        let input = format!("in-{label}");
        let mut append_rates = vec![load_input(&embedded, &input, size, n)?];
        for r in 1..REPEATS {
            let again = format!("{input}-again-{r}");
            append_rates.push(load_input(&embedded, &again, size, n)?);
            broker.delete_topic(&again).await?;
        }
        let append_rate = median(&mut append_rates);
        rows.push(BenchRow {
            name: format!("baseline: store append {label} durability=none"),
            records: n as u64,
            records_per_s: append_rate,
            mb_per_s: append_rate * size as f64 / 1e6,
            ..BenchRow::default()
        });
        for shape in SHAPES.iter().filter(|s| selected(s.name)) {
            let mut runs = Vec::with_capacity(REPEATS);
            let mut peak_rss_mib: Option<f64> = None;
            // Run 0 warms up and is not counted (see `REPEATS`).
            for r in 0..=REPEATS {
                // A pipeline (so a consumer group) and outputs of its own per run: each
                // reads the whole input.
                let pipeline = format!("{}-{label}-{r}", shape.name);
                let out = format!("{pipeline}-out");
                let yaml = shape.yaml(&pipeline, &input, &out);
                super::reset_peak_rss();
                let cpu = process_cpu_secs();
                let secs = run_batch(&broker, &yaml).await?;
                if std::env::var_os("MILLRACE_BENCH_CPU").is_some() {
                    // For profiling on a shared machine: CPU time is steadier than wall.
                    let used = process_cpu_secs() - cpu;
                    eprintln!(
                        "{pipeline}: {secs:.3} s wall, {used:.3} s CPU, {:.0} ns CPU per record",
                        used * 1e9 / n as f64
                    );
                }
                if let Some(p) = super::peak_rss_mib() {
                    peak_rss_mib = Some(peak_rss_mib.map_or(p, |q| q.max(p)));
                }
                for t in shape.outputs(&out) {
                    broker.delete_topic(&t).await?;
                }
                if r > 0 {
                    runs.push(n as f64 / secs);
                }
            }
            let per_s = median(&mut runs);
            let (p50, p99) = latency(&broker, shape, size).await?;
            let mut row = BenchRow {
                name: format!("pipeline {} {label}", shape.name),
                records: n as u64,
                records_per_s: per_s,
                mb_per_s: per_s * size as f64 / 1e6,
                p50_ms: Some(p50),
                p99_ms: Some(p99),
                peak_rss_mib,
                ..BenchRow::default()
            };
            let baseline = format!("store append {label} durability=none (same run)");
            if shape.name == "copier" {
                row = row.against(&baseline, append_rate, 0.4);
                if size == 100 {
                    let mut abs = row.clone();
                    abs.name = format!("pipeline copier {label} (absolute)");
                    abs.baseline = None;
                    abs.baseline_value = None;
                    abs.ratio = None;
                    abs.target = Some(3_000_000.0);
                    rows.push(row);
                    rows.push(abs);
                    continue;
                }
            } else {
                row = row.against(&baseline, append_rate, 0.0);
                row.target = None;
            }
            rows.push(row);
        }
        broker.delete_topic(&input).await?;
    }
    if selected("wide") {
        rows.extend(wide::rows(&embedded, &broker).await?);
    }
    let peak = rows
        .iter()
        .filter_map(|r| r.peak_rss_mib)
        .fold(0.0, f64::max);
    rows.push(BenchRow {
        name: "memory: highest peak RSS (VmHWM) of the pipeline runs".to_string(),
        peak_rss_mib: Some(peak),
        target: Some(256.0),
        ..BenchRow::default()
    });
    if selected("load") {
        rows.extend(super::load::run(&broker, work).await?);
    }
    Ok(rows)
}

/// Each rate — the append baseline and every pipeline's batch run — is the median of
/// this many runs: on this virtual machine single runs moved by ±30 % (the baseline
/// between 13 and 20 M records/s within minutes). Each pipeline also runs once before
/// those, not counted: the first run writing into memory the guest had not touched
/// lately took about twice the CPU time of the next ones (host page faults), whatever
/// the pattern.
const REPEATS: usize = 3;

/// The median (the upper one of an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// `MILLRACE_BENCH_PATTERNS=copier,filter` runs only those patterns (for profiling).
fn selected(pattern: &str) -> bool {
    match std::env::var("MILLRACE_BENCH_PATTERNS") {
        Ok(list) if !list.is_empty() => list.split(',').any(|p| p.trim() == pattern),
        _ => true,
    }
}

fn size_label(size: usize) -> String {
    if size.is_multiple_of(1024) {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Record `i` as a JSON object of exactly `size` bytes (padded), stamped with `ts` µs.
fn value(i: usize, size: usize, ts: u64) -> Bytes {
    const REGIONS: [&str; 3] = ["eu", "us", "ap"];
    let head = format!(
        "{{\"n\":{i},\"user\":\"u{}\",\"region\":\"{}\",\"ts\":{ts},\"pad\":\"",
        i % 10_000,
        REGIONS[i % 3]
    );
    let mut v = head.into_bytes();
    let pad = size.saturating_sub(v.len() + 2);
    v.resize(v.len() + pad, b'x');
    v.extend_from_slice(b"\"}");
    Bytes::from(v)
}

/// The stamp a record was produced with.
fn stamp_of(v: &[u8]) -> Option<u64> {
    let at = v.windows(5).position(|w| w == b"\"ts\":")? + 5;
    let digits = v[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&v[at..at + digits]).ok()?.parse().ok()
}

/// Creates the input topic and appends `n` records of `size` bytes straight into the
/// store, in batches, alternating partitions. Returns the append rate (records/s).
fn load_input(broker: &EmbeddedBroker, topic: &str, size: usize, n: usize) -> anyhow::Result<f64> {
    let store = broker.store();
    let none = TopicConfig {
        durability: Durability::None,
        ..TopicConfig::default()
    };
    store.create_topic(topic, PARTITIONS, none)?;
    let t = store.topic(topic)?;
    let parts = (0..PARTITIONS)
        .map(|p| t.partition(p))
        .collect::<Result<Vec<_>, _>>()?;
    // Values are built outside the timed appends: the baseline is the append alone.
    let mut timed = Duration::ZERO;
    for (b, first) in (0..n).step_by(APPEND_BATCH).enumerate() {
        let batch: Vec<Record> = (first..(first + APPEND_BATCH).min(n))
            .map(|i| Record::new(None, value(i, size, 0), 1_700_000_000_000))
            .collect();
        let start = Instant::now();
        parts[b % parts.len()].append(&batch)?;
        timed += start.elapsed();
    }
    Ok(n as f64 / timed.as_secs_f64().max(1e-9))
}

/// CPU time (user + system) this process has used, in seconds, from /proc/self/stat
/// (Linux reports it in USER_HZ = 100 ticks per second).
fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and
    // 15th fields of the line, the 12th and 13th after it.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<f64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / 100.0
}

/// Runs a pipeline file in `--batch` mode over what its input holds; seconds taken.
pub(super) async fn run_batch(broker: &Arc<dyn Broker>, yaml: &str) -> anyhow::Result<f64> {
    let plan = millrace_pipeline::parse_str(yaml, "bench.yaml")
        .map_err(|d| anyhow::anyhow!("bench pipeline does not validate:\n{d}"))?;
    let spec = millrace_runtime::build::from_plan(&plan)?;
    let (_stop_tx, stop) = watch::channel(false);
    let mut opts = RunOptions {
        batch: true,
        ..RunOptions::default()
    };
    if let Some(m) = std::env::var("MILLRACE_BENCH_MAX_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.max_batch = m;
    }
    // For comparing the copier's two paths: the record path, as on Kafka.
    if std::env::var_os("MILLRACE_BENCH_RECORD_PATH").is_some_and(|v| !v.is_empty()) {
        opts.forward_encoded = false;
    }
    // The pipeline's topics exist before the clock starts, as its input does: the rate
    // is the stage's, not the backend's topic creation (on Kafka 0.1–0.3 s a topic,
    // which `run` pays once in a pipeline's life).
    let runtime = Runtime::new(spec);
    runtime.ensure_topics(broker.as_ref()).await?;
    let start = Instant::now();
    let summary = runtime.run(broker.clone(), opts, stop).await?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(s) = summary.stages.first()
        && s.counters.dead_lettered > 0
    {
        anyhow::bail!(
            "bench pipeline dead-lettered {} records",
            s.counters.dead_lettered
        );
    }
    Ok(secs)
}

/// End-to-end latency of a continuous run of `shape`: p50 and p99 in milliseconds.
async fn latency(
    broker: &Arc<dyn Broker>,
    shape: &Shape,
    size: usize,
) -> anyhow::Result<(f64, f64)> {
    let label = size_label(size);
    let pipeline = format!("latency-{}-{label}", shape.name);
    let input = format!("{pipeline}-in");
    let out = format!("{pipeline}-out");
    let yaml = shape.yaml(&pipeline, &input, &out);
    let plan = millrace_pipeline::parse_str(&yaml, "bench.yaml")
        .map_err(|d| anyhow::anyhow!("bench pipeline does not validate:\n{d}"))?;
    let runtime = Runtime::new(millrace_runtime::build::from_plan(&plan)?);
    runtime.ensure_topics(broker.as_ref()).await?;

    let mut cfg = ConsumerConfig::new(shape.outputs(&out));
    cfg.offset_reset = OffsetReset::Earliest;
    let mut reader = broker.consumer(cfg).await?;
    let (stop_tx, stop) = watch::channel(false);
    let running = tokio::spawn(runtime.run(broker.clone(), RunOptions::default(), stop));

    // A steady producer: every millisecond, whatever the rate says is due by now.
    let producer = {
        let broker = broker.clone();
        let input = input.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while start.elapsed() < LATENCY_RUN {
                tick.tick().await;
                let elapsed_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                let due = elapsed_us.saturating_mul(LATENCY_RATE) / 1_000_000;
                if due <= sent {
                    continue;
                }
                let ts = now_us();
                let recs: Vec<ProduceRecord> = (sent..due)
                    .map(|i| ProduceRecord::value(value(usize::try_from(i).unwrap_or(0), size, ts)))
                    .collect();
                sent = due;
                broker.produce(&input, &recs).await?;
            }
            anyhow::Ok(sent)
        })
    };

    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let started = Instant::now();
    let mut idle_since = Instant::now();
    loop {
        let recs = reader.poll(4096, Duration::from_millis(100)).await?;
        let now = now_us();
        for r in &recs {
            if let Some(ts) = stamp_of(&r.value) {
                hist.record(now.saturating_sub(ts).max(1))?;
            }
        }
        if !recs.is_empty() {
            idle_since = Instant::now();
        }
        // Done once the producer has finished and the outputs went quiet.
        let quiet = idle_since.elapsed() > Duration::from_millis(500);
        if (producer.is_finished() && quiet) || started.elapsed() > LATENCY_RUN * 5 {
            break;
        }
    }
    producer.await??;
    let _ = stop_tx.send(true);
    running.await??;
    let _ = reader.close().await;
    for t in shape.outputs(&out).iter().chain([
        &input,
        &format!("{pipeline}.dlq"),
        &millrace_runtime::redrive::topic(&pipeline),
    ]) {
        broker.delete_topic(t).await?;
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok((ms(0.5), ms(0.99)))
}
