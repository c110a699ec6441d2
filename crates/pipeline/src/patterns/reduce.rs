//! reduce: merges the items of a batch into one result per group key, as they arrive,
//! and emits the results when the batch ends (and partial ones on the way, with
//! `emit`). `combine: true` lets the map upstream pre-aggregate ([`Combine`]).
//!
//! ```yaml
//! count-words:
//!   kind: reduce
//!   from: words
//!   to: word-counts
//!   group_by: .word
//!   reducer: count
//! ```

use std::time::Duration;

use super::kind::{Kind, Planning, Reads, Writes};
use crate::diagnostics::did_you_mean;
use crate::expr::{Expr, Format, Selector};
use crate::yaml::node::{ExprSrc, Node, Pos, Sp, Value};
use crate::yaml::reader::{Fields, Reader};

pub const KIND: Kind = Kind {
    name: "reduce",
    fields: &["group_by", "reducer", "of", "emit", "combine"],
    reads: Reads::Any,
    writes: Writes::One,
};

#[derive(Clone, Debug, PartialEq)]
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
    /// The reducers the file names with a word, in the order messages list them.
    pub const BUILT_IN: [Reducer; 7] = [
        Reducer::Count,
        Reducer::Sum,
        Reducer::Min,
        Reducer::Max,
        Reducer::Mean,
        Reducer::Histogram,
        Reducer::Collect,
    ];

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

    /// Whether it aggregates a number or value the file picks with `of`.
    fn needs_operand(&self) -> bool {
        matches!(
            self,
            Reducer::Sum | Reducer::Min | Reducer::Max | Reducer::Mean | Reducer::Histogram
        )
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

#[derive(Clone, Debug, PartialEq)]
pub struct ReduceSpec {
    pub group_by: Option<ExprSrc>,
    pub reducer: Sp<ReducerSpec>,
    pub of: Option<ExprSrc>,
    pub emit: Emit,
    /// `combine: true`: pre-aggregate in the map upstream (planner::combine).
    pub combine: Option<Sp<bool>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ReducerSpec {
    /// One of [`Reducer::BUILT_IN`].
    BuiltIn(Reducer),
    Custom {
        init: ExprSrc,
        update: ExprSrc,
        merge: ExprSrc,
    },
}

pub(crate) fn read(r: &mut Reader<'_>, f: &Fields<'_>, at: Pos, what: &str) -> Option<ReduceSpec> {
    let group_by = match f.get("group_by") {
        Some(n) => Some(r.expr(n, "`group_by`")?),
        None => None,
    };
    let rn = r.required(
        f,
        at,
        "reducer",
        what,
        "reducer: count, sum, min, max, mean, histogram, collect, or {init, update, merge}",
    )?;
    let reducer = match &rn.value {
        Value::Str(s) => ReducerSpec::BuiltIn(built_in(r, s, rn.pos)?),
        Value::Map(_) => custom(r, rn)?,
        _ => {
            r.wrong_type(rn, "`reducer`", "a reducer name or {init, update, merge}");
            return None;
        }
    };
    let of = match (f.get("of"), &reducer) {
        (Some(n), ReducerSpec::BuiltIn(Reducer::Count)) => {
            r.err(
                n.pos,
                "`of` does not apply to the count reducer",
                "count counts items; remove `of`",
            );
            return None;
        }
        (Some(n), _) => Some(r.expr(n, "`of`")?),
        (None, ReducerSpec::BuiltIn(b)) if b.needs_operand() => {
            r.err(
                at,
                format!("{what} uses the {} reducer but is missing `of`", b.name()),
                "of: '.n' picks the number to aggregate",
            );
            return None;
        }
        (None, _) => None,
    };
    let (emit, combine) = emit_and_combine(r, f)?;
    Some(ReduceSpec {
        group_by,
        reducer: Sp {
            value: reducer,
            pos: rn.pos,
        },
        of,
        emit,
        combine,
    })
}

/// The built-in reducer `name`, or an error at `pos`.
fn built_in(r: &mut Reader<'_>, name: &str, pos: Pos) -> Option<Reducer> {
    if let Some(b) = Reducer::BUILT_IN.iter().find(|b| b.name() == name) {
        return Some(b.clone());
    }
    let names = Reducer::BUILT_IN.map(|b| b.name());
    let hint = match did_you_mean(name, names) {
        Some(near) => format!("did you mean `{near}`?"),
        None => format!(
            "one of: {}, or a custom {{init, update, merge}}",
            names.join(", ")
        ),
    };
    r.err(pos, format!("unknown reducer `{name}`"), hint);
    None
}

/// A custom `{init, update, merge}` reducer.
fn custom(r: &mut Reader<'_>, rn: &Node) -> Option<ReducerSpec> {
    let cf = r.fields(
        rn,
        "a custom reducer",
        &["init", "update", "merge"],
        "a custom reducer",
    )?;
    let mut part = |name: &str, hint: &str| {
        r.required(&cf, rn.pos, name, "a custom reducer", hint)
            .and_then(|n| r.expr(n, &format!("`{name}`")))
    };
    let init = part("init", "init: '0' (the empty accumulator)");
    let update = part(
        "update",
        "update: '. + $item.n' (accumulator is ., the item is $item)",
    );
    let merge = part("merge", "merge: '. + $other' (combine two accumulators)");
    Some(ReducerSpec::Custom {
        init: init?,
        update: update?,
        merge: merge?,
    })
}

fn emit_and_combine(r: &mut Reader<'_>, f: &Fields<'_>) -> Option<(Emit, Option<Sp<bool>>)> {
    let emit = match f.get("emit") {
        None => Emit::default(),
        Some(n) => {
            let ef = r.fields(n, "`emit`", &["every_records", "every"], "`emit`")?;
            Emit {
                every_records: match ef.get("every_records") {
                    Some(x) => Some(r.u64(x, "`emit.every_records`")?),
                    None => None,
                },
                every: match ef.get("every") {
                    Some(e) => Some(r.duration(e, "`emit.every`")?),
                    None => None,
                },
            }
        }
    };
    let combine = match f.get("combine") {
        Some(n) => Some(Sp {
            value: r.bool(n, "`combine`")?,
            pos: n.pos,
        }),
        None => None,
    };
    Some((emit, combine))
}

pub(crate) fn plan(spec: &ReduceSpec, cx: &mut Planning<'_>) -> Option<Reduce> {
    // Every expression is compiled before giving up, so all errors show.
    let group_by = spec.group_by.as_ref().map(|e| cx.selector(e, "group_by"));
    let of = spec.of.as_ref().map(|e| cx.selector(e, "of"));
    let reducer = match &spec.reducer.value {
        ReducerSpec::BuiltIn(b) => Some(b.clone()),
        ReducerSpec::Custom {
            init,
            update,
            merge,
        } => {
            let init = cx.jq(init, "init", &[]);
            let update = cx.jq(update, "update", &["item"]);
            let merge = cx.jq(merge, "merge", &["other"]);
            Some(Reducer::Custom {
                init: init?,
                update: update?,
                merge: merge?,
            })
        }
    };
    Some(Reduce {
        group_by: compiled(group_by)?,
        reducer: reducer?,
        of: compiled(of)?,
        emit: spec.emit,
        combine: spec.combine.as_ref().is_some_and(|c| c.value),
    })
}

/// An optional field's compiled expression: `Some(None)` when the field is absent,
/// `None` when it failed to compile.
fn compiled(field: Option<Option<Selector>>) -> Option<Option<Selector>> {
    match field {
        None => Some(None),
        Some(compiled) => compiled.map(Some),
    }
}
