//! `millrace groups list|describe|reset-offsets|delete`: Kafka's `kafka-consumer-groups`
//! on either backend. Tables have its columns and widths, so its output and ours
//! compare row by row; refusals use its words. Where it differs: `describe` starts each
//! group with its state line (Kafka's `--describe --state` view) and lists members
//! without partitions too, and `reset-offsets` takes one `--topic`.
//!
//! - `mod.rs` (here): the commands, and what they say about a group that is not there.
//! - `table`: `describe`'s tables (and the lag `status` shows).
//! - `reset`: `reset-offsets`: where each partition goes, the dry run, the refusal.

mod reset;
mod table;

use std::io::Write;

use millrace_broker::{Broker, BrokerError, GroupDescription, GroupState};
use millrace_pipeline::diagnostics::{count, did_you_mean};

use crate::args::GroupsCommand;
use crate::report::{hinted, note};

pub use table::{AT_ONCE, EndOffsets, total_lag};

pub async fn run(broker: &dyn Broker, cmd: GroupsCommand) -> anyhow::Result<()> {
    match cmd {
        GroupsCommand::List { state } => list(broker, state.as_deref()).await,
        GroupsCommand::Describe { group } => describe(broker, group.as_deref()).await,
        GroupsCommand::ResetOffsets(args) => reset::reset_offsets(broker, &args).await,
        GroupsCommand::Delete { group } => delete(broker, &group).await,
    }
}

/// Names only; with `--state`, a GROUP STATE table of the groups in the given states
/// (all without a value), as `kafka-consumer-groups --list --state` prints it.
async fn list(broker: &dyn Broker, state: Option<&str>) -> anyhow::Result<()> {
    let groups = broker.list_groups().await?;
    let mut out = crate::report::stdout();
    let Some(state) = state else {
        for g in groups {
            writeln!(out, "{}", g.group)?;
        }
        return Ok(());
    };
    let wanted = parse_states(state)?;
    let shown: Vec<_> = groups
        .into_iter()
        .filter(|g| wanted.is_empty() || wanted.contains(&g.state))
        .collect();
    let width = shown
        .iter()
        .map(|g| g.group.len().max(15))
        .max()
        .unwrap_or(15)
        + 10;
    let line = |group: &str, state: &str| format!("{group:<width$} {state:<20}");
    writeln!(out, "{}", line("GROUP", "STATE").trim_end())?;
    for g in &shown {
        writeln!(out, "{}", line(&g.group, g.state.name()).trim_end())?;
    }
    Ok(())
}

/// `Stable,Empty` to states; empty for none given.
fn parse_states(list: &str) -> anyhow::Result<Vec<GroupState>> {
    let mut states = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match GroupState::parse(name) {
            GroupState::Unknown => {
                let valid: Vec<&str> = GroupState::ALL.iter().map(|s| s.name()).collect();
                let hint = match did_you_mean(name, valid.iter().copied()) {
                    Some(close) => format!("did you mean {close}? valid: {}", valid.join(", ")),
                    None => format!("valid: {}", valid.join(", ")),
                };
                return Err(hinted(
                    format!("--state: unknown group state '{name}'"),
                    hint,
                ));
            }
            s => states.push(s),
        }
    }
    Ok(states)
}

/// The group, or an error that names the group closest to the name.
async fn existing_group(broker: &dyn Broker, group: &str) -> anyhow::Result<GroupDescription> {
    match broker.describe_group(group).await {
        Ok(d) => Ok(d),
        Err(BrokerError::UnknownGroup(_)) => Err(unknown_group(broker, group).await),
        Err(e) => Err(e.into()),
    }
}

/// The existing group whose name is closest to `group`, if one is a likely typo.
pub(super) async fn closest_group(broker: &dyn Broker, group: &str) -> Option<String> {
    let names: Vec<String> = broker
        .list_groups()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.group)
        .collect();
    did_you_mean(group, names.iter().map(String::as_str)).map(str::to_string)
}

async fn unknown_group(broker: &dyn Broker, group: &str) -> anyhow::Error {
    let hint = match closest_group(broker, group).await {
        Some(close) => format!("did you mean '{close}'?"),
        None => "`millrace groups list` shows the groups there are".to_string(),
    };
    hinted(format!("consumer group '{group}' does not exist"), hint)
}

async fn describe(broker: &dyn Broker, group: Option<&str>) -> anyhow::Result<()> {
    let descriptions = match group {
        Some(g) => vec![existing_group(broker, g).await?],
        None => broker.describe_groups().await?,
    };
    let mut ends = EndOffsets::default();
    ends.fetch(broker, &descriptions).await?;
    let mut out = crate::report::stdout();
    for (i, d) in descriptions.iter().enumerate() {
        match d.state {
            GroupState::Empty => note!("\nConsumer group '{}' has no active members.", d.group),
            GroupState::PreparingRebalance | GroupState::CompletingRebalance => {
                note!("\nWarning: Consumer group '{}' is rebalancing.", d.group);
            }
            _ => {}
        }
        if i > 0 {
            writeln!(out)?;
        }
        table::write_group(&mut out, d, &ends)?;
    }
    Ok(())
}

async fn delete(broker: &dyn Broker, group: &str) -> anyhow::Result<()> {
    match broker.delete_group(group).await {
        Ok(()) => {
            writeln!(
                crate::report::stdout(),
                "Deletion of requested consumer groups ('{group}') was successful."
            )?;
            Ok(())
        }
        Err(BrokerError::UnknownGroup(_)) => Err(unknown_group(broker, group).await),
        Err(BrokerError::GroupNotEmpty { state, .. }) => {
            let members = match broker.describe_group(group).await {
                Ok(d) => format!(", {}", count(d.members.len(), "member")),
                Err(_) => String::new(),
            };
            Err(hinted(
                format!(
                    "consumer group '{group}' could not be deleted: The group is not empty (state {state}{members})."
                ),
                format!(
                    "stop the group's consumers first; `millrace groups describe --group {group}` shows them"
                ),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_in_any_case_and_unknown_ones_are_refused() {
        assert_eq!(parse_states("").unwrap(), vec![]);
        assert_eq!(
            parse_states("stable, Empty").unwrap(),
            vec![GroupState::Stable, GroupState::Empty]
        );
        let e = parse_states("Stabel").unwrap_err();
        assert!(
            e.to_string().contains("unknown group state 'Stabel'"),
            "{e}"
        );
    }
}
