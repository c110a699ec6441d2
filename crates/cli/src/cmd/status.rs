//! `millrace status [FILE]`: topics with their offsets; with a pipeline file, each
//! stage's consumer group and its lag (end offset minus committed offset).

use std::path::Path;

use millrace_broker::Broker;

pub async fn run(broker: &dyn Broker, file: Option<&Path>) -> anyhow::Result<()> {
    println!("backend: {}", broker.backend());
    match file {
        None => {
            for t in broker.list_topics().await? {
                let d = broker.describe_topic(&t).await?;
                let records: i64 = d
                    .partitions
                    .iter()
                    .map(|p| p.end_offset - p.start_offset)
                    .sum();
                println!(
                    "topic {t}: {} partitions, {records} records",
                    d.partitions.len()
                );
            }
        }
        Some(file) => {
            let plan = super::graph::load(file)?;
            for stage in &plan.stages {
                let group = format!("{}.{}", plan.name, stage.name);
                let mut lag = 0i64;
                for input in &stage.inputs {
                    let Ok(d) = broker.describe_topic(input).await else {
                        continue;
                    };
                    lag += d.lag(&broker.committed(&group, input).await?);
                }
                println!(
                    "stage {} ({}): group {group}, reads {}, lag {lag}",
                    stage.name,
                    stage.kind.name(),
                    stage.inputs.join(",")
                );
            }
        }
    }
    Ok(())
}
