//! Every shipped example pipeline validates, without warnings, into the expected shape.

use std::path::{Path, PathBuf};

use millrace_pipeline::{Plan, ShardTarget, StageKind, load};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn load_example(name: &str) -> Plan {
    let path = examples_dir().join(name);
    match load(&path) {
        Ok(plan) => plan,
        Err(d) => panic!("{name} does not validate:\n{d}"),
    }
}

/// Every example validates without a warning: a new user's first `validate` of an
/// example is clean (the coordinated ones set `batch:`, so continuous runs finish
/// batches too).
#[test]
fn every_example_validates_without_warnings() {
    let mut count = 0;
    for entry in std::fs::read_dir(examples_dir()).expect("examples dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let plan = load(&path).unwrap_or_else(|d| panic!("{}:\n{d}", path.display()));
            let warnings: Vec<String> = plan
                .warnings
                .iter()
                .map(|w| w.display(&path.display().to_string()).to_string())
                .collect();
            assert!(warnings.is_empty(), "{}", warnings.join("\n"));
            count += 1;
        }
    }
    assert!(count >= 5, "found only {count} examples");
}

fn names(topics: Vec<&millrace_pipeline::Topic>) -> Vec<&str> {
    topics.into_iter().map(|t| t.name.as_str()).collect()
}

#[test]
fn copier_example() {
    let plan = load_example("copier.yaml");
    assert_eq!(plan.name, "copier");
    assert_eq!(names(plan.sources()), ["photos-topic"]);
    assert_eq!(names(plan.sinks()), ["photos-topic-2"]);
    assert_eq!(plan.dead_letter, "copier.dlq");
    assert_eq!(plan.consumer_group("copy"), "copier.copy");
}

#[test]
fn signup_example() {
    let plan = load_example("signup.yaml");
    assert_eq!(names(plan.sources()), ["signups", "verified"]);
    let mut sinks = names(plan.sinks());
    sinks.sort();
    assert_eq!(
        sinks,
        [
            "notify-email",
            "notify-none",
            "notify-sms",
            "verification-emails",
            "welcome-email"
        ]
    );
    let shard = plan.stage("shard-by-region").expect("sharder");
    assert_eq!(shard.outputs, ["signups-eu", "signups-us", "signups-ap"]);
    let StageKind::Sharder(s) = &shard.kind else {
        panic!("sharder")
    };
    assert!(matches!(&s.target, ShardTarget::Named { default: None, shards } if shards.len() == 3));
    // Auto-declared shard topics inherit the sharder input's partitions.
    assert_eq!(plan.topic("signups-eu").map(|t| t.partitions), Some(3));
    let notify = plan.stage("notify").expect("splitter");
    assert_eq!(
        notify.outputs,
        ["notify-email", "notify-sms", "notify-none"]
    );
    // Topological: the copier comes before the splitter it feeds.
    let pos = |n: &str| plan.stages.iter().position(|s| s.name == n);
    assert!(pos("welcome") < pos("notify"));
}

#[test]
fn wordcount_example() {
    let plan = load_example("wordcount.yaml");
    let order: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        order,
        [
            "split-words",
            "shard-words",
            "count-words",
            "shape",
            "all-counted"
        ]
    );
    assert_eq!(
        plan.stage("split-words").map(|s| s.format),
        Some(millrace_pipeline::Format::Text)
    );
    assert_eq!(names(plan.sinks()), ["word-counts"]);
}

#[test]
fn images_and_zip_examples() {
    let plan = load_example("images.yaml");
    assert!(
        plan.stages
            .iter()
            .any(|s| matches!(s.kind, StageKind::Join(_)))
    );
    assert!(
        plan.stages
            .iter()
            .any(|s| matches!(s.kind, StageKind::Reduce(_)))
    );
    let mut sinks = names(plan.sinks());
    sinks.sort();
    assert_eq!(sinks, ["delete-originals", "traffic-report"]);
    let plan = load_example("zip.yaml");
    assert_eq!(names(plan.sinks()), ["photo-pairs"]);
}

#[test]
fn example_expressions_do_what_the_issues_say() {
    use millrace_pipeline::expr::{Format, RecordVars, parse_value, val_to_json};
    use millrace_pipeline::{Mapper, Predicate};
    let vars = RecordVars::new("t", 0);

    let plan = load_example("signup.yaml");
    let Some(StageKind::Splitter { routes, .. }) = plan.stage("notify").map(|s| &s.kind) else {
        panic!("splitter")
    };
    let test = |p: &Predicate, json: &str| {
        p.test(
            &parse_value(json.as_bytes(), Format::Json).expect("json"),
            &vars,
        )
        .expect("runs")
    };
    let (email, sms) = (&routes[0].when, &routes[1].when);
    assert!(test(email, r#"{"notify": ["email"]}"#));
    assert!(!test(sms, r#"{"notify": ["email"]}"#));
    assert!(test(sms, r#"{"notify": ["email", "sms"]}"#));
    assert!(!test(email, r#"{"notify": []}"#));
    assert!(!test(email, r#"{}"#));

    let plan = load_example("wordcount.yaml");
    let Some(StageKind::Map { mapper }) = plan.stage("split-words").map(|s| &s.kind) else {
        panic!("map")
    };
    let mut words = Vec::new();
    let line = parse_value(b"Hello, hello WORLD-42 caf\xc3\xa9!", Format::Text).expect("text");
    mapper
        .apply(line, &vars, |v| words.push(val_to_json(&v).expect("json")))
        .expect("runs");
    assert_eq!(
        words,
        [
            serde_json::json!({"word": "hello"}),
            serde_json::json!({"word": "hello"}),
            serde_json::json!({"word": "world"}),
            serde_json::json!({"word": "42"}),
            serde_json::json!({"word": "caf"}),
        ]
    );
    let _: &Mapper = mapper;
}
