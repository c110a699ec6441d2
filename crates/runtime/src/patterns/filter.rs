//! filter: keeps the records whose predicate holds; the rest are counted as filtered.

use millrace_broker::ConsumedRecord;
use millrace_pipeline::expr::{NativePredicates, Projection};
use millrace_pipeline::{Format, Predicate};

use super::{native_of, projection_of, value_for, with_vars};
use crate::operator::{Emit, RecordError, RecordOperator, derived};

pub struct Filter {
    predicate: Predicate,
    format: Format,
    /// `where` over a few plain paths: evaluated on them, picked from the bytes, by
    /// native steps when it is within their grammar, else by jaq.
    native: Option<NativePredicates>,
    projection: Option<Projection>,
}

impl Filter {
    pub fn new(predicate: Predicate, format: Format) -> Self {
        let projection = projection_of([&predicate], format);
        Filter {
            native: native_of([&predicate], format),
            predicate,
            format,
            projection,
        }
    }

    /// Evaluates the predicate on a record; not JSON or a jq error is a record error.
    fn test(&self, rec: &ConsumedRecord) -> Result<bool, RecordError> {
        if let Some(n) = &self.native
            && let Some(values) = n.pick(&rec.value)
            && let Some(keep) = n.test(0, &values)
        {
            return Ok(keep);
        }
        let v = value_for(rec, self.format, self.projection.as_ref())?;
        with_vars(rec, |vars| self.predicate.test(&v, vars)).map_err(RecordError::new)
    }
}

impl RecordOperator for Filter {
    fn process_one(
        &mut self,
        rec: &ConsumedRecord,
        emits: &mut Vec<Emit>,
    ) -> Result<(), RecordError> {
        if self.test(rec)? {
            emits.push(Emit {
                output: 0,
                record: derived(rec, rec.value.clone()),
            });
        }
        Ok(())
    }
}
