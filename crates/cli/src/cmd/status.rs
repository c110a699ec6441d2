//! `millrace status [FILE]`: topics with their offsets; with a pipeline file, each
//! stage's consumer group and its lag (end offset minus committed offset), on the
//! backend the file names unless the command line names another. Then every consumer
//! group there is — stages' and any Kafka client's — with its state, members and lag.

use std::io::Write;
use std::path::Path;

use futures::stream::{self, StreamExt};
use millrace_broker::{Broker, BrokerError};
use millrace_pipeline::diagnostics::count;

use super::groups::{AT_ONCE, EndOffsets, total_lag};
use crate::args::Global;
use crate::connect::{self, DataDir};
use crate::report::note;

pub async fn run(g: &Global, file: Option<&Path>) -> anyhow::Result<()> {
    let plan = file.map(super::graph::load).transpose()?;
    let broker = match &plan {
        Some(plan) => {
            let (g, props) = connect::for_plan(g, plan);
            connect::connect_with_properties(&g, props, DataDir::Existing).await?
        }
        None => connect::connect(g, DataDir::Existing).await?,
    };
    let mut out = crate::report::stdout();
    writeln!(out, "backend: {}", broker.backend())?;
    match plan {
        None => {
            // Several at a time: on Kafka each is a few round trips, and a cluster may
            // have thousands of topics.
            let broker = broker.as_ref();
            let described: Vec<_> = stream::iter(broker.list_topics().await?)
                .map(|t| async move { broker.describe_topic(&t).await })
                .buffered(AT_ONCE)
                .collect()
                .await;
            for d in described {
                let d = match d {
                    Ok(d) => d,
                    // Deleted since it was listed.
                    Err(BrokerError::UnknownTopic(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                let t = &d.name;
                let records: i64 = d
                    .partitions
                    .iter()
                    .map(|p| p.end_offset - p.start_offset)
                    .sum();
                writeln!(
                    out,
                    "topic {t}: {}, {}",
                    count(d.partitions.len(), "partition"),
                    count(records, "record")
                )?;
            }
        }
        Some(plan) => {
            for stage in &plan.stages {
                let group = format!("{}.{}", plan.name, stage.name);
                let mut lag = 0i64;
                for input in &stage.inputs {
                    let Ok(d) = broker.describe_topic(input).await else {
                        continue;
                    };
                    lag += d.lag(&broker.committed(&group, input).await?);
                }
                writeln!(
                    out,
                    "stage {} ({}): group {group}, reads {}, lag {lag}",
                    stage.name,
                    stage.kind.name(),
                    stage.inputs.join(",")
                )?;
            }
        }
    }
    write_groups(broker.as_ref(), &mut out).await
}

/// `group G: STATE, N members, lag L` for every consumer group.
async fn write_groups(broker: &dyn Broker, out: &mut impl Write) -> anyhow::Result<()> {
    let groups = match broker.describe_groups().await {
        Ok(g) => g,
        Err(e @ BrokerError::Unsupported { .. }) => {
            note!("millrace: groups not shown: {e}");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let mut ends = EndOffsets::default();
    ends.fetch(broker, &groups).await?;
    for d in &groups {
        writeln!(
            out,
            "group {}: {}, {}, lag {}",
            d.group,
            d.state,
            count(d.members.len(), "member"),
            total_lag(d, &ends)
        )?;
    }
    Ok(())
}
