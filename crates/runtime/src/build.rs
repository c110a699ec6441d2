//! Turns a validated `Plan` into stages ready to run.

use std::collections::HashMap;

use millrace_pipeline::{JoinMode, Plan, Stage, StageKind};

use crate::coordinated::combine::Combiner;
use crate::coordinated::join::{Barrier, KeyJoin, Zip};
use crate::coordinated::reduce::Reduce;
use crate::error::RuntimeError;
use crate::exec::{ExecConfig, WorkerPool};
use crate::operator::{Operator, PerRecord};
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

fn output_index(stage: &Stage, topic: &str) -> Result<usize, RuntimeError> {
    stage
        .outputs
        .iter()
        .position(|t| t == topic)
        .ok_or_else(|| RuntimeError::Stage {
            stage: stage.name.clone(),
            message: format!("writes '{topic}', which is not among its outputs"),
        })
}

fn logic(s: &Stage) -> Result<StageLogic, RuntimeError> {
    let format = s.format;
    Ok(match &s.kind {
        StageKind::Join(j) => StageLogic::Coordinated(match j.mode {
            JoinMode::Barrier => Box::new(Barrier::new(j.combine, String::new(), 1)),
            JoinMode::Zip => Box::new(Zip::new(s.inputs.clone(), format)),
            JoinMode::Key => {
                let key = j.key.clone().ok_or_else(|| RuntimeError::Stage {
                    stage: s.name.clone(),
                    message: "a key join needs `key`".into(),
                })?;
                Box::new(KeyJoin::new(s.inputs.clone(), key, j.timeout, format))
            }
        }),
        StageKind::Reduce(r) => StageLogic::Coordinated(Box::new(Reduce::new(
            r.group_by.clone(),
            r.reducer.clone(),
            r.of.clone(),
            r.emit,
            format,
        ))),
        StageKind::Map { mapper } if s.combine.is_some() => {
            let map = map::Map::new(mapper.clone(), format);
            let c = s.combine.as_ref().ok_or_else(|| RuntimeError::Stage {
                stage: s.name.clone(),
                message: "no combiner".into(),
            })?;
            StageLogic::Coordinated(Box::new(Combiner::new(map, c)))
        }
        _ => StageLogic::Event(operator(s)?),
    })
}

fn operator(s: &Stage) -> Result<Box<dyn Operator>, RuntimeError> {
    let format = s.format;
    Ok(match &s.kind {
        StageKind::Copier => Box::new(PerRecord(copier::Copier {
            outputs: s.outputs.len(),
        })),
        StageKind::Merger => Box::new(PerRecord(merger::Merger)),
        StageKind::Filter { predicate } => {
            Box::new(PerRecord(filter::Filter::new(predicate.clone(), format)))
        }
        StageKind::Map { mapper } => Box::new(PerRecord(map::Map::new(mapper.clone(), format))),
        StageKind::Splitter {
            mode,
            routes,
            default,
        } => {
            let mut rs = Vec::new();
            for r in routes {
                rs.push(splitter::Route {
                    when: r.when.clone(),
                    output: output_index(s, &r.to)?,
                });
            }
            Box::new(PerRecord(splitter::Splitter::new(
                rs,
                output_index(s, default)?,
                *mode,
                format,
            )))
        }
        StageKind::Sharder(sh) => {
            let target = match &sh.target {
                millrace_pipeline::ShardTarget::Topics(ts) => {
                    // Shard i must be outputs[i]; the plan lists shards in order.
                    for (i, t) in ts.iter().enumerate() {
                        if output_index(s, t)? != i {
                            return Err(RuntimeError::Stage {
                                stage: s.name.clone(),
                                message: "shard topics out of order".into(),
                            });
                        }
                    }
                    sharder::Target::Outputs(u32::try_from(ts.len()).unwrap_or(1))
                }
                millrace_pipeline::ShardTarget::Named { shards, default } => {
                    let mut map = HashMap::new();
                    for (k, t) in shards {
                        map.insert(k.as_bytes().to_vec(), output_index(s, t)?);
                    }
                    sharder::Target::Named {
                        shards: map,
                        default: default.as_deref().map(|d| output_index(s, d)).transpose()?,
                    }
                }
                millrace_pipeline::ShardTarget::Partitions { count, .. } => {
                    sharder::Target::Partitions(*count)
                }
            };
            Box::new(PerRecord(sharder::Sharder::new(
                sh.by.clone(),
                target,
                format,
            )))
        }
        StageKind::Exec(e) => {
            let mut cfg = ExecConfig::new(e.command.clone());
            cfg.workers = usize::try_from(e.workers).unwrap_or(1).max(1);
            cfg.timeout = e.timeout;
            cfg.retries = e.retries;
            cfg.env = e.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let pool = WorkerPool::start(cfg).map_err(|err| RuntimeError::Stage {
                stage: s.name.clone(),
                message: err.to_string(),
            })?;
            Box::new(exec::Exec {
                pool: Some(pool),
                ordered_by_key: e.ordered_by_key,
                format,
            })
        }
        StageKind::Join(_) | StageKind::Reduce(_) => {
            return Err(RuntimeError::Stage {
                stage: s.name.clone(),
                message: format!(
                    "the {} pattern is not available in this build yet",
                    s.kind.name()
                ),
            });
        }
        #[allow(unreachable_patterns)]
        _ => {
            return Err(RuntimeError::Stage {
                stage: s.name.clone(),
                message: format!("unknown pattern {}", s.kind.name()),
            });
        }
    })
}
