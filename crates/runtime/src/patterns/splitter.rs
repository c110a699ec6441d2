//! splitter: each record to the first route whose condition holds (or, in `all` mode,
//! to every such route); a record no route takes goes to the `default` route, so
//! nothing is dropped.

use millrace_broker::ConsumedRecord;
use millrace_pipeline::{Format, Predicate, SplitMode};

use super::filter::test;
use crate::operator::{Emit, RecordError, RecordOperator, derived};

pub struct Route {
    pub when: Predicate,
    /// Output index the route writes to.
    pub output: usize,
}

pub struct Splitter {
    pub routes: Vec<Route>,
    pub default: usize,
    pub mode: SplitMode,
    pub format: Format,
}

impl RecordOperator for Splitter {
    fn process_one(
        &mut self,
        rec: &ConsumedRecord,
        emits: &mut Vec<Emit>,
    ) -> Result<(), RecordError> {
        let mut matched = false;
        for route in &self.routes {
            if test(&route.when, rec, self.format)? {
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
        if !matched {
            emits.push(Emit {
                output: self.default,
                record: derived(rec, rec.value.clone()),
            });
        }
        Ok(())
    }
}
