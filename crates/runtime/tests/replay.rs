//! Replays write nothing twice: a stage that crashed after its outputs were durable
//! but before it committed its input reads that input again, finds its outputs by
//! their lineage, and skips them. Simulated exactly by rewinding the stages' committed
//! offsets after a complete run, on every backend.

mod common;

use common::*;
use millrace_broker::{ConsumerConfig, OffsetReset, ProduceRecord, TopicPartition};
use std::time::Duration;

/// Rewinds a stage's consumer group to the start of its inputs, as if it had crashed
/// before committing anything.
async fn rewind(b: &TestBackend, group: &str, topics: &[String]) {
    let mut cfg = ConsumerConfig::new(topics.to_vec());
    cfg.group = Some(group.to_string());
    cfg.offset_reset = OffsetReset::Earliest;
    let mut c = b.broker.consumer(cfg).await.expect("consumer");
    millrace_testkit::poll_until_assigned(c.as_mut(), group, Duration::from_secs(30)).await;
    let mut offsets = Vec::new();
    for t in topics {
        let d = b.broker.describe_topic(t).await.expect("describe");
        for p in d.partitions {
            offsets.push((TopicPartition::new(t.clone(), p.partition), p.start_offset));
        }
    }
    c.commit(&offsets).await.expect("rewind commit");
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_stages_do_not_write_their_outputs_twice() {
    for b in backends().await {
        let src = r#"
pipeline: replay{s}
topics:
  lines{s}: { partitions: 2 }
  words{s}: { partitions: 3 }
stages:
  split: { kind: map, from: lines{s}, format: text, to: raw{s}, expr: 'ascii_downcase | scan("[a-z]+") | {word: .}' }
  shard: { kind: sharder, from: raw{s}, by: .word, to: words{s}, shards: 3 }
  count: { kind: reduce, from: words{s}, to: counts{s}, group_by: .word, reducer: count }
  release: { kind: join, mode: barrier, from: counts{s}, to: final{s} }
  copy: { kind: copier, from: lines{s}, to: [a{s}, b{s}] }
"#;
        b.create_topics(src).await;
        let text = ["the cat", "the dog and the cat", "a bird"];
        b.produce_values(&b.t("lines"), &text).await;
        b.run_batch(src).await;
        let before: Vec<usize> = {
            let mut v = Vec::new();
            for t in ["raw", "words", "counts", "final", "a", "b"] {
                v.push(b.read_all(&b.t(t)).await.len());
            }
            v
        };
        assert_eq!(before, vec![9, 9, 6, 6, 3, 3], "[{}]", b.name);
        // Every stage "crashes" before committing: all of its input is read again.
        let p = format!("replay{}", b.suffix);
        rewind(&b, &format!("{p}.split"), &[b.t("lines")]).await;
        rewind(&b, &format!("{p}.copy"), &[b.t("lines")]).await;
        rewind(&b, &format!("{p}.shard"), &[b.t("raw")]).await;
        rewind(&b, &format!("{p}.count"), &[b.t("words")]).await;
        rewind(&b, &format!("{p}.release"), &[b.t("counts")]).await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        // The replay processed everything again...
        assert_eq!(
            stage(&summary, "split").counters.records_in,
            3,
            "[{}]",
            b.name
        );
        assert_eq!(stage(&summary, "count").counters.records_in, 9);
        // ...and wrote nothing twice.
        let mut after = Vec::new();
        for t in ["raw", "words", "counts", "final", "a", "b"] {
            after.push(b.read_all(&b.t(t)).await.len());
        }
        assert_eq!(after, before, "[{}] outputs written twice", b.name);
        let finals: Vec<serde_json::Value> = b
            .values(&b.t("final"))
            .await
            .iter()
            .map(|v| serde_json::from_str(v).expect("json"))
            .collect();
        let the = finals.iter().find(|v| v["group"] == "the").expect("the");
        assert_eq!(the["value"], 3);
    }
}

/// A gap in what a stage wrote (with several batches in flight, a batch whose produce
/// failed after the next one was written) is filled by the replay: outputs found in the
/// tail are skipped, the missing one in between is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_fills_a_gap_in_what_was_written() {
    for b in backends().await {
        let src = r#"
pipeline: gap{s}
topics:
  in{s}: { partitions: 1 }
  out{s}: { partitions: 1 }
stages:
  copy: { kind: copier, from: in{s}, to: out{s} }
"#;
        b.create_topics(src).await;
        let values = ["r0", "r1", "r2", "r3"];
        b.produce_values(&b.t("in"), &values).await;
        // What an interrupted earlier run left: the outputs of input offsets 0 and 2,
        // not of 1 (its batch failed), nothing of 3; nothing committed.
        let origin = format!("in{}/0", b.suffix);
        let left: Vec<ProduceRecord> = [0, 2]
            .iter()
            .map(|o| {
                let mut r = ProduceRecord::value(format!("r{o}").into_bytes());
                r.partition = Some(0);
                r.headers
                    .push(millrace_runtime::lineage::header("copy", &origin, *o, 0));
                r
            })
            .collect();
        b.produce(&b.t("out"), left).await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        assert_eq!(
            b.values(&b.t("out")).await,
            vec!["r0", "r2", "r1", "r3"],
            "[{}] the gap (r1) and what follows (r3) written once, nothing else again",
            b.name
        );
    }
}
