//! exec: the work of a node, done by long-running worker processes (`workers: N`) that
//! speak newline-delimited JSON (docs/exec-protocol.md). A batch's items are handed to
//! the pool at once, so N workers work on them in parallel; outputs are emitted in
//! input order whatever order the workers finish in.

use async_trait::async_trait;
use bytes::Bytes;
use millrace_broker::ConsumedRecord;
use millrace_pipeline::expr::not_json_because;
use millrace_pipeline::{Format, Stage};

use crate::error::RuntimeError;
use crate::exec::{ExecConfig, WorkItem, WorkerPool};
use crate::operator::{Emit, Operator, Outcome, RecordError, derived};

pub struct Exec {
    pub pool: Option<WorkerPool>,
    pub ordered_by_key: bool,
    pub format: Format,
}

impl Exec {
    /// Starts the stage's workers, so a worker that cannot start is reported before
    /// anything runs.
    pub fn start(stage: &Stage, e: &millrace_pipeline::Exec) -> Result<Exec, RuntimeError> {
        let mut cfg = ExecConfig::new(e.command.clone());
        cfg.workers = usize::try_from(e.workers).unwrap_or(1).max(1);
        cfg.timeout = e.timeout;
        cfg.retries = e.retries;
        cfg.env = e.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let pool = WorkerPool::start(cfg).map_err(|source| RuntimeError::Exec {
            stage: stage.name.clone(),
            source,
        })?;
        Ok(Exec {
            pool: Some(pool),
            ordered_by_key: e.ordered_by_key,
            format: stage.format,
        })
    }
}

fn item_of(rec: &ConsumedRecord, format: Format) -> Result<WorkItem, RecordError> {
    let value = match format {
        Format::Json => serde_json::from_slice(&rec.value)
            .map_err(|e| RecordError::new(not_json_because(&rec.value, &e)))?,
        Format::Text => serde_json::Value::String(String::from_utf8_lossy(&rec.value).into_owned()),
    };
    Ok(WorkItem {
        value,
        key: rec.key.as_deref().map(WorkItem::key_from_bytes),
        topic: rec.topic.to_string(),
        partition: rec.partition,
        offset: rec.offset,
    })
}

#[async_trait]
impl Operator for Exec {
    async fn process(&mut self, batch: &[ConsumedRecord], emits: &mut Vec<Emit>) -> Vec<Outcome> {
        let Some(pool) = &self.pool else {
            return batch.iter().map(|_| Outcome::Abandoned).collect();
        };
        let mut calls = Vec::with_capacity(batch.len());
        let mut early: Vec<Option<RecordError>> = Vec::with_capacity(batch.len());
        for rec in batch {
            match item_of(rec, self.format) {
                Ok(item) => {
                    early.push(None);
                    let fut: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
                        if self.ordered_by_key {
                            let key = rec.key.as_deref().unwrap_or_default().to_vec();
                            Box::pin(pool.call_ordered(&key, item))
                        } else {
                            Box::pin(pool.call(item))
                        };
                    calls.push(fut);
                }
                Err(e) => early.push(Some(e)),
            }
        }
        let mut results = futures::future::join_all(calls).await.into_iter();
        let mut outcomes = Vec::with_capacity(batch.len());
        for (rec, early) in batch.iter().zip(early) {
            if let Some(e) = early {
                outcomes.push(Outcome::Failed(e));
                continue;
            }
            match results.next() {
                Some(Ok(values)) => {
                    let n = values.len();
                    for v in values {
                        let bytes = serde_json::to_vec(&v).unwrap_or_default();
                        emits.push(Emit {
                            output: 0,
                            record: derived(rec, Bytes::from(bytes)),
                        });
                    }
                    outcomes.push(Outcome::Emitted(n));
                }
                // The pool was stopped under the item: abandon it, uncommitted.
                Some(Err(f)) if f.attempts == 0 => outcomes.push(Outcome::Abandoned),
                Some(Err(f)) => outcomes.push(Outcome::Failed(RecordError {
                    error: f.error,
                    attempts: f.attempts,
                })),
                None => outcomes.push(Outcome::Abandoned),
            }
        }
        outcomes
    }

    async fn shutdown(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.shutdown().await;
        }
    }
}
