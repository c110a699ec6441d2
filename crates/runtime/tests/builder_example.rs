//! Runs the builder example (examples/builder.rs) and checks what it prints: the
//! example's own code, included here, so the example cannot rot.

#[path = "../examples/builder.rs"]
mod example;

use std::collections::BTreeSet;

use serde_json::Value;

#[tokio::test]
async fn builder_example_runs_and_routes_every_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = example::run_example(dir.path())
        .await
        .expect("example runs");
    let users = example::signups();
    let verified: Vec<&Value> = users.iter().filter(|u| u["verified"] == true).collect();

    // The predicate closure kept exactly the verified users.
    let got = &report.topics["verified"];
    let ids = |vs: &[Value]| -> BTreeSet<String> {
        vs.iter()
            .map(|v| v["user_id"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(got.len(), verified.len());
    assert_eq!(
        ids(got),
        verified
            .iter()
            .map(|u| u["user_id"].as_str().unwrap_or("").to_string())
            .collect()
    );

    // The map closure: one notification per chosen channel, "none" when none.
    let mut want: Vec<(String, String)> = Vec::new();
    for u in &verified {
        let id = u["user_id"].as_str().unwrap_or("").to_string();
        let chans = u["notify"].as_array().cloned().unwrap_or_default();
        if chans.is_empty() {
            want.push((id.clone(), "none".into()));
        }
        for c in chans {
            want.push((id.clone(), c.as_str().unwrap_or("").to_string()));
        }
    }
    let pair = |v: &Value| {
        (
            v["user_id"].as_str().unwrap_or("").to_string(),
            v["channel"].as_str().unwrap_or("").to_string(),
        )
    };
    let mut notes: Vec<(String, String)> =
        report.topics["notifications"].iter().map(pair).collect();
    notes.sort();
    want.sort();
    assert_eq!(notes, want);

    // The shard-key closure: every notification lands in exactly one shard, and each
    // channel in one shard only.
    let mut sharded: Vec<(String, String)> = Vec::new();
    let mut shard_of: std::collections::BTreeMap<String, &str> = Default::default();
    for shard in example::SHARDS {
        for v in &report.topics[shard] {
            let (id, ch) = pair(v);
            let prev = shard_of.insert(ch.clone(), shard);
            assert!(prev.is_none_or(|p| p == shard), "{ch} in two shards");
            sharded.push((id, ch));
        }
    }
    sharded.sort();
    assert_eq!(sharded, want);

    // The summary: in = out + filtered + dead-lettered, nothing in flight.
    for s in &report.summary.stages {
        let c = &s.counters;
        assert_eq!(
            c.records_in,
            c.out + c.filtered + c.dead_lettered,
            "{}",
            s.name
        );
        assert_eq!(c.in_flight, 0, "{}", s.name);
        assert_eq!(c.dead_lettered, 0, "{}", s.name);
    }
    let filter = &report.summary.stages[0];
    assert_eq!(
        (filter.name.as_str(), filter.kind.as_str()),
        ("verified-only", "filter")
    );
    assert_eq!(filter.counters.records_in, users.len() as u64);
    assert_eq!(
        filter.counters.filtered,
        (users.len() - verified.len()) as u64
    );
}
