//! The validated pipeline the runtime runs: topics with resolved partition counts and
//! stages in topological order, each carrying compiled expressions or closures.
//!
//! A `Plan` is only ever produced by the planner (from a file) or by the builder (from
//! code), and both check the same invariants, so the runtime can trust it:
//! every topic a stage names is in `topics`; the stage graph has no cycle; stages that
//! group by key read co-partitioned inputs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::diagnostics::Diagnostic;
use crate::expr::{Expr, Format};
pub use crate::expr::{Mapper, MapperFn, Predicate, PredicateFn, Selector, SelectorFn};

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

/// Splitter routing: the first matching route only, or every matching route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SplitMode {
    #[default]
    First,
    All,
}

#[derive(Clone, Debug)]
pub struct Route {
    pub when: Predicate,
    pub to: String,
}

/// Where a sharder sends a record once it has the shard key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardTarget {
    /// Shard `murmur2(key) & 0x7fffffff % topics.len()` goes to `topics[shard]`.
    Topics(Vec<String>),
    /// The shard key (as a string) names the topic; other keys go to `default`, or are
    /// record errors (dead letter) when there is none.
    Named {
        shards: Vec<(String, String)>,
        default: Option<String>,
    },
    /// The partitions of one topic are the shards: partition = murmur2(key) % count.
    Partitions { topic: String, count: u32 },
}

#[derive(Clone, Debug)]
pub struct Sharder {
    /// `None`: the record key. A record without a key is a record error then.
    /// `Some`: the selector's value; the output record is keyed by it (so downstream
    /// stages and Kafka tools see the same partitioning).
    pub by: Option<Selector>,
    pub target: ShardTarget,
}

/// A long-running worker command speaking newline-delimited JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exec {
    /// argv; never run through a shell.
    pub command: Vec<String>,
    pub workers: u32,
    /// Per item.
    pub timeout: Duration,
    /// Attempts after the first, before dead-lettering.
    pub retries: u32,
    /// Keep output order per record key (items with one key go to one worker in turn).
    pub ordered_by_key: bool,
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinMode {
    Barrier,
    Key,
    Zip,
}

#[derive(Clone, Debug)]
pub struct Join {
    pub mode: JoinMode,
    /// Required for `Key` mode, absent otherwise.
    pub key: Option<Selector>,
    /// `Key` mode: how long a key may wait for its other parts.
    pub timeout: Option<Duration>,
    /// `Barrier` mode: release one combined item per batch instead of the items.
    pub combine: bool,
}

#[derive(Clone, Debug)]
pub enum Reducer {
    Count,
    Sum,
    Min,
    Max,
    Mean,
    Histogram,
    Collect,
    /// `init` runs on `null`; `update` has the accumulator as `.` and the item as
    /// `$item`; `merge` has one accumulator as `.` and the other as `$other`.
    Custom {
        init: Expr,
        update: Expr,
        merge: Expr,
    },
}

impl Reducer {
    pub fn name(&self) -> &'static str {
        match self {
            Reducer::Count => "count",
            Reducer::Sum => "sum",
            Reducer::Min => "min",
            Reducer::Max => "max",
            Reducer::Mean => "mean",
            Reducer::Histogram => "histogram",
            Reducer::Collect => "collect",
            Reducer::Custom { .. } => "custom",
        }
    }
}

/// When a reduce emits partial results; the final result is always emitted at the
/// batch's end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Emit {
    pub every_records: Option<u64>,
    pub every: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct Reduce {
    /// `None`: one group per batch.
    pub group_by: Option<Selector>,
    pub reducer: Reducer,
    /// The operand (`of:`); `None` means the whole value. Always `None` for count.
    pub of: Option<Selector>,
    pub emit: Emit,
    /// Pre-aggregate in the map upstream before the shuffle (see [`Combine`]).
    pub combine: bool,
}

/// A map stage's combiner: the map aggregates its outputs per group as the reduce
/// downstream would, and writes one record per group and range of its input instead of
/// one per output, so far fewer records go through the sharder and the reduce. Set by
/// the planner on the map a `combine: true` reduce reads from, through sharders,
/// copiers and mergers only.
#[derive(Clone, Debug)]
pub struct Combine {
    /// The reduce stage it aggregates for.
    pub reduce: String,
    pub group_by: Option<Selector>,
    pub reducer: Reducer,
    pub of: Option<Selector>,
    /// How the reduce reads the values (its `format`).
    pub format: Format,
    /// The shard keys of the sharders on the way: outputs combine only when these are
    /// equal too, so a combined record goes where each of its parts would have gone.
    pub route_by: Vec<Selector>,
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
    /// The pattern name as the file writes it.
    pub fn name(&self) -> &'static str {
        match self {
            StageKind::Copier => "copier",
            StageKind::Filter { .. } => "filter",
            StageKind::Splitter { .. } => "splitter",
            StageKind::Sharder(_) => "sharder",
            StageKind::Merger => "merger",
            StageKind::Map { .. } => "map",
            StageKind::Exec(_) => "exec",
            StageKind::Join(_) => "join",
            StageKind::Reduce(_) => "reduce",
        }
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
