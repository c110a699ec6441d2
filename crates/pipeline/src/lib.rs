//! millrace-pipeline: the pipeline file, the planner that validates it, the jq
//! expressions its stages evaluate, and drawings of the resulting DAG.
//!
//! # Layout
//!
//! - [`yaml`]: the pipeline file as YAML: a tree of nodes with their line:column, and
//!   the reader that takes them as the file's types, collecting every problem.
//! - [`spec`]: what the file says, typed: `spec::read` walks the tree, reporting every
//!   unknown field, wrong type and missing field at once.
//! - [`patterns`]: the stage kinds, one module each (`copier`, `filter`, `splitter`,
//!   `sharder`, `merger`, `map`, `exec`, `join`, `reduce`): a kind's fields, how they are
//!   read and checked, what the plan carries for it and how it is planned.
//! - [`planner`]: checks the whole pipeline (topics, cycles, partition counts,
//!   expressions) and resolves it into a [`Plan`]; entry points [`load`] and [`parse_str`].
//! - [`plan`]: the validated DAG the runtime consumes: topics, stages in topological
//!   order, each with its pattern ([`StageKind`]) and compiled logic.
//! - [`expr`]: jq expressions ([`Expr`]) with the record variables (`$key`, `$headers`,
//!   `$topic`, `$partition`, `$offset`, `$timestamp`), value parsing, and the stage
//!   logic compiled for the fastest tier that runs it (native, projection, jaq).
//! - [`builder`]: the same pipelines built in Rust, with closures as stage logic.
//! - [`graph`]: Mermaid, Graphviz dot and JSON drawings of a plan.
//! - [`diagnostics`]: errors and warnings with file:line:col and a hint.
//!
//! The file format is documented in `docs/pipeline-file.md`; CONTRIBUTING.md says how
//! to add a stage kind.

pub mod builder;
pub mod diagnostics;
pub mod expr;
pub mod graph;
pub mod patterns;
pub mod plan;
pub mod planner;
mod regex_cache;
pub mod spec;
pub mod yaml;

pub use builder::{Pipeline, PipelineBuilder};
pub use diagnostics::{Diagnostic, Diagnostics, Severity};
pub use expr::{Expr, ExprError, Format, RecordVars, Val, parse_value};
pub use graph::{to_dot, to_json, to_mermaid};
pub use plan::{
    Backend, BatchPolicy, Combine, Emit, Exec, Join, JoinMode, Mapper, Plan, Predicate, Reduce,
    Reducer, Route, Selector, ShardTarget, Sharder, SplitMode, Stage, StageKind, Topic,
};
pub use planner::{load, parse_str};
