//! `combine: true` on a reduce: find the map whose outputs the reduce aggregates and
//! give it the reduce's combiner (MapReduce's combiner, lifted to before the shuffle).
//!
//! The way from the map to the reduce may go through sharders, copiers and mergers,
//! which pass records on unchanged; each topic on it must be written by one stage and
//! read by the next one only (every record there is then a combined one, which only
//! the reduce knows how to read).

use crate::diagnostics::Diagnostic;
use crate::plan::{Combine, Stage, StageKind};
use crate::yaml::node::Pos;
use crate::yaml::reader::error_at;

/// Sets `combine` on the maps that combine for the reduces listed (name, where
/// `combine` is written); reports why when there is no such map.
pub fn lift(stages: &mut [Stage], reduces: &[(String, Pos)], diags: &mut Vec<Diagnostic>) {
    for (reduce, pos) in reduces {
        match find_map(stages, reduce) {
            Ok((map, combine)) => stages[map].combine = Some(combine),
            Err(why) => diags.push(
                error_at(*pos, format!("`combine` on `{reduce}`: {why}"))
                    .with_hint("combine needs a map upstream, joined to the reduce by sharders, copiers and mergers only; remove `combine` otherwise"),
            ),
        }
    }
}

fn find_map(stages: &[Stage], reduce: &str) -> Result<(usize, Combine), String> {
    let at = stages
        .iter()
        .position(|s| s.name == reduce)
        .ok_or("no such stage")?;
    let StageKind::Reduce(r) = &stages[at].kind else {
        return Err("not a reduce".into());
    };
    let mut route_by = Vec::new();
    let mut current = at;
    loop {
        let here = &stages[current];
        let [topic] = here.inputs.as_slice() else {
            return Err(format!(
                "`{}` reads {} topics; combining needs one",
                here.name,
                here.inputs.len()
            ));
        };
        let writers: Vec<usize> = (0..stages.len())
            .filter(|&i| stages[i].outputs.contains(topic))
            .collect();
        let [writer] = writers.as_slice() else {
            return Err(format!(
                "`{topic}` has {} writers in the pipeline; combining needs exactly one",
                writers.len()
            ));
        };
        if let Some(other) = stages
            .iter()
            .find(|s| s.name != here.name && s.inputs.contains(topic))
        {
            return Err(format!(
                "`{topic}` is also read by `{}`, which would see combined records",
                other.name
            ));
        }
        let w = &stages[*writer];
        if w.outputs.len() != 1 {
            return Err(format!(
                "`{}` writes {} topics; combining needs one",
                w.name,
                w.outputs.len()
            ));
        }
        if w.combine.is_some() {
            return Err(format!("`{}` already combines for another reduce", w.name));
        }
        match &w.kind {
            StageKind::Map { .. } => {
                return Ok((
                    *writer,
                    Combine {
                        reduce: reduce.to_string(),
                        group_by: r.group_by.clone(),
                        reducer: r.reducer.clone(),
                        of: r.of.clone(),
                        format: stages[at].format,
                        route_by,
                    },
                ));
            }
            StageKind::Sharder(sh) => {
                // Sharding by the group key itself adds nothing to the group key.
                let same = |by: &crate::plan::Selector| {
                    r.group_by.as_ref().and_then(|g| g.source()).is_some()
                        && r.group_by.as_ref().and_then(|g| g.source()).map(str::trim)
                            == by.source().map(str::trim)
                };
                if let Some(by) = sh.by.as_ref().filter(|by| !same(by)) {
                    route_by.push(by.clone());
                }
            }
            StageKind::Copier | StageKind::Merger => {}
            other => {
                return Err(format!(
                    "`{topic}` is written by the {} `{}`, which does more than pass records on",
                    other.name(),
                    w.name
                ));
            }
        }
        current = *writer;
    }
}
