//! Shared helpers for the broker tests: the backends to run against and unique topic
//! names (from `millrace-testkit`, which also says when Kafka must be there), and
//! bounded waits.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use millrace_broker::{ConsumedRecord, Consumer, TopicPartition};

/// Every wait in these tests ends by this bound.
pub const WAIT: Duration = Duration::from_secs(30);

// Each test file uses some of these.
#[allow(unused_imports)]
pub use millrace_testkit::{Backend, backends, kafka_bootstrap, unique};

/// The three-broker cluster (`scripts/kafka.sh start-cluster`), if any; in CI its
/// absence fails the test, as the kit's rule says for the single broker.
pub fn cluster_bootstrap() -> Option<String> {
    let bootstrap = std::env::var("MILLRACE_TEST_CLUSTER_BOOTSTRAP")
        .ok()
        .filter(|s| !s.trim().is_empty());
    if bootstrap.is_none() && cfg!(feature = "kafka") {
        millrace_testkit::missing(
            "MILLRACE_TEST_CLUSTER_BOOTSTRAP",
            "start the cluster with `scripts/kafka.sh start-cluster` and export what it prints",
        );
    }
    bootstrap
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
