//! A combined record's accumulator, carried in its `millrace.combined` header.
//!
//! A map that combines for a reduce (`combine: true`) writes one record per group and
//! range of its input; the header holds the group's accumulator over that range as
//! JSON, and the reduce merges it as it merges partitions' accumulators. Integer sums
//! travel as decimal strings (an `i128` does not fit a JSON number).

use serde_json::{Value, json};

use super::{Acc, Reducer};
use millrace_pipeline::expr::{json_to_val, val_to_json};

pub const HEADER: &str = "millrace.combined";

pub(super) fn encode(acc: &Acc) -> Result<Vec<u8>, String> {
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
