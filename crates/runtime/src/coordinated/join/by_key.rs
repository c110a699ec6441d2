//! A join by key (`mode: key`): items with equal join key from every input are
//! combined (objects merged, left to right) as soon as the last part arrives; a key
//! still missing an input after `timeout` (or at the end of the batch) is
//! dead-lettered with the parts that did arrive.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use millrace_broker::{ConsumedRecord, TopicPartition};
use millrace_pipeline::expr::CompiledSelector;
use millrace_pipeline::{Format, Selector};

use crate::coordinated::{Coordinated, FinishContext, Progress, Tally, emit_json, tp_of};
use crate::error::RuntimeError;
use crate::operator::{Emit, RecordError};
use crate::patterns::with_vars;

struct Part {
    rec: ConsumedRecord,
}

struct Pending {
    parts: Vec<Option<Part>>,
    since: Instant,
}

pub struct KeyJoin {
    pub inputs: Vec<String>,
    /// The join key, run by the fastest tier that answers it.
    key: CompiledSelector,
    pub timeout: Option<Duration>,
    pending: HashMap<Vec<u8>, Pending>,
    /// Offsets still held per partition, so commits stay below them.
    held: BTreeMap<TopicPartition, BTreeSet<i64>>,
}

impl KeyJoin {
    pub fn new(
        inputs: Vec<String>,
        key: Selector,
        timeout: Option<Duration>,
        format: Format,
    ) -> Self {
        KeyJoin {
            inputs,
            key: CompiledSelector::new(key, format),
            timeout,
            pending: HashMap::new(),
            held: BTreeMap::new(),
        }
    }

    fn unhold(&mut self, rec: &ConsumedRecord) {
        let tp = tp_of(rec);
        if let Some(set) = self.held.get_mut(&tp) {
            set.remove(&rec.offset);
            if set.is_empty() {
                self.held.remove(&tp);
            }
        }
    }

    fn combined(&self, parts: &[Option<Part>]) -> serde_json::Value {
        let values: Vec<serde_json::Value> = parts
            .iter()
            .flatten()
            .map(|p| serde_json::from_slice(&p.rec.value).unwrap_or(serde_json::Value::Null))
            .collect();
        if values.iter().all(|v| v.is_object()) {
            let mut merged = serde_json::Map::new();
            for v in values {
                if let serde_json::Value::Object(m) = v {
                    merged.extend(m);
                }
            }
            serde_json::Value::Object(merged)
        } else {
            serde_json::Value::Array(values)
        }
    }

    fn expire(
        &mut self,
        keys: Vec<Vec<u8>>,
        why: &str,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Tally {
        let mut t = Tally::default();
        for k in keys {
            let Some(p) = self.pending.remove(&k) else {
                continue;
            };
            let missing: Vec<&str> = p
                .parts
                .iter()
                .zip(&self.inputs)
                .filter(|(part, _)| part.is_none())
                .map(|(_, name)| name.as_str())
                .collect();
            let error = format!(
                "join key '{}' is missing input(s) {} {why}",
                String::from_utf8_lossy(&k),
                missing.join(", ")
            );
            for part in p.parts.into_iter().flatten() {
                self.unhold(&part.rec);
                t.dead_lettered += 1;
                dead.push((part.rec, RecordError::new(&error)));
            }
        }
        t
    }
}

#[async_trait]
impl Coordinated for KeyJoin {
    fn absorb(
        &mut self,
        rec: &ConsumedRecord,
        _progress: Progress,
        emits: &mut Vec<Emit>,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Tally {
        let mut t = Tally::default();
        let key = match with_vars(rec, |vars| self.key.key(&rec.value, vars)) {
            Ok(k) => k,
            Err(e) => {
                dead.push((rec.clone(), RecordError::new(e)));
                t.dead_lettered += 1;
                return t;
            }
        };
        let Some(input) = self.inputs.iter().position(|i| **i == *rec.topic) else {
            return t;
        };
        let n = self.inputs.len();
        let entry = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            parts: (0..n).map(|_| None).collect(),
            since: Instant::now(),
        });
        if let Some(old) = entry.parts[input].replace(Part { rec: rec.clone() }) {
            // A replayed duplicate of the same part: the newer copy stands.
            let old_rec = old.rec;
            self.unhold(&old_rec);
            t.filtered += 1;
        }
        self.held.entry(tp_of(rec)).or_default().insert(rec.offset);
        if self
            .pending
            .get(&key)
            .is_some_and(|p| p.parts.iter().all(|x| x.is_some()))
            && let Some(p) = self.pending.remove(&key)
        {
            let value = self.combined(&p.parts);
            for part in p.parts.iter().flatten() {
                self.unhold(&part.rec);
                t.out += 1;
            }
            emits.push(emit_json(0, Some(key), &value));
        }
        t
    }

    fn tick(
        &mut self,
        _progress: Progress,
        _emits: &mut Vec<Emit>,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Tally {
        let Some(timeout) = self.timeout else {
            return Tally::default();
        };
        let expired: Vec<Vec<u8>> = self
            .pending
            .iter()
            .filter(|(_, p)| p.since.elapsed() >= timeout)
            .map(|(k, _)| k.clone())
            .collect();
        self.expire(expired, &format!("after the {timeout:?} timeout"), dead)
    }

    async fn finish(
        &mut self,
        _progress: Progress,
        _ctx: &FinishContext<'_>,
        _emits: &mut Vec<Emit>,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Result<Tally, RuntimeError> {
        let keys: Vec<Vec<u8>> = self.pending.keys().cloned().collect();
        Ok(self.expire(keys, "at the end of the batch", dead))
    }

    fn held_from(&self, tp: &TopicPartition) -> Option<i64> {
        self.held.get(tp).and_then(|s| s.first().copied())
    }

    fn revoke(&mut self, tps: &[TopicPartition]) -> u64 {
        let mut forgotten = 0;
        for p in self.pending.values_mut() {
            for slot in p.parts.iter_mut() {
                if slot
                    .as_ref()
                    .is_some_and(|part| tps.contains(&tp_of(&part.rec)))
                {
                    *slot = None;
                    forgotten += 1;
                }
            }
        }
        self.pending
            .retain(|_, p| p.parts.iter().any(|x| x.is_some()));
        for tp in tps {
            self.held.remove(tp);
        }
        forgotten
    }
}
