//! Where batches come from: `batch:` belongs on a stage that reads a source topic, and
//! a reduce or barrier join needs a batch to end before it emits its final results.
//! `millrace run --batch` ends one batch; a continuous run ends batches only if some
//! stage sets `batch:`. Without it such a stage would read on and never finish a batch,
//! silently: that is a warning (the file is fine for `--batch` runs).

use std::collections::BTreeSet;

use super::topology::StageIo;
use crate::diagnostics::{Diagnostic, NO_BATCH_END};
use crate::plan::JoinMode;
use crate::spec::{KindSpec, StageSpec};
use crate::yaml::reader::error_at;

/// Batch policies belong on stages that read a source (a topic no stage writes).
pub fn check_placement(stages: &[StageSpec], ios: &[StageIo], diags: &mut Vec<Diagnostic>) {
    for (stage, io) in stages.iter().zip(ios) {
        let Some(batch) = &stage.batch else { continue };
        if source_inputs(io, ios).next().is_none() {
            diags.push(
                error_at(batch.pos, format!("stage `{}` sets `batch` but reads no source topic", stage.name.value))
                    .with_hint("batches are cut where records enter the pipeline; set `batch` on the stage reading the source"),
            );
        }
    }
}

/// Warns about every reduce and barrier join when no stage sets `batch:`.
pub fn warn_unreleased(stages: &[StageSpec], ios: &[StageIo], diags: &mut Vec<Diagnostic>) {
    if stages.iter().any(|s| s.batch.is_some()) {
        return;
    }
    for (i, stage) in stages.iter().enumerate() {
        let (what, does) = match &stage.kind {
            Some(KindSpec::Reduce(_)) => ("reduce", "emits no final result"),
            Some(KindSpec::Join(j)) if j.mode.value == JoinMode::Barrier => {
                ("barrier join", "releases nothing")
            }
            _ => continue,
        };
        let readers: Vec<String> = source_readers(i, stages, ios)
            .into_iter()
            .map(|r| format!("`{}`", stages[r].name.value))
            .collect();
        let at = stage.kind_name.as_ref().map_or(stage.name.pos, |k| k.pos);
        let mut d = Diagnostic::warning(
            at.line,
            at.col,
            format!(
                "{what} `{}` never sees a batch end in a continuous run: no stage sets `batch:`, so it {does} and commits nothing",
                stage.name.value
            ),
        )
        .with_hint(format!(
            "add `batch: {{records: N}}` or `batch: {{every: 5s}}` to {} (the {} that {} the source), or run it with `millrace run --batch`",
            readers.join(" or "),
            if readers.len() == 1 { "stage" } else { "stages" },
            if readers.len() == 1 { "reads" } else { "read" },
        ))
        .with_code(NO_BATCH_END);
        d.offset = at.byte;
        diags.push(d);
    }
}

/// The inputs of `io` that no stage writes.
fn source_inputs<'a>(io: &'a StageIo, ios: &'a [StageIo]) -> impl Iterator<Item = &'a str> {
    io.inputs
        .iter()
        .map(|t| t.value.as_str())
        .filter(|t| !ios.iter().any(|o| o.outputs.iter().any(|x| x.value == *t)))
}

/// The stages upstream of `stage` (itself included) that read a source topic, in file
/// order.
fn source_readers(stage: usize, stages: &[StageSpec], ios: &[StageIo]) -> Vec<usize> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![stage];
    let mut readers = BTreeSet::new();
    while let Some(s) = todo.pop() {
        if !seen.insert(s) {
            continue;
        }
        if source_inputs(&ios[s], ios).next().is_some() {
            readers.insert(s);
        }
        for input in &ios[s].inputs {
            todo.extend(
                (0..stages.len())
                    .filter(|&w| ios[w].outputs.iter().any(|o| o.value == input.value)),
            );
        }
    }
    readers.into_iter().collect()
}
