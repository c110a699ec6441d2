//! The planner: reads a pipeline file, checks the whole pipeline, and resolves it into
//! a [`Plan`]. Every problem is reported at once; a file with any error yields no plan.
//!
//! Passes, each collecting diagnostics:
//! 1. YAML syntax ([`crate::yaml::node`]); nothing else can run without a tree.
//! 2. Fields and types of every part ([`crate::spec::read`]).
//! 3. The graph ([`topology`]): unknown input topics, repeated topics, cycles, order.
//! 4. Partitions ([`partitions`]): undeclared topics, sharder counts, co-partitioning.
//! 5. Batches ([`batches`]): `batch:` on a stage reading a source; a reduce or barrier
//!    join that a continuous run would never release (a warning).
//! 6. Stages ([`stages`]): each kind plans itself ([`crate::patterns`]), its jq
//!    expressions compiled with errors placed inside them.

use std::path::Path;
use std::sync::Arc;

use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::plan::{Backend, Plan, Stage};
use crate::spec::read::read_pipeline;
use crate::spec::{BackendSpec, KindSpec};
use crate::yaml::node;
use crate::yaml::reader::error_at;

pub mod batches;
pub mod combine;
pub mod partitions;
pub mod stages;
pub mod topology;

/// Read and plan a pipeline file.
pub fn load(path: &Path) -> Result<Plan, Diagnostics> {
    let file_name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(src) => parse_str(&src, &file_name),
            Err(e) => {
                // Point at the first byte that is not UTF-8, as every other error does.
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
                let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let col = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
                let mut d = Diagnostics::new(file_name);
                d.push(Diagnostic::error(
                    u32::try_from(line).unwrap_or(u32::MAX),
                    u32::try_from(col).unwrap_or(u32::MAX),
                    "the pipeline file is not UTF-8 text (invalid byte here)".to_string(),
                ));
                Err(d)
            }
        },
        Err(e) => {
            let mut d = Diagnostics::new(file_name);
            d.push(Diagnostic::error(
                0,
                0,
                format!("cannot read the pipeline file: {e}"),
            ));
            Err(d)
        }
    }
}

/// Plan a pipeline from its text; `file_name` is only used in messages.
pub fn parse_str(src: &str, file_name: &str) -> Result<Plan, Diagnostics> {
    let mut items = Vec::new();
    let plan = plan(src, &mut items);
    let mut diags = Diagnostics::new(file_name);
    diags.source = Some(Arc::from(src));
    diags.items = items;
    diags.sort();
    match plan {
        Some(mut plan) if !diags.has_errors() => {
            plan.warnings = diags.items;
            Ok(plan)
        }
        _ => Err(diags),
    }
}

fn plan(src: &str, diags: &mut Vec<Diagnostic>) -> Option<Plan> {
    let root = match node::parse_yaml(src) {
        Ok(root) => root,
        Err((pos, msg)) => {
            diags.push(
                error_at(pos, format!("invalid YAML: {}", strip_location(&msg)))
                    .with_hint("check indentation and quoting; quote jq expressions with '…'"),
            );
            return None;
        }
    };
    let spec = read_pipeline(&root, diags);
    let name = spec
        .name
        .as_ref()
        .map_or("pipeline", |n| n.value.as_str())
        .to_owned();
    let dead_letter = spec
        .dead_letter
        .as_ref()
        .map_or_else(|| format!("{name}.dlq"), |d| d.value.clone());

    let ios: Vec<_> = spec.stages.iter().map(topology::stage_io).collect();
    for s in &spec.stages {
        topology::check_repeated_outputs(s, diags);
    }
    topology::check_inputs_exist(&spec.stages, &ios, &spec.topics, &dead_letter, diags);
    let order = topology::order(&spec.stages, &ios, diags);
    // Without an order (a cycle), partitions still resolve in file order for checks.
    let resolve_order: Vec<usize> = order
        .clone()
        .unwrap_or_else(|| (0..spec.stages.len()).collect());
    let topics = partitions::resolve(
        &spec.topics,
        &spec.stages,
        &ios,
        &resolve_order,
        &dead_letter,
        diags,
    );
    partitions::check(&spec.stages, &ios, &topics, diags);
    let partitions_of = |t: &str| {
        topics
            .iter()
            .find(|x| x.name == t)
            .map_or(1, |x| x.partitions)
    };

    batches::check_placement(&spec.stages, &ios, diags);
    batches::warn_unreleased(&spec.stages, &ios, diags);

    // Declared topics nothing uses are probably leftovers.
    for t in &spec.topics {
        let used = ios.iter().any(|io| {
            io.inputs
                .iter()
                .chain(&io.outputs)
                .any(|x| x.value == t.name.value)
        });
        if !used && t.name.value != dead_letter {
            let mut d = Diagnostic::warning(
                t.name.pos.line,
                t.name.pos.col,
                format!(
                    "topic `{}` is declared but no stage reads or writes it",
                    t.name.value
                ),
            )
            .with_hint("remove it, or connect it to a stage");
            d.offset = t.name.pos.byte;
            diags.push(d);
        }
    }

    let mut stages = Vec::with_capacity(spec.stages.len());
    for (s, io) in spec.stages.iter().zip(&ios) {
        let kind = stages::build_kind(src, s, &partitions_of, diags);
        stages.push(kind.map(|kind| Stage {
            name: s.name.value.clone(),
            kind,
            inputs: io.inputs.iter().map(|t| t.value.clone()).collect(),
            outputs: io.outputs.iter().map(|t| t.value.clone()).collect(),
            format: s.format,
            batch: s.batch.as_ref().map(|b| b.value),
            combine: None,
        }));
    }
    let order = order?;
    let mut stages: Vec<Option<Stage>> = stages;
    let mut stages = order
        .iter()
        .map(|&i| stages[i].take())
        .collect::<Option<Vec<_>>>()?;
    let combining: Vec<(String, node::Pos)> = spec
        .stages
        .iter()
        .filter_map(|s| match &s.kind {
            Some(KindSpec::Reduce(r)) => r
                .combine
                .as_ref()
                .filter(|c| c.value)
                .map(|c| (s.name.value.clone(), c.pos)),
            _ => None,
        })
        .collect();
    combine::lift(&mut stages, &combining, diags);

    let backend = match spec.backend.map(|b| b.value) {
        None | Some(BackendSpec::Embedded { data: None }) => Backend::Embedded,
        Some(BackendSpec::Embedded { data: Some(d) }) => Backend::EmbeddedAt { data: d.into() },
        Some(BackendSpec::Kafka {
            bootstrap,
            properties,
        }) => Backend::Kafka {
            bootstrap,
            properties,
        },
    };
    spec.name.as_ref()?;
    Some(Plan {
        name,
        backend,
        dead_letter,
        topics,
        stages,
        warnings: Vec::new(),
    })
}

/// serde-saphyr appends " at line L, column C"; we print the place ourselves.
fn strip_location(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

#[cfg(test)]
mod tests;
