//! Redriven records in a stage's poll (see `redrive`): the stage reads the pipeline's
//! redrive topic as one more input, takes the records addressed to it, restored as it
//! first read them, and passes over the others. Passed-over records are neither counted
//! nor processed, but their offsets are committed with the poll's.

use millrace_broker::{ConsumedRecord, Names, ProduceRecord, TopicPartition};

use super::input::Input;
use crate::dead_letter;
use crate::error::RuntimeError;
use crate::redrive::{self, Mark};

/// The redrive topic as one stage reads it.
pub(super) struct Redrive {
    pub topic: String,
    pub stage: String,
}

/// Per record of a processed batch, its mark if it was redriven (empty when none
/// was: the common case costs nothing).
#[derive(Default)]
pub(super) struct Marks(Vec<Option<Mark>>);

impl Marks {
    pub(super) fn get(&self, i: usize) -> Option<&Mark> {
        self.0.get(i).and_then(Option::as_ref)
    }
}

/// A batch's redriven records: how many the stage processed, and how many of those
/// failed again.
#[derive(Default, Clone, Copy, Debug)]
pub(super) struct RedriveCounts {
    pub redriven: u64,
    pub failed: u64,
}

impl Redrive {
    /// Takes the poll's records of the redrive topic: those addressed to this stage are
    /// restored in place (and marked), the others are dropped. `offsets` are the poll's
    /// (computed before, so the dropped records are committed too). A forwarding
    /// stage's poll that holds some is decoded whole and goes the record path.
    pub(super) fn take(
        &self,
        batch: &mut Input,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<Marks, RuntimeError> {
        if !offsets.iter().any(|(tp, _)| *tp.topic == *self.topic) {
            return Ok(Marks::default());
        }
        if let Input::Encoded(polls) = batch {
            *batch = Input::Records(self.decode(polls)?);
        }
        let Input::Records(records) = batch else {
            return Ok(Marks::default());
        };
        let mut kept = Vec::with_capacity(records.len());
        let mut marks = Vec::with_capacity(records.len());
        for rec in std::mem::take(records) {
            if *rec.topic != *self.topic {
                kept.push(rec);
                marks.push(None);
            } else if redrive::addressed_to(&rec, &self.stage) {
                let (restored, mark) = redrive::restore(rec);
                kept.push(restored);
                marks.push(Some(mark));
            }
        }
        *records = kept;
        Ok(Marks(marks))
    }

    /// Decodes a forwarding stage's poll.
    fn decode(
        &self,
        polls: &[millrace_broker::encoded::EncodedPoll],
    ) -> Result<Vec<ConsumedRecord>, RuntimeError> {
        let mut names = Names::default();
        let mut out = Vec::new();
        for poll in polls {
            let before = out.len();
            for rec in poll.records.iter() {
                let offset = i64::try_from(rec.offset).unwrap_or(i64::MAX);
                let r = rec
                    .to_record(&mut names)
                    .map_err(|reason| RuntimeError::Undecodable {
                        stage: self.stage.clone(),
                        partition: poll.tp.clone(),
                        offset,
                        reason,
                    })?;
                out.push(ConsumedRecord {
                    topic: poll.tp.topic.clone(),
                    partition: poll.tp.partition,
                    offset,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                    timestamp: r.timestamp,
                });
            }
            // Offsets committed for this poll must not pass a record not taken.
            let (expected, taken) = (poll.records.len(), out.len() - before);
            if taken < expected {
                return Err(RuntimeError::Unparsed {
                    stage: self.stage.clone(),
                    partition: poll.tp.clone(),
                    from: i64::try_from(poll.records.first_offset()).unwrap_or(i64::MAX),
                    missed: expected - taken,
                    of: expected,
                });
            }
        }
        Ok(out)
    }
}

/// The dead letter of a record that failed: a redriven one goes back with its earlier
/// attempts and the link to its previous dead letter.
pub(super) fn dead_letter(
    stage: &str,
    rec: &ConsumedRecord,
    error: &str,
    attempts: u32,
    mark: Option<&Mark>,
    counts: &mut RedriveCounts,
) -> ProduceRecord {
    match mark {
        Some(m) => {
            counts.failed += 1;
            redrive::dead_letter_again(stage, rec, error, attempts, m)
        }
        None => dead_letter::record(stage, rec, error, attempts),
    }
}
