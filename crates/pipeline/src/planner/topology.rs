//! The stage graph: which topics each stage reads and writes, topics nobody writes,
//! cycles (printed as their path), and the topological order.

use std::collections::{BTreeSet, HashMap};

use crate::diagnostics::{Diagnostic, did_you_mean};
use crate::spec::{Sp, StageSpec, TopicSpec};
use crate::yaml::reader::error_at;

/// A stage's topics, with the place each was named.
pub struct StageIo {
    pub inputs: Vec<Sp<String>>,
    pub outputs: Vec<Sp<String>>,
}

/// Every topic a stage may write, in a stable order and without repeats (a splitter's
/// routes then default; a sharder's `to`, named shards and default).
pub fn stage_io(stage: &StageSpec) -> StageIo {
    let mut outputs: Vec<Sp<String>> = stage.to.clone();
    if let Some(kind) = &stage.kind {
        outputs.extend(kind.named_outputs().into_iter().cloned());
    }
    let mut seen = BTreeSet::new();
    outputs.retain(|t| seen.insert(t.value.clone()));
    StageIo {
        inputs: stage.from.clone(),
        outputs,
    }
}

/// A topic written twice by one `to` list is a mistake (every record twice).
pub fn check_repeated_outputs(stage: &StageSpec, diags: &mut Vec<Diagnostic>) {
    let mut seen = BTreeSet::new();
    for t in &stage.to {
        if !seen.insert(&t.value) {
            diags.push(
                error_at(
                    t.pos,
                    format!(
                        "stage `{}` names topic `{}` twice in `to`",
                        stage.name.value, t.value
                    ),
                )
                .with_hint("every record would be written twice; name each topic once"),
            );
        }
    }
    let mut seen = BTreeSet::new();
    for t in &stage.from {
        if !seen.insert(&t.value) {
            diags.push(error_at(
                t.pos,
                format!(
                    "stage `{}` reads topic `{}` twice",
                    stage.name.value, t.value
                ),
            ));
        }
    }
}

/// Topics read by a stage must be declared or written by some stage: an undeclared
/// topic nobody writes is almost always a typo.
pub fn check_inputs_exist(
    stages: &[StageSpec],
    ios: &[StageIo],
    declared: &[TopicSpec],
    dead_letter: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let mut known: BTreeSet<&str> = declared.iter().map(|t| t.name.value.as_str()).collect();
    known.insert(dead_letter);
    for io in ios {
        known.extend(io.outputs.iter().map(|t| t.value.as_str()));
    }
    for (stage, io) in stages.iter().zip(ios) {
        for t in &io.inputs {
            if known.contains(t.value.as_str()) {
                continue;
            }
            let others = known.iter().copied().filter(|k| *k != t.value);
            let hint = match did_you_mean(&t.value, others) {
                Some(s) => format!(
                    "did you mean `{s}`? If `{}` is an input producers write, declare it under `topics:`",
                    t.value
                ),
                None => format!(
                    "declare it under `topics:` if producers write it (`{}: {{partitions: 1}}`)",
                    t.value
                ),
            };
            diags.push(
                error_at(
                    t.pos,
                    format!(
                        "stage `{}` reads topic `{}`, which no stage writes and `topics:` does not declare",
                        stage.name.value, t.value
                    ),
                )
                .with_hint(hint),
            );
        }
    }
}

/// Report every cycle (one per back edge found by a depth-first walk) as its path,
/// and return the stages in topological order (file order among independent stages).
/// On a cycle the order is `None`.
pub fn order(
    stages: &[StageSpec],
    ios: &[StageIo],
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<usize>> {
    // readers[topic] = stages reading it
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, io) in ios.iter().enumerate() {
        for t in &io.inputs {
            readers.entry(t.value.as_str()).or_default().push(i);
        }
    }
    // edges[i] = (topic, j): stage i writes topic, stage j reads it
    let edges: Vec<Vec<(&str, usize)>> = ios
        .iter()
        .map(|io| {
            io.outputs
                .iter()
                .flat_map(|t| {
                    readers
                        .get(t.value.as_str())
                        .into_iter()
                        .flatten()
                        .map(move |j| (t.value.as_str(), *j))
                })
                .collect()
        })
        .collect();

    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let n = stages.len();
    let mut mark = vec![Mark::New; n];
    let mut cyclic = false;
    // The path of (stage, topic it left by) from the walk's root to the current stage.
    let mut path: Vec<(usize, &str)> = Vec::new();
    let mut post = Vec::with_capacity(n);

    #[allow(clippy::too_many_arguments)] // a recursive walk threading its state
    fn walk<'a>(
        i: usize,
        edges: &[Vec<(&'a str, usize)>],
        stages: &[StageSpec],
        mark: &mut [Mark],
        path: &mut Vec<(usize, &'a str)>,
        post: &mut Vec<usize>,
        cyclic: &mut bool,
        diags: &mut Vec<Diagnostic>,
    ) {
        mark[i] = Mark::Open;
        for &(topic, j) in &edges[i] {
            match mark[j] {
                Mark::Done => {}
                Mark::Open => {
                    *cyclic = true;
                    let start = path.iter().position(|(s, _)| *s == j).unwrap_or(path.len());
                    let mut text = String::new();
                    for (s, t) in &path[start..] {
                        text.push_str(&format!("stage {} → topic {} → ", stages[*s].name.value, t));
                    }
                    text.push_str(&format!(
                        "stage {} → topic {topic} → stage {}",
                        stages[i].name.value, stages[j].name.value
                    ));
                    diags.push(
                        error_at(stages[j].name.pos, format!("cycle: {text}"))
                            .with_hint("a pipeline is a DAG: records must not flow back into a stage they came from; write to a new topic"),
                    );
                }
                Mark::New => {
                    path.push((i, topic));
                    walk(j, edges, stages, mark, path, post, cyclic, diags);
                    path.pop();
                }
            }
        }
        mark[i] = Mark::Done;
        post.push(i);
    }

    for i in 0..n {
        if mark[i] == Mark::New {
            walk(
                i,
                &edges,
                stages,
                &mut mark,
                &mut path,
                &mut post,
                &mut cyclic,
                diags,
            );
        }
    }
    if cyclic {
        return None;
    }
    // Kahn's algorithm picking the lowest file index first, for a stable order.
    let mut indegree = vec![0usize; n];
    for es in &edges {
        for &(_, j) in es {
            indegree[j] += 1;
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|i| indegree[*i] == 0).collect();
    let mut out = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        out.push(i);
        for &(_, j) in &edges[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    Some(out)
}
