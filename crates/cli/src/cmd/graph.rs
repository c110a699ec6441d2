//! `millrace validate` and `millrace graph`.

use std::io::Write;
use std::path::Path;

use millrace_pipeline::diagnostics::count;
use millrace_pipeline::{Diagnostic, Plan};

use crate::args::GraphFormat;
use crate::report::note;

/// Loads and checks a pipeline file; every error is reported at once (the error is the
/// file's [`millrace_pipeline::Diagnostics`], printed as they are).
pub fn load(file: &Path) -> anyhow::Result<Plan> {
    Ok(millrace_pipeline::load(file)?)
}

/// Prints a plan's warnings on standard error, `file:line:col: warning: …` with hints;
/// `keep` picks which.
pub fn print_warnings(file: &Path, plan: &Plan, keep: impl Fn(&Diagnostic) -> bool) {
    let name = file.display().to_string();
    for w in plan.warnings.iter().filter(|w| keep(w)) {
        note!("{}", w.display(&name));
    }
}

pub fn validate(file: &Path) -> anyhow::Result<()> {
    let plan = load(file)?;
    print_warnings(file, &plan, |_| true);
    let mut summary = format!(
        "{}: ok ({}, {}",
        file.display(),
        count(plan.stages.len(), "stage"),
        count(plan.topics.len(), "topic")
    );
    if !plan.warnings.is_empty() {
        summary.push_str(&format!(", {}", count(plan.warnings.len(), "warning")));
    }
    writeln!(crate::report::stdout(), "{summary})")?;
    Ok(())
}

pub fn graph(file: &Path, format: GraphFormat) -> anyhow::Result<()> {
    let plan = load(file)?;
    let text = match format {
        GraphFormat::Mermaid => millrace_pipeline::graph::to_mermaid(&plan),
        GraphFormat::Dot => millrace_pipeline::graph::to_dot(&plan),
        GraphFormat::Json => {
            serde_json::to_string_pretty(&millrace_pipeline::graph::to_json(&plan))?
        }
    };
    writeln!(crate::report::stdout(), "{text}")?;
    Ok(())
}
