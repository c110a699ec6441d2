//! Partition counts: resolving the topics the file does not declare, sharders that
//! write into the partitions of one topic, and co-partitioning for stages that group
//! by key.
//!
//! Rules (also in docs/pipeline-file.md):
//! - a declared topic has its `partitions` (default 1);
//! - an undeclared topic written by a sharder into its partitions has the sharder's
//!   `shards` count;
//! - any other undeclared topic gets the largest partition count among its first
//!   writer's inputs, so parallelism carries through the pipeline;
//! - the dead-letter topic, if undeclared, has 1 partition.

use std::collections::{BTreeMap, HashMap};

use super::topology::StageIo;
use crate::diagnostics::{Diagnostic, count as count_of};
use crate::plan::{JoinMode, Topic};
use crate::spec::{KindSpec, Sp, StageSpec, TopicSpec};
use crate::yaml::reader::error_at;

/// The topic a sharder writes into the partitions of, and its `shards` count if given.
fn partition_sharder(stage: &StageSpec) -> Option<(&str, Option<&Sp<u32>>)> {
    match &stage.kind {
        Some(KindSpec::Sharder(s)) => s.partitioned_topic(&stage.to, stage.to_is_list),
        _ => None,
    }
}

/// Resolve every topic's partition count, in `order` (topological), reporting
/// conflicts. Returns topics: declared in file order, then added ones.
pub fn resolve(
    declared: &[TopicSpec],
    stages: &[StageSpec],
    ios: &[StageIo],
    order: &[usize],
    dead_letter: &str,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Topic> {
    let mut topics: Vec<Topic> = declared
        .iter()
        .map(|t| Topic {
            name: t.name.value.clone(),
            partitions: t.partitions.as_ref().map_or(1, |p| p.value),
            config: t.config.clone(),
            declared: true,
        })
        .collect();
    let mut index: HashMap<String, usize> = topics
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();

    // Sharders writing partitions: check against declarations, or fix the count.
    for stage in stages {
        let Some((topic, count)) = partition_sharder(stage) else {
            continue;
        };
        let Some(count) = count else { continue };
        let (at, count) = (count.pos, count.value);
        if let Some(&i) = index.get(topic) {
            if topics[i].partitions != count {
                diags.push(
                    error_at(
                        at,
                        format!(
                            "sharder `{}` writes {} into the partitions of `{topic}`, which is declared with {}",
                            stage.name.value,
                            count_of(count, "shard"),
                            count_of(topics[i].partitions, "partition")
                        ),
                    )
                    .with_hint(format!("make them equal: `shards: {}` or `{topic}: {{partitions: {count}}}`", topics[i].partitions)),
                );
            }
        } else {
            index.insert(topic.to_owned(), topics.len());
            topics.push(Topic {
                name: topic.to_owned(),
                partitions: count,
                config: BTreeMap::new(),
                declared: false,
            });
        }
    }

    for &s in order {
        for out in &ios[s].outputs {
            if index.contains_key(&out.value) {
                continue;
            }
            let partitions = ios[s]
                .inputs
                .iter()
                .filter_map(|t| index.get(&t.value).map(|&i| topics[i].partitions))
                .max()
                .unwrap_or(1);
            index.insert(out.value.clone(), topics.len());
            topics.push(Topic {
                name: out.value.clone(),
                partitions,
                config: BTreeMap::new(),
                declared: false,
            });
        }
    }
    if !index.contains_key(dead_letter) {
        topics.push(Topic {
            name: dead_letter.to_owned(),
            partitions: 1,
            config: BTreeMap::new(),
            declared: false,
        });
    }
    topics
}

/// Conflicting writers and co-partitioning. Runs after [`resolve`].
pub fn check(stages: &[StageSpec], ios: &[StageIo], topics: &[Topic], diags: &mut Vec<Diagnostic>) {
    let partitions = |name: &str| {
        topics
            .iter()
            .find(|t| t.name == name)
            .map_or(1, |t| t.partitions)
    };

    // A sharder writing a topic's partitions owns its partitioning: nobody else may write it.
    for (i, stage) in stages.iter().enumerate() {
        let Some((topic, _)) = partition_sharder(stage) else {
            continue;
        };
        for (j, other) in stages.iter().enumerate() {
            if i == j {
                continue;
            }
            if let Some(t) = ios[j].outputs.iter().find(|t| t.value == topic) {
                diags.push(
                    error_at(
                        t.pos,
                        format!(
                            "stage `{}` writes `{topic}`, whose partitions sharder `{}` uses as shards",
                            other.name.value, stage.name.value
                        ),
                    )
                    .with_hint("records written by another stage would land in arbitrary shards; give the sharder its own topic, or merge before sharding"),
                );
            }
        }
    }

    for stage in stages {
        let grouping = match &stage.kind {
            Some(KindSpec::Join(j)) if j.mode.value == JoinMode::Key => Some("a join by key"),
            Some(KindSpec::Reduce(r)) if r.group_by.is_some() => Some("a reduce with `group_by`"),
            _ => None,
        };
        let Some(grouping) = grouping else { continue };
        let counts: Vec<(String, u32)> = stage
            .from
            .iter()
            .map(|t| (t.value.clone(), partitions(&t.value)))
            .collect();
        if counts.windows(2).any(|w| w[0].1 != w[1].1) {
            let list: Vec<String> = counts
                .iter()
                .map(|(t, p)| format!("`{t}` has {p}"))
                .collect();
            let at = stage.from.first().map_or(stage.name.pos, |t| t.pos);
            diags.push(
                error_at(
                    at,
                    format!(
                        "stage `{}` is {grouping}, so its inputs must be co-partitioned, but {}",
                        stage.name.value,
                        list.join(", ")
                    ),
                )
                .with_hint("give every input the same partition count and key them by the same key (shard them first)"),
            );
        }
        // A multi-partition input of a keyed reduce should be sharded by the same key.
        if let Some(KindSpec::Reduce(r)) = &stage.kind
            && let Some(g) = &r.group_by
        {
            for input in &stage.from {
                if partitions(&input.value) < 2 {
                    continue;
                }
                let writer_by = stages.iter().zip(ios).find_map(|(s, io)| {
                    io.outputs
                        .iter()
                        .any(|t| t.value == input.value)
                        .then_some(s)
                });
                let keyed = match writer_by.and_then(|s| s.kind.as_ref()) {
                    Some(KindSpec::Sharder(s)) => {
                        s.by.as_ref()
                            .is_some_and(|by| by.source.trim() == g.source.trim())
                    }
                    _ => false,
                };
                if !keyed {
                    let mut d = Diagnostic::warning(
                        input.pos.line,
                        input.pos.col,
                        format!(
                            "reduce `{}` groups by `{}` but `{}` ({}) is not written by a sharder with the same `by`",
                            stage.name.value,
                            g.source,
                            input.value,
                            count_of(partitions(&input.value), "partition")
                        ),
                    )
                    .with_hint("a group split over partitions yields one partial result per partition; shard by the group key first");
                    d.offset = input.pos.byte;
                    diags.push(d);
                }
            }
        }
    }
}
