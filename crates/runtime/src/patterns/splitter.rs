//! splitter: each record to the first route whose condition holds (or, in `all` mode,
//! to every such route); a record no route takes goes to the `default` route, so
//! nothing is dropped.

use millrace_broker::ConsumedRecord;
use millrace_pipeline::expr::CompiledConditions;
use millrace_pipeline::{Route, SplitMode, Stage};

use super::with_vars;
use crate::error::RuntimeError;
use crate::operator::{Emit, RecordError, RecordOperator, derived, output_index};

pub struct Splitter {
    /// Every route's `when`, in route order, run by the fastest tier that answers
    /// them all.
    conditions: CompiledConditions,
    /// Output index of each route.
    outputs: Vec<usize>,
    default: usize,
    mode: SplitMode,
    /// The routes that hold for the record in hand.
    hits: Vec<usize>,
}

impl Splitter {
    /// The splitter of a plan's stage: its routes' topics as the stage's outputs.
    pub fn for_stage(
        stage: &Stage,
        mode: SplitMode,
        routes: &[Route],
        default: &str,
    ) -> Result<Self, RuntimeError> {
        let outputs = routes
            .iter()
            .map(|r| output_index(stage, &r.to))
            .collect::<Result<_, _>>()?;
        let when = routes.iter().map(|r| r.when.clone()).collect();
        Ok(Splitter {
            conditions: CompiledConditions::new(when, stage.format),
            outputs,
            default: output_index(stage, default)?,
            mode,
            hits: Vec::new(),
        })
    }
}

impl RecordOperator for Splitter {
    fn process_one(
        &mut self,
        rec: &ConsumedRecord,
        emits: &mut Vec<Emit>,
    ) -> Result<(), RecordError> {
        let (conditions, hits) = (&self.conditions, &mut self.hits);
        with_vars(rec, |vars| match self.mode {
            SplitMode::First => conditions.first(&rec.value, vars).map(|first| {
                hits.clear();
                hits.extend(first);
            }),
            SplitMode::All => conditions.all(&rec.value, vars, hits),
        })
        .map_err(RecordError::new)?;
        let copy = |output| Emit {
            output,
            record: derived(rec, rec.value.clone()),
        };
        if self.hits.is_empty() {
            emits.push(copy(self.default));
        }
        for &output in self.hits.iter().filter_map(|&i| self.outputs.get(i)) {
            emits.push(copy(output));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use millrace_pipeline::StageKind;

    use super::*;
    use crate::patterns::testing::{assert_keeps_key_headers_and_time, record, routes};

    /// The splitter of a one-stage pipeline routing email, sms and (default) none, in
    /// `mode`; outputs are numbered email 0, sms 1, none 2.
    fn splitter(mode: &str, format: &str) -> Splitter {
        let src = format!(
            r#"
pipeline: split
topics:
  users: {{ partitions: 1 }}
stages:
  notify:
    kind: splitter
    from: users
    mode: {mode}
    format: {format}
    routes:
      - {{ when: '$key == "e" or (.e? // false) == true', to: email }}
      - {{ when: '(.s? // false) == true or (type == "string" and startswith("sms"))', to: sms }}
    default: none
"#
        );
        let plan = millrace_pipeline::parse_str(&src, "split.yaml")
            .unwrap_or_else(|d| panic!("pipeline does not validate:\n{d}"));
        let stage = &plan.stages[0];
        assert_eq!(stage.outputs, ["email", "sms", "none"]);
        let StageKind::Splitter {
            mode,
            routes,
            default,
        } = &stage.kind
        else {
            panic!("a splitter stage");
        };
        Splitter::for_stage(stage, *mode, routes, default).expect("builds")
    }

    fn split(s: &mut Splitter, rec: &ConsumedRecord) -> Result<Vec<usize>, String> {
        let mut emits = Vec::new();
        s.process_one(rec, &mut emits).map_err(|e| e.error)?;
        for e in &emits {
            assert_eq!(e.record.value, rec.value, "the very bytes read");
            assert_keeps_key_headers_and_time(e, rec);
        }
        Ok(emits.iter().map(|e| e.output).collect())
    }

    #[test]
    fn first_mode_takes_the_first_route_that_holds_and_default_the_rest() {
        let mut s = splitter("first", "json");
        let both = br#"{ "e": true, "s": true }"#;
        assert_eq!(split(&mut s, &record(None, both)), Ok(vec![0]));
        assert_eq!(split(&mut s, &record(None, br#"{"s":true}"#)), Ok(vec![1]));
        // Record variables decide too: the key alone routes to email.
        assert_eq!(
            split(&mut s, &record(Some("e"), br#"{"s":true}"#)),
            Ok(vec![0])
        );
        assert_eq!(split(&mut s, &record(None, br#"{"x":1}"#)), Ok(vec![2]));
    }

    #[test]
    fn all_mode_copies_to_every_route_that_holds_in_route_order() {
        let mut s = splitter("all", "json");
        let rec = record(Some("k1"), br#"{"s":true,"e":true}"#);
        let mut emits = Vec::new();
        s.process_one(&rec, &mut emits).expect("routes");
        let copy = Bytes::from_static(br#"{"s":true,"e":true}"#);
        assert_eq!(routes(&emits), [(0, copy.clone()), (1, copy)]);
        assert_eq!(split(&mut s, &record(None, br#"{"s":true}"#)), Ok(vec![1]));
        assert_eq!(split(&mut s, &record(None, b"{}")), Ok(vec![2]));
    }

    #[test]
    fn text_lines_are_strings_and_a_record_that_is_not_json_is_the_records_error() {
        let mut lines = splitter("first", "text");
        assert_eq!(split(&mut lines, &record(None, b"sms to 555")), Ok(vec![1]));
        assert_eq!(split(&mut lines, &record(None, b"mail me")), Ok(vec![2]));
        let mut s = splitter("all", "json");
        let err = split(&mut s, &record(None, b"not json")).expect_err("not JSON");
        assert!(err.contains("not JSON"), "{err}");
    }
}
