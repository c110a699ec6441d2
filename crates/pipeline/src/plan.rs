//! The validated pipeline the runtime runs: topics with resolved partition counts and
//! stages in topological order, each carrying compiled expressions or closures. What
//! each kind of stage carries is defined with the kind, in [`crate::patterns`].
//!
//! A `Plan` is only ever produced by the planner (from a file) or by the builder (from
//! code), and both check the same invariants, so the runtime can trust it:
//! every topic a stage names is in `topics`; the stage graph has no cycle; stages that
//! group by key read co-partitioned inputs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::diagnostics::Diagnostic;
use crate::expr::Format;
pub use crate::expr::{Mapper, MapperFn, Predicate, PredicateFn, Selector, SelectorFn};
pub use crate::patterns::exec::Exec;
pub use crate::patterns::join::{Join, JoinMode};
use crate::patterns::kind::Kind;
pub use crate::patterns::reduce::{Combine, Emit, Reduce, Reducer};
pub use crate::patterns::sharder::{ShardTarget, Sharder};
pub use crate::patterns::splitter::{Route, SplitMode};
use crate::patterns::{copier, exec, filter, join, map, merger, reduce, sharder, splitter};

/// Where the topics live.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// The local store; `data` overrides the CLI's `--data` when set.
    #[default]
    Embedded,
    EmbeddedAt {
        data: PathBuf,
    },
    /// Apache Kafka; `properties` are librdkafka client settings passed through as is.
    Kafka {
        bootstrap: String,
        properties: BTreeMap<String, String>,
    },
}

/// A topic the pipeline reads or writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    pub partitions: u32,
    /// Topic settings, e.g. `durability: batch`, passed to topic creation.
    pub config: BTreeMap<String, String>,
    /// False when the planner created it because a stage writes it (see docs).
    pub declared: bool,
}

/// How a source stage cuts batches in continuous mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchPolicy {
    Records(u64),
    Every(Duration),
}

/// What a stage does: one of the book's patterns.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StageKind {
    Copier,
    Filter {
        predicate: Predicate,
    },
    Splitter {
        mode: SplitMode,
        routes: Vec<Route>,
        default: String,
    },
    Sharder(Sharder),
    Merger,
    Map {
        mapper: Mapper,
    },
    Exec(Exec),
    Join(Join),
    Reduce(Reduce),
}

impl StageKind {
    /// The kind of stage, as the pipeline file knows it.
    pub fn kind(&self) -> &'static Kind {
        match self {
            StageKind::Copier => &copier::KIND,
            StageKind::Filter { .. } => &filter::KIND,
            StageKind::Splitter { .. } => &splitter::KIND,
            StageKind::Sharder(_) => &sharder::KIND,
            StageKind::Merger => &merger::KIND,
            StageKind::Map { .. } => &map::KIND,
            StageKind::Exec(_) => &exec::KIND,
            StageKind::Join(_) => &join::KIND,
            StageKind::Reduce(_) => &reduce::KIND,
        }
    }

    /// The pattern name as the file writes it.
    pub fn name(&self) -> &'static str {
        self.kind().name
    }
}

#[derive(Clone, Debug)]
pub struct Stage {
    pub name: String,
    pub kind: StageKind,
    /// Topics read, in the order written.
    pub inputs: Vec<String>,
    /// Every topic the stage may write (for a splitter: routes then default; for a
    /// sharder: every shard), without repeats.
    pub outputs: Vec<String>,
    /// How record values are parsed for expressions.
    pub format: Format,
    /// Continuous mode batch cut, on stages that read source topics.
    pub batch: Option<BatchPolicy>,
    /// On a map stage: the combiner of a reduce downstream.
    pub combine: Option<Combine>,
}

/// A validated pipeline.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub backend: Backend,
    pub dead_letter: String,
    /// Declared topics in file order, then the ones the planner added.
    /// The dead-letter topic is included.
    pub topics: Vec<Topic>,
    /// In topological order: a stage comes after every stage that writes its inputs.
    pub stages: Vec<Stage>,
    /// Things worth knowing that do not stop the pipeline (unused topics, ...).
    pub warnings: Vec<Diagnostic>,
}

impl Plan {
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.name == name)
    }

    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The consumer group of a stage: `<pipeline>.<stage>`.
    pub fn consumer_group(&self, stage: &str) -> String {
        format!("{}.{}", self.name, stage)
    }

    /// Stages that read `topic`.
    pub fn readers(&self, topic: &str) -> impl Iterator<Item = &Stage> {
        self.stages
            .iter()
            .filter(move |s| s.inputs.iter().any(|t| t == topic))
    }

    /// Stages that may write `topic`.
    pub fn writers(&self, topic: &str) -> impl Iterator<Item = &Stage> {
        self.stages
            .iter()
            .filter(move |s| s.outputs.iter().any(|t| t == topic))
    }

    /// Topics some stage reads and no stage writes: where records enter.
    pub fn sources(&self) -> Vec<&Topic> {
        self.topics
            .iter()
            .filter(|t| self.readers(&t.name).next().is_some())
            .filter(|t| self.writers(&t.name).next().is_none())
            .collect()
    }

    /// Topics some stage writes and no stage reads: where records leave. The
    /// dead-letter topic is not a sink unless a stage writes it.
    pub fn sinks(&self) -> Vec<&Topic> {
        self.topics
            .iter()
            .filter(|t| self.writers(&t.name).next().is_some())
            .filter(|t| self.readers(&t.name).next().is_none())
            .collect()
    }

    /// How many end-of-batch origins feed `topic` (design section 3): one per
    /// partition for a source, else one per input partition of each writer stage.
    pub fn origins(&self, topic: &str) -> u32 {
        let mut writers = self.writers(topic).peekable();
        if writers.peek().is_none() {
            return self.topic(topic).map_or(0, |t| t.partitions);
        }
        writers
            .flat_map(|s| s.inputs.iter())
            .filter_map(|t| self.topic(t))
            .map(|t| t.partitions)
            .sum()
    }
}
