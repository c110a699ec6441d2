//! One file per command (`dlq` is a folder: list, show, redrive), and what several of
//! them share.
pub mod bench;
pub mod consume;
pub mod dlq;
pub mod graph;
pub mod groups;
pub mod produce;
pub mod run;
pub mod serve;
pub mod status;
pub mod topics;

use millrace_broker::{Broker, BrokerError, TopicDescription};
use millrace_pipeline::diagnostics::{count, did_you_mean};

use crate::report::hinted;

/// The topic's description; when it does not exist, an error that names the existing
/// topic the name is closest to, or says how to create it.
pub async fn existing_topic(broker: &dyn Broker, topic: &str) -> anyhow::Result<TopicDescription> {
    match broker.describe_topic(topic).await {
        Ok(d) => Ok(d),
        Err(BrokerError::UnknownTopic(_)) => Err(unknown_topic(broker, topic, true).await),
        Err(e) => Err(e.into()),
    }
}

/// `unknown topic 'orders'`, with a hint: the closest existing name, and (with
/// `create`) how to create it.
pub async fn unknown_topic(broker: &dyn Broker, topic: &str, create: bool) -> anyhow::Error {
    let names = broker.list_topics().await.unwrap_or_default();
    // Kafka's internal topics (`__consumer_offsets`) are nobody's typo.
    let candidates = names
        .iter()
        .map(String::as_str)
        .filter(|n| !n.starts_with("__"));
    let close = did_you_mean(topic, candidates);
    let command = format!("millrace topics create --topic {topic}");
    let message = format!("unknown topic '{topic}'");
    match (close, create) {
        (Some(close), true) => hinted(
            message,
            format!("did you mean '{close}'? (or create it: `{command}`)"),
        ),
        (Some(close), false) => hinted(message, format!("did you mean '{close}'?")),
        (None, true) => hinted(
            message,
            format!("create it with `{command}`, or run the pipeline that declares it once"),
        ),
        (None, false) => anyhow::anyhow!(message),
    }
}

/// `unknown --property 'print.keys'`, with the closest of the known ones.
pub fn unknown_property(name: &str, known: &[&str]) -> anyhow::Error {
    let known_list = format!("known: {}", known.join(", "));
    let hint = match did_you_mean(name, known.iter().copied()) {
        Some(close) => format!("did you mean {close}? {known_list}"),
        None => known_list,
    };
    hinted(format!("unknown --property '{name}'"), hint)
}

/// `--partition P` names one of the topic's partitions.
pub fn check_partition(d: &TopicDescription, partition: Option<i32>) -> anyhow::Result<()> {
    let Some(p) = partition else {
        return Ok(());
    };
    let n = d.partitions.len();
    if usize::try_from(p).is_ok_and(|p| p < n) {
        return Ok(());
    }
    let range = match n {
        1 => "--partition 0".to_owned(),
        n => format!("--partition 0 to {}", n.saturating_sub(1)),
    };
    Err(hinted(
        format!("topic '{}' has no partition {p}", d.name),
        format!("it has {}: {range}", count(n, "partition")),
    ))
}
