//! Pipelines built in Rust: the same patterns as the file, with closures (or jq) as
//! stage logic. `build()` runs the planner's graph checks (unknown topics, cycles,
//! partition resolution, topological order) and returns the same [`Plan`].
//!
//! ```
//! use millrace_pipeline::{Pipeline, SplitMode};
//! use serde_json::{json, Value};
//!
//! let plan = Pipeline::builder("signup")
//!     .topic("signups", 3)
//!     .filter("only-eu", "signups", "signups-eu", |v: &Value| v["region"] == "eu")
//!     .map("contact", "signups-eu", "contacts", |v: &Value| {
//!         vec![json!({"user_id": v["user_id"], "email": v["email"]})]
//!     })
//!     .splitter_jq(
//!         "notify",
//!         "contacts",
//!         SplitMode::All,
//!         &[(".email != null", "notify-email")],
//!         "notify-none",
//!     )
//!     .build()
//!     .expect("valid pipeline");
//!
//! assert_eq!(plan.stages.len(), 3);
//! // Undeclared outputs take their writer's input partitions.
//! assert_eq!(plan.topic("contacts").map(|t| t.partitions), Some(3));
//! assert_eq!(plan.sinks().len(), 2);
//! ```
//!
//! Mistakes come back as the same diagnostics the file gets (without a line:col):
//!
//! ```
//! use millrace_pipeline::Pipeline;
//!
//! let err = Pipeline::builder("p")
//!     .topic("a", 1)
//!     .copier("loop", "a", &["b"])
//!     .copier("back", "b", &["a"])
//!     .filter_jq("bad", "a", "c", ".x ==")
//!     .build()
//!     .expect_err("a cycle and a bad expression");
//! let text = err.to_string();
//! assert!(text.contains("cycle: stage loop → topic b → stage back → topic a → stage loop"), "{text}");
//! assert!(text.contains("does not compile"), "{text}");
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::expr::{Expr, Format};
use crate::plan::{
    Backend, Exec, Join, JoinMode, Mapper, Plan, Predicate, Reduce, Reducer, Route, Selector,
    ShardTarget, Sharder, SplitMode, Stage, StageKind,
};
use crate::planner::{partitions, topology};
use crate::spec::{Pos, Sp, StageSpec, TopicSpec};

/// Entry point: `Pipeline::builder("name")`.
pub struct Pipeline;

impl Pipeline {
    pub fn builder(name: &str) -> PipelineBuilder {
        PipelineBuilder {
            name: name.to_owned(),
            backend: Backend::Embedded,
            dead_letter: None,
            topics: Vec::new(),
            stages: Vec::new(),
            errors: Vec::new(),
        }
    }
}

pub struct PipelineBuilder {
    name: String,
    backend: Backend,
    dead_letter: Option<String>,
    topics: Vec<TopicSpec>,
    stages: Vec<Stage>,
    errors: Vec<Diagnostic>,
}

fn sp(s: &str) -> Sp<String> {
    Sp {
        value: s.to_owned(),
        pos: Pos::default(),
    }
}

fn names(ts: &[&str]) -> Vec<String> {
    ts.iter().map(|t| (*t).to_owned()).collect()
}

impl PipelineBuilder {
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The dead-letter topic (default `<pipeline>.dlq`).
    pub fn dead_letter(mut self, topic: &str) -> Self {
        self.dead_letter = Some(topic.to_owned());
        self
    }

    /// Declare a topic with its partition count.
    pub fn topic(self, name: &str, partitions: u32) -> Self {
        self.topic_with(name, partitions, BTreeMap::new())
    }

    /// Declare a topic with settings such as `durability`.
    pub fn topic_with(
        mut self,
        name: &str,
        partitions: u32,
        config: BTreeMap<String, String>,
    ) -> Self {
        self.topics.push(TopicSpec {
            name: sp(name),
            partitions: Some(Sp {
                value: partitions.max(1),
                pos: Pos::default(),
            }),
            config,
        });
        self
    }

    /// Add a fully described stage (any kind, any format or batch policy).
    pub fn stage(mut self, stage: Stage) -> Self {
        self.stages.push(stage);
        self
    }

    fn add(self, name: &str, kind: StageKind, inputs: Vec<String>, outputs: Vec<String>) -> Self {
        self.stage(Stage {
            name: name.to_owned(),
            kind,
            inputs,
            outputs,
            format: Format::Json,
            batch: None,
            combine: None,
        })
    }

    /// Compile jq for a builder method; failures are reported by `build()`.
    fn jq(&mut self, stage: &str, src: &str, extra: &[&str]) -> Option<Expr> {
        match Expr::compile_with(src, extra) {
            Ok(e) => Some(e),
            Err(errs) => {
                for e in errs {
                    self.errors.push(Diagnostic::error(
                        0,
                        0,
                        format!(
                            "expression `{src}` of stage `{stage}` does not compile at byte {}: {}",
                            e.offset, e.message
                        ),
                    ));
                }
                None
            }
        }
    }

    pub fn copier(self, name: &str, from: &str, to: &[&str]) -> Self {
        self.add(name, StageKind::Copier, vec![from.to_owned()], names(to))
    }

    pub fn merger(self, name: &str, from: &[&str], to: &str) -> Self {
        self.add(name, StageKind::Merger, names(from), vec![to.to_owned()])
    }

    pub fn filter(
        self,
        name: &str,
        from: &str,
        to: &str,
        predicate: impl Fn(&Value) -> bool + Send + Sync + 'static,
    ) -> Self {
        let predicate = Predicate::Fn(Arc::new(predicate));
        self.add(
            name,
            StageKind::Filter { predicate },
            vec![from.to_owned()],
            vec![to.to_owned()],
        )
    }

    pub fn filter_jq(mut self, name: &str, from: &str, to: &str, jq: &str) -> Self {
        match self.jq(name, jq, &[]) {
            Some(e) => {
                let kind = StageKind::Filter {
                    predicate: Predicate::Jq(e),
                };
                self.add(name, kind, vec![from.to_owned()], vec![to.to_owned()])
            }
            None => self,
        }
    }

    /// A flat map: each input value gives 0..n output values.
    pub fn map(
        self,
        name: &str,
        from: &str,
        to: &str,
        mapper: impl Fn(&Value) -> Vec<Value> + Send + Sync + 'static,
    ) -> Self {
        let mapper = Mapper::Fn(Arc::new(mapper));
        self.add(
            name,
            StageKind::Map { mapper },
            vec![from.to_owned()],
            vec![to.to_owned()],
        )
    }

    pub fn map_jq(mut self, name: &str, from: &str, to: &str, jq: &str) -> Self {
        match self.jq(name, jq, &[]) {
            Some(e) => {
                let kind = StageKind::Map {
                    mapper: Mapper::Jq(e),
                };
                self.add(name, kind, vec![from.to_owned()], vec![to.to_owned()])
            }
            None => self,
        }
    }

    /// Routes as (closure, topic) pairs, in order, and the required default.
    pub fn splitter(
        self,
        name: &str,
        from: &str,
        mode: SplitMode,
        routes: Vec<(Predicate, &str)>,
        default: &str,
    ) -> Self {
        let routes: Vec<Route> = routes
            .into_iter()
            .map(|(when, to)| Route {
                when,
                to: to.to_owned(),
            })
            .collect();
        let mut outputs: Vec<String> = routes.iter().map(|r| r.to.clone()).collect();
        outputs.push(default.to_owned());
        outputs.dedup();
        let kind = StageKind::Splitter {
            mode,
            routes,
            default: default.to_owned(),
        };
        self.add(name, kind, vec![from.to_owned()], dedup(outputs))
    }

    /// Routes as (jq condition, topic) pairs.
    pub fn splitter_jq(
        mut self,
        name: &str,
        from: &str,
        mode: SplitMode,
        routes: &[(&str, &str)],
        default: &str,
    ) -> Self {
        let mut compiled = Vec::new();
        for (when, to) in routes {
            match self.jq(name, when, &[]) {
                Some(e) => compiled.push((Predicate::Jq(e), *to)),
                None => return self,
            }
        }
        self.splitter(name, from, mode, compiled, default)
    }

    /// Shard by a closure's value over `to` topics (murmur2 of the key's bytes).
    pub fn sharder(
        self,
        name: &str,
        from: &str,
        key: impl Fn(&Value) -> Value + Send + Sync + 'static,
        to: &[&str],
    ) -> Self {
        let kind = StageKind::Sharder(Sharder {
            by: Some(Selector::Fn(Arc::new(key))),
            target: ShardTarget::Topics(names(to)),
        });
        self.add(name, kind, vec![from.to_owned()], names(to))
    }

    /// Shard by the record key over `to` topics.
    pub fn sharder_by_record_key(self, name: &str, from: &str, to: &[&str]) -> Self {
        let kind = StageKind::Sharder(Sharder {
            by: None,
            target: ShardTarget::Topics(names(to)),
        });
        self.add(name, kind, vec![from.to_owned()], names(to))
    }

    /// A worker command with the file's defaults (1 worker, 30s timeout, 3 retries).
    pub fn exec(self, name: &str, from: &str, to: &str, command: &[&str]) -> Self {
        let kind = StageKind::Exec(Exec::new(names(command)));
        self.add(name, kind, vec![from.to_owned()], vec![to.to_owned()])
    }

    /// A barrier or zip join (for a key join, build a [`Join`] and use [`Self::stage`]).
    pub fn join(self, name: &str, from: &[&str], to: &str, mode: JoinMode) -> Self {
        let kind = StageKind::Join(Join {
            mode,
            key: None,
            timeout: None,
            combine: false,
        });
        self.add(name, kind, names(from), vec![to.to_owned()])
    }

    /// A reduce grouped by a closure's value (`None`: one group per batch).
    pub fn reduce(
        self,
        name: &str,
        from: &str,
        to: &str,
        group_by: Option<Selector>,
        reducer: Reducer,
        of: Option<Selector>,
    ) -> Self {
        let kind = StageKind::Reduce(Reduce {
            group_by,
            reducer,
            of,
            emit: Default::default(),
            combine: false,
        });
        self.add(name, kind, vec![from.to_owned()], vec![to.to_owned()])
    }

    /// Check and resolve, as the planner does for files.
    pub fn build(self) -> Result<Plan, Diagnostics> {
        let mut diags = self.errors;
        let dead_letter = self
            .dead_letter
            .unwrap_or_else(|| format!("{}.dlq", self.name));
        let specs: Vec<StageSpec> = self
            .stages
            .iter()
            .map(|s| StageSpec {
                name: sp(&s.name),
                kind_name: None,
                from: s.inputs.iter().map(|t| sp(t)).collect(),
                to: s.outputs.iter().map(|t| sp(t)).collect(),
                to_is_list: true,
                format: s.format,
                batch: None,
                kind: None,
            })
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.stages {
            if !seen.insert(&s.name) {
                diags.push(Diagnostic::error(
                    0,
                    0,
                    format!("two stages are named `{}`", s.name),
                ));
            }
        }
        let ios: Vec<_> = specs.iter().map(topology::stage_io).collect();
        topology::check_inputs_exist(&specs, &ios, &self.topics, &dead_letter, &mut diags);
        let order = topology::order(&specs, &ios, &mut diags);
        let resolve_order: Vec<usize> = order.clone().unwrap_or_else(|| (0..specs.len()).collect());
        let topics = partitions::resolve(
            &self.topics,
            &specs,
            &ios,
            &resolve_order,
            &dead_letter,
            &mut diags,
        );
        let mut report = Diagnostics::new(format!("pipeline {}", self.name));
        report.items = diags;
        report.sort();
        match order {
            Some(order) if !report.has_errors() => {
                let mut stages: Vec<Option<Stage>> = self.stages.into_iter().map(Some).collect();
                let stages = order.iter().filter_map(|&i| stages[i].take()).collect();
                Ok(Plan {
                    name: self.name,
                    backend: self.backend,
                    dead_letter,
                    topics,
                    stages,
                    warnings: report.items,
                })
            }
            _ => Err(report),
        }
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|t| seen.insert(t.clone()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{RecordVars, json_to_val};
    use serde_json::json;

    #[test]
    fn closures_run_through_the_plan_logic() {
        let plan = Pipeline::builder("p")
            .topic("in", 2)
            .filter("big", "in", "big", |v: &Value| {
                v["n"].as_i64().unwrap_or(0) > 10
            })
            .sharder("shard", "big", |v: &Value| v["k"].clone(), &["s0", "s1"])
            .build()
            .expect("valid");
        let StageKind::Filter { predicate } = &plan.stages[0].kind else {
            panic!("filter")
        };
        let vars = RecordVars::default();
        assert!(
            predicate
                .test(&json_to_val(&json!({"n": 11})), &vars)
                .expect("runs")
        );
        assert!(
            !predicate
                .test(&json_to_val(&json!({"n": 1})), &vars)
                .expect("runs")
        );
        let StageKind::Sharder(s) = &plan.stages[1].kind else {
            panic!("sharder")
        };
        let key =
            s.by.as_ref()
                .map(|b| b.key(&json_to_val(&json!({"k": "eu"})), &vars));
        assert_eq!(key, Some(Ok(b"eu".to_vec())));
        assert_eq!(plan.topic("s1").map(|t| t.partitions), Some(2));
    }

    #[test]
    fn unknown_input_topic_is_an_error() {
        let err = Pipeline::builder("p")
            .copier("c", "nowhere", &["x"])
            .build()
            .expect_err("unknown");
        assert!(err.to_string().contains("reads topic `nowhere`"), "{err}");
    }
}
