//! splitter: each record to the first route whose condition holds (or, in `all` mode,
//! to every such route); a record no route takes goes to the `default` route, so
//! nothing is dropped.

use millrace_broker::ConsumedRecord;
use millrace_pipeline::expr::{
    ExprError, NativePredicates, Projection, RecordVars, Val, val_to_json,
};
use millrace_pipeline::{Format, Predicate, SplitMode};

use super::{native_of, projection_of, value_for, with_vars};
use crate::operator::{Emit, RecordError, RecordOperator, derived};

pub struct Route {
    pub when: Predicate,
    /// Output index the route writes to.
    pub output: usize,
}

pub struct Splitter {
    routes: Vec<Route>,
    default: usize,
    mode: SplitMode,
    format: Format,
    /// Every route's `when` over a few plain paths: evaluated on them, picked from the
    /// bytes, by native steps when all are within their grammar, else by jaq.
    native: Option<NativePredicates>,
    projection: Option<Projection>,
}

impl Splitter {
    pub fn new(routes: Vec<Route>, default: usize, mode: SplitMode, format: Format) -> Self {
        let projection = projection_of(routes.iter().map(|r| &r.when), format);
        Splitter {
            native: native_of(routes.iter().map(|r| &r.when), format),
            routes,
            default,
            mode,
            format,
            projection,
        }
    }
}

impl RecordOperator for Splitter {
    fn process_one(
        &mut self,
        rec: &ConsumedRecord,
        emits: &mut Vec<Emit>,
    ) -> Result<(), RecordError> {
        if self.route_natively(rec, emits) {
            return Ok(());
        }
        // The value is parsed, and the record's variables built, once for all routes.
        let v = value_for(rec, self.format, self.projection.as_ref())?;
        let mut matched = false;
        with_vars(rec, |vars| {
            let mut json = None;
            for route in &self.routes {
                if test_parsed(&route.when, &v, vars, &mut json)? {
                    matched = true;
                    emits.push(Emit {
                        output: route.output,
                        record: derived(rec, rec.value.clone()),
                    });
                    if self.mode == SplitMode::First {
                        break;
                    }
                }
            }
            Ok::<(), ExprError>(())
        })
        .map_err(RecordError::new)?;
        if !matched {
            emits.push(Emit {
                output: self.default,
                record: derived(rec, rec.value.clone()),
            });
        }
        Ok(())
    }
}

impl Splitter {
    /// Routes a record by the native conditions; `false` (nothing emitted) when jaq
    /// must decide it.
    fn route_natively(&self, rec: &ConsumedRecord, emits: &mut Vec<Emit>) -> bool {
        let Some(n) = &self.native else {
            return false;
        };
        let Some(values) = n.pick(&rec.value) else {
            return false;
        };
        let before = emits.len();
        for (i, route) in self.routes.iter().enumerate() {
            match n.test(i, &values) {
                Some(true) => {
                    emits.push(Emit {
                        output: route.output,
                        record: derived(rec, rec.value.clone()),
                    });
                    if self.mode == SplitMode::First {
                        break;
                    }
                }
                Some(false) => {}
                None => {
                    emits.truncate(before);
                    return false;
                }
            }
        }
        if emits.len() == before {
            emits.push(Emit {
                output: self.default,
                record: derived(rec, rec.value.clone()),
            });
        }
        true
    }
}

/// A route's condition on the parsed value. Closures take JSON: it is converted at
/// most once per record, for the first closure that needs it.
fn test_parsed(
    p: &Predicate,
    v: &Val,
    vars: &RecordVars<'_>,
    json: &mut Option<serde_json::Value>,
) -> Result<bool, ExprError> {
    match p {
        Predicate::Jq(_) => p.test(v, vars),
        Predicate::Fn(f) => {
            if json.is_none() {
                *json = Some(val_to_json(v)?);
            }
            Ok(json.as_ref().is_some_and(|j| f(j)))
        }
    }
}
