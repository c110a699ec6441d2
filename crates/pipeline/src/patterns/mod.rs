//! The stage kinds — the book's patterns — one module each. A kind's module holds all
//! the pipeline file knows of it: its fields and how many topics it reads and writes
//! ([`Kind`]), what the file says of a stage of the kind (its spec, read and checked
//! field by field), and what the plan carries (its expressions compiled, its topics
//! settled). The runtime's side of each kind is in `millrace-runtime`'s `patterns/`
//! and `coordinated/`. CONTRIBUTING.md says how to add a kind.
//!
//! This module ties the kinds together: [`KINDS`], [`KindSpec`], and the dispatch
//! from a kind's name to its reader. The planner's `stages` pass dispatches from a
//! kind's spec to its planning.

pub mod copier;
pub mod exec;
pub mod filter;
pub mod join;
pub mod kind;
pub mod map;
pub mod merger;
pub mod reduce;
pub mod sharder;
pub mod splitter;

pub use kind::{Kind, a_kind};
pub(crate) use kind::{Reads, Writes};

use crate::yaml::node::{Pos, Sp};
use crate::yaml::reader::{Fields, Reader};

/// Every kind the pipeline file accepts, in the order messages list them.
pub const KINDS: [&Kind; 9] = [
    &copier::KIND,
    &filter::KIND,
    &splitter::KIND,
    &sharder::KIND,
    &merger::KIND,
    &map::KIND,
    &exec::KIND,
    &join::KIND,
    &reduce::KIND,
];

/// The kind named `name` in a stage's `kind:`.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|k| k.name == name)
}

/// What the file says of a stage's kind: its own fields, read and checked.
#[derive(Clone, Debug, PartialEq)]
pub enum KindSpec {
    Copier,
    Merger,
    Filter(filter::FilterSpec),
    Map(map::MapSpec),
    Splitter(splitter::SplitterSpec),
    Sharder(sharder::SharderSpec),
    Exec(exec::Exec),
    Join(join::JoinSpec),
    Reduce(reduce::ReduceSpec),
}

/// Reads the fields of a stage of `kind`; `None` when one had an error (reported).
pub(crate) fn read(
    kind: &Kind,
    r: &mut Reader<'_>,
    f: &Fields<'_>,
    at: Pos,
    what: &str,
) -> Option<KindSpec> {
    Some(match kind.name {
        "copier" => KindSpec::Copier,
        "merger" => KindSpec::Merger,
        "filter" => KindSpec::Filter(filter::read(r, f, at, what)?),
        "map" => KindSpec::Map(map::read(r, f, at, what)?),
        "splitter" => KindSpec::Splitter(splitter::read(r, f, at, what)?),
        "sharder" => KindSpec::Sharder(sharder::read(r, f, at, what)?),
        "exec" => KindSpec::Exec(exec::read(r, f, at, what)?),
        "join" => KindSpec::Join(join::read(r, f, at, what)?),
        "reduce" => KindSpec::Reduce(reduce::read(r, f, at, what)?),
        _ => return None,
    })
}

impl KindSpec {
    /// The topics the kind's own fields name as outputs, besides `to`.
    pub fn named_outputs(&self) -> Vec<&Sp<String>> {
        match self {
            KindSpec::Splitter(s) => s.outputs().collect(),
            KindSpec::Sharder(s) => s.outputs().collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_reader() {
        // A kind the dispatch does not know would read as nothing at all, silently.
        let root = crate::yaml::node::parse_yaml("{}").expect("yaml");
        let crate::yaml::node::Value::Map(entries) = &root.value else {
            panic!("a mapping")
        };
        let f = Fields {
            entries,
            pos: root.pos,
        };
        for k in KINDS {
            let mut diags = Vec::new();
            let mut r = Reader { diags: &mut diags };
            let read = read(k, &mut r, &f, root.pos, "a stage");
            // Without its fields a kind either reads (copier, merger) or says what
            // is missing: never nothing and no word.
            assert!(
                read.is_some() || !diags.is_empty(),
                "`{}` is in KINDS but has no reader",
                k.name
            );
        }
    }
}
