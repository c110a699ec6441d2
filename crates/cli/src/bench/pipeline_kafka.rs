//! `millrace bench pipeline` on Kafka (`--bootstrap-server`): the copier as a whole
//! pipeline on the Kafka backend, against millrace's own Kafka produce rate measured in
//! the same run (target: on Kafka, copier ≥ 0.5 of `bench kafka`'s produce rate).
//!
//! `MILLRACE_BENCH_KAFKA_RECORDS` (default 1 000 000) keyed 100 B records are produced
//! into a fresh 2-partition input topic by `bench kafka`'s millrace produce function
//! (same records, same batches in flight); that rate is the baseline row. Then a copier
//! pipeline file with `backend: kafka` runs in `--batch` mode over that input, built as
//! `millrace run` builds it; its input records per second, against the produce rate, is
//! the copier row (target 0.5). The copy is checked: the output must hold as many
//! records as the input. As in `bench kafka`, produce and copier alternate for its
//! number of rounds, each round on fresh topics, and each side's best round counts.
//!
//! Topics are named by pid and time and deleted at the end, also when the run fails
//! (the copiers' consumer groups go with their topics' offsets). About 30 s against a
//! local broker on two cores.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use millrace_broker::kafka::KafkaBroker;
use millrace_broker::{Broker, NewTopic};

use super::BenchRow;

const PARTITIONS: i32 = 2;
const SIZE: usize = 100;
const DEFAULT_RECORDS: usize = 1_000_000;
const TARGET: f64 = 0.5;

/// One round's topics and pipeline (so consumer group) names.
struct Names {
    pipeline: String,
    input: String,
    output: String,
}

impl Names {
    /// Names unique to this process, this start time and `round`.
    fn unique(round: usize) -> Names {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let stamp = format!("{}-{millis}-{round}", std::process::id());
        Names {
            pipeline: format!("millrace-bench-copier-{stamp}"),
            input: format!("millrace-bench-copier-in-{stamp}"),
            output: format!("millrace-bench-copier-out-{stamp}"),
        }
    }

    /// Every topic the run may create: input, output, and the default dead-letter and
    /// redrive topics.
    fn topics(&self) -> [String; 4] {
        [
            self.input.clone(),
            self.output.clone(),
            format!("{}.dlq", self.pipeline),
            millrace_runtime::redrive::topic(&self.pipeline),
        ]
    }

    /// The pipeline file, as a user would write it for this copier on Kafka.
    fn yaml(&self, bootstrap: &str) -> String {
        let bootstrap = serde_json::to_string(bootstrap).unwrap_or_default();
        format!(
            "pipeline: {p}\nbackend: {{kafka: {{bootstrap: {bootstrap}}}}}\ntopics:\n  \
             {i}: {{partitions: {PARTITIONS}}}\n  {o}: {{partitions: {PARTITIONS}}}\n\
             stages:\n  copier: {{kind: copier, from: {i}, to: {o}}}\n",
            p = self.pipeline,
            i = self.input,
            o = self.output,
        )
    }
}

pub async fn run(bootstrap: &str) -> anyhow::Result<Vec<BenchRow>> {
    let n: usize = match std::env::var("MILLRACE_BENCH_KAFKA_RECORDS") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("MILLRACE_BENCH_KAFKA_RECORDS={v} is not a count"))?,
        Err(_) => DEFAULT_RECORDS,
    };
    let kafka = Arc::new(
        KafkaBroker::connect(bootstrap, BTreeMap::new(), Duration::from_secs(10))
            .await
            .with_context(|| format!("bench pipeline: cannot reach {bootstrap}"))?,
    );
    let rounds: Vec<Names> = (0..super::kafka::ROUNDS).map(Names::unique).collect();
    let result = measure(&kafka, bootstrap, &rounds, n).await;
    for t in rounds.iter().flat_map(Names::topics) {
        let _ = kafka.delete_topic(&t).await;
    }
    result
}

async fn measure(
    kafka: &Arc<KafkaBroker>,
    bootstrap: &str,
    rounds: &[Names],
    n: usize,
) -> anyhow::Result<Vec<BenchRow>> {
    let records = super::kafka::make_records(SIZE, n);
    let broker: Arc<dyn Broker> = kafka.clone();
    let (mut produce_secs, mut copy_secs, mut input) = (f64::MAX, f64::MAX, 0);
    for names in rounds {
        kafka
            .create_topic(&NewTopic::new(names.input.as_str(), PARTITIONS))
            .await?;
        let secs = super::kafka::produce_millrace(kafka, &names.input, &records).await?;
        produce_secs = produce_secs.min(secs);

        // The input holds the produce function's warm-up record too: the copier reads all.
        input = records_in(kafka, &names.input).await?;
        let secs = super::pipeline::run_batch(&broker, &names.yaml(bootstrap)).await?;
        copy_secs = copy_secs.min(secs);
        let copied = records_in(kafka, &names.output).await?;
        anyhow::ensure!(
            copied == input,
            "bench pipeline on Kafka: the copier wrote {copied} records for {input} input records"
        );
    }
    let produce_rate = n as f64 / produce_secs;
    // Best round of each side, as in `bench kafka`.
    let copy_rate = input as f64 / copy_secs;

    let mb = |rate: f64| rate * SIZE as f64 / 1e6;
    let baseline = BenchRow {
        name: "baseline: kafka produce 100B (millrace Kafka backend)".to_string(),
        records: n as u64,
        records_per_s: produce_rate,
        mb_per_s: mb(produce_rate),
        ..BenchRow::default()
    };
    let row = BenchRow {
        name: "pipeline copier 100B on Kafka".to_string(),
        records: input,
        records_per_s: copy_rate,
        mb_per_s: mb(copy_rate),
        ..BenchRow::default()
    }
    .against(
        &format!(
            "kafka produce 100B, millrace Kafka backend (same run, best of {})",
            rounds.len()
        ),
        produce_rate,
        TARGET,
    );
    Ok(vec![baseline, row])
}

/// Records in a topic now: the sum of its partitions' end offsets.
async fn records_in(kafka: &KafkaBroker, topic: &str) -> anyhow::Result<u64> {
    let d = kafka.describe_topic(topic).await?;
    let total: i64 = d.partitions.iter().map(|p| p.end_offset).sum();
    Ok(u64::try_from(total).unwrap_or(0))
}
