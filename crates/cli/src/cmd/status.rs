//! `millrace status [FILE]`: topics with their offsets; with a pipeline file, each
//! stage's consumer group and its lag (end offset minus committed offset), on the
//! backend the file names unless the command line names another.

use std::io::Write;
use std::path::Path;

use millrace_pipeline::diagnostics::count;

use crate::args::Global;
use crate::connect::{self, DataDir};

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
    Ok(())
}
