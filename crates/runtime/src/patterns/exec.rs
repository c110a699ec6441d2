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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patterns::testing::{assert_keeps_key_headers_and_time, record};

    /// A real worker process: it answers each request with the request itself (the
    /// `value` shorthand: its value is the output), and rejects a request whose line
    /// says `reject` by copying its `{"id":N` and adding an error.
    const ECHO_OR_REJECT: &str = r#"while IFS= read -r l; do
  case "$l" in
    *reject*) printf '%s,"error":"rejected by the worker"}\n' "${l%%,*}" ;;
    *) printf '%s\n' "$l" ;;
  esac
done"#;

    fn exec(format: Format, ordered_by_key: bool) -> Exec {
        let pool = WorkerPool::start(ExecConfig::new(["sh", "-c", ECHO_OR_REJECT]))
            .expect("the worker starts");
        Exec {
            pool: Some(pool),
            ordered_by_key,
            format,
        }
    }

    fn values(emits: &[Emit]) -> Vec<String> {
        emits
            .iter()
            .map(|e| String::from_utf8_lossy(&e.record.value).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn each_record_is_the_workers_answer_and_rejections_and_bad_json_fail() {
        for ordered_by_key in [false, true] {
            let mut x = exec(Format::Json, ordered_by_key);
            let batch = [
                record(Some("k1"), br#"{ "n": 1, "s": "a b" }"#),
                record(Some("k2"), b"not json"),
                record(None, br#"{"do":"reject"}"#),
                record(Some("k1"), br#"[2]"#),
            ];
            let mut emits = Vec::new();
            let outcomes = x.process(&batch, &mut emits).await;
            // The worker's JSON, compact, in input order; key, headers and time kept.
            assert_eq!(values(&emits), [r#"{"n":1,"s":"a b"}"#, "[2]"]);
            assert_keeps_key_headers_and_time(&emits[0], &batch[0]);
            assert_keeps_key_headers_and_time(&emits[1], &batch[3]);
            assert_eq!(outcomes.len(), 4);
            assert!(matches!(outcomes[0], Outcome::Emitted(1)), "{outcomes:?}");
            // Not JSON never reaches a worker: the record's error at once.
            let Outcome::Failed(bad) = &outcomes[1] else {
                panic!("not JSON fails: {outcomes:?}");
            };
            assert!(bad.error.contains("not JSON"), "{}", bad.error);
            // The worker said no: its reason is the record's error, not retried.
            let Outcome::Failed(no) = &outcomes[2] else {
                panic!("a rejection fails: {outcomes:?}");
            };
            assert_eq!(
                (no.error.as_str(), no.attempts),
                ("rejected by the worker", 1)
            );
            assert!(matches!(outcomes[3], Outcome::Emitted(1)), "{outcomes:?}");
            x.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_text_line_goes_as_a_string_and_a_stopped_stage_abandons_its_batch() {
        let mut x = exec(Format::Text, false);
        let batch = [record(None, b"disk \"full\"")];
        let mut emits = Vec::new();
        let outcomes = x.process(&batch, &mut emits).await;
        assert!(
            matches!(outcomes[..], [Outcome::Emitted(1)]),
            "{outcomes:?}"
        );
        assert_eq!(values(&emits), [r#""disk \"full\"""#]);
        x.shutdown().await;
        // Stopped: nothing is processed, and nothing is failed either (read again).
        let mut emits = Vec::new();
        let outcomes = x.process(&batch, &mut emits).await;
        assert!(matches!(outcomes[..], [Outcome::Abandoned]), "{outcomes:?}");
        assert!(emits.is_empty());
    }
}
