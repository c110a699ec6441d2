//! Redrive while the pipeline runs: the running stage picks the records up (on Kafka,
//! whichever instance its group gave the redrive topic), and `/metrics` and
//! `/api/dead-letters` say what happened.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::support::*;

const REDRIVEN: &str = "millrace_stage_records_redriven_total";
const REDRIVE_FAILED: &str = "millrace_stage_records_redrive_failed_total";

fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_for_records(b: &Backend, topic: &str, n: i64, runs: &[&Running]) {
    let limit = Duration::from_secs(120);
    let start = std::time::Instant::now();
    while b.records_in(topic) < n {
        assert!(
            start.elapsed() < limit,
            "[{}] {topic} did not reach {n} records (has {}):\n{}",
            b.name,
            b.records_in(topic),
            runs.iter()
                .map(|r| r.stderr())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_running_pipeline_picks_redriven_records_up() {
    for b in Backend::all() {
        let shop = Shop::new(&b);
        let run = Running::start(&shop);
        shop.produce(0..ITEMS);
        let dl = shop.dead_letter();
        wait_for_records(&b, &dl, 3, &[&run]);
        wait_for_records(&b, &shop.kept, 18, &[&run]);

        // Still down: they come back, counted as failed again.
        assert_eq!(redrive_counts(&shop.redrive("enrich", &[])), (3, 0, 0));
        wait_for_records(&b, &dl, 6, &[&run]);
        wait_until(Duration::from_secs(30), "the re-failed count", || {
            run.metric(REDRIVE_FAILED, "enrich") == 3.0
        });

        // The page's summary of the dead letters names the stage and its command.
        let api: Value = wait_for(Duration::from_secs(30), "/api/dead-letters", || {
            let api: Value =
                serde_json::from_str(&http_get(&run.addr, "/api/dead-letters")).expect("JSON");
            (api["complete"] == true && api["records"] == 6).then_some(api)
        });
        assert_eq!(api["stages"][0]["stage"], "enrich", "{api}");
        assert_eq!(api["stages"][0]["records"], 6, "{api}");
        let command = api["stages"][0]["command"].as_str().unwrap_or_default();
        assert!(
            command.starts_with("millrace dlq redrive ")
                && command.contains(shop.path())
                && command.ends_with("--stage enrich"),
            "{api}"
        );

        shop.fix();
        let report = shop.redrive("enrich", &[]);
        assert_eq!(redrive_counts(&report), (3, 3, 0), "[{}] {report}", b.name);
        wait_for_records(&b, &shop.kept, 21, &[&run]);
        shop.assert_all_outputs_once();
        wait_until(Duration::from_secs(30), "the redriven count", || {
            run.metric(REDRIVEN, "enrich") == 6.0
        });
        assert_eq!(run.metric(REDRIVE_FAILED, "enrich"), 3.0);
        assert_eq!(run.metric(REDRIVEN, "audit"), 0.0);
        let metrics = http_get(&run.addr, "/metrics");
        for family in [REDRIVEN, REDRIVE_FAILED] {
            assert!(metrics.contains(&format!("# HELP {family} ")), "{metrics}");
            assert!(
                metrics.contains(&format!("# TYPE {family} counter")),
                "{metrics}"
            );
        }
        assert_eq!(redrive_counts(&shop.redrive("enrich", &[])), (0, 6, 0));
        assert_eq!(b.records_in(&shop.redrive_topic()), 6, "[{}]", b.name);

        let err = run.stop();
        let summary = parse_summary(&err);
        assert_eq!(
            summary["enrich"].1[0], 27,
            "[{}] 21 + 3 + 3:\n{err}",
            b.name
        );
        assert_eq!(
            summary["audit"].1[0], 21,
            "[{}] nothing twice:\n{err}",
            b.name
        );
        shop.assert_all_outputs_once();
    }
}

/// Two instances of the pipeline on Kafka share each stage's partitions, the redrive
/// topic's one among them: the redriven records are processed once, by one of them.
#[test]
fn two_instances_on_kafka_process_redriven_records_once() {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let b = Backend::kafka(bootstrap);
    let shop = Shop::new(&b);
    let runs = [Running::start(&shop), Running::start(&shop)];
    let all: Vec<&Running> = runs.iter().collect();
    shop.produce(0..ITEMS);
    wait_for_records(&b, &shop.dead_letter(), 3, &all);
    wait_for_records(&b, &shop.kept, 18, &all);
    shop.fix();
    // A rebalance while the instances start may replay a failure, and dead-letter it
    // again: the copy is skipped.
    let copies = b.records_in(&shop.dead_letter()) - 3;
    let report = shop.redrive("enrich", &[]);
    let copies = u64::try_from(copies).expect("count");
    assert_eq!(redrive_counts(&report), (3, copies, 0), "{report}");
    wait_for_records(&b, &shop.kept, 21, &all);
    wait_until(
        Duration::from_secs(30),
        "3 redriven over both instances",
        || {
            runs.iter()
                .map(|r| r.metric(REDRIVEN, "enrich"))
                .sum::<f64>()
                == 3.0
        },
    );
    for r in runs {
        r.stop();
    }
    shop.assert_all_outputs_once();
}
