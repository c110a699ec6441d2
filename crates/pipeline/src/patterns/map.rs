//! map: a jq filter per record; each of its outputs is one output record (0..n: a
//! flat map).
//!
//! ```yaml
//! contact: {kind: map, from: signups, to: contacts, expr: '{user_id, email}'}
//! ```

use super::kind::{Kind, Planning, Reads, Writes};
use crate::expr::Mapper;
use crate::yaml::node::{ExprSrc, Pos};
use crate::yaml::reader::{Fields, Reader};

pub const KIND: Kind = Kind {
    name: "map",
    fields: &["expr"],
    reads: Reads::One,
    writes: Writes::One,
};

#[derive(Clone, Debug, PartialEq)]
pub struct MapSpec {
    /// The jq filter: the record as `.`, its outputs the output records.
    pub expr: ExprSrc,
}

pub(crate) fn read(r: &mut Reader<'_>, f: &Fields<'_>, at: Pos, what: &str) -> Option<MapSpec> {
    let hint = "expr: '{user_id, email}' (0..n outputs per record)";
    let n = r.required(f, at, "expr", what, hint)?;
    Some(MapSpec {
        expr: r.expr(n, "`expr`")?,
    })
}

pub(crate) fn plan(spec: &MapSpec, cx: &mut Planning<'_>) -> Option<Mapper> {
    cx.jq(&spec.expr, "expr", &[]).map(Mapper::Jq)
}
