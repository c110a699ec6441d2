//! One file per command, and what several of them share.
pub mod bench;
pub mod consume;
pub mod graph;
pub mod produce;
pub mod run;
pub mod status;
pub mod topics;

use millrace_broker::{Broker, BrokerError, TopicDescription};
use millrace_pipeline::diagnostics::did_you_mean;

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
