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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::patterns::testing::{assert_keeps_key_headers_and_time, record, routes};

    #[test]
    fn records_of_every_input_go_to_the_one_output_unchanged() {
        let mut m = Merger;
        let left = record(Some("k1"), br#"{"side":"l"}"#);
        let mut right = record(None, b"plain text");
        right.topic = Arc::from("right");
        let mut emits = Vec::new();
        for rec in [&left, &right] {
            m.process_one(rec, &mut emits)
                .expect("a merger never fails");
        }
        assert_eq!(
            routes(&emits),
            [
                (0, Bytes::from_static(br#"{"side":"l"}"#)),
                (0, Bytes::from_static(b"plain text")),
            ],
            "one output each, in read order"
        );
        assert_keeps_key_headers_and_time(&emits[0], &left);
        assert_keeps_key_headers_and_time(&emits[1], &right);
        assert!(m.forwards(), "the task may move its records as stored");
    }
}
