//! `millrace bench pipeline`'s load rows: an exec stage with one Python worker — far
//! slower than the store — while a producer appends as fast as it can. The stage must
//! read at its own pace from the log rather than buffer what waits, so its rate holds
//! as the backlog grows and the process's memory stays bounded. These were pass/fail
//! limits in a test once; on a shared machine they are measurements, read as ratios.
//!
//! Rows:
//! - `load: exec stage under a faster producer`: records/s over the last third of the
//!   run, against the first third of the same run (target 0.5: the rate does not
//!   collapse as the backlog grows);
//! - `load: peak RSS under a faster producer`: VmHWM of the process across the run,
//!   against 256 MiB.
//!
//! `MILLRACE_BENCH_LOAD_SECS` sets how long the producer runs (default 20 s).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use millrace_broker::{Broker, ProduceRecord};
use millrace_runtime::{RunOptions, Runtime};
use tokio::sync::watch;

use super::BenchRow;

/// A worker that answers each item with its value (docs/exec-protocol.md).
const ECHO: &str = r#"import json, sys
for line in sys.stdin:
    req = json.loads(line)
    print(json.dumps({"id": req["id"], "out": [req["value"]]}), flush=True)
"#;

/// One sample a second: (seconds since the start, outputs so far).
type Sample = (f64, i64);

pub async fn run(broker: &Arc<dyn Broker>, work: &Path) -> anyhow::Result<Vec<BenchRow>> {
    let secs = std::env::var("MILLRACE_BENCH_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20u64);
    let worker = work.join("load-echo.py");
    std::fs::write(&worker, ECHO)?;
    let yaml = format!(
        "pipeline: load\ntopics:\n  load-in: {{partitions: 2}}\nstages:\n  slow:\n    kind: exec\n    \
         from: load-in\n    to: load-out\n    command: [python3, {}]\n    workers: 1\n",
        worker.display()
    );
    let plan = millrace_pipeline::parse_str(&yaml, "bench.yaml")
        .map_err(|d| anyhow::anyhow!("bench pipeline does not validate:\n{d}"))?;
    let runtime = Runtime::new(millrace_runtime::build::from_plan(&plan)?);
    runtime.ensure_topics(broker.as_ref()).await?;
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (stop_tx, stop) = watch::channel(false);
    let running = tokio::spawn(runtime.run(broker.clone(), RunOptions::default(), stop));

    let until = Instant::now() + Duration::from_secs(secs);
    let producer = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let batch: Vec<ProduceRecord> = (n..n + 1000)
                    .map(|i| {
                        ProduceRecord::value(format!("{{\"n\":{i},\"pad\":\"0123456789abcdef\"}}"))
                    })
                    .collect();
                broker.produce("load-in", &batch).await?;
                n += 1000;
            }
            anyhow::Ok(n)
        })
    };
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push((
            start.elapsed().as_secs_f64(),
            records(broker, "load-out").await?,
        ));
    }
    let produced = producer.await??;
    let peak = super::peak_rss_mib();
    let _ = stop_tx.send(true);
    running.await??;
    let dead = records(broker, "load.dlq").await.unwrap_or(0);
    anyhow::ensure!(dead == 0, "the load run dead-lettered {dead} records");
    for t in ["load-in", "load-out", "load.dlq"] {
        let _ = broker.delete_topic(t).await;
    }

    let third = samples.len() / 3;
    anyhow::ensure!(third >= 1, "too few samples for a load run: {samples:?}");
    let rate = |s: &[Sample]| -> f64 {
        match (s.first(), s.last()) {
            (Some(a), Some(b)) => (b.1 - a.1) as f64 / (b.0 - a.0).max(0.001),
            _ => 0.0,
        }
    };
    let first = rate(&samples[..=third]);
    let last = rate(&samples[samples.len() - third - 1..]);
    let processed = samples.last().map_or(0, |s| s.1);
    let backlog = i64::try_from(produced).unwrap_or(i64::MAX) - processed;
    anyhow::ensure!(
        backlog > 0,
        "the producer was not faster than the exec stage: the load rows measure nothing"
    );
    let records = u64::try_from(processed).unwrap_or(0);
    Ok(vec![
        BenchRow {
            name: "load: exec stage under a faster producer".to_string(),
            records,
            records_per_s: last,
            ..BenchRow::default()
        }
        .against("its first third (same run)", first, 0.5),
        BenchRow {
            name: "load: peak RSS under a faster producer".to_string(),
            records,
            records_per_s: processed as f64 / start.elapsed().as_secs_f64().max(0.001),
            peak_rss_mib: peak,
            target: Some(256.0),
            ..BenchRow::default()
        },
    ])
}

/// Records in `topic`, over its partitions.
async fn records(broker: &Arc<dyn Broker>, topic: &str) -> anyhow::Result<i64> {
    let d = broker.describe_topic(topic).await?;
    Ok(d.partitions
        .iter()
        .map(|p| p.end_offset - p.start_offset)
        .sum())
}
