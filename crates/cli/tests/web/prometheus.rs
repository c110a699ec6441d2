//! `/metrics` read by a Prometheus text parser nobody here wrote: the Prometheus
//! project's Python client (`prometheus_client.parser`), which scripts/test.sh installs
//! (`pip install prometheus-client`). A missing parser fails the test: the format is
//! what this checks, so there is nothing to fall back on.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// Parses stdin with `text_string_to_metric_families` and prints the families as JSON.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value}
                            for s in f.samples]})
print(json.dumps(out))
"#;

#[derive(Debug, serde::Deserialize)]
pub struct Family {
    /// As the parser names it: a counter's family without its `_total`.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

#[derive(Debug, serde::Deserialize)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every family of an exposition, or a panic naming the parser's complaint.
pub fn parse(text: &str) -> Vec<Family> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(PARSE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 (for the Prometheus parser): {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the exposition");
    let out = child.wait_with_output().expect("python3 output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("No module named 'prometheus_client'"),
        "the Prometheus parser is not installed: pip install prometheus-client \
         (scripts/test.sh does)"
    );
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics: {err}\n{text}"
    );
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

/// The family named `name` (counters without `_total`).
pub fn family<'a>(families: &'a [Family], name: &str) -> &'a Family {
    families.iter().find(|f| f.name == name).unwrap_or_else(|| {
        let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        panic!("no family {name} in {names:?}")
    })
}

/// The value of the sample `name` whose labels include all of `labels`; `None` when
/// there is none, a panic when several match.
pub fn value(families: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<f64> = families
        .iter()
        .flat_map(|f| &f.samples)
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    assert!(hits.len() <= 1, "{name} {labels:?} matches {hits:?}");
    hits.first().copied()
}

/// The value of `name` for one stage (its only series, or the sum over partitions for
/// the lag).
pub fn stage_value(families: &[Family], name: &str, stage: &str) -> Option<f64> {
    let hits: Vec<f64> = families
        .iter()
        .flat_map(|f| &f.samples)
        .filter(|s| s.name == name && s.labels.get("stage").map(String::as_str) == Some(stage))
        .map(|s| s.value)
        .collect();
    (!hits.is_empty()).then(|| hits.iter().sum())
}
