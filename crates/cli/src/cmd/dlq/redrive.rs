//! `millrace dlq redrive FILE --stage S [--error TEXT] [--from-offset N] [--to-offset M]
//! [--dry-run]`: sends the chosen dead letters of stage S to the pipeline's redrive
//! topic, addressed to S alone (see `millrace_runtime::redrive`).
//!
//! What was redriven before is read from the redrive topic itself (each record names
//! its dead letter), so the same selection redriven twice sends nothing twice. A
//! failure is sent once even when it was dead-lettered twice (a stage that replays
//! its input after a crash or a rebalance writes its dead letters again): dead letters
//! of one stage, source record and previous dead letter are one failure. A dead letter
//! that cannot be sent — headers missing or unreadable, a source topic the stage does
//! not read — is left, and reported with its place and the reason.

use std::collections::HashSet;
use std::io::Write;

use anyhow::Context;
use millrace_broker::{Broker, BrokerError, ConsumedRecord, NewTopic, ProduceRecord};
use millrace_pipeline::Plan;
use millrace_runtime::dead_letter;
use millrace_runtime::redrive::{self, Failure};

use super::read::{TopicReader, read_topic};
use super::{Target, refusal, shell_word};
use crate::args::DlqSelect;

/// Records sent per produce.
const SEND_BATCH: usize = 1000;

/// What a redrive did with the dead letters it read.
#[derive(Default)]
struct Tally {
    sent: u64,
    skipped: u64,
    /// Selected but not sendable: (partition, offset, why).
    left: Vec<(i32, i64, String)>,
    /// Dead letters of other stages, not touched.
    others: u64,
    /// Of `others`, those naming a stage the pipeline does not have.
    strangers: u64,
    /// Of `skipped`, those whose failure another dead letter sent in this run carries.
    duplicates: u64,
}

/// One failure: the stage, the record it failed on, and the dead letter it was
/// redriven from before (if it was). Dead letters of one failure are copies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FailureId {
    stage: String,
    source: (String, i32, i64),
    from: Option<String>,
}

impl FailureId {
    pub fn of(rec: &ConsumedRecord, f: &Failure) -> FailureId {
        FailureId {
            stage: f.stage.clone(),
            source: (f.source_topic.clone(), f.source_partition, f.source_offset),
            from: redrive::text(&rec.headers, redrive::FROM)
                .ok()
                .map(str::to_string),
        }
    }
}

/// What was redriven before: the dead letters the redrive topic links to, and the
/// failures they carry.
#[derive(Default)]
pub struct Redriven {
    links: HashSet<String>,
    failures: HashSet<FailureId>,
}

impl Redriven {
    /// Reads the pipeline's redrive topic and, when it links to any, the dead-letter
    /// topic `dead_letter` for the failures of those dead letters.
    pub(super) async fn read(
        broker: &dyn Broker,
        plan: &Plan,
        dead_letter: &str,
    ) -> anyhow::Result<Redriven> {
        let mut r = Redriven::default();
        read_topic(broker, &redrive::topic(&plan.name), |rec| {
            if let Ok(from) = redrive::text(&rec.headers, redrive::FROM) {
                r.links.insert(from.to_string());
            }
            Ok(true)
        })
        .await?;
        if !r.links.is_empty() {
            read_topic(broker, dead_letter, |rec| {
                let link = redrive::link(dead_letter, rec.partition, rec.offset);
                if r.links.contains(&link)
                    && let Ok(f) = Failure::read(&rec.headers)
                {
                    r.failures.insert(FailureId::of(&rec, &f));
                }
                Ok(true)
            })
            .await?;
        }
        Ok(r)
    }

    /// Whether the dead letter at `link` (with the failure `id`, if readable) was
    /// redriven: itself, or a copy of it.
    pub fn contains(&self, link: &str, id: Option<&FailureId>) -> bool {
        self.links.contains(link) || id.is_some_and(|id| self.failures.contains(id))
    }
}

pub(super) async fn run(t: &Target, select: &DlqSelect, dry_run: bool) -> anyhow::Result<()> {
    let plan = t
        .plan
        .as_ref()
        .context("dlq redrive needs the pipeline file")?;
    let file = t
        .file
        .as_ref()
        .map_or_else(|| "FILE".into(), |f| f.display().to_string());
    let stages = || {
        plan.stages
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(name) = select.stage.as_deref() else {
        anyhow::bail!(
            "dlq redrive needs --stage: the stage to send the dead letters back to (pipeline {} has {})",
            plan.name,
            stages()
        );
    };
    let Some(stage) = plan.stage(name) else {
        anyhow::bail!(
            "pipeline {} has no stage '{name}'; its stages: {}",
            plan.name,
            stages()
        );
    };
    if let Some(why) = refusal(plan, name, &file) {
        anyhow::bail!("{why}");
    }
    let broker = t.broker.as_ref();
    let to = redrive::topic(&plan.name);
    if !dry_run {
        ensure_topic(broker, &to).await?;
    }
    let before = Redriven::read(broker, plan, &t.topic).await?;
    let mut sent_now: HashSet<FailureId> = HashSet::new();
    let mut tally = Tally::default();
    let mut out = std::io::stdout().lock();
    let Some(mut reader) = TopicReader::open(broker, &t.topic).await? else {
        writeln!(
            out,
            "{}: no such topic (nothing was dead-lettered yet)",
            t.topic
        )?;
        return Ok(());
    };
    let result = async {
        while let Some(batch) = reader.next().await? {
            let mut sends: Vec<ProduceRecord> = Vec::new();
            for rec in batch {
                if !select.in_range(rec.offset) {
                    continue;
                }
                let text = |n| redrive::text(&rec.headers, n);
                let error = text(dead_letter::ERROR).ok();
                let selected = match text(dead_letter::STAGE) {
                    Ok(s) if s != name => {
                        tally.others += 1;
                        tally.strangers += u64::from(plan.stage(s).is_none());
                        false
                    }
                    Ok(_) => select.error_matches(error),
                    // A record that names no stage may have been meant for this one: it
                    // is reported, unless its error says it is not selected.
                    Err(_) => error.is_none() || select.error_matches(error),
                };
                if !selected {
                    continue;
                }
                let link = redrive::link(&t.topic, rec.partition, rec.offset);
                let failure = match Failure::read(&rec.headers) {
                    Ok(f) if stage.inputs.contains(&f.source_topic) => f,
                    Ok(f) => {
                        let why = format!(
                            "its source topic '{}' is not an input of stage {name} (it reads {})",
                            f.source_topic,
                            stage.inputs.join(", ")
                        );
                        tally.left.push((rec.partition, rec.offset, why));
                        continue;
                    }
                    Err(why) => {
                        tally
                            .left
                            .push((rec.partition, rec.offset, why.to_string()));
                        continue;
                    }
                };
                let id = FailureId::of(&rec, &failure);
                if before.contains(&link, Some(&id)) {
                    tally.skipped += 1;
                    continue;
                }
                if !sent_now.insert(id) {
                    tally.skipped += 1;
                    tally.duplicates += 1;
                    continue;
                }
                tally.sent += 1;
                if dry_run {
                    writeln!(
                        out,
                        "would send {link} (source {}/{}#{}, attempts {}): {}",
                        failure.source_topic,
                        failure.source_partition,
                        failure.source_offset,
                        failure.attempts,
                        failure.error.replace('\n', " ")
                    )?;
                } else {
                    sends.push(redrive::record(&rec, &failure, &link));
                }
            }
            for chunk in sends.chunks(SEND_BATCH) {
                broker
                    .produce(&to, chunk)
                    .await
                    .with_context(|| format!("cannot send to {to}"))?;
            }
        }
        anyhow::Ok(())
    }
    .await;
    reader.close().await;
    // What was sent before an error is in the redrive topic: a rerun skips it.
    result?;
    let (send, skip, leave) = if dry_run {
        ("dry run, nothing written: would send", "skip", "leave")
    } else {
        ("sent", "skipped", "left")
    };
    writeln!(
        out,
        "redrive to stage {name} of {} through {to}: {send} {}, {skip} {} as already redriven, {leave} {}",
        plan.name,
        tally.sent,
        tally.skipped,
        tally.left.len()
    )?;
    if tally.duplicates > 0 {
        writeln!(
            out,
            "({} of the skipped are copies of a dead letter {send}: the same failure, dead-lettered again when its stage replayed its input)",
            tally.duplicates
        )?;
    }
    for (p, o, why) in &tally.left {
        writeln!(out, "left {}: {why}", redrive::link(&t.topic, *p, *o))?;
    }
    if tally.others > 0 {
        let strangers = match tally.strangers {
            0 => String::new(),
            n => format!(
                ", {n} of them naming a stage pipeline {} does not have",
                plan.name
            ),
        };
        writeln!(
            out,
            "({} dead letters of other stages not touched{strangers})",
            tally.others
        )?;
    }
    if tally.sent > 0 && !dry_run {
        writeln!(
            out,
            "check: millrace dlq list {} --stage {}",
            shell_word(&file),
            shell_word(name)
        )?;
    }
    Ok(out.flush()?)
}

/// Creates the redrive topic (one partition) unless it exists, as `millrace run` does.
async fn ensure_topic(broker: &dyn Broker, topic: &str) -> anyhow::Result<()> {
    match broker.describe_topic(topic).await {
        Ok(_) => Ok(()),
        Err(BrokerError::UnknownTopic(_)) => {
            match broker.create_topic(&NewTopic::new(topic, 1)).await {
                Ok(()) | Err(BrokerError::TopicExists(_)) => Ok(()),
                Err(e) => Err(e).with_context(|| format!("cannot create {topic}")),
            }
        }
        Err(e) => Err(e).with_context(|| format!("cannot describe {topic}")),
    }
}
