//! reduce: merges the items of a batch into one aggregate per group key, starting as
//! soon as items arrive.
//!
//! Each input partition keeps its own accumulators; results merge them, so every
//! reducer is mergeable (a histogram merge weights each side by its population, a mean
//! merges sums and counts). Results are `{"batch", "group", "value", "final", "done",
//! "of"}` keyed by the group key: `(batch, group)` identifies a result, so a sink can
//! upsert and a replay after a crash does not double-count. Partial results
//! (`final: false`) go out every N items or T when asked; `done`/`of` say how many input
//! partitions have completed the batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use millrace_broker::{ConsumedRecord, TopicPartition};
use millrace_pipeline::expr::{Val, key_bytes, val_to_json};
use millrace_pipeline::{Emit as EmitPolicy, Format, Reducer, Selector};
use serde_json::{Value, json};

use super::{Coordinated, FinishContext, Progress, Tally, emit_json};
use crate::error::RuntimeError;
use crate::operator::{Emit, RecordError};
use crate::patterns::{value_of, with_vars};

/// One accumulator.
#[derive(Clone, Debug)]
enum Acc {
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

pub struct Reduce {
    pub group_by: Option<Selector>,
    pub reducer: Reducer,
    pub of: Option<Selector>,
    pub emit: EmitPolicy,
    pub format: Format,
    /// group key → (group value, per-partition accumulators)
    groups: HashMap<Vec<u8>, (Value, BTreeMap<TopicPartition, Acc>)>,
    dirty: HashSet<Vec<u8>>,
    first_held: BTreeMap<TopicPartition, i64>,
    held_per_tp: BTreeMap<TopicPartition, u64>,
    since_emit: u64,
    last_emit: Instant,
}

impl Reduce {
    pub fn new(
        group_by: Option<Selector>,
        reducer: Reducer,
        of: Option<Selector>,
        emit: EmitPolicy,
        format: Format,
    ) -> Self {
        Reduce {
            group_by,
            reducer,
            of,
            emit,
            format,
            groups: HashMap::new(),
            dirty: HashSet::new(),
            first_held: BTreeMap::new(),
            held_per_tp: BTreeMap::new(),
            since_emit: 0,
            last_emit: Instant::now(),
        }
    }

    fn init(&self) -> Result<Acc, String> {
        Ok(match &self.reducer {
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
            _ => return Err(format!("reducer {} is not supported", self.reducer.name())),
        })
    }

    fn update(&self, acc: &mut Acc, item: &Val) -> Result<(), String> {
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
                let want_less = matches!(self.reducer, Reducer::Min);
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
                let Reducer::Custom { update, .. } = &self.reducer else {
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

    fn merge(&self, a: Acc, b: Acc) -> Result<Acc, String> {
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
                let Reducer::Custom { merge, .. } = &self.reducer else {
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

    fn result(acc: &Acc) -> Value {
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

    /// The merged result of one group across partitions.
    fn group_result(&self, accs: &BTreeMap<TopicPartition, Acc>) -> Result<Value, String> {
        let mut merged: Option<Acc> = None;
        for a in accs.values() {
            merged = Some(match merged {
                None => a.clone(),
                Some(m) => self.merge(m, a.clone())?,
            });
        }
        Ok(merged.map(|m| Self::result(&m)).unwrap_or(Value::Null))
    }

    fn emit_groups(
        &mut self,
        keys: Vec<Vec<u8>>,
        progress: Progress,
        is_final: bool,
        emits: &mut Vec<Emit>,
    ) {
        for k in keys {
            let Some((group, accs)) = self.groups.get(&k) else {
                continue;
            };
            let value = match self.group_result(accs) {
                Ok(v) => v,
                Err(e) => json!({ "error": e }),
            };
            let record = json!({
                "batch": progress.batch,
                "group": group,
                "value": value,
                "final": is_final,
                "done": progress.done,
                "of": progress.of,
            });
            emits.push(emit_json(0, Some(k), &record));
        }
    }

    fn partials_due(&self) -> bool {
        self.emit
            .every_records
            .is_some_and(|n| self.since_emit >= n.max(1))
            || self.emit.every.is_some_and(|d| {
                self.since_emit > 0 && self.last_emit.elapsed() >= d.max(Duration::from_millis(1))
            })
    }

    fn emit_partials(&mut self, progress: Progress, emits: &mut Vec<Emit>) {
        let keys: Vec<Vec<u8>> = self.dirty.drain().collect();
        self.emit_groups(keys, progress, false, emits);
        self.since_emit = 0;
        self.last_emit = Instant::now();
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

#[async_trait]
impl Coordinated for Reduce {
    fn absorb(
        &mut self,
        rec: &ConsumedRecord,
        progress: Progress,
        emits: &mut Vec<Emit>,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Tally {
        let mut t = Tally::default();
        let step = || -> Result<(Vec<u8>, Value, Val), RecordError> {
            let v = value_of(rec, self.format)?;
            with_vars(rec, |vars| {
                let (key, group) = match &self.group_by {
                    Some(sel) => {
                        let g = sel.select(&v, vars).map_err(RecordError::new)?;
                        (key_bytes(&g), val_to_json(&g).map_err(RecordError::new)?)
                    }
                    None => (Vec::new(), Value::Null),
                };
                let item = match &self.of {
                    Some(sel) => sel.select(&v, vars).map_err(RecordError::new)?,
                    None => v.clone(),
                };
                Ok((key, group, item))
            })
        };
        let (key, group, item) = match step() {
            Ok(x) => x,
            Err(e) => {
                dead.push((rec.clone(), e));
                t.dead_lettered += 1;
                return t;
            }
        };
        let tp = TopicPartition::new(rec.topic.clone(), rec.partition);
        let fresh = match self.init() {
            Ok(a) => a,
            Err(e) => {
                dead.push((rec.clone(), RecordError::new(e)));
                t.dead_lettered += 1;
                return t;
            }
        };
        let existing = self
            .groups
            .get_mut(&key)
            .and_then(|(_, accs)| accs.remove(&tp));
        let existed = existing.is_some();
        let mut acc = existing.unwrap_or(fresh);
        if let Err(e) = self.update(&mut acc, &item) {
            dead.push((rec.clone(), RecordError::new(e)));
            t.dead_lettered += 1;
            if !existed {
                // A bad first item must not create an empty group.
                return t;
            }
        } else {
            self.first_held.entry(tp.clone()).or_insert(rec.offset);
            *self.held_per_tp.entry(tp.clone()).or_default() += 1;
            self.since_emit += 1;
            self.dirty.insert(key.clone());
        }
        let entry = self
            .groups
            .entry(key)
            .or_insert_with(|| (group, BTreeMap::new()));
        entry.1.insert(tp, acc);
        if self.partials_due() {
            self.emit_partials(progress, emits);
        }
        t
    }

    fn tick(
        &mut self,
        progress: Progress,
        emits: &mut Vec<Emit>,
        _dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Tally {
        if self.partials_due() {
            self.emit_partials(progress, emits);
        }
        Tally::default()
    }

    async fn finish(
        &mut self,
        progress: Progress,
        _ctx: &FinishContext<'_>,
        emits: &mut Vec<Emit>,
        _dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Result<Tally, RuntimeError> {
        let mut keys: Vec<Vec<u8>> = self.groups.keys().cloned().collect();
        keys.sort();
        self.emit_groups(keys, progress, true, emits);
        let held: u64 = self.held_per_tp.values().sum();
        self.groups.clear();
        self.dirty.clear();
        self.first_held.clear();
        self.held_per_tp.clear();
        self.since_emit = 0;
        Ok(Tally {
            out: held,
            ..Tally::default()
        })
    }

    fn held_from(&self, tp: &TopicPartition) -> Option<i64> {
        self.first_held.get(tp).copied()
    }

    fn revoke(&mut self, tps: &[TopicPartition]) -> u64 {
        let mut forgotten = 0;
        for tp in tps {
            self.first_held.remove(tp);
            forgotten += self.held_per_tp.remove(tp).unwrap_or(0);
        }
        for (_, accs) in self.groups.values_mut() {
            accs.retain(|tp, _| !tps.contains(tp));
        }
        self.groups.retain(|_, (_, accs)| !accs.is_empty());
        forgotten
    }
}
