//! map: a jq filter (or closure) per record; each of its outputs becomes one output
//! record (0..n: a flat map), encoded as compact JSON.
//!
//! A jq filter within `expr::NativeMap`'s grammar runs natively on the record's
//! bytes; a record it cannot answer with certainty is run through jaq as before.

use bytes::{Bytes, BytesMut};
use millrace_broker::ConsumedRecord;
use millrace_pipeline::expr::{NativeMap, to_json_bytes};
use millrace_pipeline::{Format, Mapper};

use super::{value_of, with_vars};
use crate::operator::{Emit, RecordError, RecordOperator, derived};

pub struct Map {
    mapper: Mapper,
    format: Format,
    native: Option<NativeMap>,
    /// Outputs of the native path are written here and handed out as slices of it.
    buf: BytesMut,
}

/// Bytes reserved at a time for native outputs (thousands of small records).
const CHUNK: usize = 64 << 10;

impl Map {
    pub fn new(mapper: Mapper, format: Format) -> Map {
        let native = match &mapper {
            Mapper::Jq(e) => NativeMap::compile(e.source()),
            Mapper::Fn(_) => None,
        };
        Map {
            mapper,
            format,
            native,
            buf: BytesMut::new(),
        }
    }

    /// The outputs of the native path, or `false` when the record needs jaq (nothing
    /// is left in `emits` then).
    fn native(&mut self, rec: &ConsumedRecord, emits: &mut Vec<Emit>) -> bool {
        let Some(native) = &self.native else {
            return false;
        };
        let before = emits.len();
        let buf = &mut self.buf;
        let answered = native.run(&rec.value, self.format, &mut |out| {
            if buf.capacity() - buf.len() < out.len() {
                buf.reserve(CHUNK.max(out.len()));
            }
            buf.extend_from_slice(out);
            emits.push(Emit {
                output: 0,
                record: derived(rec, buf.split().freeze()),
            });
        });
        if answered.is_none() {
            emits.truncate(before);
        }
        answered.is_some()
    }
}

impl Map {
    /// Runs the native form on a record, handing each output's JSON to `out`; `false`
    /// when there is none or the record needs jaq (the outputs given must then be
    /// dropped).
    pub fn run_native(&self, rec: &ConsumedRecord, out: &mut dyn FnMut(&[u8])) -> bool {
        self.native
            .as_ref()
            .is_some_and(|n| n.run(&rec.value, self.format, out).is_some())
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

impl Map {
    /// The outputs by jaq.
    pub fn run_jaq(&self, rec: &ConsumedRecord, emits: &mut Vec<Emit>) -> Result<(), RecordError> {
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
