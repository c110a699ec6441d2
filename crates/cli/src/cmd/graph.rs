//! `millrace validate` and `millrace graph`.

use std::path::Path;

use crate::args::GraphFormat;

/// Loads and checks a pipeline file; every error is reported at once.
pub fn load(file: &Path) -> anyhow::Result<millrace_pipeline::Plan> {
    millrace_pipeline::load(file).map_err(|d| anyhow::anyhow!("{d}"))
}

pub fn validate(file: &Path) -> anyhow::Result<()> {
    let plan = load(file)?;
    println!(
        "{}: ok ({} stages, {} topics)",
        file.display(),
        plan.stages.len(),
        plan.topics.len()
    );
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
    println!("{text}");
    Ok(())
}
