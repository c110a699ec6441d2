//! The pipeline file: YAML nodes with positions, and the typed specs read from them.
//!
//! The spec is what the file *says*, each part with its place in the file; it is not
//! yet checked across stages (that is the planner's job). Every mapping in the file
//! rejects unknown fields, like serde's `deny_unknown_fields`, but all of them are
//! reported at once.
//! `read` walks the YAML tree ([`crate::yaml`]) into these types: the whole file —
//! name, backend, topics, and each stage's common fields; a stage's kind reads its own
//! fields ([`crate::patterns`]).

use std::collections::BTreeMap;

use crate::expr::Format;
use crate::plan::BatchPolicy;

pub mod read;

pub use crate::patterns::KindSpec;
pub use crate::yaml::node::{ExprSrc, Node, Pos, Sp};

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
