//! A zip join (`mode: zip`): the i-th item of every input become one output
//! `[a, b, …]`, as the book's two-topic hands-on prints pairs; unpaired items stay held
//! (uncommitted) for their partners in a later batch.

use std::collections::VecDeque;

use async_trait::async_trait;
use millrace_broker::{ConsumedRecord, TopicPartition};
use millrace_pipeline::Format;
use millrace_pipeline::expr::not_json_because;

use crate::coordinated::{Coordinated, FinishContext, Progress, Tally, emit_json, tp_of};
use crate::error::RuntimeError;
use crate::operator::{Emit, RecordError};

pub struct Zip {
    pub inputs: Vec<String>,
    pub format: Format,
    queues: Vec<VecDeque<(ConsumedRecord, serde_json::Value)>>,
}

impl Zip {
    pub fn new(inputs: Vec<String>, format: Format) -> Self {
        let n = inputs.len();
        Zip {
            inputs,
            format,
            queues: (0..n).map(|_| VecDeque::new()).collect(),
        }
    }
}

#[async_trait]
impl Coordinated for Zip {
    fn commits_at_finish(&self) -> bool {
        false
    }

    fn absorb(
        &mut self,
        rec: &ConsumedRecord,
        _progress: Progress,
        emits: &mut Vec<Emit>,
        dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Tally {
        let mut t = Tally::default();
        let value = match self.format {
            Format::Json => match serde_json::from_slice(&rec.value) {
                Ok(v) => v,
                Err(e) => {
                    dead.push((
                        rec.clone(),
                        RecordError::new(not_json_because(&rec.value, &e)),
                    ));
                    t.dead_lettered += 1;
                    return t;
                }
            },
            Format::Text => {
                serde_json::Value::String(String::from_utf8_lossy(&rec.value).into_owned())
            }
        };
        let Some(i) = self.inputs.iter().position(|x| **x == *rec.topic) else {
            return t;
        };
        self.queues[i].push_back((rec.clone(), value));
        while self.queues.iter().all(|q| !q.is_empty()) {
            let mut pair = Vec::with_capacity(self.queues.len());
            for q in self.queues.iter_mut() {
                if let Some((_, v)) = q.pop_front() {
                    pair.push(v);
                    t.out += 1;
                }
            }
            emits.push(emit_json(0, None, &serde_json::Value::Array(pair)));
        }
        t
    }

    async fn finish(
        &mut self,
        _progress: Progress,
        _ctx: &FinishContext<'_>,
        _emits: &mut Vec<Emit>,
        _dead: &mut Vec<(ConsumedRecord, RecordError)>,
    ) -> Result<Tally, RuntimeError> {
        // Unpaired items wait, uncommitted, for their partners in a later batch.
        Ok(Tally::default())
    }

    fn held_from(&self, tp: &TopicPartition) -> Option<i64> {
        self.queues
            .iter()
            .flat_map(|q| q.iter())
            .filter(|(r, _)| r.topic == tp.topic && r.partition == tp.partition)
            .map(|(r, _)| r.offset)
            .min()
    }

    fn revoke(&mut self, tps: &[TopicPartition]) -> u64 {
        let mut forgotten = 0;
        for q in self.queues.iter_mut() {
            let before = q.len();
            q.retain(|(r, _)| !tps.contains(&tp_of(r)));
            forgotten += (before - q.len()) as u64;
        }
        forgotten
    }
}
