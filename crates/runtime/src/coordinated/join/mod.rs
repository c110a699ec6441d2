//! join: the barrier of coordinated batch processing, in three modes, one file each.
//!
//! - `barrier`: the items of a batch are released once every input is complete for
//!   it (or one summary item per batch, with `combine`).
//! - `by_key` (`mode: key`): items with equal join key from every input are combined
//!   as soon as the last part arrives.
//! - `zip`: the i-th items of every input become one output `[a, b, …]`.

pub mod barrier;
pub mod by_key;
pub mod zip;

pub use barrier::Barrier;
pub use by_key::KeyJoin;
pub use zip::Zip;

use millrace_pipeline::{Join, JoinMode, Stage};

use super::Coordinated;
use crate::error::{RuntimeError, SetupError};

/// The join of a plan's stage, in its mode.
pub fn for_stage(stage: &Stage, join: &Join) -> Result<Box<dyn Coordinated>, RuntimeError> {
    Ok(match join.mode {
        // The task names the output topic and its partitions (`Coordinated::prepare`).
        JoinMode::Barrier => Box::new(Barrier::new(join.combine, String::new(), 1)),
        JoinMode::Zip => Box::new(Zip::new(stage.inputs.clone(), stage.format)),
        JoinMode::Key => {
            let key = join
                .key
                .clone()
                .ok_or_else(|| RuntimeError::setup(&stage.name, SetupError::KeyJoinWithoutKey))?;
            Box::new(KeyJoin::new(
                stage.inputs.clone(),
                key,
                join.timeout,
                stage.format,
            ))
        }
    })
}
