//! `millrace status [FILE]`: topics with their offsets; with a pipeline file, each
//! stage's consumer group and its lag (end offset minus committed offset), on the
//! backend the file names unless the command line names another. Then every consumer
//! group there is — stages' and any Kafka client's — with its state, members and lag.

use std::io::Write;
use std::path::Path;

use millrace_broker::{Broker, BrokerError};
use millrace_pipeline::diagnostics::count;

use super::groups::{EndOffsets, total_lag};
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
            for t in broker.list_topics().await? {
                let d = broker.describe_topic(&t).await?;
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
    let groups = match broker.list_groups().await {
        Ok(g) => g,
        Err(e @ BrokerError::Invalid(_)) => {
            note!("millrace: groups not shown: {e}");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let mut ends = EndOffsets::default();
    for l in groups {
        let d = match broker.describe_group(&l.group).await {
            Ok(d) => d,
            // Deleted since it was listed.
            Err(BrokerError::UnknownGroup(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let lag = total_lag(broker, &d, &mut ends).await?;
        writeln!(
            out,
            "group {}: {}, {}, lag {lag}",
            d.group,
            d.state,
            count(d.members.len(), "member")
        )?;
    }
    Ok(())
}
