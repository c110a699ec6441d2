//! The reduce's side of combining: a map that combines for a reduce (`combine: true`)
//! takes its outputs as the reduce would take records ([`PartialReduce`]), and writes
//! one record per group and range of its input, with the group's accumulator over
//! that range in its `millrace.combined` header; the reduce merges it as it merges
//! partitions' accumulators, so the combined records add up to exactly what the
//! records would have.
//!
//! The header holds the accumulator as JSON; integer sums travel as decimal strings
//! (an `i128` does not fit a JSON number).

use std::borrow::Cow;

use millrace_broker::ConsumedRecord;
use millrace_pipeline::expr::{Val, json_to_val, val_to_json};
use millrace_pipeline::{Format, Reducer, Selector};
use serde_json::{Value, json};

use super::acc::Acc;
use super::items::Items;
use crate::operator::RecordError;

pub const HEADER: &str = "millrace.combined";

/// A combiner's accumulator of one group: opaque outside the reduce, whose reducer
/// it follows.
pub struct Partial(Acc);

/// A reduce's reducer and its way of reading records, for a combiner upstream.
pub struct PartialReduce {
    reducer: Reducer,
    items: Items,
}

impl PartialReduce {
    pub fn new(
        group_by: Option<Selector>,
        reducer: Reducer,
        of: Option<Selector>,
        format: Format,
    ) -> Self {
        PartialReduce {
            items: Items::new(group_by, &reducer, of, format),
            reducer,
        }
    }

    /// Whether records take the fast tier (plain paths, built-in reducer).
    pub fn is_fast(&self) -> bool {
        self.items.fast.is_some()
    }

    /// Group key and item of a record by the general path (parsed, jq), as the reduce
    /// takes them when the fast path gives up.
    pub fn key_and_item_general(
        &self,
        rec: &ConsumedRecord,
    ) -> Result<(Vec<u8>, Val), RecordError> {
        let a = self.items.general(rec)?;
        Ok((a.key.into_owned(), a.item))
    }

    /// Group key and item of a JSON value by the fast path (plain paths picked from
    /// the bytes), or `None` when `key_and_item_general` must decide.
    pub fn key_and_item_fast<'v>(&self, value: &'v [u8]) -> Option<(Cow<'v, [u8]>, Val)> {
        let a = self.items.fast(value)?;
        Some((a.key, a.item))
    }

    /// An accumulator holding `item` alone.
    pub fn start(&self, item: &Val) -> Result<Partial, RecordError> {
        let mut acc = Acc::init(&self.reducer).map_err(RecordError::new)?;
        Acc::update(&self.reducer, &mut acc, item).map_err(RecordError::new)?;
        Ok(Partial(acc))
    }

    /// Adds `item` to the accumulator.
    #[inline]
    pub fn fold(&self, p: &mut Partial, item: &Val) -> Result<(), RecordError> {
        // Counting, the combiner's commonest fold, without a call.
        if let Acc::Count(n) = &mut p.0 {
            *n += 1;
            return Ok(());
        }
        Acc::update(&self.reducer, &mut p.0, item).map_err(RecordError::new)
    }

    /// Adds `n` to a count's accumulator; `false` (nothing added) for other reducers,
    /// whose items must be folded one by one.
    pub fn add_to_count(p: &mut Partial, n: u64) -> bool {
        match &mut p.0 {
            Acc::Count(c) => {
                *c += n;
                true
            }
            _ => false,
        }
    }

    /// The accumulator as the combined record's header value.
    pub fn encode(p: &Partial) -> Result<Vec<u8>, String> {
        encode(&p.0)
    }
}

fn encode(acc: &Acc) -> Result<Vec<u8>, String> {
    let v = match acc {
        Acc::Count(n) => json!(n),
        Acc::Sum {
            int,
            float,
            is_float,
        } => json!({"int": int.to_string(), "float": float, "is_float": is_float}),
        Acc::Min(v) | Acc::Max(v) => json!(v.iter().collect::<Vec<_>>()),
        Acc::Mean { sum, count } => json!([sum, count]),
        Acc::Histogram { count, buckets } => json!({"count": count, "buckets": buckets}),
        Acc::Collect(items) => Value::Array(items.clone()),
        Acc::Custom(v) => val_to_json(v).map_err(|e| e.to_string())?,
    };
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

pub(super) fn decode(reducer: &Reducer, bytes: &[u8]) -> Result<Acc, String> {
    let bad = || {
        format!(
            "a combined record's `{HEADER}` header is not a {} accumulator",
            reducer.name()
        )
    };
    if matches!(reducer, Reducer::Count) {
        // The common case, read without building a JSON value.
        let n = std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok());
        return n.map(Acc::Count).ok_or_else(bad);
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|_| bad())?;
    let acc = match reducer {
        Reducer::Sum => Acc::Sum {
            int: v["int"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?,
            float: v["float"].as_f64().ok_or_else(bad)?,
            is_float: v["is_float"].as_bool().ok_or_else(bad)?,
        },
        Reducer::Min | Reducer::Max => {
            let Value::Array(mut a) = v else {
                return Err(bad());
            };
            if a.len() > 1 {
                return Err(bad());
            }
            let one = a.pop();
            if matches!(reducer, Reducer::Min) {
                Acc::Min(one)
            } else {
                Acc::Max(one)
            }
        }
        Reducer::Mean => Acc::Mean {
            sum: v[0].as_f64().ok_or_else(bad)?,
            count: v[1].as_u64().ok_or_else(bad)?,
        },
        Reducer::Histogram => Acc::Histogram {
            count: v["count"].as_u64().ok_or_else(bad)?,
            buckets: serde_json::from_value(v["buckets"].clone()).map_err(|_| bad())?,
        },
        Reducer::Collect => match v {
            Value::Array(items) => Acc::Collect(items),
            _ => return Err(bad()),
        },
        Reducer::Custom { .. } => Acc::Custom(json_to_val(&v)),
        #[allow(unreachable_patterns)]
        _ => return Err(bad()),
    };
    Ok(acc)
}
