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
