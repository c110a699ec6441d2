//! millrace-runtime: the batch patterns as running stages.
//!
//! Layout:
//! - `runtime`: runs a pipeline — creates its topics, one task per stage, `--batch`.
//! - `engine`: what both kinds of stage task share: a stage's inputs and outputs, and
//!   the poll, produce and commit steps of its loop.
//! - `task`: the event-driven stage task: read, process, produce, wait for durability,
//!   commit.
//! - `operator`: what a pattern is (`Operator`) and what it returns per record.
//! - `build`: turns a validated `Plan` into stages, each kind by its own constructor.
//! - `patterns/`: the event-driven kinds, one file each (copier, filter, splitter,
//!   sharder, merger, map, exec).
//! - `coordinated/`: the kinds that hold records until their batch is complete —
//!   `join/` (barrier, by key, zip), `reduce` (with its accumulators), `combine` (a
//!   map pre-aggregating for a reduce) — and their task.
//! - `exec/`: the exec pattern's worker processes (work queue, multi-worker).
//! - `batch`: what a batch is: completion of a `--batch` run across stages, and the
//!   `millrace.batch` header that names a record's batch.
//! - `lineage`: idempotent outputs — replays after a crash or a rebalance skip what
//!   was already written.
//! - `counters`: per-stage counters that obey conservation.
//! - `dead_letter`: the dead-letter record and its headers.
//! - `redrive`: dead letters sent back to the stage that failed them — the redrive
//!   topic's records and headers.
//! - `error`: `RuntimeError`.
//!
//! CONTRIBUTING.md says how to add a stage kind.

pub mod batch;
pub mod build;
pub mod coordinated;
pub mod counters;
pub mod dead_letter;
pub mod engine;
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
