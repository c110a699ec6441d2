//! map: a jq filter (or closure) per record; each of its outputs becomes one output
//! record (0..n: a flat map), encoded as compact JSON.
//!
//! The filter runs natively on the record's bytes when it is within
//! `expr::NativeMap`'s grammar; a record the native tier cannot answer with certainty
//! is run through jaq.

use bytes::{Bytes, BytesMut};
use millrace_broker::ConsumedRecord;
use millrace_pipeline::expr::{CompiledMapper, to_json_bytes};
use millrace_pipeline::{Format, Mapper};

use super::with_vars;
use crate::operator::{Emit, RecordError, RecordOperator, derived};

pub struct Map {
    mapper: CompiledMapper,
    /// Outputs of the native tier are written here and handed out as slices of it.
    buf: BytesMut,
}

/// Bytes reserved at a time for native outputs (thousands of small records).
const CHUNK: usize = 64 << 10;

impl Map {
    pub fn new(mapper: Mapper, format: Format) -> Map {
        Map {
            mapper: CompiledMapper::new(mapper, format),
            buf: BytesMut::new(),
        }
    }

    /// The outputs of the native tier, or `false` when the record needs jaq (nothing
    /// is left in `emits` then).
    fn native(&mut self, rec: &ConsumedRecord, emits: &mut Vec<Emit>) -> bool {
        let before = emits.len();
        let buf = &mut self.buf;
        let answered = self.mapper.run_native(&rec.value, &mut |out| {
            if buf.capacity() - buf.len() < out.len() {
                buf.reserve(CHUNK.max(out.len()));
            }
            buf.extend_from_slice(out);
            emits.push(Emit {
                output: 0,
                record: derived(rec, buf.split().freeze()),
            });
        });
        if !answered {
            emits.truncate(before);
        }
        answered
    }

    /// Runs the native tier on a record, handing each output's JSON to `out`; `false`
    /// when there is none or the record needs jaq (the outputs given must then be
    /// dropped).
    pub fn run_native(&self, rec: &ConsumedRecord, out: &mut dyn FnMut(&[u8])) -> bool {
        self.mapper.run_native(&rec.value, out)
    }

    /// The outputs by jaq.
    pub fn run_jaq(&self, rec: &ConsumedRecord, emits: &mut Vec<Emit>) -> Result<(), RecordError> {
        with_vars(rec, |vars| {
            self.mapper.run_jaq(&rec.value, vars, |o| {
                emits.push(Emit {
                    output: 0,
                    record: derived(rec, Bytes::from(to_json_bytes(&o))),
                })
            })
        })
        .map_err(RecordError::new)
    }
}

impl RecordOperator for Map {
    fn process_one(
        &mut self,
        rec: &ConsumedRecord,
        emits: &mut Vec<Emit>,
    ) -> Result<(), RecordError> {
        if self.native(rec, emits) {
            return Ok(());
        }
        self.run_jaq(rec, emits)
    }
}
