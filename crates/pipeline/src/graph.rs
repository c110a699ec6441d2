//! Drawings of a plan: topics are nodes (cylinders where the format has them), stages
//! are nodes labelled with their name and pattern, edges follow the records.
//!
//! Node ids are `t_<n>` for topics and `s_<n>` for stages (indexes into the plan), so
//! names with dots and dashes need no escaping in ids; labels are escaped.

use serde_json::{Value, json};

use crate::plan::{Plan, Stage, StageKind};

fn topic_id(plan: &Plan, name: &str) -> String {
    let i = plan
        .topics
        .iter()
        .position(|t| t.name == name)
        .unwrap_or(usize::MAX);
    format!("t_{i}")
}

/// The label detail beyond the pattern name: the expression or settings that matter.
fn detail(stage: &Stage) -> Option<String> {
    if let Some(c) = &stage.combine {
        // The map runs as the reduce's combiner (`combine: true` on the reduce).
        return Some(format!("combines for {}", c.reduce));
    }
    match &stage.kind {
        StageKind::Join(j) if j.combine => Some(format!("{:?}, combined", j.mode).to_lowercase()),
        StageKind::Join(j) => Some(format!("{:?}", j.mode).to_lowercase()),
        StageKind::Reduce(r) if r.combine => {
            Some(format!("{} of combined records", r.reducer.name()))
        }
        StageKind::Reduce(r) => Some(r.reducer.name().to_owned()),
        StageKind::Splitter { mode, .. } => Some(format!("{mode:?}").to_lowercase()),
        StageKind::Exec(e) => Some(format!(
            "{} worker{}",
            e.workers,
            if e.workers == 1 { "" } else { "s" }
        )),
        _ => None,
    }
}

fn pattern(stage: &Stage) -> String {
    match detail(stage) {
        Some(d) => format!("{}: {d}", stage.kind.name()),
        None => stage.kind.name().to_owned(),
    }
}

/// Edges of one stage, as (from node, to node, label).
fn edges(plan: &Plan, i: usize, stage: &Stage) -> Vec<(String, String, Option<String>)> {
    let sid = format!("s_{i}");
    let mut out: Vec<_> = stage
        .inputs
        .iter()
        .map(|t| (topic_id(plan, t), sid.clone(), None))
        .collect();
    for t in &stage.outputs {
        let label = match &stage.kind {
            StageKind::Splitter { default, .. } if default == t => Some("default".to_owned()),
            _ => None,
        };
        out.push((sid.clone(), topic_id(plan, t), label));
    }
    out
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// A Mermaid flowchart, left to right.
pub fn to_mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart LR\n");
    for (i, t) in plan.topics.iter().enumerate() {
        let dlq = if t.name == plan.dead_letter {
            " (dead letter)"
        } else {
            ""
        };
        out.push_str(&format!("  t_{i}[(\"{}{dlq}\")]\n", mermaid_text(&t.name)));
    }
    for (i, s) in plan.stages.iter().enumerate() {
        out.push_str(&format!(
            "  s_{i}[\"{}<br/>({})\"]\n",
            mermaid_text(&s.name),
            mermaid_text(&pattern(s))
        ));
    }
    for (i, s) in plan.stages.iter().enumerate() {
        for (a, b, label) in edges(plan, i, s) {
            match label {
                Some(l) => out.push_str(&format!("  {a} -- {l} --> {b}\n")),
                None => out.push_str(&format!("  {a} --> {b}\n")),
            }
        }
    }
    out
}

fn dot_text(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A Graphviz digraph, left to right.
pub fn to_dot(plan: &Plan) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n",
        dot_text(&plan.name)
    );
    for (i, t) in plan.topics.iter().enumerate() {
        out.push_str(&format!(
            "  t_{i} [shape=cylinder, label=\"{}\\n{} partition{}\"];\n",
            dot_text(&t.name),
            t.partitions,
            if t.partitions == 1 { "" } else { "s" }
        ));
    }
    for (i, s) in plan.stages.iter().enumerate() {
        out.push_str(&format!(
            "  s_{i} [shape=box, style=rounded, label=\"{}\\n({})\"];\n",
            dot_text(&s.name),
            dot_text(&pattern(s))
        ));
    }
    for (i, s) in plan.stages.iter().enumerate() {
        for (a, b, label) in edges(plan, i, s) {
            match label {
                Some(l) => out.push_str(&format!("  {a} -> {b} [label=\"{l}\"];\n")),
                None => out.push_str(&format!("  {a} -> {b};\n")),
            }
        }
    }
    out.push_str("}\n");
    out
}

/// The graph as JSON for `/api/graph`: `{pipeline, dead_letter, topics: [...],
/// stages: [...], edges: [{from, to, label?}]}`; node ids are `topic:<name>` and
/// `stage:<name>`.
pub fn to_json(plan: &Plan) -> Value {
    let sources: Vec<&str> = plan.sources().iter().map(|t| t.name.as_str()).collect();
    let sinks: Vec<&str> = plan.sinks().iter().map(|t| t.name.as_str()).collect();
    let topics: Vec<Value> = plan
        .topics
        .iter()
        .map(|t| {
            let role = if t.name == plan.dead_letter {
                "dead_letter"
            } else if sources.contains(&t.name.as_str()) {
                "source"
            } else if sinks.contains(&t.name.as_str()) {
                "sink"
            } else {
                "internal"
            };
            json!({
                "id": format!("topic:{}", t.name),
                "name": t.name,
                "partitions": t.partitions,
                "declared": t.declared,
                "role": role,
            })
        })
        .collect();
    let stages: Vec<Value> = plan
        .stages
        .iter()
        .map(|s| {
            json!({
                "id": format!("stage:{}", s.name),
                "name": s.name,
                "kind": s.kind.name(),
                "detail": detail(s),
                "inputs": s.inputs,
                "outputs": s.outputs,
                "consumer_group": plan.consumer_group(&s.name),
            })
        })
        .collect();
    let mut edges_json = Vec::new();
    for s in &plan.stages {
        for t in &s.inputs {
            edges_json
                .push(json!({"from": format!("topic:{t}"), "to": format!("stage:{}", s.name)}));
        }
        for t in &s.outputs {
            let mut e = json!({"from": format!("stage:{}", s.name), "to": format!("topic:{t}")});
            if let StageKind::Splitter { default, .. } = &s.kind
                && default == t
            {
                e["label"] = json!("default");
            }
            edges_json.push(e);
        }
    }
    json!({
        "pipeline": plan.name,
        "dead_letter": plan.dead_letter,
        "topics": topics,
        "stages": stages,
        "edges": edges_json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_str;

    fn plan() -> Plan {
        let src = "pipeline: demo\ntopics:\n  in: 2\nstages:\n  route:\n    kind: splitter\n    from: in\n    routes: [{when: '.a', to: a}]\n    default: rest\n  keep: {kind: copier, from: a, to: out}\n";
        parse_str(src, "demo.yaml").expect("valid")
    }

    #[test]
    fn mermaid_labels_stages_by_pattern() {
        let m = to_mermaid(&plan());
        assert_eq!(
            m,
            "flowchart LR\n  t_0[(\"in\")]\n  t_1[(\"a\")]\n  t_2[(\"rest\")]\n  t_3[(\"out\")]\n  t_4[(\"demo.dlq (dead letter)\")]\n  s_0[\"route<br/>(splitter: first)\"]\n  s_1[\"keep<br/>(copier)\"]\n  t_0 --> s_0\n  s_0 --> t_1\n  s_0 -- default --> t_2\n  t_1 --> s_1\n  s_1 --> t_3\n"
        );
    }

    #[test]
    fn dot_has_topics_as_cylinders_and_stage_labels() {
        let d = to_dot(&plan());
        assert!(d.starts_with("digraph \"demo\" {\n  rankdir=LR;"), "{d}");
        assert!(
            d.contains("t_0 [shape=cylinder, label=\"in\\n2 partitions\"];"),
            "{d}"
        );
        assert!(
            d.contains("s_0 [shape=box, style=rounded, label=\"route\\n(splitter: first)\"];"),
            "{d}"
        );
        assert!(d.contains("s_0 -> t_2 [label=\"default\"];"), "{d}");
        assert!(d.ends_with("}\n"));
    }

    #[test]
    fn the_combining_map_and_its_reduce_say_so() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/wordcount.yaml");
        let src = std::fs::read_to_string(path).expect("example");
        let m = to_mermaid(&parse_str(&src, "wordcount.yaml").expect("valid"));
        assert!(
            m.contains("split-words<br/>(map: combines for count-words)"),
            "{m}"
        );
        assert!(
            m.contains("count-words<br/>(reduce: count of combined records)"),
            "{m}"
        );
        assert!(m.contains("all-counted<br/>(join: barrier)"), "{m}");
    }

    #[test]
    fn json_lists_nodes_edges_and_roles() {
        let j = to_json(&plan());
        assert_eq!(j["pipeline"], "demo");
        assert_eq!(j["topics"][0]["role"], "source");
        assert_eq!(j["topics"][3]["role"], "sink");
        assert_eq!(j["topics"][4]["role"], "dead_letter");
        assert_eq!(j["stages"][0]["kind"], "splitter");
        assert_eq!(j["stages"][1]["consumer_group"], "demo.keep");
        assert_eq!(j["edges"].as_array().map(Vec::len), Some(5));
        assert_eq!(j["edges"][2]["label"], "default");
    }
}
