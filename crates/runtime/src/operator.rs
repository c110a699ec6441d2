//! What a pattern does to a batch of records.
//!
//! A pattern is an `Operator`: it turns each input record into outputs (to one of the
//! stage's output topics), or filters it, or fails it (the task dead-letters it). The
//! task around it owns reading, producing, committing and counting, so every pattern
//! gets at-least-once delivery and conservation of records for free.

use async_trait::async_trait;
use millrace_broker::{ConsumedRecord, ProduceRecord};
use millrace_pipeline::Stage;

use crate::error::{RuntimeError, SetupError};

/// The number of `topic` among the stage's outputs, as an [`Emit`] names it.
pub fn output_index(stage: &Stage, topic: &str) -> Result<usize, RuntimeError> {
    stage
        .outputs
        .iter()
        .position(|t| t == topic)
        .ok_or_else(|| {
            RuntimeError::setup(
                &stage.name,
                SetupError::NotAnOutput {
                    topic: topic.to_string(),
                },
            )
        })
}

/// One output record for the stage's output topic number `output`.
#[derive(Debug)]
pub struct Emit {
    pub output: usize,
    pub record: ProduceRecord,
}

/// A record the pattern could not process; it goes to the dead-letter topic.
#[derive(Debug, Clone)]
pub struct RecordError {
    pub error: String,
    pub attempts: u32,
}

impl RecordError {
    pub fn new(error: impl std::fmt::Display) -> Self {
        RecordError {
            error: error.to_string(),
            attempts: 1,
        }
    }
}

/// How one input record ended.
#[derive(Debug)]
pub enum Outcome {
    /// Emitted this many records (0 means filtered).
    Emitted(usize),
    Failed(RecordError),
    /// The stage is stopping and gave up on the record: the batch is not committed,
    /// so the record is read again next time.
    Abandoned,
}

#[async_trait]
pub trait Operator: Send {
    /// Processes a batch; returns one outcome per input, in order, and pushes the
    /// outputs (in input order) onto `emits`.
    async fn process(&mut self, batch: &[ConsumedRecord], emits: &mut Vec<Emit>) -> Vec<Outcome>;

    /// Called once when the stage stops (exec uses it to stop its workers).
    async fn shutdown(&mut self) {}

    /// Whether every record goes unchanged to every output (copier, merger): the task
    /// may then move records as the backend stores them, without this operator.
    fn forwards(&self) -> bool {
        false
    }
}

/// Most patterns look at one record at a time and never wait.
pub trait RecordOperator: Send {
    fn process_one(
        &mut self,
        rec: &ConsumedRecord,
        emits: &mut Vec<Emit>,
    ) -> Result<(), RecordError>;

    /// See [`Operator::forwards`].
    fn forwards(&self) -> bool {
        false
    }
}

/// Runs a `RecordOperator` over a batch.
pub struct PerRecord<T>(pub T);

#[async_trait]
impl<T: RecordOperator> Operator for PerRecord<T> {
    async fn process(&mut self, batch: &[ConsumedRecord], emits: &mut Vec<Emit>) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for rec in batch {
            let before = emits.len();
            match self.0.process_one(rec, emits) {
                Ok(()) => outcomes.push(Outcome::Emitted(emits.len() - before)),
                Err(e) => {
                    // A failed record leaves nothing half-emitted behind.
                    emits.truncate(before);
                    outcomes.push(Outcome::Failed(e));
                }
            }
        }
        outcomes
    }

    fn forwards(&self) -> bool {
        self.0.forwards()
    }
}

/// The record an output keeps from its input: key, headers and timestamp travel with
/// the work item.
pub fn derived(rec: &ConsumedRecord, value: bytes::Bytes) -> ProduceRecord {
    // Room for the lineage header the stage adds: one allocation, not two.
    let mut headers = Vec::with_capacity(rec.headers.len() + 1);
    headers.extend_from_slice(&rec.headers);
    ProduceRecord {
        partition: None,
        key: rec.key.clone(),
        value,
        headers,
        timestamp: Some(rec.timestamp),
    }
}
