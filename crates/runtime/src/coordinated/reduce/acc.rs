//! A reduce's accumulators: a reducer's running state over some items. Every
//! reducer's accumulators merge (a histogram merge weights each side by its
//! population, a mean merges sums and counts), so each input partition keeps its own
//! and a result merges them.

use std::collections::BTreeMap;

use millrace_pipeline::Reducer;
use millrace_pipeline::expr::{Val, val_to_json};
use serde_json::{Value, json};

/// One accumulator.
#[derive(Clone, Debug)]
pub(super) enum Acc {
    Count(u64),
    Sum {
        int: i128,
        float: f64,
        is_float: bool,
    },
    Min(Option<Value>),
    Max(Option<Value>),
    Mean {
        sum: f64,
        count: u64,
    },
    Histogram {
        count: u64,
        buckets: BTreeMap<String, u64>,
    },
    Collect(Vec<Value>),
    Custom(Val),
}

fn number(v: &Value) -> Result<(Option<i128>, f64), String> {
    match v {
        Value::Number(n) => Ok((n.as_i64().map(i128::from), n.as_f64().unwrap_or(0.0))),
        other => Err(format!("expected a number to reduce, found {other}")),
    }
}

/// jq's ordering of JSON values is good enough for min/max of numbers and strings.
fn cmp_json(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(std::cmp::Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn bucket_name(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn as_histogram(v: &Value) -> Option<(u64, Vec<(String, u64)>)> {
    let o = v.as_object()?;
    let count = o.get("count")?.as_u64()?;
    let buckets = o.get("buckets")?.as_object()?;
    let mut out = Vec::new();
    for (k, n) in buckets {
        out.push((k.clone(), n.as_u64()?));
    }
    Some((count, out))
}

impl Acc {
    pub(super) fn init(reducer: &Reducer) -> Result<Acc, String> {
        Ok(match reducer {
            Reducer::Count => Acc::Count(0),
            Reducer::Sum => Acc::Sum {
                int: 0,
                float: 0.0,
                is_float: false,
            },
            Reducer::Min => Acc::Min(None),
            Reducer::Max => Acc::Max(None),
            Reducer::Mean => Acc::Mean { sum: 0.0, count: 0 },
            Reducer::Histogram => Acc::Histogram {
                count: 0,
                buckets: BTreeMap::new(),
            },
            Reducer::Collect => Acc::Collect(Vec::new()),
            Reducer::Custom { init, .. } => {
                let v = init
                    .first(Val::Null, &Default::default())
                    .map_err(|e| e.to_string())?
                    .unwrap_or(Val::Null);
                Acc::Custom(v)
            }
            #[allow(unreachable_patterns)]
            _ => return Err(format!("reducer {} is not supported", reducer.name())),
        })
    }

    pub(super) fn update(reducer: &Reducer, acc: &mut Acc, item: &Val) -> Result<(), String> {
        match acc {
            Acc::Count(n) => *n += 1,
            Acc::Sum {
                int,
                float,
                is_float,
            } => {
                let (i, f) = number(&val_to_json(item).map_err(|e| e.to_string())?)?;
                match i {
                    Some(i) if !*is_float => *int += i,
                    _ => {
                        if !*is_float {
                            *float = *int as f64;
                            *is_float = true;
                        }
                        *float += f;
                    }
                }
            }
            Acc::Min(cur) | Acc::Max(cur) => {
                let v = val_to_json(item).map_err(|e| e.to_string())?;
                let want_less = matches!(reducer, Reducer::Min);
                let replace = match cur {
                    None => true,
                    Some(c) => {
                        let o = cmp_json(&v, c);
                        if want_less { o.is_lt() } else { o.is_gt() }
                    }
                };
                if replace {
                    *cur = Some(v);
                }
            }
            Acc::Mean { sum, count } => {
                let (_, f) = number(&val_to_json(item).map_err(|e| e.to_string())?)?;
                *sum += f;
                *count += 1;
            }
            Acc::Histogram { count, buckets } => {
                let v = val_to_json(item).map_err(|e| e.to_string())?;
                // An item that is itself a histogram merges in, weighted by its population.
                if let Some((c, b)) = as_histogram(&v) {
                    *count += c;
                    for (k, n) in b {
                        *buckets.entry(k).or_default() += n;
                    }
                } else {
                    *count += 1;
                    *buckets.entry(bucket_name(&v)).or_default() += 1;
                }
            }
            Acc::Collect(items) => items.push(val_to_json(item).map_err(|e| e.to_string())?),
            Acc::Custom(state) => {
                let Reducer::Custom { update, .. } = reducer else {
                    return Err("custom accumulator without a custom reducer".into());
                };
                let mut out = None;
                update
                    .run_with(
                        state.clone(),
                        &Default::default(),
                        std::slice::from_ref(item),
                        |v| {
                            if out.is_none() {
                                out = Some(v)
                            }
                        },
                    )
                    .map_err(|e| e.to_string())?;
                *state = out.ok_or("the custom reducer's update produced no output")?;
            }
        }
        Ok(())
    }

    pub(super) fn merge(reducer: &Reducer, a: Acc, b: Acc) -> Result<Acc, String> {
        Ok(match (a, b) {
            (Acc::Count(x), Acc::Count(y)) => Acc::Count(x + y),
            (
                Acc::Sum {
                    int: i1,
                    float: f1,
                    is_float: a1,
                },
                Acc::Sum {
                    int: i2,
                    float: f2,
                    is_float: a2,
                },
            ) => {
                if a1 || a2 {
                    let x = if a1 { f1 } else { i1 as f64 };
                    let y = if a2 { f2 } else { i2 as f64 };
                    Acc::Sum {
                        int: 0,
                        float: x + y,
                        is_float: true,
                    }
                } else {
                    Acc::Sum {
                        int: i1 + i2,
                        float: 0.0,
                        is_float: false,
                    }
                }
            }
            (Acc::Min(x), Acc::Min(y)) => Acc::Min(match (x, y) {
                (Some(x), Some(y)) => Some(if cmp_json(&y, &x).is_lt() { y } else { x }),
                (x, y) => x.or(y),
            }),
            (Acc::Max(x), Acc::Max(y)) => Acc::Max(match (x, y) {
                (Some(x), Some(y)) => Some(if cmp_json(&y, &x).is_gt() { y } else { x }),
                (x, y) => x.or(y),
            }),
            (Acc::Mean { sum: s1, count: c1 }, Acc::Mean { sum: s2, count: c2 }) => Acc::Mean {
                sum: s1 + s2,
                count: c1 + c2,
            },
            (
                Acc::Histogram {
                    count: c1,
                    buckets: mut b1,
                },
                Acc::Histogram {
                    count: c2,
                    buckets: b2,
                },
            ) => {
                for (k, n) in b2 {
                    *b1.entry(k).or_default() += n;
                }
                Acc::Histogram {
                    count: c1 + c2,
                    buckets: b1,
                }
            }
            (Acc::Collect(mut x), Acc::Collect(y)) => {
                x.extend(y);
                Acc::Collect(x)
            }
            (Acc::Custom(x), Acc::Custom(y)) => {
                let Reducer::Custom { merge, .. } = reducer else {
                    return Err("custom accumulator without a custom reducer".into());
                };
                let mut out = None;
                merge
                    .run_with(x, &Default::default(), &[y], |v| {
                        if out.is_none() {
                            out = Some(v)
                        }
                    })
                    .map_err(|e| e.to_string())?;
                Acc::Custom(out.ok_or("the custom reducer's merge produced no output")?)
            }
            _ => return Err("accumulators of different reducers cannot merge".into()),
        })
    }

    pub(super) fn result(acc: &Acc) -> Value {
        match acc {
            Acc::Count(n) => json!(n),
            Acc::Sum {
                int,
                float,
                is_float,
            } => {
                if *is_float {
                    json!(float)
                } else if let Ok(i) = i64::try_from(*int) {
                    json!(i)
                } else {
                    json!(*int as f64)
                }
            }
            Acc::Min(v) | Acc::Max(v) => v.clone().unwrap_or(Value::Null),
            Acc::Mean { sum, count } => {
                if *count == 0 {
                    Value::Null
                } else {
                    json!(sum / *count as f64)
                }
            }
            Acc::Histogram { count, buckets } => json!({ "count": count, "buckets": buckets }),
            Acc::Collect(items) => Value::Array(items.clone()),
            Acc::Custom(v) => val_to_json(v).unwrap_or(Value::Null),
        }
    }
}
