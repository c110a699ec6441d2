//! `millrace topics create|list|describe|delete`, printed as kafka-topics prints.

use std::collections::BTreeMap;
use std::io::Write;

use millrace_broker::{Broker, BrokerError, NewTopic};

use crate::args::{TopicsCommand, parse_pair};

pub async fn run(broker: &dyn Broker, cmd: TopicsCommand) -> anyhow::Result<()> {
    let mut out = crate::report::stdout();
    match cmd {
        TopicsCommand::Create {
            topic,
            partitions,
            replication_factor,
            config,
            if_not_exists,
        } => {
            let mut cfg = BTreeMap::new();
            for c in &config {
                let (k, v) = parse_pair(c)?;
                cfg.insert(k, v);
            }
            let new = NewTopic {
                name: topic.clone(),
                partitions,
                replication_factor,
                config: cfg,
            };
            match broker.create_topic(&new).await {
                Ok(()) => writeln!(out, "Created topic {topic}.")?,
                Err(BrokerError::TopicExists(_)) if if_not_exists => {}
                Err(e) => return Err(e.into()),
            }
        }
        TopicsCommand::List => {
            for t in broker.list_topics().await? {
                writeln!(out, "{t}")?;
            }
        }
        TopicsCommand::Describe { topic } => {
            let d = super::existing_topic(broker, &topic).await?;
            let cfg: Vec<String> = d.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(
                out,
                "Topic: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                d.name,
                d.partitions.len(),
                d.partitions.first().map(|p| p.replicas.len()).unwrap_or(1),
                cfg.join(",")
            )?;
            for p in &d.partitions {
                let replicas: Vec<String> = p.replicas.iter().map(|r| r.to_string()).collect();
                writeln!(
                    out,
                    "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tStartOffset: {}\tEndOffset: {}",
                    d.name,
                    p.partition,
                    p.leader
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| "none".into()),
                    replicas.join(","),
                    p.start_offset,
                    p.end_offset
                )?;
            }
        }
        TopicsCommand::Delete { topic } => {
            match broker.delete_topic(&topic).await {
                Err(BrokerError::UnknownTopic(_)) => {
                    return Err(super::unknown_topic(broker, &topic, false).await);
                }
                r => r?,
            }
            writeln!(out, "Deleted topic {topic}.")?;
        }
    }
    Ok(())
}
