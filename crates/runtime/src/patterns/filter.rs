//! filter: keeps the records whose predicate holds; the rest are counted as filtered.

use millrace_broker::ConsumedRecord;
use millrace_pipeline::{Format, Predicate};

use super::{value_of, with_vars};
use crate::operator::{Emit, RecordError, RecordOperator, derived};

pub struct Filter {
    pub predicate: Predicate,
    pub format: Format,
}

/// Evaluates a predicate on a record; not JSON or a jq error is a record error.
pub fn test(p: &Predicate, rec: &ConsumedRecord, format: Format) -> Result<bool, RecordError> {
    let v = value_of(rec, format)?;
    with_vars(rec, |vars| p.test(&v, vars)).map_err(RecordError::new)
}

impl RecordOperator for Filter {
    fn process_one(
        &mut self,
        rec: &ConsumedRecord,
        emits: &mut Vec<Emit>,
    ) -> Result<(), RecordError> {
        if test(&self.predicate, rec, self.format)? {
            emits.push(Emit {
                output: 0,
                record: derived(rec, rec.value.clone()),
            });
        }
        Ok(())
    }
}
