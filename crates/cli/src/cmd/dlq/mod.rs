//! `millrace dlq list | show | redrive`: the dead letters of a pipeline, and sending them
//! back to the stage that failed them (see `millrace_runtime::redrive`).
//!
//! Layout:
//! - `read`: a topic read from its start to its end offsets now, outside any group.
//! - `summary`: dead letters grouped by stage and error (`list`, and the run's page).
//! - `list`, `show`, `redrive`: the three commands.

mod list;
pub mod read;
pub mod redrive;
mod show;
pub mod summary;

use std::path::Path;
use std::sync::Arc;

use millrace_broker::{Broker, ConsumedRecord};
use millrace_pipeline::{Plan, StageKind};
use millrace_runtime::dead_letter;

use crate::args::{DlqCommand, DlqSelect, Global};
use crate::connect::DataDir;

pub async fn run(g: &Global, command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List(a) => {
            let t = open(g, a.from.file.as_deref(), a.from.dead_letter_topic).await?;
            list::run(&t, &a.select, a.json).await
        }
        DlqCommand::Show(a) => {
            let t = open(g, a.from.file.as_deref(), a.from.dead_letter_topic).await?;
            show::run(&t, &a.select, a.max_messages).await
        }
        DlqCommand::Redrive(a) => {
            let t = open(g, Some(&a.file), None).await?;
            redrive::run(&t, &a.select, a.dry_run).await
        }
    }
}

/// The dead-letter topic a command reads, on its backend, and the pipeline it belongs
/// to when a file was given.
struct Target {
    broker: Arc<dyn Broker>,
    topic: String,
    plan: Option<Plan>,
    /// The pipeline file as given.
    file: Option<std::path::PathBuf>,
}

async fn open(g: &Global, file: Option<&Path>, topic: Option<String>) -> anyhow::Result<Target> {
    match (file, topic) {
        (Some(file), topic) => {
            let plan = super::graph::load(file)?;
            let (g, props) = crate::connect::for_plan(g, &plan);
            let broker =
                crate::connect::connect_with_properties(&g, props, DataDir::Existing).await?;
            Ok(Target {
                broker,
                topic: topic.unwrap_or_else(|| plan.dead_letter.clone()),
                plan: Some(plan),
                file: Some(file.to_path_buf()),
            })
        }
        (None, Some(topic)) => Ok(Target {
            broker: crate::connect::connect(g, DataDir::Existing).await?,
            topic,
            plan: None,
            file: None,
        }),
        (None, None) => anyhow::bail!(
            "which dead letters? give the pipeline file (`millrace dlq list FILE`) or the topic (`--dead-letter-topic TOPIC`)"
        ),
    }
}

impl DlqSelect {
    /// Whether a dead letter at `offset` of its partition is in the offset range.
    fn in_range(&self, offset: i64) -> bool {
        self.from_offset.is_none_or(|f| offset >= f) && self.to_offset.is_none_or(|t| offset <= t)
    }

    /// Whether `error` (a dead letter's error, when it has one) is selected.
    fn error_matches(&self, error: Option<&str>) -> bool {
        match (&self.error, error) {
            (None, _) => true,
            (Some(want), Some(e)) => e.contains(want.as_str()),
            (Some(_), None) => false,
        }
    }

    /// Whether `list` and `show` take a dead letter: its stage, error and offset as
    /// asked. A record that names no stage is taken only when no stage is asked for.
    fn matches(&self, rec: &ConsumedRecord) -> bool {
        let text = |name| millrace_runtime::redrive::text(&rec.headers, name).ok();
        self.in_range(rec.offset)
            && self
                .stage
                .as_deref()
                .is_none_or(|s| text(dead_letter::STAGE) == Some(s))
            && self.error_matches(text(dead_letter::ERROR))
    }
}

/// Why a stage's dead letters cannot be redriven to it, if they cannot: coordinated
/// stages' dead letters belong to a batch.
pub fn refusal(plan: &Plan, stage: &str, file: &str) -> Option<String> {
    let s = plan.stage(stage)?;
    let why = match &s.kind {
        StageKind::Join(_) => {
            "is a join: its dead letters are parts of a batch (a key join's parts that timed out together), and a part sent back alone would not meet the others"
        }
        StageKind::Reduce(_) => {
            "is a reduce: its results are per batch, and a record sent back alone would be counted in a later batch than its own"
        }
        StageKind::Map { .. } if s.combine.is_some() => {
            "is a combining map: it aggregates its input per batch for the reduce downstream, and a record sent back alone would be counted in a later batch than its own"
        }
        _ => return None,
    };
    Some(format!(
        "stage {stage} {why}; redrive sends dead letters to event-driven stages only. \
         Rerun the batch instead: fix the records, produce them again to the stage's input ({}) and run `millrace run {} --batch`",
        s.inputs.join(", "),
        shell_word(file)
    ))
}

/// Quoted for a POSIX shell where it needs to be (a NUL, which no argument can hold,
/// becomes a space).
pub fn shell_word(s: &str) -> String {
    let s = s.replace('\0', " ");
    shlex::try_quote(&s).map_or(s.clone(), |q| q.into_owned())
}
