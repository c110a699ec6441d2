//! millrace-runtime: the batch patterns as running stages.
//!
//! Layout:
//! - `runtime`: runs a pipeline — creates its topics, one task per stage, `--batch`.
//! - `task`: the stage task: read, process, produce, wait for durability, commit.
//! - `operator`: what a pattern is (`Operator`) and what it returns per record.
//! - `patterns/`: copier, filter, splitter, sharder, merger, map — one file each.
//! - `coordinated/`: join (barrier, key, zip) and reduce, and their task, which holds
//!   records until their batch is complete.
//! - `exec/`: the exec pattern's worker processes (work queue, multi-worker).
//! - `batch`: completion of a `--batch` run across stages.
//! - `build`: turns a validated `Plan` into stages.
//! - `lineage`: idempotent outputs — replays after a crash or a rebalance skip what
//!   was already written.
//! - `counters`: per-stage counters that obey conservation.
//! - `dead_letter`: the dead-letter record and its headers.
//! - `redrive`: dead letters sent back to the stage that failed them — the redrive
//!   topic's records and headers.
//! - `error`: `RuntimeError`.

pub mod batch;
pub mod build;
pub mod coordinated;
pub mod counters;
pub mod dead_letter;
pub mod error;
pub mod exec;
pub mod lineage;
pub mod operator;
pub mod patterns;
pub mod redrive;
pub mod runtime;
pub mod task;

pub use error::RuntimeError;
pub use runtime::{
    RunOptions, RunSpec, RunState, RunSummary, Runtime, StageDef, StageLogic, TopicDef,
};
