//! `/api/dead-letters`: the dead-letter topic's records grouped by stage and error (as
//! `millrace dlq list` groups them), each stage's top errors, and the `millrace dlq
//! redrive` command that sends them back — or why its dead letters cannot be sent
//! back (join, reduce). The page's dead-letter node shows them.
//!
//! The topic is read once: a consumer outside any group stays open and each request
//! reads only what was added since, for a bounded time, so a large topic is summed up
//! over a few requests rather than read again every second.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Json;
use millrace_broker::{Broker, BrokerError, Consumer, ConsumerConfig, OffsetReset};
use serde::Serialize;

use super::AppState;
use crate::cmd::dlq::shell_word as shell;
use crate::cmd::dlq::summary::{Group, Summary};

/// Errors shown per stage.
const TOP: usize = 3;

/// How long one request reads new dead letters for at most (a Kafka consumer's first
/// fetch takes a while).
const READ_FOR: Duration = Duration::from_secs(1);

/// Characters of an error put in an `--error` selection: enough to tell errors apart.
const ERROR_CHARS: usize = 60;

/// How each stage's dead letters are redriven, as the run knows it.
#[derive(Clone, Debug, Default)]
pub struct Redrive {
    /// `millrace dlq redrive FILE` with the flags this run was given.
    pub command: String,
    /// Per stage (in the pipeline's order): why its dead letters cannot be redriven,
    /// if they cannot.
    pub stages: Vec<(String, Option<String>)>,
}

/// What has been read of the dead-letter topic.
#[derive(Default)]
pub struct Reader {
    consumer: Option<Box<dyn Consumer>>,
    summary: Summary,
    /// Per partition, the offset after the last record read.
    read_to: BTreeMap<i32, i64>,
}

impl Reader {
    /// Reads what was added since the last call, up to the end offsets now, for at
    /// most [`READ_FOR`]; returns whether it got there.
    async fn catch_up(&mut self, broker: &dyn Broker, topic: &str) -> Result<bool, BrokerError> {
        let ends: Vec<(i32, i64)> = match broker.describe_topic(topic).await {
            Ok(d) => d
                .partitions
                .iter()
                .map(|p| (p.partition, p.end_offset))
                .collect(),
            Err(BrokerError::UnknownTopic(_)) => return Ok(true),
            Err(e) => return Err(e),
        };
        let behind = |read_to: &BTreeMap<i32, i64>| {
            ends.iter()
                .any(|(p, end)| read_to.get(p).copied().unwrap_or(0) < *end)
        };
        if !behind(&self.read_to) {
            return Ok(true);
        }
        if self.consumer.is_none() {
            let mut config = ConsumerConfig::new(vec![topic.to_string()]);
            config.offset_reset = OffsetReset::Earliest;
            config
                .properties
                .insert("fetch.wait.max.ms".into(), "10".into());
            self.consumer = Some(broker.consumer(config).await?);
            self.summary = Summary::new(topic, None);
        }
        let Some(consumer) = self.consumer.as_mut() else {
            return Ok(true);
        };
        let start = Instant::now();
        while behind(&self.read_to) && start.elapsed() < READ_FOR {
            for r in consumer.poll(10_000, Duration::from_millis(20)).await? {
                let at = self.read_to.entry(r.partition).or_default();
                *at = (*at).max(r.offset + 1);
                self.summary.add(&r);
            }
        }
        Ok(!behind(&self.read_to))
    }
}

#[derive(Serialize)]
struct StageDeadLetters<'a> {
    stage: &'a str,
    records: u64,
    /// The command that redrives all of the stage's dead letters.
    command: Option<String>,
    /// Why its dead letters cannot be redriven (join, reduce), instead of a command.
    refusal: Option<&'a str>,
    top: Vec<TopError<'a>>,
    /// Distinct errors.
    errors: usize,
}

#[derive(Serialize)]
struct TopError<'a> {
    error: &'a str,
    records: u64,
    last: &'a str,
    /// The command that redrives the dead letters with this error.
    command: Option<String>,
}

pub async fn dead_letters(State(s): State<AppState>) -> Json<serde_json::Value> {
    let mut reader = s.dead_letters.lock().await;
    let read = reader
        .catch_up(s.broker.as_ref(), &s.dead_letter)
        .await
        .map_err(|e| e.to_string());
    let redrive = &s.redrive;
    let order: Vec<String> = redrive.stages.iter().map(|(n, _)| n.clone()).collect();
    let groups = reader.summary.groups(&order);
    let mut stages: Vec<StageDeadLetters> = Vec::new();
    for g in &groups {
        let Some(name) = g.stage.as_deref() else {
            continue;
        };
        if stages.last().is_none_or(|st| st.stage != name) {
            let refusal = redrive
                .stages
                .iter()
                .find(|(n, _)| n == name)
                .map_or(Some("not a stage of this pipeline"), |(_, r)| r.as_deref());
            stages.push(StageDeadLetters {
                stage: name,
                records: 0,
                command: refusal
                    .is_none()
                    .then(|| format!("{} --stage {}", redrive.command, shell(name))),
                refusal,
                top: Vec::new(),
                errors: 0,
            });
        }
        let Some(st) = stages.last_mut() else {
            continue;
        };
        st.records += g.records;
        st.errors += 1;
        if st.top.len() < TOP {
            st.top.push(top_error(g, st.command.as_deref()));
        }
    }
    let unnamed: u64 = groups
        .iter()
        .filter(|g| g.stage.is_none())
        .map(|g| g.records)
        .sum();
    Json(serde_json::json!({
        "topic": s.dead_letter,
        "records": reader.summary.records,
        // Read to the end offsets of this request: else the next one reads on.
        "complete": read.as_ref().is_ok_and(|done| *done),
        "stages": stages,
        "unnamed": unnamed,
        "error": read.err(),
    }))
}

fn top_error<'a>(g: &'a Group, command: Option<&str>) -> TopError<'a> {
    let cut: String = g.error.chars().take(ERROR_CHARS).collect();
    TopError {
        error: &g.error,
        records: g.records,
        last: &g.last.time,
        command: command.map(|c| format!("{c} --error {}", shell(&cut))),
    }
}
