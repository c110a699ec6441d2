//! map: a jq filter (or closure) per record; each of its outputs becomes one output
//! record (0..n: a flat map), encoded as compact JSON.

use bytes::Bytes;
use millrace_broker::ConsumedRecord;
use millrace_pipeline::expr::to_json_bytes;
use millrace_pipeline::{Format, Mapper};

use super::{value_of, with_vars};
use crate::operator::{Emit, RecordError, RecordOperator, derived};

pub struct Map {
    pub mapper: Mapper,
    pub format: Format,
}

impl RecordOperator for Map {
    fn process_one(
        &mut self,
        rec: &ConsumedRecord,
        emits: &mut Vec<Emit>,
    ) -> Result<(), RecordError> {
        let v = value_of(rec, self.format)?;
        with_vars(rec, |vars| {
            self.mapper.apply(v, vars, |o| {
                emits.push(Emit {
                    output: 0,
                    record: derived(rec, Bytes::from(to_json_bytes(&o))),
                })
            })
        })
        .map_err(RecordError::new)
    }
}
