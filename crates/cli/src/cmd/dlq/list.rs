//! `millrace dlq list [FILE] [--stage S] [--error TEXT] [--json]`: the dead letters
//! grouped by stage and error, with counts, first and last seen and a sample value;
//! with a pipeline file, how many of each were redriven already and the command that
//! redrives the rest.

use std::io::Write;

use millrace_pipeline::Plan;

use super::summary::{Group, Summary};
use super::{Target, read, redrive, refusal, shell_word};
use crate::args::DlqSelect;

pub(super) async fn run(t: &Target, select: &DlqSelect, json: bool) -> anyhow::Result<()> {
    let redriven = match &t.plan {
        Some(plan) => Some(redrive::Redriven::read(t.broker.as_ref(), plan, &t.topic).await?),
        None => None,
    };
    let mut summary = Summary::new(&t.topic, redriven);
    let exists = read::read_topic(t.broker.as_ref(), &t.topic, |rec| {
        if select.matches(&rec) {
            summary.add(&rec);
        }
        Ok(true)
    })
    .await?;
    let order: Vec<String> = t
        .plan
        .as_ref()
        .map(|p| p.stages.iter().map(|s| s.name.clone()).collect())
        .unwrap_or_default();
    let groups = summary.groups(&order);
    let mut out = std::io::stdout().lock();
    if json {
        for g in groups {
            serde_json::to_writer(&mut out, g)?;
            out.write_all(b"\n")?;
        }
        return Ok(out.flush()?);
    }
    if !exists {
        writeln!(
            out,
            "{}: no such topic (nothing was dead-lettered yet)",
            t.topic
        )?;
        return Ok(out.flush()?);
    }
    let n = summary.records;
    writeln!(
        out,
        "{}: {n} dead letter{}",
        t.topic,
        if n == 1 { "" } else { "s" }
    )?;
    let mut stage: Option<Option<&str>> = None;
    for g in &groups {
        if stage != Some(g.stage.as_deref()) {
            stage = Some(g.stage.as_deref());
            writeln!(out)?;
            let of_stage: u64 = groups
                .iter()
                .filter(|o| o.stage == g.stage)
                .map(|o| o.records)
                .sum();
            writeln!(out, "{} — {of_stage}", stage_title(g, t.plan.as_ref()))?;
        }
        print_group(&mut out, g)?;
    }
    if let Some(plan) = &t.plan {
        for s in &plan.stages {
            let of_stage = || {
                groups
                    .iter()
                    .filter(|g| g.stage.as_deref() == Some(&s.name))
            };
            let waiting: u64 = of_stage()
                .map(|g| g.records - g.redriven.unwrap_or(0))
                .sum();
            if of_stage().next().is_none() {
                continue;
            }
            writeln!(out)?;
            match refusal(plan, &s.name, &file_name(t)) {
                Some(why) => writeln!(out, "{}: {why}", s.name)?,
                None if waiting == 0 => {
                    writeln!(out, "{}: every dead letter was redriven", s.name)?
                }
                None => writeln!(
                    out,
                    "send {}'s {waiting} not redriven yet back: millrace dlq redrive {} --stage {}",
                    s.name,
                    shell_word(&file_name(t)),
                    shell_word(&s.name)
                )?,
            }
        }
    }
    Ok(out.flush()?)
}

fn print_group(out: &mut impl Write, g: &Group) -> std::io::Result<()> {
    writeln!(out, "  {:>6}  {}", g.records, one_line(&g.error, 200))?;
    for (word, seen) in [("first", &g.first), ("last", &g.last)] {
        let source = seen
            .source
            .as_ref()
            .map(|s| format!("source {}/{}#{}", s.topic, s.partition, s.offset))
            .unwrap_or_else(|| "no source".into());
        writeln!(
            out,
            "          {word:<5} {}  {source}  (dead letter {}#{})",
            seen.time, seen.partition, seen.offset
        )?;
    }
    let sample = match &g.sample {
        serde_json::Value::String(s) => one_line(s, 120),
        other => one_line(&other.to_string(), 120),
    };
    writeln!(out, "          sample {sample}")?;
    if let Some(r) = g.redriven {
        writeln!(out, "          redriven {r} of {}", g.records)?;
    }
    Ok(())
}

/// A group's stage as a heading: its name and pattern, or what is odd about it.
fn stage_title(g: &Group, plan: Option<&Plan>) -> String {
    match (&g.stage, plan) {
        (None, _) => "records that name no stage (not written by a stage)".into(),
        (Some(s), None) => format!("stage {s}"),
        (Some(s), Some(p)) => match p.stage(s) {
            Some(st) => format!("stage {s} ({})", st.kind.name()),
            None => format!("stage {s} (pipeline {} has no such stage)", p.name),
        },
    }
}

/// The pipeline file as the user gave it.
fn file_name(t: &Target) -> String {
    t.file
        .as_ref()
        .map_or_else(|| "FILE".into(), |f| f.display().to_string())
}

/// Text on one line, cut to `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}
