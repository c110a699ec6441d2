//! `millrace bench peers` (needs `--bootstrap-server`): the Kafka client path against
//! what a user runs instead, as whole processes on the same broker, alternating.
//!
//! Rows:
//! - `produce --file 100B`: this binary's `produce --file` against `kcat -P -l` on the
//!   same file of 100-byte lines, each into a fresh 6-partition topic; records per
//!   second from each process's wall time (target ratio 0.9);
//! - `produce --file 100B, CPU`: the same runs' records per CPU second (user + system
//!   of the process and its threads), against kcat's (target 1 / 1.1: at most 1.1
//!   times kcat's CPU per record);
//! - `copier 100B`: `run --batch` of a copier pipeline (at-least-once: offsets committed
//!   after the outputs are acknowledged, idempotent, acks=all) against the batched
//!   confluent-kafka-python loop (`peers_copier.py`: `consume(1000)`, auto-commit, the
//!   consumer's `fetch.queue.backoff.ms=20`), from the same 6-partition input into a
//!   fresh 6-partition output and group each; records per second until the output holds
//!   every record (polled every 20 ms; the loop never exits by itself and is then
//!   killed, millrace is waited for), target 1.0;
//! - `copier 100B, CPU`: the same runs' records per CPU second, millrace's until it
//!   exits (target 1 / 1.1);
//! - `run --batch copier, 1000 records`: a copier pipeline over 1000 records, start to
//!   exit, as a user runs it (`p50_ms` is the median; target 150 ms, no baseline).
//!
//! `MILLRACE_BENCH_PEERS_RECORDS` (default 1 000 000) sets the records of the produce
//! and copier rows; each side runs `ROUNDS` times, and each ratio is the median of the
//! rounds' ratios (a round is one run of each, in alternating order, so a noisy machine
//! shifts both). Without `kcat`, or `python3` with `confluent_kafka`, the run is an
//! error that says so. Topics are named by pid and deleted at the end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use millrace_broker::kafka::KafkaBroker;
use millrace_broker::{Broker, NewTopic, ProduceRecord};

use super::BenchRow;

const ROUNDS: usize = 3;
const DEFAULT_RECORDS: usize = 1_000_000;
const PARTITIONS: i32 = 6;
const START_UP_RECORDS: usize = 1000;
const START_UP_RUNS: usize = 5;

pub async fn run(bootstrap: &str, dir: &Path) -> anyhow::Result<Vec<BenchRow>> {
    let n: usize = match std::env::var("MILLRACE_BENCH_PEERS_RECORDS") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("MILLRACE_BENCH_PEERS_RECORDS={v} is not a count"))?,
        Err(_) => DEFAULT_RECORDS,
    };
    let kafka = Arc::new(
        KafkaBroker::connect(bootstrap, BTreeMap::new(), Duration::from_secs(10))
            .await
            .with_context(|| format!("bench peers: cannot reach {bootstrap}"))?,
    );
    let exe = std::env::current_exe().context("bench peers: this binary's path")?;
    let mut made = Vec::new();
    let result = measure(&kafka, bootstrap, dir, &exe, n, &mut made).await;
    for t in made {
        let _ = kafka.delete_topic(&t).await;
    }
    result
}

async fn measure(
    kafka: &Arc<KafkaBroker>,
    bootstrap: &str,
    dir: &Path,
    exe: &Path,
    n: usize,
    made: &mut Vec<String>,
) -> anyhow::Result<Vec<BenchRow>> {
    let file = dir.join("lines.txt");
    write_lines(&file, n)?;
    let stamp = std::process::id();
    let mut rounds = Rounds::default();
    for round in 0..ROUNDS {
        let mut topic = |who: &str| {
            let t = format!("millrace-bench-peers-{who}-{stamp}-{round}");
            made.push(t.clone());
            t
        };
        let (t_ours, t_kcat) = (topic("millrace"), topic("kcat"));
        for t in [&t_ours, &t_kcat] {
            kafka
                .create_topic(&NewTopic::new(t.as_str(), PARTITIONS))
                .await?;
        }
        let file_arg = file.to_string_lossy();
        let mut millrace = Command::new(exe);
        millrace.args(["produce", "--topic", &t_ours, "--file", &file_arg]);
        millrace.args(["--bootstrap-server", bootstrap]);
        let mut peer = Command::new("kcat");
        peer.args(["-P", "-b", bootstrap, "-t", &t_kcat, "-l", &file_arg]);
        // The order alternates, so neither always runs first.
        let (a, b) = if round % 2 == 0 {
            let a = timed(&mut millrace)?;
            (
                a,
                timed(&mut peer).context("bench peers needs kcat on the PATH")?,
            )
        } else {
            let b = timed(&mut peer).context("bench peers needs kcat on the PATH")?;
            (timed(&mut millrace)?, b)
        };
        for (t, who) in [(&t_ours, "millrace produce"), (&t_kcat, "kcat")] {
            let got = records_in(kafka, t).await?;
            anyhow::ensure!(got == n as u64, "{who} wrote {got} of {n} lines");
        }
        rounds.ours.push(a);
        rounds.peer.push(b);
    }
    let mut rows = rounds.rows(
        n,
        ("produce --file 100B on Kafka", 0.9),
        "kcat -P -l, same file and broker",
    );
    rows.extend(copier(kafka, bootstrap, dir, exe, &file, n, made).await?);
    rows.push(start_up(kafka, bootstrap, dir, exe, made).await?);
    Ok(rows)
}

/// The copier rows: `run --batch` against the confluent-kafka loop, `ROUNDS` rounds.
async fn copier(
    kafka: &Arc<KafkaBroker>,
    bootstrap: &str,
    dir: &Path,
    exe: &Path,
    file: &Path,
    n: usize,
    made: &mut Vec<String>,
) -> anyhow::Result<Vec<BenchRow>> {
    let stamp = std::process::id();
    let input = format!("millrace-bench-peers-copy-in-{stamp}");
    made.push(input.clone());
    kafka
        .create_topic(&NewTopic::new(input.as_str(), PARTITIONS))
        .await?;
    let mut load = Command::new(exe);
    load.args([
        "produce",
        "--topic",
        &input,
        "--file",
        &file.to_string_lossy(),
    ]);
    load.args(["--bootstrap-server", bootstrap]);
    timed(&mut load)?;
    let script = dir.join("peers_copier.py");
    std::fs::write(&script, include_str!("peers_copier.py"))?;
    let mut rounds = Rounds::default();
    for round in 0..ROUNDS {
        let pipeline = format!("millrace-bench-peers-copy-{stamp}-{round}");
        let (out_ours, out_peer) = (format!("{pipeline}-out"), format!("{pipeline}-py"));
        made.extend([out_ours.clone(), out_peer.clone()]);
        made.extend(made_by_run(&pipeline));
        for t in [&out_ours, &out_peer] {
            kafka
                .create_topic(&NewTopic::new(t.as_str(), PARTITIONS))
                .await?;
        }
        let yaml = copier_yaml(dir, &pipeline, &input, &out_ours)?;
        let mut millrace = Command::new(exe);
        millrace.args(["run", "--batch", &yaml.to_string_lossy(), "--no-http"]);
        millrace.args(["--bootstrap-server", bootstrap]);
        let mut python = Command::new("python3");
        python.arg(&script);
        python.args([bootstrap, &input, &out_peer, &format!("{pipeline}-py")]);
        python.args(["{}", r#"{"fetch.queue.backoff.ms": 20}"#]);
        let (a, b) = if round % 2 == 0 {
            let a = until_copied(&mut millrace, kafka, &out_ours, n, Stop::Exit).await?;
            (
                a,
                until_copied(&mut python, kafka, &out_peer, n, Stop::Kill).await?,
            )
        } else {
            let b = until_copied(&mut python, kafka, &out_peer, n, Stop::Kill).await?;
            (
                until_copied(&mut millrace, kafka, &out_ours, n, Stop::Exit).await?,
                b,
            )
        };
        rounds.ours.push(a);
        rounds.peer.push(b);
    }
    Ok(rounds.rows(
        n,
        ("copier 100B on Kafka (run --batch)", 1.0),
        "confluent-kafka consume(1000) loop, fetch.queue.backoff.ms=20",
    ))
}

/// How a copier run ends once its output is complete.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    /// It exits by itself (`run --batch`), and its CPU counts to its exit.
    Exit,
    /// It never exits by itself (the Python loop waits for more): killed.
    Kill,
}

/// Starts `cmd` and times it until `topic` holds `n` records; CPU is counted to the
/// process's end. A process that ends before the output is complete is an error.
async fn until_copied(
    cmd: &mut Command,
    kafka: &KafkaBroker,
    topic: &str,
    n: usize,
    stop: Stop,
) -> anyhow::Result<Usage> {
    const POLL: Duration = Duration::from_millis(20);
    const LIMIT: Duration = Duration::from_secs(300);
    let before = children_cpu();
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    let wall = loop {
        if records_in(kafka, topic).await? >= n as u64 {
            break started.elapsed().as_secs_f64();
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "{:?} ended ({status}) before {topic} held {n} records",
                cmd.get_program()
            );
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("{topic} held fewer than {n} records after {LIMIT:?}");
        }
        tokio::time::sleep(POLL).await;
    };
    if stop == Stop::Kill {
        child.kill()?;
    }
    let status = child.wait()?;
    anyhow::ensure!(
        stop == Stop::Kill || status.success(),
        "{:?} failed: {status}",
        cmd.get_program()
    );
    Ok(Usage {
        wall,
        cpu: children_cpu() - before,
    })
}

/// The topics a run of `pipeline` makes itself: its dead-letter and redrive topics.
fn made_by_run(pipeline: &str) -> [String; 2] {
    [
        format!("{pipeline}.dlq"),
        millrace_runtime::redrive::topic(pipeline),
    ]
}

/// A copier pipeline's file in `dir`.
fn copier_yaml(dir: &Path, pipeline: &str, input: &str, output: &str) -> anyhow::Result<PathBuf> {
    let yaml = dir.join(format!("{pipeline}.yaml"));
    std::fs::write(
        &yaml,
        format!(
            "pipeline: {pipeline}\ntopics:\n  {input}: {{partitions: {PARTITIONS}}}\n\
             stages:\n  copy: {{kind: copier, from: {input}, to: {output}}}\n"
        ),
    )?;
    Ok(yaml)
}

/// A 1000-record `run --batch` copier, start to exit, `START_UP_RUNS` times (a fresh
/// group and output topic each time, as a first run of a pipeline).
async fn start_up(
    kafka: &Arc<KafkaBroker>,
    bootstrap: &str,
    dir: &Path,
    exe: &Path,
    made: &mut Vec<String>,
) -> anyhow::Result<BenchRow> {
    let stamp = std::process::id();
    let input = format!("millrace-bench-peers-in-{stamp}");
    made.push(input.clone());
    kafka
        .create_topic(&NewTopic::new(input.as_str(), PARTITIONS))
        .await?;
    let records: Vec<ProduceRecord> = (0..START_UP_RECORDS)
        .map(|i| ProduceRecord::value(format!("{i:010}|{}", "x".repeat(89))))
        .collect();
    kafka.produce(&input, &records).await?;
    let mut walls = Vec::new();
    for run in 0..START_UP_RUNS {
        let pipeline = format!("millrace-bench-peers-copier-{stamp}-{run}");
        let output = format!("{pipeline}-out");
        made.push(output.clone());
        made.extend(made_by_run(&pipeline));
        kafka
            .create_topic(&NewTopic::new(output.as_str(), PARTITIONS))
            .await?;
        let yaml = copier_yaml(dir, &pipeline, &input, &output)?;
        let mut copier = Command::new(exe);
        copier.args(["run", "--batch", &yaml.to_string_lossy(), "--no-http"]);
        copier.args(["--bootstrap-server", bootstrap]);
        walls.push(timed(&mut copier)?.wall);
        let got = records_in(kafka, &output).await?;
        anyhow::ensure!(
            got == START_UP_RECORDS as u64,
            "the copier wrote {got} of {START_UP_RECORDS}"
        );
    }
    let p50 = median(walls);
    Ok(BenchRow {
        name: format!("run --batch copier, {START_UP_RECORDS} records, start to exit"),
        records: START_UP_RECORDS as u64,
        records_per_s: START_UP_RECORDS as f64 / p50,
        p50_ms: Some(p50 * 1000.0),
        target: Some(150.0),
        ..BenchRow::default()
    })
}

/// Each round's run of millrace and of its peer.
#[derive(Default)]
struct Rounds {
    ours: Vec<Usage>,
    peer: Vec<Usage>,
}

impl Rounds {
    /// Two rows of `n` 100-byte records: records per second (target as given) and
    /// records per CPU second (target 1 / 1.1: at most 1.1 times the peer's CPU per
    /// record). Values are the median runs'; each ratio is the median of the rounds'
    /// ratios (each from one round, so comparable), not the ratio of the medians.
    fn rows(&self, n: usize, (name, target): (&str, f64), peer: &str) -> Vec<BenchRow> {
        let row = |name: String, baseline: String, of: fn(&Usage) -> f64, target: f64| {
            let per = |runs: &[Usage]| n as f64 / median(runs.iter().map(of).collect());
            let ratios = self.ours.iter().zip(&self.peer).map(|(a, b)| of(b) / of(a));
            let value = per(&self.ours);
            let mut r = BenchRow {
                name,
                records: n as u64,
                records_per_s: value,
                mb_per_s: value * 100.0 / 1e6,
                ..BenchRow::default()
            }
            .against(&baseline, per(&self.peer), target);
            r.ratio = Some(median(ratios.collect()));
            r
        };
        vec![
            row(name.to_string(), peer.to_string(), |u| u.wall, target),
            row(
                format!("{name}, records per CPU second"),
                format!("{peer}, records per CPU second"),
                |u| u.cpu,
                1.0 / 1.1,
            ),
        ]
    }
}

/// A finished process's wall time and CPU time (user + system, all its threads), in
/// seconds.
#[derive(Clone, Copy)]
struct Usage {
    wall: f64,
    cpu: f64,
}

/// Runs `cmd` to its end, its output discarded; a failed run is an error.
fn timed(cmd: &mut Command) -> anyhow::Result<Usage> {
    let before = children_cpu();
    let started = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    let wall = started.elapsed().as_secs_f64();
    anyhow::ensure!(status.success(), "{:?} failed: {status}", cmd.get_program());
    Ok(Usage {
        wall,
        cpu: children_cpu() - before,
    })
}

/// CPU seconds of this process's children that have ended and been waited for: the
/// `cutime` and `cstime` fields of `/proc/self/stat`, in clock ticks (Linux's 100 a
/// second for every process: a hundredth of a second's precision).
fn children_cpu() -> f64 {
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let field = |i: usize| {
        after
            .split_whitespace()
            .nth(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // `cutime` and `cstime` are fields 16 and 17 of the line, 14 and 15 after the name.
    (field(13) + field(14)) / TICKS_PER_SECOND
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `n` lines of 100 bytes (with the newline), as the peers' comparison writes them.
fn write_lines(path: &Path, n: usize) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let filler = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".repeat(2);
    for i in 0..n {
        writeln!(w, "{i:010}|{}", &filler[..89])?;
    }
    w.flush()?;
    Ok(())
}

/// Records in a topic now: the sum of its partitions' end offsets.
async fn records_in(kafka: &KafkaBroker, topic: &str) -> anyhow::Result<u64> {
    let total: i64 = kafka
        .partitions(topic)
        .await?
        .iter()
        .map(|p| p.end_offset)
        .sum();
    Ok(u64::try_from(total).unwrap_or(0))
}
