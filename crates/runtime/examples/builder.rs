//! A pipeline built in Rust instead of a file: the builder with closures for a
//! predicate, a map and a shard key, run on the embedded store in a temporary
//! directory.
//!
//! ```text
//! signups ─filter(verified)→ verified ─map(one per channel)→ notifications
//!         ─sharder(by channel)→ notify-0 | notify-1
//! ```
//!
//! Run it with `cargo run -p millrace-runtime --example builder`. The test
//! `tests/builder_example.rs` includes this file and checks what [`run_example`] returns.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use millrace_broker::embedded::EmbeddedBroker;
use millrace_broker::{Broker, ConsumerConfig, OffsetReset, ProduceRecord};
use millrace_pipeline::{Pipeline, Plan};
use millrace_runtime::{RunOptions, RunSummary, Runtime};
use serde_json::{Value, json};
use tokio::sync::watch;

/// The shard topics of the last stage.
pub const SHARDS: [&str; 2] = ["notify-0", "notify-1"];

/// The pipeline: plain Rust closures where a file would have jq.
pub fn pipeline() -> Plan {
    Pipeline::builder("builder-example")
        .topic("signups", 3)
        // Predicate: only users who clicked the verification link.
        .filter("verified-only", "signups", "verified", |v: &Value| {
            v["verified"] == true
        })
        // Flat map: one notification per chosen channel, or one "none".
        .map("notifications", "verified", "notifications", |v: &Value| {
            let channels: Vec<Value> = v["notify"].as_array().cloned().unwrap_or_default();
            let channels = if channels.is_empty() {
                vec![json!("none")]
            } else {
                channels
            };
            channels
                .into_iter()
                .map(|c| json!({"user_id": v["user_id"], "channel": c}))
                .collect()
        })
        // Shard key: the channel, so each channel's notifications share one shard.
        .sharder(
            "by-channel",
            "notifications",
            |v: &Value| v["channel"].clone(),
            &SHARDS,
        )
        .build()
        .unwrap_or_else(|d| panic!("the example pipeline is valid:\n{d}"))
}

/// The sample input: eight sign-ups, two in three verified, every notify choice.
pub fn signups() -> Vec<Value> {
    let choices = [
        json!([]),
        json!(["email"]),
        json!(["sms"]),
        json!(["email", "sms"]),
    ];
    (0..8)
        .map(|i| {
            json!({
                "user_id": format!("u{i}"),
                "verified": i % 3 != 2,
                "notify": choices[i % 4],
            })
        })
        .collect()
}

/// What the run did: its per-stage summary and every topic's values.
pub struct Report {
    pub summary: RunSummary,
    pub topics: BTreeMap<String, Vec<Value>>,
}

/// Opens a store in `dir`, loads the sample, runs the pipeline as a batch and reads
/// every topic back.
pub async fn run_example(dir: &std::path::Path) -> Result<Report, Box<dyn std::error::Error>> {
    let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::open(dir)?);
    let plan = pipeline();
    let runtime = Runtime::new(millrace_runtime::build::from_plan(&plan)?);
    // Create the topics first so the sample can be produced before the run snapshots
    // its input (`millrace run --batch` does the same with a file).
    runtime.ensure_topics(broker.as_ref()).await?;
    let records: Vec<ProduceRecord> = signups()
        .iter()
        .map(|v| ProduceRecord::value(v.to_string()))
        .collect();
    broker.produce("signups", &records).await?;

    let (_stop_tx, stop) = watch::channel(false);
    let opts = RunOptions {
        batch: true,
        ..RunOptions::default()
    };
    let summary = runtime.run(broker.clone(), opts, stop).await?;

    let mut topics = BTreeMap::new();
    for t in ["verified", "notifications", SHARDS[0], SHARDS[1]] {
        topics.insert(t.to_string(), read_all(broker.as_ref(), t).await?);
    }
    Ok(Report { summary, topics })
}

/// Every value of a topic (as JSON), by partition then offset.
async fn read_all(
    broker: &dyn Broker,
    topic: &str,
) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let total: i64 = broker
        .describe_topic(topic)
        .await?
        .partitions
        .iter()
        .map(|p| p.end_offset - p.start_offset)
        .sum();
    let mut cfg = ConsumerConfig::new(vec![topic.to_string()]);
    cfg.offset_reset = OffsetReset::Earliest;
    let mut consumer = broker.consumer(cfg).await?;
    let mut recs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (recs.len() as i64) < total && Instant::now() < deadline {
        recs.extend(consumer.poll(1000, Duration::from_millis(200)).await?);
    }
    consumer.close().await?;
    recs.sort_by_key(|r| (r.partition, r.offset));
    Ok(recs
        .iter()
        .map(|r| serde_json::from_slice(&r.value))
        .collect::<Result<_, _>>()?)
}

#[tokio::main]
#[allow(dead_code)] // The test includes this file for `run_example`, not for `main`.
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let report = run_example(dir.path()).await?;
    println!(
        "{:<16} {:<9} {:>4} {:>4} {:>9} {:>14} {:>8}",
        "stage", "pattern", "in", "out", "filtered", "dead-lettered", "emitted"
    );
    for s in &report.summary.stages {
        let c = &s.counters;
        println!(
            "{:<16} {:<9} {:>4} {:>4} {:>9} {:>14} {:>8}",
            s.name, s.kind, c.records_in, c.out, c.filtered, c.dead_lettered, c.emitted
        );
    }
    for (topic, values) in &report.topics {
        println!("\n{topic} ({} records)", values.len());
        for v in values {
            println!("  {v}");
        }
    }
    Ok(())
}
