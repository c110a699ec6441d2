//! join and reduce end to end on every backend, in `--batch` runs over several
//! partitions.
//!
//! Here: the barrier; `coordinated/reduce.rs` reduce, `coordinated/join.rs` join.

mod common;
#[path = "coordinated/join.rs"]
mod join;
#[path = "coordinated/reduce.rs"]
mod reduce;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use millrace_broker::ProduceRecord;
use millrace_runtime::{RunOptions, Runtime};
use serde_json::{Value, json};

fn json_values(vals: Vec<String>) -> Vec<Value> {
    vals.iter()
        .map(|v| serde_json::from_str(v).expect("json"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barrier_releases_nothing_until_the_whole_batch_is_done() {
    for b in backends().await {
        // A slow worker stage feeds the barrier: nothing may come out of the join
        // before the worker has finished every item of the batch.
        let dir = tempfile::tempdir().expect("tmp");
        let worker = dir.path().join("slow.py");
        std::fs::write(
            &worker,
            "import json,sys,time\nfor line in sys.stdin:\n    r=json.loads(line)\n    time.sleep(0.01)\n    print(json.dumps({'id':r['id'],'out':[r['value']]}),flush=True)\n",
        )
        .expect("write worker");
        let src = b.yaml(&format!(
            r#"
pipeline: barrier{{s}}
topics:
  work{{s}}: {{ partitions: 3 }}
stages:
  slow: {{ kind: exec, from: work{{s}}, to: done{{s}}, command: [python3, "{}"], workers: 2 }}
  wait: {{ kind: join, mode: barrier, from: done{{s}}, to: released{{s}} }}
"#,
            worker.display()
        ));
        b.create_topics(&src).await;
        let values: Vec<String> = (0..120).map(|i| format!("{{\"n\":{i}}}")).collect();
        b.produce_values(
            &b.t("work"),
            &values.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        )
        .await;

        let plan = b.plan(&src);
        let rt = Runtime::new(millrace_runtime::build::from_plan(&plan).expect("build"));
        let state = rt.state();
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let broker = b.broker.clone();
        let run = tokio::spawn(rt.run(
            broker,
            RunOptions {
                batch: true,
                ..RunOptions::default()
            },
            rx,
        ));
        // Watch the join's output: when the first record appears, the worker stage
        // must already have finished all 120 items.
        let released = b.t("released");
        let mut checked = false;
        for _ in 0..600 {
            let d = b.broker.describe_topic(&released).await.expect("describe");
            let n: i64 = d.partitions.iter().map(|p| p.end_offset).sum();
            if n > 0 {
                let slow = state
                    .stages
                    .iter()
                    .find(|s| s.name == "slow")
                    .expect("stage")
                    .counters
                    .snapshot();
                assert_eq!(
                    slow.committed, 120,
                    "[{}] join released before the batch was done: {slow:?}",
                    b.name
                );
                checked = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(checked, "[{}] the join never released", b.name);
        let summary = run.await.expect("join").expect("run");
        assert_conserved(&summary);
        let out = b.read_all(&released).await;
        assert_eq!(out.len(), 120, "[{}]", b.name);
        // Every released item says which batch it belongs to.
        let batch = header(&out[0], "millrace.batch").expect("batch header");
        assert!(
            out.iter()
                .all(|r| header(r, "millrace.batch").as_deref() == Some(batch.as_str()))
        );
        assert_eq!(batch, "120", "the batch id counts the source records");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_over_an_empty_input_completes() {
    for b in backends().await {
        let src = r#"
pipeline: empty{s}
topics:
  left{s}: { partitions: 2 }
  right{s}: { partitions: 2 }
stages:
  both: { kind: join, mode: barrier, from: [left{s}, right{s}], to: out{s}, combine: true }
"#;
        b.create_topics(src).await;
        b.produce_values(&b.t("left"), &["1", "2", "3"]).await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        let out = json_values(b.values(&b.t("out")).await);
        assert_eq!(out.len(), 1, "[{}] one combined item per batch", b.name);
        assert_eq!(out[0]["count"], json!(3));
        assert_eq!(out[0]["inputs"][b.t("left")], json!(3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_items_all_go_to_the_dead_letter_topic_completes() {
    for b in backends().await {
        let src = r#"
pipeline: alldead{s}
topics:
  in{s}: { partitions: 2 }
stages:
  parse: { kind: map, from: in{s}, to: parsed{s}, expr: '.x' }
  wait: { kind: join, mode: barrier, from: parsed{s}, to: out{s} }
  count: { kind: reduce, from: parsed{s}, to: counted{s}, reducer: count }
"#;
        b.create_topics(src).await;
        b.produce_values(&b.t("in"), &["not json", "{oops", ""])
            .await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        assert_eq!(
            stage(&summary, "parse").counters.dead_lettered,
            3,
            "[{}]",
            b.name
        );
        assert!(b.values(&b.t("out")).await.is_empty());
        assert!(
            b.values(&b.t("counted")).await.is_empty(),
            "no groups, no results"
        );
    }
}
