//! Turns a validated `Plan` into stages ready to run: each stage's kind picks its
//! pattern's constructor.

use millrace_pipeline::{Plan, Stage, StageKind};

use crate::coordinated::combine::Combiner;
use crate::coordinated::join;
use crate::coordinated::reduce::Reduce;
use crate::error::{RuntimeError, SetupError};
use crate::operator::{PerRecord, RecordOperator};
use crate::patterns::{copier, exec, filter, map, merger, sharder, splitter};
use crate::runtime::{RunSpec, StageDef, StageLogic, TopicDef};

/// Builds every stage of the plan. Exec stages start their worker processes here, so
/// a worker that cannot start is reported before anything runs.
pub fn from_plan(plan: &Plan) -> Result<RunSpec, RuntimeError> {
    let mut stages = Vec::new();
    for s in &plan.stages {
        stages.push(StageDef {
            name: s.name.clone(),
            kind: s.kind.name().to_string(),
            inputs: s.inputs.clone(),
            outputs: s.outputs.clone(),
            logic: logic(s)?,
        });
    }
    Ok(RunSpec {
        pipeline: plan.name.clone(),
        batch_policy: plan.stages.iter().find_map(|s| s.batch),
        dead_letter: plan.dead_letter.clone(),
        topics: plan
            .topics
            .iter()
            .map(|t| TopicDef {
                name: t.name.clone(),
                partitions: i32::try_from(t.partitions).unwrap_or(i32::MAX),
                config: t.config.clone(),
                declared: t.declared,
            })
            .collect(),
        stages,
    })
}

/// A stage's logic: the kind's own constructor, in `patterns/` (event-driven) or
/// `coordinated/` (holds records until their batch ends).
fn logic(s: &Stage) -> Result<StageLogic, RuntimeError> {
    let format = s.format;
    Ok(match &s.kind {
        StageKind::Copier => event(copier::Copier {
            outputs: s.outputs.len(),
        }),
        StageKind::Merger => event(merger::Merger),
        StageKind::Filter { predicate } => event(filter::Filter::new(predicate.clone(), format)),
        StageKind::Splitter {
            mode,
            routes,
            default,
        } => event(splitter::Splitter::for_stage(s, *mode, routes, default)?),
        StageKind::Sharder(sh) => {
            let target = sharder::Target::of_stage(s, &sh.target)?;
            event(sharder::Sharder::new(sh.by.clone(), target, format))
        }
        StageKind::Map { mapper } => {
            let map = map::Map::new(mapper.clone(), format);
            match &s.combine {
                // The reduce downstream asked this map to combine for it.
                Some(c) => StageLogic::Coordinated(Box::new(Combiner::new(map, c))),
                None => event(map),
            }
        }
        StageKind::Exec(e) => StageLogic::Event(Box::new(exec::Exec::start(s, e)?)),
        StageKind::Join(j) => StageLogic::Coordinated(join::for_stage(s, j)?),
        StageKind::Reduce(r) => StageLogic::Coordinated(Box::new(Reduce::new(
            r.group_by.clone(),
            r.reducer.clone(),
            r.of.clone(),
            r.emit,
            format,
        ))),
        _ => {
            return Err(RuntimeError::setup(
                &s.name,
                SetupError::UnknownPattern {
                    kind: s.kind.name().to_string(),
                },
            ));
        }
    })
}

/// An event-driven stage of a pattern that looks at one record at a time.
fn event(op: impl RecordOperator + 'static) -> StageLogic {
    StageLogic::Event(Box::new(PerRecord(op)))
}
