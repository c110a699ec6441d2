//! `groups reset-offsets`: each partition's new offset (kept within the partition, as
//! Kafka keeps it), printed as Kafka prints a reset, committed only with `--execute`
//! and only while the group has no live members.

use std::collections::HashMap;
use std::io::Write;

use millrace_broker::{Broker, BrokerError, GroupState, PartitionInfo, TopicPartition};

use crate::args::ResetOffsetsArgs;
use crate::report::{hinted, note};

/// Where `reset-offsets` moves each partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
    ShiftBy(i64),
}

impl Target {
    fn of(a: &ResetOffsetsArgs) -> Target {
        match (a.to_offset, a.shift_by) {
            (Some(n), _) => Target::Offset(n),
            (_, Some(n)) => Target::ShiftBy(n),
            _ if a.to_earliest => Target::Earliest,
            _ => Target::Latest,
        }
    }

    /// The new offset of partition `p`, kept within its offsets as Kafka keeps it,
    /// with Kafka's warning when it had to be moved.
    fn new_offset(
        self,
        tp: &TopicPartition,
        p: &PartitionInfo,
        committed: Option<i64>,
    ) -> anyhow::Result<(i64, Option<String>)> {
        let wanted = match self {
            Target::Earliest => return Ok((p.start_offset, None)),
            Target::Latest => return Ok((p.end_offset, None)),
            Target::Offset(n) => n,
            Target::ShiftBy(n) => {
                let Some(c) = committed else {
                    return Err(hinted(
                        format!(
                            "Cannot shift offset for partition {tp} since there is no current committed offset"
                        ),
                        "--to-earliest, --to-latest or --to-offset set a partition without one",
                    ));
                };
                c.saturating_add(n)
            }
        };
        Ok(if wanted > p.end_offset {
            (
                p.end_offset,
                Some(format!(
                    "New offset ({wanted}) is higher than latest offset for topic partition {tp}. Value will be set to {}.",
                    p.end_offset
                )),
            )
        } else if wanted < p.start_offset {
            (
                p.start_offset,
                Some(format!(
                    "New offset ({wanted}) is lower than earliest offset for topic partition {tp}. Value will be set to {}.",
                    p.start_offset
                )),
            )
        } else {
            (wanted, None)
        })
    }
}

/// Kafka's refusal, and what to do about it.
fn not_inactive(group: &str, state: GroupState) -> anyhow::Error {
    hinted(
        format!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current state is {state}."
        ),
        format!(
            "stop the group's consumers first (`millrace groups describe --group {group}` shows them): they would commit over the new offsets"
        ),
    )
}

pub(super) async fn reset_offsets(broker: &dyn Broker, a: &ResetOffsetsArgs) -> anyhow::Result<()> {
    let topic = match broker.describe_topic(&a.topic).await {
        Ok(d) => d,
        Err(BrokerError::UnknownTopic(_)) => {
            return Err(crate::cmd::unknown_topic(broker, &a.topic, false).await);
        }
        Err(e) => return Err(e.into()),
    };
    let current = match broker.describe_group(&a.group).await {
        Ok(d) if !d.state.is_inactive() => return Err(not_inactive(&a.group, d.state)),
        Ok(d) => Some(d),
        Err(BrokerError::UnknownGroup(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if current.is_none() {
        // Kafka resets a group it does not know, so consumers can be started at chosen
        // offsets; a mistyped name would do the same, so say so.
        let close = super::closest_group(broker, &a.group)
            .await
            .map(|c| format!(" (did you mean '{c}'?)"))
            .unwrap_or_default();
        note!(
            "millrace: consumer group '{}' has no members and no committed offsets{close}: --execute creates it at these offsets",
            a.group
        );
    }
    let target = Target::of(a);
    let committed: HashMap<&TopicPartition, i64> = current
        .iter()
        .flat_map(|d| &d.offsets)
        .map(|(tp, o)| (tp, *o))
        .collect();
    let mut plan = Vec::with_capacity(topic.partitions.len());
    for p in &topic.partitions {
        let tp = TopicPartition::new(topic.name.as_str(), p.partition);
        let (offset, warning) = target.new_offset(&tp, p, committed.get(&tp).copied())?;
        if let Some(w) = warning {
            note!("WARN {w}");
        }
        plan.push((tp, offset));
    }
    write_plan(&mut crate::report::stdout(), &a.group, &plan)?;
    if !a.execute {
        note!("millrace: dry run: no offset changed; add --execute to commit these");
        return Ok(());
    }
    match broker.alter_group_offsets(&a.group, &plan).await {
        Err(BrokerError::GroupNotEmpty { state, .. }) => Err(not_inactive(&a.group, state)),
        r => Ok(r?),
    }
}

/// GROUP TOPIC PARTITION NEW-OFFSET, as Kafka prints a reset.
fn write_plan(
    out: &mut impl Write,
    group: &str,
    plan: &[(TopicPartition, i64)],
) -> std::io::Result<()> {
    let g = group.len().max(15);
    let t = plan
        .iter()
        .map(|(tp, _)| tp.topic.len())
        .fold(15, usize::max);
    writeln!(
        out,
        "{:<g$} {:<t$} {:<10} NEW-OFFSET",
        "GROUP", "TOPIC", "PARTITION"
    )?;
    for (tp, o) in plan {
        writeln!(out, "{group:<g$} {:<t$} {:<10} {o}", tp.topic, tp.partition)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn new_offsets_stay_within_the_partition_with_kafkas_warning() {
        let tp = TopicPartition::new("t", 0);
        let p = PartitionInfo {
            partition: 0,
            start_offset: 10,
            end_offset: 50,
            leader: Some(0),
            replicas: vec![0],
        };
        assert_eq!(
            Target::Earliest.new_offset(&tp, &p, Some(30)).unwrap(),
            (10, None)
        );
        assert_eq!(
            Target::Latest.new_offset(&tp, &p, None).unwrap(),
            (50, None)
        );
        assert_eq!(
            Target::Offset(20).new_offset(&tp, &p, None).unwrap(),
            (20, None)
        );
        let (o, w) = Target::Offset(99).new_offset(&tp, &p, None).unwrap();
        assert_eq!(o, 50);
        assert_eq!(
            w.as_deref(),
            Some(
                "New offset (99) is higher than latest offset for topic partition t-0. Value will be set to 50."
            )
        );
        assert_eq!(
            Target::ShiftBy(-5).new_offset(&tp, &p, Some(30)).unwrap(),
            (25, None)
        );
        let (o, w) = Target::ShiftBy(-25).new_offset(&tp, &p, Some(30)).unwrap();
        assert_eq!(o, 10);
        assert!(w.unwrap().contains("lower than earliest offset"));
        let e = Target::ShiftBy(1).new_offset(&tp, &p, None).unwrap_err();
        assert!(e.to_string().contains("no current committed offset"), "{e}");
    }
}
