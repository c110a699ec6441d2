//! filter: keeps the records whose `where` holds; the others are counted as filtered.
//!
//! ```yaml
//! only-eu: {kind: filter, from: signups, to: signups-eu, where: '.region == "eu"'}
//! ```

use super::kind::{Kind, Planning, Reads, Writes};
use crate::expr::Predicate;
use crate::yaml::node::{ExprSrc, Pos};
use crate::yaml::reader::{Fields, Reader};

pub const KIND: Kind = Kind {
    name: "filter",
    fields: &["where"],
    reads: Reads::One,
    writes: Writes::One,
};

#[derive(Clone, Debug, PartialEq)]
pub struct FilterSpec {
    /// The condition a record must meet to be kept.
    pub where_: ExprSrc,
}

pub(crate) fn read(r: &mut Reader<'_>, f: &Fields<'_>, at: Pos, what: &str) -> Option<FilterSpec> {
    let n = r.required(f, at, "where", what, "where: '.region == \"eu\"'")?;
    Some(FilterSpec {
        where_: r.expr(n, "`where`")?,
    })
}

pub(crate) fn plan(spec: &FilterSpec, cx: &mut Planning<'_>) -> Option<Predicate> {
    cx.jq(&spec.where_, "where", &[]).map(Predicate::Jq)
}
