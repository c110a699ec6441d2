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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::patterns::testing::{assert_keeps_key_headers_and_time, record, routes};

    #[test]
    fn every_record_goes_to_every_output_as_the_very_bytes_read() {
        let mut c = Copier { outputs: 3 };
        // Not JSON and oddly spaced: a copier neither parses nor re-encodes.
        let raw = b"{ \"n\": 1 }  not json";
        let rec = record(Some("k1"), raw);
        let mut emits = Vec::new();
        c.process_one(&rec, &mut emits)
            .expect("a copier never fails");
        let copy = Bytes::from_static(raw);
        assert_eq!(
            routes(&emits),
            [(0, copy.clone()), (1, copy.clone()), (2, copy)]
        );
        for e in &emits {
            assert_keeps_key_headers_and_time(e, &rec);
        }
        assert!(c.forwards(), "the task may move its records as stored");
    }

    #[test]
    fn a_copier_without_outputs_writes_nothing() {
        let mut emits = Vec::new();
        Copier { outputs: 0 }
            .process_one(&record(None, b"x"), &mut emits)
            .expect("a copier never fails");
        assert!(emits.is_empty());
    }
}
