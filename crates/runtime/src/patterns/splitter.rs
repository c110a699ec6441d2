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
        if let Some(n) = &self.native
            && let Some(values) = n.pick(&rec.value)
        {
            let before = emits.len();
            // `None`: jaq must decide this record (see `NativePredicates::test`).
            if self
                .route(rec, emits, |i, _| n.test(i, &values).ok_or(()))
                .is_ok()
            {
                return Ok(());
            }
            emits.truncate(before);
        }
        // The value is parsed, and the record's variables built, once for all routes.
        let v = value_for(rec, self.format, self.projection.as_ref())?;
        with_vars(rec, |vars| {
            let mut json = None;
            self.route(rec, emits, |_, route| {
                test_parsed(&route.when, &v, vars, &mut json)
            })
        })
        .map_err(RecordError::new)
    }
}

impl Splitter {
    /// Emits a copy of `rec` to the routes whose condition (`test`, by route number)
    /// holds, to the first of them only in `first` mode, or to the default route when
    /// none does. Stops at the first error.
    fn route<E>(
        &self,
        rec: &ConsumedRecord,
        emits: &mut Vec<Emit>,
        mut test: impl FnMut(usize, &Route) -> Result<bool, E>,
    ) -> Result<(), E> {
        let copy = |output| Emit {
            output,
            record: derived(rec, rec.value.clone()),
        };
        let before = emits.len();
        for (i, route) in self.routes.iter().enumerate() {
            if test(i, route)? {
                emits.push(copy(route.output));
                if self.mode == SplitMode::First {
                    break;
                }
            }
        }
        if emits.len() == before {
            emits.push(copy(self.default));
        }
        Ok(())
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
