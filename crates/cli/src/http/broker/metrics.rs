//! `millrace serve`'s `/metrics` in Prometheus' text exposition format (version
//! 0.0.4), built anew from a [`Snapshot`] on each scrape, so it never reports a topic
//! or group that is gone.
//!
//! Offsets and lag carry kafka_exporter's family and label names
//! (`kafka_topic_partition_current_offset`, `kafka_consumergroup_lag{consumergroup,…}`,
//! …): the dashboards and alerts users already keep for a Kafka cluster read a
//! millrace broker unchanged. What kafka_exporter has no family for — the server's
//! connections, requests and bytes, a partition's size on disk — is `millrace_broker_*`
//! and `millrace_topic_partition_size_bytes`, with Kafka's request names (`Produce`,
//! `Fetch`, …) in a `request` label as Kafka's own request metrics have them.
//! docs/design.md lists the families.

use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;

use super::snapshot::Snapshot;

const BROKERS: &str = "kafka_brokers";
const TOPIC_PARTITIONS: &str = "kafka_topic_partitions";
const CURRENT_OFFSET: &str = "kafka_topic_partition_current_offset";
const OLDEST_OFFSET: &str = "kafka_topic_partition_oldest_offset";
const SIZE: &str = "millrace_topic_partition_size_bytes";
const GROUP_OFFSET: &str = "kafka_consumergroup_current_offset";
const GROUP_LAG: &str = "kafka_consumergroup_lag";
const GROUP_LAG_SUM: &str = "kafka_consumergroup_lag_sum";
const GROUP_MEMBERS: &str = "kafka_consumergroup_members";
const CONNECTIONS: &str = "millrace_broker_connections";
const ACCEPTED: &str = "millrace_broker_connections_accepted_total";
const REQUESTS: &str = "millrace_broker_requests_total";
const REQUEST_BYTES: &str = "millrace_broker_request_bytes_total";
const RESPONSE_BYTES: &str = "millrace_broker_response_bytes_total";

const GAUGES: [(&str, &str); 10] = [
    (BROKERS, "Brokers in the cluster: one, this node."),
    (TOPIC_PARTITIONS, "Partitions of the topic."),
    (
        CURRENT_OFFSET,
        "The partition's log end offset: the offset the next record appended gets.",
    ),
    (
        OLDEST_OFFSET,
        "The partition's log start offset: the first offset still stored.",
    ),
    (SIZE, "Bytes the partition's segments take on disk."),
    (
        GROUP_OFFSET,
        "The next offset the consumer group will consume of the partition, as committed.",
    ),
    (
        GROUP_LAG,
        "Records of the partition the consumer group has not committed: the end offset minus the committed offset.",
    ),
    (
        GROUP_LAG_SUM,
        "The consumer group's lag over all partitions of the topic.",
    ),
    (
        GROUP_MEMBERS,
        "Members of the consumer group (0 for a group known by its committed offsets alone).",
    ),
    (CONNECTIONS, "Kafka client connections open."),
];

const COUNTERS: [(&str, &str); 4] = [
    (ACCEPTED, "Kafka client connections accepted."),
    (
        REQUESTS,
        "Kafka requests received, by API (Kafka's request name).",
    ),
    (
        REQUEST_BYTES,
        "Bytes of Kafka requests received, by API, as on the wire (a Produce's carry its record batches).",
    ),
    (
        RESPONSE_BYTES,
        "Bytes of Kafka responses sent, by API, as on the wire (a Fetch's carry its record batches).",
    ),
];

/// The exposition of `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || record(snapshot));
    handle.render()
}

fn record(s: &Snapshot) {
    for (name, help) in GAUGES {
        describe_gauge!(name, help);
    }
    for (name, help) in COUNTERS {
        describe_counter!(name, help);
    }
    gauge!(BROKERS).set(1.0);
    for t in &s.topics {
        gauge!(TOPIC_PARTITIONS, "topic" => t.topic.clone()).set(t.partitions.len() as f64);
        for p in &t.partitions {
            let labels = [
                ("topic", t.topic.clone()),
                ("partition", p.partition.to_string()),
            ];
            gauge!(CURRENT_OFFSET, &labels).set(p.end_offset as f64);
            gauge!(OLDEST_OFFSET, &labels).set(p.start_offset as f64);
            gauge!(SIZE, &labels).set(p.size_bytes as f64);
        }
    }
    for g in &s.groups {
        gauge!(GROUP_MEMBERS, "consumergroup" => g.group.clone()).set(g.members as f64);
        let mut sums: std::collections::BTreeMap<&str, u64> = Default::default();
        for o in &g.offsets {
            let labels = [
                ("consumergroup", g.group.clone()),
                ("topic", o.topic.clone()),
                ("partition", o.partition.to_string()),
            ];
            gauge!(GROUP_OFFSET, &labels).set(o.committed_offset as f64);
            if let Some(lag) = o.lag {
                gauge!(GROUP_LAG, &labels).set(lag as f64);
                let sum = sums.entry(&o.topic).or_default();
                *sum = sum.saturating_add(lag);
            }
        }
        for (topic, lag) in sums {
            let labels = [
                ("consumergroup", g.group.clone()),
                ("topic", topic.to_owned()),
            ];
            gauge!(GROUP_LAG_SUM, &labels).set(lag as f64);
        }
    }
    gauge!(CONNECTIONS).set(s.connections.open as f64);
    counter!(ACCEPTED).absolute(s.connections.accepted);
    for r in &s.requests {
        let labels = [("request", r.request.clone())];
        counter!(REQUESTS, &labels).absolute(r.count);
        counter!(REQUEST_BYTES, &labels).absolute(r.request_bytes);
        counter!(RESPONSE_BYTES, &labels).absolute(r.response_bytes);
    }
}
