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

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use millrace_broker::{ConsumedRecord, TopicPartition};
use millrace_pipeline::expr::{Picked, PlainPath, Val, key_bytes, pick, val_to_json};
use millrace_pipeline::{Emit as EmitPolicy, Format, Reducer, Selector};
use serde_json::{Value, json};

use super::key::InlineKey;
use super::{Coordinated, FinishContext, Progress, Tally, emit_json};
use crate::batch::{batch_header, own_batch};
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

/// One input partition's share of the state: accumulators are indexed by its slot.
struct Part {
    tp: TopicPartition,
    /// The first offset of this partition that an accumulator holds.
    first_held: Option<i64>,
    /// How many records of this partition the accumulators hold.
    held: u64,
}

/// One group: its key and the key's JSON. Its accumulators are in `Reduce::accs`.
struct Group {
    key: Box<[u8]>,
    value: Value,
    /// The batch its records came in, when an earlier one than the batch in hand
    /// (see `Absorbed::batch`).
    batch: Option<u64>,
    /// Listed in `Reduce::dirty` (changed since the last partial result).
    dirty: bool,
}

/// Group keys this long or shorter are kept inside the group index.
const INLINE_KEY: usize = 22;

type GroupKey = InlineKey<INLINE_KEY>;

/// `group_by` and `of` as plain paths, picked from the record bytes without jq.
struct FastPaths {
    group_by: Option<PlainPath>,
    of: Option<PlainPath>,
    /// Whether the reducer uses the item at all (count does not).
    needs_item: bool,
    /// `.`, for an absent `of` (the whole value) or `group_by` (not used then).
    whole: PlainPath,
}

/// Key, group value and item of one record.
struct Absorbed<'a> {
    key: Cow<'a, [u8]>,
    group: GroupValue<'a>,
    item: Val,
    /// A combined record's accumulator (see `partial`): merged instead of the item.
    partial: Option<Acc>,
    /// The batch the record came in (its `millrace.batch` header), when it is an
    /// earlier one than the batch in hand: records an upstream stage released in a
    /// batch whose results this reduce wrote, then died before committing. They are
    /// counted under that batch again, so the replayed results are the ones written
    /// (same batch, same group) instead of a second count in a new batch. `key` is
    /// then prefixed with the batch.
    batch: Option<u64>,
}

/// A group's JSON, or where to build it from when the group is new.
enum GroupValue<'a> {
    Json(Value),
    Picked(Picked<'a>),
}

pub struct Reduce {
    pub group_by: Option<Selector>,
    pub reducer: Reducer,
    pub of: Option<Selector>,
    pub emit: EmitPolicy,
    pub format: Format,
    fast: Option<FastPaths>,
    /// group key → group number (its place in `groups`)
    index: HashMap<GroupKey, usize>,
    groups: Vec<Group>,
    /// The accumulator of group `g` for partition slot `s` is at `g * stride + s`.
    accs: Vec<Option<Acc>>,
    /// Slots per group in `accs` (at least the partitions seen).
    stride: usize,
    /// Groups changed since the last partial result (kept only when partials are asked).
    dirty: Vec<usize>,
    track_dirty: bool,
    /// Input partitions seen, by slot; a slot is never reused for another partition.
    parts: Vec<Part>,
    /// Slots in partition order: accumulators merge in this order.
    order: Vec<usize>,
    /// The slot of the previous record (records come in runs of one partition).
    last_slot: usize,
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
        let plain = |s: &Option<Selector>| match s {
            None => Some(None),
            Some(s) => s.as_plain_path().map(Some),
        };
        let fast = match (format, &reducer, plain(&group_by), plain(&of)) {
            (Format::Json, r, Some(group_by), Some(of)) if !matches!(r, Reducer::Custom { .. }) => {
                PlainPath::parse(".").map(|whole| FastPaths {
                    group_by,
                    of,
                    needs_item: !matches!(r, Reducer::Count),
                    whole,
                })
            }
            _ => None,
        };
        Reduce {
            track_dirty: emit.every_records.is_some() || emit.every.is_some(),
            group_by,
            reducer,
            of,
            emit,
            format,
            fast,
            index: HashMap::new(),
            groups: Vec::new(),
            accs: Vec::new(),
            stride: 0,
            dirty: Vec::new(),
            parts: Vec::new(),
            order: Vec::new(),
            last_slot: 0,
            since_emit: 0,
            last_emit: Instant::now(),
        }
    }

    /// Whether records of this stage take the fast path (plain paths, built-in reducer).
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// The slot of a record's partition.
    fn slot(&mut self, rec: &ConsumedRecord) -> usize {
        // Arc == Arc: the same name shared by a consumer is equal without a compare.
        let is = |p: &Part| p.tp.partition == rec.partition && p.tp.topic == rec.topic;
        if self.parts.get(self.last_slot).is_some_and(is) {
            return self.last_slot;
        }
        let slot = match self.parts.iter().position(is) {
            Some(s) => s,
            None => {
                self.parts.push(Part {
                    tp: TopicPartition::new(rec.topic.clone(), rec.partition),
                    first_held: None,
                    held: 0,
                });
                let parts = &self.parts;
                self.order = (0..parts.len()).collect();
                self.order.sort_by(|a, b| parts[*a].tp.cmp(&parts[*b].tp));
                if parts.len() > self.stride {
                    self.relayout(parts.len());
                }
                self.parts.len() - 1
            }
        };
        self.last_slot = slot;
        slot
    }

    /// Makes room for `stride` slots per group in `accs`.
    fn relayout(&mut self, stride: usize) {
        let old = std::mem::take(&mut self.accs);
        let mut old = old.into_iter();
        self.accs = Vec::with_capacity(self.groups.len() * stride);
        for _ in 0..self.groups.len() {
            self.accs.extend(old.by_ref().take(self.stride));
            self.accs
                .extend(std::iter::repeat_with(|| None).take(stride - self.stride));
        }
        self.stride = stride;
    }

    /// Drops the groups left without any accumulator, renumbering the others.
    fn compact(&mut self) {
        let groups = std::mem::take(&mut self.groups);
        let mut accs = std::mem::take(&mut self.accs).into_iter();
        let mut renumber = vec![None; groups.len()];
        for (g, group) in groups.into_iter().enumerate() {
            let mine: Vec<Option<Acc>> = accs.by_ref().take(self.stride).collect();
            if mine.iter().any(Option::is_some) {
                renumber[g] = Some(self.groups.len());
                self.groups.push(group);
                self.accs.extend(mine);
            }
        }
        let keep = |g: &mut usize| match renumber[*g] {
            Some(n) => {
                *g = n;
                true
            }
            None => false,
        };
        self.index.retain(|_, g| keep(g));
        self.dirty.retain_mut(keep);
    }

    fn part(&self, tp: &TopicPartition) -> Option<&Part> {
        self.parts.iter().find(|p| p.tp == *tp)
    }

    /// Key, group and item of a record by plain paths, or `None` when the general
    /// path must decide (not strict JSON, too deep, a path jq would fail on, ...).
    fn absorb_fast<'r>(fast: &FastPaths, value: &'r [u8]) -> Option<Absorbed<'r>> {
        let [g, o] = pick(
            value,
            [
                fast.group_by.as_ref().unwrap_or(&fast.whole),
                fast.of.as_ref().unwrap_or(&fast.whole),
            ],
        )?;
        let (key, group) = match fast.group_by {
            Some(_) => (g.key().ok()?, GroupValue::Picked(g)),
            None => (Cow::Borrowed(&[][..]), GroupValue::Json(Value::Null)),
        };
        let item = match fast.needs_item {
            true => o.to_val().ok()?,
            false => Val::Null,
        };
        Some(Absorbed {
            key,
            group,
            item,
            partial: None,
            batch: None,
        })
    }

    /// Key, group and item of a record by parsing it and running the jq filters.
    fn absorb_general(&self, rec: &ConsumedRecord) -> Result<Absorbed<'static>, RecordError> {
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
            Ok(Absorbed {
                key: Cow::Owned(key),
                group: GroupValue::Json(group),
                item,
                partial: None,
                batch: None,
            })
        })
    }

    /// Adds one record's item to its group's accumulator for partition `slot`.
    fn add(&mut self, slot: usize, mut a: Absorbed<'_>, offset: i64) -> Result<(), RecordError> {
        let reducer = &self.reducer;
        let mut partial = a.partial.take();
        let mut fold = |acc: &mut Acc| match partial.take() {
            Some(p) => {
                let old = std::mem::replace(acc, Acc::Count(0));
                *acc = Self::merge(reducer, old, p)?;
                Ok(())
            }
            None => Self::update(reducer, acc, &a.item),
        };
        match self.index.get(&*a.key).copied() {
            Some(g) => {
                match &mut self.accs[g * self.stride + slot] {
                    Some(acc) => fold(acc).map_err(RecordError::new)?,
                    empty @ None => {
                        let mut acc = Self::init(reducer).map_err(RecordError::new)?;
                        fold(&mut acc).map_err(RecordError::new)?;
                        *empty = Some(acc);
                    }
                }
                if self.track_dirty && !self.groups[g].dirty {
                    self.groups[g].dirty = true;
                    self.dirty.push(g);
                }
            }
            None => {
                // Its JSON can be built: the general path would give the same value
                // (and its error, if it had one).
                let value = match a.group {
                    GroupValue::Json(v) => v,
                    GroupValue::Picked(p) => p.to_json().map_err(RecordError::new)?,
                };
                // A bad first item must not create an empty group.
                let mut acc = Self::init(reducer).map_err(RecordError::new)?;
                fold(&mut acc).map_err(RecordError::new)?;
                let g = self.groups.len();
                let plain_key = match a.batch {
                    Some(_) => a.key.get(BATCH_PREFIX..).unwrap_or_default(),
                    None => a.key.as_ref(),
                };
                self.groups.push(Group {
                    key: plain_key.into(),
                    value,
                    batch: a.batch,
                    dirty: self.track_dirty,
                });
                self.accs
                    .extend(std::iter::repeat_with(|| None).take(self.stride));
                self.accs[g * self.stride + slot] = Some(acc);
                self.index.insert(GroupKey::new(&a.key), g);
                if self.track_dirty {
                    self.dirty.push(g);
                }
            }
        }
        let part = &mut self.parts[slot];
        part.first_held.get_or_insert(offset);
        part.held += 1;
        self.since_emit += 1;
        Ok(())
    }
}

impl Reduce {
    fn init(reducer: &Reducer) -> Result<Acc, String> {
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

    fn update(reducer: &Reducer, acc: &mut Acc, item: &Val) -> Result<(), String> {
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

    fn merge(reducer: &Reducer, a: Acc, b: Acc) -> Result<Acc, String> {
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

    /// The merged result of group `g` across partitions, merged in partition order.
    fn group_result(&self, g: usize) -> Result<Value, String> {
        let accs = &self.accs[g * self.stride..(g + 1) * self.stride];
        let mut merged: Option<Acc> = None;
        for a in self.order.iter().filter_map(|s| accs.get(*s)?.as_ref()) {
            merged = Some(match merged {
                None => a.clone(),
                Some(m) => Self::merge(&self.reducer, m, a.clone())?,
            });
        }
        Ok(merged.map(|m| Self::result(&m)).unwrap_or(Value::Null))
    }

    fn emit_groups(
        &self,
        groups: &[usize],
        progress: Progress,
        is_final: bool,
        emits: &mut Vec<Emit>,
    ) {
        for &g in groups {
            let value = match self.group_result(g) {
                Ok(v) => v,
                Err(e) => json!({ "error": e }),
            };
            let group = &self.groups[g];
            let batch = group.batch.unwrap_or(progress.batch);
            let record = json!({
                "batch": batch,
                "group": group.value,
                "value": value,
                "final": is_final,
                "done": progress.done,
                "of": progress.of,
            });
            let mut e = emit_json(0, Some(group.key.to_vec()), &record);
            e.record.headers.push(batch_header(batch));
            emits.push(e);
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

    /// The final result of every group; everything held is out.
    fn finish_batch(&mut self, progress: Progress, emits: &mut Vec<Emit>) -> Tally {
        let mut sorted: Vec<usize> = (0..self.groups.len()).collect();
        sorted.sort_by(|a, b| self.groups[*a].key.cmp(&self.groups[*b].key));
        self.emit_groups(&sorted, progress, true, emits);
        let mut held = 0;
        for p in &mut self.parts {
            held += std::mem::take(&mut p.held);
            p.first_held = None;
        }
        self.index.clear();
        self.groups.clear();
        self.accs.clear();
        self.dirty.clear();
        self.since_emit = 0;
        Tally {
            out: held,
            ..Tally::default()
        }
    }

    fn emit_partials(&mut self, progress: Progress, emits: &mut Vec<Emit>) {
        let mut changed = std::mem::take(&mut self.dirty);
        changed.retain(|g| std::mem::replace(&mut self.groups[*g].dirty, false));
        self.emit_groups(&changed, progress, false, emits);
        self.since_emit = 0;
        self.last_emit = Instant::now();
    }
}

/// Bytes before a group key of an earlier batch: a marker and the batch number.
const BATCH_PREFIX: usize = 9;

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
        let slot = self.slot(rec);
        // A combined record (see `partial`) brings its accumulator along.
        let partial = match rec.headers.iter().find(|h| &*h.key == COMBINED_HEADER) {
            Some(h) => match partial::decode(&self.reducer, &h.value) {
                Ok(acc) => Some(acc),
                Err(e) => {
                    dead.push((rec.clone(), RecordError::new(e)));
                    t.dead_lettered += 1;
                    return t;
                }
            },
            None => None,
        };
        let fast = self
            .fast
            .as_ref()
            .and_then(|f| Self::absorb_fast(f, &rec.value));
        let absorbed = match fast {
            Some(a) => Ok(a),
            None => self.absorb_general(rec),
        };
        let batch = Some(own_batch(rec, progress.batch)).filter(|b| *b != progress.batch);
        let added = absorbed.and_then(|mut a| {
            a.partial = partial;
            if let Some(b) = batch {
                let mut key = Vec::with_capacity(BATCH_PREFIX + a.key.len());
                key.push(0xfe);
                key.extend_from_slice(&b.to_le_bytes());
                key.extend_from_slice(&a.key);
                a.key = Cow::Owned(key);
                a.batch = Some(b);
            }
            self.add(slot, a, rec.offset)
        });
        if let Err(e) = added {
            dead.push((rec.clone(), e));
            t.dead_lettered += 1;
        }
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
        Ok(self.finish_batch(progress, emits))
    }

    fn held_from(&self, tp: &TopicPartition) -> Option<i64> {
        self.part(tp).and_then(|p| p.first_held)
    }

    fn revoke(&mut self, tps: &[TopicPartition]) -> u64 {
        let mut forgotten = 0;
        for (slot, p) in self.parts.iter_mut().enumerate() {
            if !tps.contains(&p.tp) {
                continue;
            }
            p.first_held = None;
            forgotten += std::mem::take(&mut p.held);
            for accs in self.accs.chunks_mut(self.stride) {
                accs[slot] = None;
            }
        }
        self.compact();
        forgotten
    }
}

/// A combiner's accumulator of one group: opaque outside the reduce, whose reducer
/// it follows.
pub struct Partial(Acc);

/// The combiner's side of the reduce: it takes its outputs as this reduce would take
/// records, so the combined records merge into exactly what the records would have
/// added up to.
impl Reduce {
    /// Group key and item of a record by the general path (parsed, jq), as `absorb`
    /// takes them when the fast path gives up.
    pub fn key_and_item_general(
        &self,
        rec: &ConsumedRecord,
    ) -> Result<(Vec<u8>, Val), RecordError> {
        let a = self.absorb_general(rec)?;
        Ok((a.key.into_owned(), a.item))
    }

    /// Group key and item of a JSON value by the fast path (plain paths picked from
    /// the bytes), or `None` when `key_and_item_general` must decide.
    pub fn key_and_item_fast<'v>(&self, value: &'v [u8]) -> Option<(Cow<'v, [u8]>, Val)> {
        let a = Self::absorb_fast(self.fast.as_ref()?, value)?;
        Some((a.key, a.item))
    }

    /// An accumulator holding `item` alone.
    pub fn start(&self, item: &Val) -> Result<Partial, RecordError> {
        let mut acc = Self::init(&self.reducer).map_err(RecordError::new)?;
        Self::update(&self.reducer, &mut acc, item).map_err(RecordError::new)?;
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
        Self::update(&self.reducer, &mut p.0, item).map_err(RecordError::new)
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
        partial::encode(&p.0)
    }
}

mod partial;
pub use partial::HEADER as COMBINED_HEADER;

#[cfg(test)]
mod tests;
