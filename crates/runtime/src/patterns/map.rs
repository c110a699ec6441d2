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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use millrace_pipeline::Expr;

    use super::*;
    use crate::patterns::testing::{one_output, record};

    fn map(src: &str, format: Format) -> Map {
        Map::new(Mapper::Jq(Expr::compile(src).expect("compiles")), format)
    }

    /// The values a map wrote for a record, as text, or the record's error.
    fn run(m: &mut Map, rec: &ConsumedRecord) -> Result<Vec<String>, String> {
        let values = one_output(m, rec)?;
        Ok(values
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect())
    }

    #[test]
    fn rewrites_each_record_as_compact_json_by_either_tier_alike() {
        let mut m = map("{n: .n, user: .user}", Format::Json);
        let rec = record(Some("k1"), br#"{ "user": "alice", "x": [1], "n": 2 }"#);
        let want = r#"{"n":2,"user":"alice"}"#;
        assert_eq!(run(&mut m, &rec), Ok(vec![want.to_string()]));
        // The native tier answers this one, and jaq gives the same bytes.
        let mut native = Vec::new();
        assert!(m.run_native(&rec, &mut |o| native.push(o.to_vec())));
        assert_eq!(native, [want.as_bytes()]);
        let mut by_jaq = Vec::new();
        m.run_jaq(&rec, &mut by_jaq).expect("jaq maps it");
        assert_eq!(by_jaq.len(), 1);
        assert_eq!(by_jaq[0].record.value.as_ref(), want.as_bytes());
        // Each record's outputs are its own, none of an earlier one's bytes.
        let next = record(Some("k2"), br#"{"user":"bob","n":3}"#);
        assert_eq!(
            run(&mut m, &next),
            Ok(vec![r#"{"n":3,"user":"bob"}"#.to_string()])
        );
    }

    #[test]
    fn a_flat_map_writes_each_output_in_order_and_none_for_an_empty_one() {
        let mut m = map(".items[] | {item: ., key: $key, at: $offset}", Format::Json);
        let rec = record(Some("k1"), br#"{"items":["a","b","c"]}"#);
        assert_eq!(
            run(&mut m, &rec),
            Ok(["a", "b", "c"]
                .map(|i| format!(r#"{{"item":"{i}","key":"k1","at":7}}"#))
                .to_vec())
        );
        assert_eq!(run(&mut m, &record(None, br#"{"items":[]}"#)), Ok(vec![]));
    }

    #[test]
    fn a_text_line_is_a_string_and_a_rust_mapper_runs_as_given() {
        let mut words = map("splits(\" \") | ascii_upcase", Format::Text);
        assert_eq!(
            run(&mut words, &record(None, b"disk full")),
            Ok(vec![r#""DISK""#.to_string(), r#""FULL""#.to_string()])
        );
        let twice = Mapper::Fn(Arc::new(|v: &serde_json::Value| {
            vec![v["n"].clone(), v["n"].clone()]
        }));
        let mut f = Map::new(twice, Format::Json);
        assert_eq!(
            run(&mut f, &record(None, br#"{"n":5}"#)),
            Ok(vec!["5".to_string(), "5".to_string()])
        );
    }

    #[test]
    fn a_record_that_is_not_json_or_fails_the_expression_is_the_records_error() {
        let mut m = map("{n: (.n + 1)}", Format::Json);
        let err = run(&mut m, &record(None, b"not json")).expect_err("not JSON");
        assert!(err.contains("not JSON"), "{err}");
        let err = run(&mut m, &record(None, br#"{"n":"five"}"#)).expect_err("a string + 1");
        assert!(!err.is_empty());
        assert_eq!(
            run(&mut m, &record(None, br#"{"n":5}"#)),
            Ok(vec![r#"{"n":6}"#.into()])
        );
    }
}
