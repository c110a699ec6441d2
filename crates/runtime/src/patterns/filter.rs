//! filter: keeps the records whose predicate holds; the rest are counted as filtered.

use millrace_broker::ConsumedRecord;
use millrace_pipeline::expr::CompiledConditions;
use millrace_pipeline::{Format, Predicate};

use super::with_vars;
use crate::operator::{Emit, RecordError, RecordOperator, derived};

pub struct Filter {
    /// `where`, run by the fastest tier that answers it.
    condition: CompiledConditions,
}

impl Filter {
    pub fn new(predicate: Predicate, format: Format) -> Self {
        Filter {
            condition: CompiledConditions::new(vec![predicate], format),
        }
    }
}

impl RecordOperator for Filter {
    fn process_one(
        &mut self,
        rec: &ConsumedRecord,
        emits: &mut Vec<Emit>,
    ) -> Result<(), RecordError> {
        // Not JSON or a jq error is a record error.
        let holds = with_vars(rec, |vars| self.condition.first(&rec.value, vars))
            .map_err(RecordError::new)?;
        if holds.is_some() {
            emits.push(Emit {
                output: 0,
                record: derived(rec, rec.value.clone()),
            });
        }
        Ok(())
    }
}
