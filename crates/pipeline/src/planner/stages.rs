//! Turning each stage spec into a plan stage: each kind plans itself
//! ([`crate::patterns`]), with the stage's place in the file and the resolved
//! partition counts at hand.

use crate::diagnostics::Diagnostic;
use crate::patterns::kind::Planning;
use crate::patterns::{KindSpec, filter, join, map, reduce, sharder, splitter};
use crate::plan::StageKind;
use crate::spec::StageSpec;

/// Build the stage's kind; `None` if anything failed (reported to `diags`).
pub fn build_kind(
    file_src: &str,
    stage: &StageSpec,
    partitions_of: &dyn Fn(&str) -> u32,
    diags: &mut Vec<Diagnostic>,
) -> Option<StageKind> {
    let cx = &mut Planning {
        file_src,
        stage: &stage.name.value,
        to: &stage.to,
        to_is_list: stage.to_is_list,
        partitions_of,
        diags,
    };
    Some(match stage.kind.as_ref()? {
        KindSpec::Copier => StageKind::Copier,
        KindSpec::Merger => StageKind::Merger,
        KindSpec::Filter(s) => StageKind::Filter {
            predicate: filter::plan(s, cx)?,
        },
        KindSpec::Map(s) => StageKind::Map {
            mapper: map::plan(s, cx)?,
        },
        KindSpec::Splitter(s) => StageKind::Splitter {
            mode: s.mode,
            routes: splitter::plan(s, cx)?,
            default: s.default.value.clone(),
        },
        KindSpec::Sharder(s) => StageKind::Sharder(sharder::plan(s, cx)?),
        // An exec's fields need no planning: the stage runs what they say.
        KindSpec::Exec(e) => StageKind::Exec(e.clone()),
        KindSpec::Join(s) => StageKind::Join(join::plan(s, cx)?),
        KindSpec::Reduce(s) => StageKind::Reduce(reduce::plan(s, cx)?),
    })
}
