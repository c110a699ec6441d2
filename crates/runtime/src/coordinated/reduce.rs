//! reduce: merges the items of a batch into one aggregate per group key, starting as
//! soon as items arrive.
//!
//! Each input partition keeps its own accumulators ([`acc`]); results merge them.
//! Results are `{"batch", "group", "value", "final", "done", "of"}` keyed by the group
//! key: `(batch, group)` identifies a result, so a sink can upsert and a replay after
//! a crash does not double-count. Partial results (`final: false`) go out every N
//! items or T when asked; `done`/`of` say how many input partitions have completed the
//! batch.
//!
//! - `items`: how a record is read into group key, group and item (fast or by jaq).
//! - `acc`: the reducers' accumulators: update, merge, result.
//! - `partial`: the side of combining: a combiner's accumulators, and the header a
//!   combined record carries them in.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use millrace_broker::{ConsumedRecord, TopicPartition};
use millrace_pipeline::{Emit as EmitPolicy, Format, Reducer, Selector};
use serde_json::{Value, json};

use self::acc::Acc;
use self::items::{Absorbed, GroupValue, Items};
use super::key::InlineKey;
use super::{Coordinated, FinishContext, Progress, Tally, emit_json};
use crate::batch::{batch_header, own_batch};
use crate::error::RuntimeError;
use crate::operator::{Emit, RecordError};

pub mod acc;
mod items;
pub mod partial;

pub use partial::{HEADER as COMBINED_HEADER, Partial, PartialReduce};

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

pub struct Reduce {
    pub reducer: Reducer,
    pub emit: EmitPolicy,
    /// How records are read into group key, group and item.
    items: Items,
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
        Reduce {
            track_dirty: emit.every_records.is_some() || emit.every.is_some(),
            items: Items::new(group_by, &reducer, of, format),
            reducer,
            emit,
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
        self.items.fast.is_some()
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

    /// Adds one record's item to its group's accumulator for partition `slot`.
    fn add(&mut self, slot: usize, mut a: Absorbed<'_>, offset: i64) -> Result<(), RecordError> {
        let reducer = &self.reducer;
        let mut partial = a.partial.take();
        let mut fold = |acc: &mut Acc| match partial.take() {
            Some(p) => {
                let old = std::mem::replace(acc, Acc::Count(0));
                *acc = Acc::merge(reducer, old, p)?;
                Ok(())
            }
            None => Acc::update(reducer, acc, &a.item),
        };
        match self.index.get(&*a.key).copied() {
            Some(g) => {
                match &mut self.accs[g * self.stride + slot] {
                    Some(acc) => fold(acc).map_err(RecordError::new)?,
                    empty @ None => {
                        let mut acc = Acc::init(reducer).map_err(RecordError::new)?;
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
                let mut acc = Acc::init(reducer).map_err(RecordError::new)?;
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
    /// The merged result of group `g` across partitions, merged in partition order.
    fn group_result(&self, g: usize) -> Result<Value, String> {
        let accs = &self.accs[g * self.stride..(g + 1) * self.stride];
        let mut merged: Option<Acc> = None;
        for a in self.order.iter().filter_map(|s| accs.get(*s)?.as_ref()) {
            merged = Some(match merged {
                None => a.clone(),
                Some(m) => Acc::merge(&self.reducer, m, a.clone())?,
            });
        }
        Ok(merged.map(|m| Acc::result(&m)).unwrap_or(Value::Null))
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
        let absorbed = self.items.read(rec);
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

#[cfg(test)]
mod tests;
