//! copier: every record to every output topic.

use millrace_broker::ConsumedRecord;

use crate::operator::{Emit, RecordError, RecordOperator, derived};

pub struct Copier {
    pub outputs: usize,
}

impl RecordOperator for Copier {
    fn process_one(
        &mut self,
        rec: &ConsumedRecord,
        emits: &mut Vec<Emit>,
    ) -> Result<(), RecordError> {
        for output in 0..self.outputs {
            emits.push(Emit {
                output,
                record: derived(rec, rec.value.clone()),
            });
        }
        Ok(())
    }

    fn forwards(&self) -> bool {
        true
    }
}
