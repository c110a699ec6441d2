//! merger: all records of all inputs to one output. Order per input partition holds
//! because the task emits in read order and keeps unkeyed records of one input
//! partition in one output partition.

use millrace_broker::ConsumedRecord;

use crate::operator::{Emit, RecordError, RecordOperator, derived};

pub struct Merger;

impl RecordOperator for Merger {
    fn process_one(
        &mut self,
        rec: &ConsumedRecord,
        emits: &mut Vec<Emit>,
    ) -> Result<(), RecordError> {
        emits.push(Emit {
            output: 0,
            record: derived(rec, rec.value.clone()),
        });
        Ok(())
    }

    fn forwards(&self) -> bool {
        true
    }
}
