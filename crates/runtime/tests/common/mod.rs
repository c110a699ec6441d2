//! The compliance helper every pattern's tests use: run a pipeline on a backend, read
//! topics back, and check conservation of records, order per partition and the
//! dead-letter headers. Backends: every one of `millrace_testkit::backends` — the
//! embedded store, Kafka by the kit's rule (MILLRACE_TEST_BOOTSTRAP; in CI a missing
//! broker fails), and the store held by another process, reached over Kafka's protocol.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use millrace_broker::{Broker, ConsumedRecord, ConsumerConfig, OffsetReset, ProduceRecord};
use millrace_runtime::{RunOptions, RunSummary, Runtime};
use tokio::sync::watch;

pub struct TestBackend {
    pub name: &'static str,
    pub broker: Arc<dyn Broker>,
    /// Unique per test on Kafka (a shared broker); empty on the backends with a store of
    /// their own.
    pub suffix: String,
    /// What must live as long as the broker (the store's directory).
    _kit: Option<millrace_testkit::Backend>,
}

impl From<millrace_testkit::Backend> for TestBackend {
    fn from(b: millrace_testkit::Backend) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let suffix = if b.shared() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() % 1_000_000_000)
                .unwrap_or(0);
            format!(
                "-{}-{}-{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            )
        } else {
            String::new()
        };
        TestBackend {
            name: b.name,
            broker: b.broker.clone(),
            suffix,
            _kit: Some(b),
        }
    }
}

pub fn embedded() -> TestBackend {
    millrace_testkit::embedded().into()
}

/// Every backend of the kit (`millrace_testkit::backends`): the embedded store, Kafka by
/// the kit's rule, and the store served over Kafka's protocol by the process holding it.
pub async fn backends() -> Vec<TestBackend> {
    millrace_testkit::backends()
        .await
        .into_iter()
        .map(TestBackend::from)
        .collect()
}

impl TestBackend {
    /// Substitutes `{s}` in a pipeline file with this backend's suffix.
    pub fn yaml(&self, src: &str) -> String {
        src.replace("{s}", &self.suffix)
    }

    /// The same backend under another suffix: two pipelines of one file then share no
    /// output topics or consumer groups. `self` keeps the store's directory.
    pub fn with_suffix(&self, suffix: &str) -> TestBackend {
        TestBackend {
            name: self.name,
            broker: self.broker.clone(),
            suffix: suffix.to_string(),
            _kit: None,
        }
    }

    pub fn t(&self, name: &str) -> String {
        format!("{name}{}", self.suffix)
    }

    pub fn plan(&self, src: &str) -> millrace_pipeline::Plan {
        match millrace_pipeline::parse_str(&self.yaml(src), "test.yaml") {
            Ok(p) => p,
            Err(d) => panic!("pipeline does not validate:\n{d}"),
        }
    }

    /// Creates the plan's topics without running anything.
    pub async fn create_topics(&self, src: &str) {
        let plan = self.plan(src);
        let spec = millrace_runtime::build::from_plan(&plan).expect("build");
        Runtime::new(spec)
            .ensure_topics(self.broker.as_ref())
            .await
            .expect("create topics");
    }

    /// Runs the pipeline in `--batch` mode and returns its summary.
    pub async fn run_batch(&self, src: &str) -> RunSummary {
        let plan = self.plan(src);
        let spec = millrace_runtime::build::from_plan(&plan).expect("build");
        let (_tx, rx) = watch::channel(false);
        let opts = RunOptions {
            batch: true,
            ..RunOptions::default()
        };
        tokio::time::timeout(
            Duration::from_secs(120),
            Runtime::new(spec).run(self.broker.clone(), opts, rx),
        )
        .await
        .expect("batch run finishes")
        .expect("batch run succeeds")
    }

    pub async fn produce_values(&self, topic: &str, values: &[&str]) {
        let recs: Vec<ProduceRecord> = values
            .iter()
            .map(|v| ProduceRecord::value(v.as_bytes().to_vec()))
            .collect();
        self.broker.produce(topic, &recs).await.expect("produce");
    }

    pub async fn produce(&self, topic: &str, recs: Vec<ProduceRecord>) {
        self.broker.produce(topic, &recs).await.expect("produce");
    }

    /// Every record of a topic, in partition then offset order.
    pub async fn read_all(&self, topic: &str) -> Vec<ConsumedRecord> {
        let d = self.broker.describe_topic(topic).await.expect("describe");
        let total: i64 = d
            .partitions
            .iter()
            .map(|p| p.end_offset - p.start_offset)
            .sum();
        let mut cfg = ConsumerConfig::new(vec![topic.to_string()]);
        cfg.offset_reset = OffsetReset::Earliest;
        let mut c = self.broker.consumer(cfg).await.expect("consumer");
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while (out.len() as i64) < total && Instant::now() < deadline {
            out.extend(
                c.poll(10_000, Duration::from_millis(300))
                    .await
                    .expect("poll"),
            );
        }
        let _ = c.close().await;
        out.sort_by_key(|r| (r.partition, r.offset));
        out
    }

    pub async fn values(&self, topic: &str) -> Vec<String> {
        self.read_all(topic)
            .await
            .into_iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect()
    }

    pub async fn sorted_values(&self, topic: &str) -> Vec<String> {
        let mut v = self.values(topic).await;
        v.sort();
        v
    }
}

/// Conservation: every record read ended in exactly one bucket, none in flight.
pub fn assert_conserved(summary: &RunSummary) {
    for s in &summary.stages {
        let c = &s.counters;
        assert_eq!(
            c.records_in,
            c.out + c.filtered + c.dead_lettered + c.in_flight,
            "stage {} breaks conservation: {c:?}",
            s.name
        );
        assert_eq!(
            c.in_flight, 0,
            "stage {} left records in flight: {c:?}",
            s.name
        );
    }
}

pub fn stage<'a>(
    summary: &'a RunSummary,
    name: &str,
) -> &'a millrace_runtime::runtime::StageSummary {
    summary
        .stages
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stage {name}"))
}

/// The value of a header (last one wins).
pub fn header(r: &ConsumedRecord, name: &str) -> Option<String> {
    r.headers
        .iter()
        .rev()
        .find(|h| &*h.key == name)
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
}

/// Order per partition: within each output partition, records that came from one input
/// partition keep their input order (checked through a sequence number in the value).
pub fn assert_order_per_partition(
    recs: &[ConsumedRecord],
    seq_of: impl Fn(&ConsumedRecord) -> (String, i64),
) {
    let mut last: BTreeMap<(i32, String), i64> = BTreeMap::new();
    for r in recs {
        let (origin, seq) = seq_of(r);
        let k = (r.partition, origin);
        if let Some(prev) = last.get(&k) {
            assert!(
                seq > *prev,
                "order broken in partition {}: {seq} after {prev}",
                r.partition
            );
        }
        last.insert(k, seq);
    }
}
