//! The pipeline file: YAML nodes with positions, and the typed specs read from them.
//!
//! The spec is what the file *says*, each part with its place in the file; it is not
//! yet checked across stages (that is the planner's job). Every mapping in the file
//! rejects unknown fields, like serde's `deny_unknown_fields`, but all of them are
//! reported at once.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::expr::Format;
use crate::plan::{BatchPolicy, Emit, JoinMode, SplitMode};

pub mod node;
pub mod read;

pub use node::{Node, Pos};

/// A value and where the file wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sp<T> {
    pub value: T,
    pub pos: Pos,
}

/// A jq expression as written; `pos` is the scalar's first character (the quote for a
/// quoted scalar), from which the planner maps offsets inside the expression.
#[derive(Clone, Debug, PartialEq)]
pub struct ExprSrc {
    pub source: String,
    pub pos: Pos,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineSpec {
    pub name: Option<Sp<String>>,
    pub backend: Option<Sp<BackendSpec>>,
    pub dead_letter: Option<Sp<String>>,
    pub topics: Vec<TopicSpec>,
    pub stages: Vec<StageSpec>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BackendSpec {
    Embedded {
        data: Option<String>,
    },
    Kafka {
        bootstrap: String,
        properties: BTreeMap<String, String>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TopicSpec {
    pub name: Sp<String>,
    pub partitions: Option<Sp<u32>>,
    pub config: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StageSpec {
    pub name: Sp<String>,
    /// `None` when the kind is missing or unknown (already reported).
    pub kind_name: Option<Sp<String>>,
    pub from: Vec<Sp<String>>,
    /// `to` as written; `to_is_list` tells `to: [x]` from `to: x` (a sharder writing
    /// the partitions of one topic).
    pub to: Vec<Sp<String>>,
    pub to_is_list: bool,
    pub format: Format,
    pub batch: Option<Sp<BatchPolicy>>,
    /// `None` when a kind-specific field had an error (already reported). The stage's
    /// `from`/`to` still take part in the graph checks.
    pub kind: Option<KindSpec>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteSpec {
    pub when: ExprSrc,
    pub to: Sp<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ShardsSpec {
    /// `shards: 8`: the partitions of the one `to` topic.
    Count(Sp<u32>),
    /// `shards: {eu: signups-eu, ...}`: shard key → topic.
    Named(Vec<(Sp<String>, Sp<String>)>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ReducerSpec {
    Count,
    Sum,
    Min,
    Max,
    Mean,
    Histogram,
    Collect,
    Custom {
        init: ExprSrc,
        update: ExprSrc,
        merge: ExprSrc,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum KindSpec {
    Copier,
    Merger,
    Filter {
        where_: ExprSrc,
    },
    Map {
        expr: ExprSrc,
    },
    Splitter {
        mode: SplitMode,
        routes: Vec<RouteSpec>,
        default: Sp<String>,
    },
    Sharder {
        by: Option<ExprSrc>,
        shards: Option<ShardsSpec>,
        default: Option<Sp<String>>,
    },
    Exec {
        command: Vec<String>,
        workers: u32,
        timeout: Duration,
        retries: u32,
        ordered_by_key: bool,
        env: BTreeMap<String, String>,
    },
    Join {
        mode: Sp<JoinMode>,
        key: Option<ExprSrc>,
        timeout: Option<Duration>,
        combine: bool,
    },
    Reduce {
        group_by: Option<ExprSrc>,
        reducer: Sp<ReducerSpec>,
        of: Option<ExprSrc>,
        emit: Emit,
        /// `combine: true`: pre-aggregate in the map upstream (planner::combine).
        combine: Option<Sp<bool>>,
    },
}

/// The stage kinds the file accepts, as written.
pub const KINDS: [&str; 9] = [
    "copier", "filter", "splitter", "sharder", "merger", "map", "exec", "join", "reduce",
];
