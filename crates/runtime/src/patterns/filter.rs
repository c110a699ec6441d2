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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use millrace_pipeline::Expr;

    use super::*;
    // A filter writes its one output, keeping the record's key, headers and time.
    use crate::patterns::testing::{one_output as run, record as rec};

    fn filter(src: &str, format: Format) -> Filter {
        Filter::new(Predicate::Jq(Expr::compile(src).expect("compiles")), format)
    }

    #[test]
    fn keeps_the_records_whose_condition_holds_as_the_very_bytes_read() {
        let mut f = filter(".level == \"error\" and .n > 1", Format::Json);
        // Spacing and key order are the input's: nothing is re-encoded.
        let kept = br#"{ "n": 2,  "level":"error" }"#;
        assert_eq!(
            run(&mut f, &rec(None, kept)),
            Ok(vec![Bytes::from_static(kept)])
        );
        for dropped in [
            &br#"{"level":"error","n":1}"#[..],
            br#"{"level":"info","n":5}"#,
            br#"{"n":9}"#,
        ] {
            assert_eq!(run(&mut f, &rec(None, dropped)), Ok(vec![]), "{dropped:?}");
        }
    }

    #[test]
    fn a_record_that_is_not_json_or_fails_the_expression_is_the_records_error() {
        let mut f = filter(".n > 1", Format::Json);
        let err = run(&mut f, &rec(None, b"not json")).expect_err("not JSON");
        assert!(!err.is_empty());
        let mut g = filter(".n | ascii_downcase == \"x\"", Format::Json);
        run(&mut g, &rec(None, br#"{"n":1}"#)).expect_err("a number has no case");
    }

    #[test]
    fn the_records_variables_and_text_lines_can_be_tested() {
        let mut by_key = filter("$key == \"k1\"", Format::Json);
        assert_eq!(
            run(&mut by_key, &rec(Some("k1"), b"{}")).map(|v| v.len()),
            Ok(1)
        );
        assert_eq!(
            run(&mut by_key, &rec(Some("k2"), b"{}")).map(|v| v.len()),
            Ok(0)
        );
        // A text stage's value is the line, a string to jq.
        let mut lines = filter("startswith(\"ERROR\")", Format::Text);
        assert_eq!(
            run(&mut lines, &rec(None, b"ERROR disk full")),
            Ok(vec![Bytes::from_static(b"ERROR disk full")])
        );
        assert_eq!(run(&mut lines, &rec(None, b"INFO ok")), Ok(vec![]));
    }

    #[test]
    fn a_rust_predicate_decides_as_the_builder_gives_it() {
        let even = Predicate::Fn(Arc::new(|v: &serde_json::Value| {
            v["n"].as_i64().is_some_and(|n| n % 2 == 0)
        }));
        let mut f = Filter::new(even, Format::Json);
        assert_eq!(
            run(&mut f, &rec(None, br#"{"n":4}"#)).map(|v| v.len()),
            Ok(1)
        );
        assert_eq!(
            run(&mut f, &rec(None, br#"{"n":3}"#)).map(|v| v.len()),
            Ok(0)
        );
    }
}
