//! Shared helpers for the broker tests: the backends to run against, unique topic names,
//! and bounded waits.
//!
//! Kafka joins when `MILLRACE_TEST_BOOTSTRAP` names a broker (`scripts/kafka.sh start`
//! prints it). In CI (`CI=true`) with the `kafka` feature on, a missing
//! `MILLRACE_TEST_BOOTSTRAP` fails the suite loudly instead of skipping Kafka.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use millrace_broker::{Broker, ConsumedRecord, Consumer, TopicPartition};

/// Every wait in these tests ends by this bound.
pub const WAIT: Duration = Duration::from_secs(30);

/// A backend under test. Holds what must live as long as the broker (the process's
/// hold on a data directory, and the directory).
pub struct Backend {
    pub name: &'static str,
    pub broker: Arc<dyn Broker>,
    _holder: Option<millrace_broker::holder::Holder>,
    _guard: Option<tempfile::TempDir>,
}

/// The Kafka backend against the Kafka server of a process holding a data directory.
pub const KAFKA_TO_HOLDER: &str = "kafka-to-holder";

/// The broker a Kafka test talks to, if any; panics in CI when it is missing.
pub fn kafka_bootstrap() -> Option<String> {
    let bootstrap = std::env::var("MILLRACE_TEST_BOOTSTRAP")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let in_ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    if bootstrap.is_none() && in_ci && cfg!(feature = "kafka") {
        panic!(
            "CI=true and the kafka feature is on, but MILLRACE_TEST_BOOTSTRAP is not set: \
             start a broker with `scripts/kafka.sh start` and export \
             MILLRACE_TEST_BOOTSTRAP=127.0.0.1:9092 (the Kafka tests must not be skipped in CI)"
        );
    }
    bootstrap
}

/// The three-broker cluster (`scripts/kafka.sh start-cluster`), if any; panics in CI
/// when it is missing, as [`kafka_bootstrap`] does for the single broker.
pub fn cluster_bootstrap() -> Option<String> {
    let bootstrap = std::env::var("MILLRACE_TEST_CLUSTER_BOOTSTRAP")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let in_ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    if bootstrap.is_none() && in_ci && cfg!(feature = "kafka") {
        panic!(
            "CI=true and the kafka feature is on, but MILLRACE_TEST_CLUSTER_BOOTSTRAP is not \
             set: start the cluster with `scripts/kafka.sh start-cluster` and export what it \
             prints (the replication tests must not be skipped in CI)"
        );
    }
    if bootstrap.is_none() {
        eprintln!("MILLRACE_TEST_CLUSTER_BOOTSTRAP not set: the three-broker test does not run");
    }
    bootstrap
}

/// The backends every conformance test runs against: the embedded store always, Kafka
/// when `MILLRACE_TEST_BOOTSTRAP` is set, and (with the `kafka` feature) the Kafka
/// backend against the store's own Kafka server, as the process holding a data
/// directory serves it.
pub async fn backends() -> Vec<Backend> {
    let mut out = Vec::new();
    // BEGIN EMBEDDED
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = millrace_broker::embedded::EmbeddedBroker::open(dir.path())
        .expect("open the embedded store");
    out.push(Backend {
        name: "embedded",
        broker: Arc::new(embedded),
        _holder: None,
        _guard: Some(dir),
    });
    // END EMBEDDED
    #[cfg(feature = "kafka")]
    if let Some(bootstrap) = kafka_bootstrap() {
        let kafka = millrace_broker::kafka::KafkaBroker::connect(
            &bootstrap,
            Default::default(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("MILLRACE_TEST_BOOTSTRAP={bootstrap}: {e}"));
        out.push(Backend {
            name: "kafka",
            broker: Arc::new(kafka),
            _holder: None,
            _guard: None,
        });
    }
    // Kafka's protocol against the store itself: the Kafka backend reaching a data
    // directory through the process that holds it, as every millrace command does.
    #[cfg(feature = "kafka")]
    {
        use millrace_broker::holder::{Holder, Listen};
        let dir = tempfile::tempdir().expect("temp dir");
        let holder = Holder::open(dir.path(), Listen::Recorded)
            .await
            .expect("hold and serve the store");
        let kafka = millrace_broker::kafka::KafkaBroker::connect_to_holder(
            dir.path(),
            holder.addr(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("the holder at {}: {e}", holder.addr()));
        out.push(Backend {
            name: KAFKA_TO_HOLDER,
            broker: Arc::new(kafka),
            _holder: Some(holder),
            _guard: Some(dir),
        });
    }
    #[cfg(not(feature = "kafka"))]
    let _ = kafka_bootstrap();
    assert!(!out.is_empty(), "no backend to test");
    out
}

/// A topic (or group) name no other test or run has used: Kafka is shared between runs.
pub fn unique(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls until `n` records arrived (or `WAIT` passed) and returns them all.
pub async fn poll_n(c: &mut dyn Consumer, n: usize) -> Vec<ConsumedRecord> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        let got = c
            .poll(n - out.len(), Duration::from_millis(500))
            .await
            .expect("poll");
        out.extend(got);
    }
    out
}

/// Polls for `d` and returns whatever arrived (to show that nothing does).
pub async fn poll_for(c: &mut dyn Consumer, d: Duration) -> Vec<ConsumedRecord> {
    let deadline = Instant::now() + d;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        out.extend(
            c.poll(1000, left.min(Duration::from_millis(200)))
                .await
                .expect("poll"),
        );
    }
    out
}

/// Polls the consumers in turn until `done` holds for their assignments; keeps the
/// records they returned meanwhile, per consumer.
pub async fn poll_until(
    consumers: &mut [&mut Box<dyn Consumer>],
    what: &str,
    done: impl Fn(&[Vec<TopicPartition>]) -> bool,
) -> Vec<Vec<ConsumedRecord>> {
    let deadline = Instant::now() + WAIT;
    let mut records = vec![Vec::new(); consumers.len()];
    loop {
        let assignments: Vec<Vec<TopicPartition>> =
            consumers.iter().map(|c| sorted(c.assignment())).collect();
        if done(&assignments) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; assignments: {assignments:?}"
        );
        for (i, c) in consumers.iter_mut().enumerate() {
            records[i].extend(c.poll(100, Duration::from_millis(100)).await.expect("poll"));
        }
    }
}

pub fn sorted(mut v: Vec<TopicPartition>) -> Vec<TopicPartition> {
    v.sort();
    v
}
