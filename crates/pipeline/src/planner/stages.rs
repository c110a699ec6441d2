//! Turning each stage spec into a plan stage: compile its expressions and settle the
//! sharder's targets.

use super::exprs::compile;
use crate::diagnostics::Diagnostic;
use crate::plan::{
    Exec, Join, Mapper, Predicate, Reduce, Reducer, Route, Selector, ShardTarget, Sharder,
    StageKind,
};
use crate::spec::read::error_at;
use crate::spec::{ExprSrc, KindSpec, ReducerSpec, ShardsSpec, StageSpec};

/// Build the stage's kind; `None` if anything failed (reported to `diags`).
pub fn build_kind(
    file_src: &str,
    stage: &StageSpec,
    partitions_of: &dyn Fn(&str) -> u32,
    diags: &mut Vec<Diagnostic>,
) -> Option<StageKind> {
    let name = &stage.name.value;
    let kind = stage.kind.as_ref()?;
    let jq = |e: &ExprSrc, field: &str, extra: &[&str], diags: &mut Vec<Diagnostic>| {
        compile(
            file_src,
            e,
            extra,
            &format!("`{field}` of stage `{name}`"),
            diags,
        )
    };
    Some(match kind {
        KindSpec::Copier => StageKind::Copier,
        KindSpec::Merger => StageKind::Merger,
        KindSpec::Filter { where_ } => StageKind::Filter {
            predicate: Predicate::Jq(jq(where_, "where", &[], diags)?),
        },
        KindSpec::Map { expr } => StageKind::Map {
            mapper: Mapper::Jq(jq(expr, "expr", &[], diags)?),
        },
        KindSpec::Splitter {
            mode,
            routes,
            default,
        } => {
            // Compile every route before giving up, so all errors show.
            let compiled: Vec<Option<Route>> = routes
                .iter()
                .map(|r| {
                    jq(&r.when, "when", &[], diags).map(|e| Route {
                        when: Predicate::Jq(e),
                        to: r.to.value.clone(),
                    })
                })
                .collect();
            StageKind::Splitter {
                mode: *mode,
                routes: compiled.into_iter().collect::<Option<Vec<_>>>()?,
                default: default.value.clone(),
            }
        }
        KindSpec::Sharder {
            by,
            shards,
            default,
        } => {
            let by = match by {
                Some(e) => Some(Selector::Jq(jq(e, "by", &[], diags)?)),
                None => None,
            };
            let target = sharder_target(
                stage,
                shards.as_ref(),
                default.as_ref(),
                partitions_of,
                diags,
            )?;
            StageKind::Sharder(Sharder { by, target })
        }
        KindSpec::Exec {
            command,
            workers,
            timeout,
            retries,
            ordered_by_key,
            env,
        } => StageKind::Exec(Exec {
            command: command.clone(),
            workers: *workers,
            timeout: *timeout,
            retries: *retries,
            ordered_by_key: *ordered_by_key,
            env: env.clone(),
        }),
        KindSpec::Join {
            mode,
            key,
            timeout,
            combine,
        } => {
            let key = match key {
                Some(e) => Some(Selector::Jq(jq(e, "key", &[], diags)?)),
                None => None,
            };
            StageKind::Join(Join {
                mode: mode.value,
                key,
                timeout: *timeout,
                combine: *combine,
            })
        }
        KindSpec::Reduce {
            group_by,
            reducer,
            of,
            emit,
            combine,
        } => {
            let group_by = group_by.as_ref().map(|e| jq(e, "group_by", &[], diags));
            let of = of.as_ref().map(|e| jq(e, "of", &[], diags));
            let reducer = match &reducer.value {
                ReducerSpec::Count => Some(Reducer::Count),
                ReducerSpec::Sum => Some(Reducer::Sum),
                ReducerSpec::Min => Some(Reducer::Min),
                ReducerSpec::Max => Some(Reducer::Max),
                ReducerSpec::Mean => Some(Reducer::Mean),
                ReducerSpec::Histogram => Some(Reducer::Histogram),
                ReducerSpec::Collect => Some(Reducer::Collect),
                ReducerSpec::Custom {
                    init,
                    update,
                    merge,
                } => {
                    let init = jq(init, "init", &[], diags);
                    let update = jq(update, "update", &["item"], diags);
                    let merge = jq(merge, "merge", &["other"], diags);
                    Some(Reducer::Custom {
                        init: init?,
                        update: update?,
                        merge: merge?,
                    })
                }
            };
            StageKind::Reduce(Reduce {
                group_by: group_by.map(|g| g.map(Selector::Jq)).transpose_opt()?,
                reducer: reducer?,
                of: of.map(|o| o.map(Selector::Jq)).transpose_opt()?,
                emit: *emit,
                combine: combine.as_ref().is_some_and(|c| c.value),
            })
        }
    })
}

/// `Option<Option<T>>` where the inner `None` means "failed": fail the whole.
trait TransposeOpt<T> {
    fn transpose_opt(self) -> Option<Option<T>>;
}

impl<T> TransposeOpt<T> for Option<Option<T>> {
    fn transpose_opt(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(None) => None,
            Some(Some(x)) => Some(Some(x)),
        }
    }
}

fn sharder_target(
    stage: &StageSpec,
    shards: Option<&ShardsSpec>,
    default: Option<&crate::spec::Sp<String>>,
    partitions_of: &dyn Fn(&str) -> u32,
    diags: &mut Vec<Diagnostic>,
) -> Option<ShardTarget> {
    let name = &stage.name.value;
    match shards {
        Some(ShardsSpec::Named(named)) => {
            // With both, `to` lists the shard topics: each shard must go to one of them.
            let mut ok = true;
            if !stage.to.is_empty() {
                let in_to = |t: &str| stage.to.iter().any(|x| x.value == t);
                for (key, topic) in named {
                    if !in_to(&topic.value) {
                        ok = false;
                        diags.push(
                            error_at(topic.pos, format!("shard `{}` of sharder `{name}` goes to `{}`, which is not in its `to`", key.value, topic.value))
                                .with_hint("add the topic to `to`, or leave `to` out: the shards name the topics"),
                        );
                    }
                }
                for t in &stage.to {
                    let used = named.iter().any(|(_, x)| x.value == t.value)
                        || default.is_some_and(|d| d.value == t.value);
                    if !used {
                        ok = false;
                        diags.push(
                            error_at(
                                t.pos,
                                format!(
                                    "sharder `{name}` lists `{}` in `to` but no shard goes there",
                                    t.value
                                ),
                            )
                            .with_hint("name it in `shards`, or remove it from `to`"),
                        );
                    }
                }
            }
            ok.then(|| ShardTarget::Named {
                shards: named
                    .iter()
                    .map(|(k, t)| (k.value.clone(), t.value.clone()))
                    .collect(),
                default: default.map(|d| d.value.clone()),
            })
        }
        other => {
            if let Some(d) = default {
                diags.push(
                    error_at(
                        d.pos,
                        format!("`default` of sharder `{name}` only applies with named `shards`"),
                    )
                    .with_hint("hash sharding always finds a shard; remove `default`"),
                );
                return None;
            }
            if stage.to_is_list {
                if let Some(ShardsSpec::Count(c)) = other {
                    diags.push(
                        error_at(c.pos, format!("`shards: {}` of sharder `{name}` applies when `to` is one topic", c.value))
                            .with_hint("with a list, there is one shard per topic; write `to: topic` to shard into its partitions"),
                    );
                    return None;
                }
                Some(ShardTarget::Topics(
                    stage.to.iter().map(|t| t.value.clone()).collect(),
                ))
            } else {
                let topic = stage.to.first()?.value.clone();
                let count = match other {
                    Some(ShardsSpec::Count(c)) => c.value,
                    _ => partitions_of(&topic),
                };
                Some(ShardTarget::Partitions { topic, count })
            }
        }
    }
}
