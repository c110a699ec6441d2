//! The event-driven patterns end to end on every backend: each test runs a real
//! pipeline in `--batch` mode over real topics and checks what landed where, the
//! per-stage counters (conservation) and, where it matters, order per partition.

mod common;

use common::*;
use millrace_broker::ProduceRecord;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copier_copies_every_record_to_every_output_in_order() {
    for b in backends().await {
        let src = r#"
pipeline: copy{s}
topics:
  photos{s}: { partitions: 3 }
  a{s}: { partitions: 3 }
  b{s}: { partitions: 2 }
stages:
  copy: { kind: copier, from: photos{s}, to: [a{s}, b{s}] }
"#;
        b.create_topics(src).await;
        let recs: Vec<ProduceRecord> = (0..300)
            .map(|i| ProduceRecord {
                partition: Some(i % 3),
                value: format!("{{\"seq\":{i}}}").into_bytes().into(),
                ..Default::default()
            })
            .collect();
        b.produce(&b.t("photos"), recs).await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        let c = stage(&summary, "copy").counters;
        assert_eq!(
            (c.records_in, c.out, c.emitted),
            (300, 300, 600),
            "[{}]",
            b.name
        );
        for t in ["a", "b"] {
            let recs = b.read_all(&b.t(t)).await;
            assert_eq!(recs.len(), 300, "[{}] {t}", b.name);
            // Unkeyed records of input partition p stay together and in order.
            assert_order_per_partition(&recs, |r| {
                let v: serde_json::Value = serde_json::from_slice(&r.value).expect("json");
                let seq = v["seq"].as_i64().expect("seq");
                ((seq % 3).to_string(), seq)
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_keeps_what_matches_and_counts_the_rest_as_filtered() {
    for b in backends().await {
        let src = r#"
pipeline: filt{s}
topics:
  in{s}: { partitions: 2 }
stages:
  only-eu: { kind: filter, from: in{s}, to: out{s}, where: '.region == "eu"' }
"#;
        b.create_topics(src).await;
        let values: Vec<String> = (0..100)
            .map(|i| {
                format!(
                    "{{\"n\":{i},\"region\":\"{}\"}}",
                    ["eu", "us", "ap", "eu"][i % 4]
                )
            })
            .collect();
        let refs: Vec<&str> = values.iter().map(|s| s.as_str()).collect();
        b.produce_values(&b.t("in"), &refs).await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        let c = stage(&summary, "only-eu").counters;
        assert_eq!(
            (c.records_in, c.out, c.filtered),
            (100, 50, 50),
            "[{}]",
            b.name
        );
        let out = b.values(&b.t("out")).await;
        assert_eq!(out.len(), 50);
        assert!(out.iter().all(|v| v.contains("\"eu\"")), "[{}]", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splitter_routes_first_or_all_and_default_takes_the_rest() {
    for b in backends().await {
        let src = r#"
pipeline: split{s}
topics:
  users{s}: { partitions: 2 }
stages:
  notify:
    kind: splitter
    from: users{s}
    mode: all
    routes:
      - { when: '.notify | index("email") != null', to: email{s} }
      - { when: '.notify | index("sms") != null', to: sms{s} }
    default: none{s}
  first:
    kind: splitter
    from: users{s}
    routes:
      - { when: '.notify | index("email") != null', to: first-email{s} }
      - { when: '.notify | index("sms") != null', to: first-sms{s} }
    default: first-none{s}
  # The same choices as conditions the splitter evaluates natively.
  native-all:
    kind: splitter
    from: users{s}
    mode: all
    routes:
      - { when: '.e == true', to: n-email{s} }
      - { when: '.s == true', to: n-sms{s} }
    default: n-none{s}
  native-first:
    kind: splitter
    from: users{s}
    routes:
      - { when: '.e == true', to: nf-email{s} }
      - { when: '.s == true', to: nf-sms{s} }
    default: nf-none{s}
"#;
        b.create_topics(src).await;
        b.produce_values(
            &b.t("users"),
            &[
                r#"{"id":1,"notify":["email"],"e":true,"s":false}"#,
                r#"{"id":2,"notify":["sms"],"e":false,"s":true}"#,
                r#"{"id":3,"notify":["email","sms"],"e":true,"s":true}"#,
                r#"{"id":4,"notify":[],"e":false,"s":false}"#,
            ],
        )
        .await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        let ids = |vals: Vec<String>| -> Vec<i64> {
            let mut v: Vec<i64> = vals
                .iter()
                .map(|s| {
                    serde_json::from_str::<serde_json::Value>(s).expect("json")["id"]
                        .as_i64()
                        .expect("id")
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(ids(b.values(&b.t("email")).await), [1, 3], "[{}]", b.name);
        assert_eq!(ids(b.values(&b.t("sms")).await), [2, 3]);
        assert_eq!(ids(b.values(&b.t("none")).await), [4]);
        assert_eq!(ids(b.values(&b.t("first-email")).await), [1, 3]);
        assert_eq!(ids(b.values(&b.t("first-sms")).await), [2]);
        assert_eq!(ids(b.values(&b.t("first-none")).await), [4]);
        let c = stage(&summary, "notify").counters;
        assert_eq!((c.records_in, c.out, c.emitted), (4, 4, 5));
        assert_eq!(ids(b.values(&b.t("n-email")).await), [1, 3]);
        assert_eq!(ids(b.values(&b.t("n-sms")).await), [2, 3]);
        assert_eq!(ids(b.values(&b.t("n-none")).await), [4]);
        assert_eq!(ids(b.values(&b.t("nf-email")).await), [1, 3]);
        assert_eq!(ids(b.values(&b.t("nf-sms")).await), [2]);
        assert_eq!(ids(b.values(&b.t("nf-none")).await), [4]);
        let c = stage(&summary, "native-all").counters;
        assert_eq!((c.records_in, c.out, c.emitted), (4, 4, 5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharder_sends_the_same_key_to_the_same_shard() {
    for b in backends().await {
        let src = r#"
pipeline: shard{s}
topics:
  in{s}: { partitions: 2 }
  words{s}: { partitions: 4 }
stages:
  by-region: { kind: sharder, from: in{s}, by: .region, shards: { eu: eu{s}, us: us{s} }, default: other{s} }
  by-word: { kind: sharder, from: in{s}, to: words{s}, by: .word, shards: 4 }
  by-hash: { kind: sharder, from: in{s}, to: [h0{s}, h1{s}, h2{s}], by: .word }
"#;
        b.create_topics(src).await;
        let words = ["apple", "pear", "plum", "fig", "kiwi"];
        let values: Vec<String> = (0..60)
            .map(|i| {
                format!(
                    "{{\"word\":\"{}\",\"region\":\"{}\"}}",
                    words[i % 5],
                    ["eu", "us", "ap"][i % 3]
                )
            })
            .collect();
        let refs: Vec<&str> = values.iter().map(|s| s.as_str()).collect();
        b.produce_values(&b.t("in"), &refs).await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        assert_eq!(b.values(&b.t("eu")).await.len(), 20, "[{}]", b.name);
        assert_eq!(b.values(&b.t("other")).await.len(), 20);
        // Partitions as shards: each word in exactly the partition murmur2 gives it,
        // and the shard key is the output key.
        let sharded = b.read_all(&b.t("words")).await;
        assert_eq!(sharded.len(), 60, "[{}] every record sharded once", b.name);
        for r in sharded {
            let key = r.key.clone().expect("keyed by the shard key");
            let word: serde_json::Value = serde_json::from_slice(&r.value).expect("json");
            assert_eq!(
                key.as_ref(),
                word["word"].as_str().expect("word").as_bytes()
            );
            assert_eq!(
                r.partition as u32,
                millrace_broker::partitioner::partition_for_key(&key, 4),
                "[{}]",
                b.name
            );
        }
        // Topics as shards: every word in one topic only.
        let mut seen = std::collections::HashMap::new();
        let mut hashed = 0;
        for (i, t) in ["h0", "h1", "h2"].iter().enumerate() {
            for v in b.values(&b.t(t)).await {
                hashed += 1;
                let w: serde_json::Value = serde_json::from_str(&v).expect("json");
                let prev = seen.insert(w["word"].as_str().expect("word").to_string(), i);
                assert!(prev.is_none() || prev == Some(i), "a word in two shards");
            }
        }
        assert_eq!(hashed, 60, "[{}] every record in one topic shard", b.name);
        assert_eq!(seen.len(), 5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merger_merges_every_input() {
    for b in backends().await {
        let src = r#"
pipeline: merge{s}
topics:
  left{s}: { partitions: 2 }
  right{s}: { partitions: 1 }
stages:
  both: { kind: merger, from: [left{s}, right{s}], to: all{s} }
"#;
        b.create_topics(src).await;
        let left: Vec<String> = (0..50)
            .map(|i| format!("{{\"side\":\"l\",\"seq\":{i}}}"))
            .collect();
        let right: Vec<String> = (0..30)
            .map(|i| format!("{{\"side\":\"r\",\"seq\":{i}}}"))
            .collect();
        b.produce(
            &b.t("left"),
            left.iter()
                .map(|v| ProduceRecord {
                    partition: Some(0),
                    value: v.clone().into_bytes().into(),
                    ..Default::default()
                })
                .collect(),
        )
        .await;
        b.produce_values(
            &b.t("right"),
            &right.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        )
        .await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        let recs = b.read_all(&b.t("all")).await;
        assert_eq!(recs.len(), 80, "[{}]", b.name);
        assert_order_per_partition(&recs, |r| {
            let v: serde_json::Value = serde_json::from_slice(&r.value).expect("json");
            (
                v["side"].as_str().expect("side").to_string(),
                v["seq"].as_i64().expect("seq"),
            )
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_is_a_flat_map_with_record_variables() {
    for b in backends().await {
        let src = r#"
pipeline: map{s}
topics:
  lines{s}: { partitions: 1 }
stages:
  words:
    kind: map
    from: lines{s}
    to: words{s}
    format: text
    expr: '[splits("[^a-zA-Z0-9]+") | select(length > 0) | ascii_downcase] | .[] | {word: ., topic: $topic, offset: $offset}'
"#;
        b.create_topics(src).await;
        b.produce_values(&b.t("lines"), &["Hello, world", "", "the World is big"])
            .await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        let c = stage(&summary, "words").counters;
        // The empty line maps to nothing: counted as filtered.
        assert_eq!(
            (c.records_in, c.out, c.filtered, c.emitted),
            (3, 2, 1, 6),
            "[{}]",
            b.name
        );
        let words: Vec<serde_json::Value> = b
            .values(&b.t("words"))
            .await
            .iter()
            .map(|v| serde_json::from_str(v).expect("json"))
            .collect();
        let ws: Vec<&str> = words
            .iter()
            .map(|w| w["word"].as_str().expect("word"))
            .collect();
        assert_eq!(ws, ["hello", "world", "the", "world", "is", "big"]);
        assert_eq!(words[0]["topic"], serde_json::json!(b.t("lines")));
        assert_eq!(words[2]["offset"], serde_json::json!(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_writes_what_its_worker_processes_answer_keyed_as_read() {
    // A real worker process: the shipped example that upper-cases every string.
    let worker = millrace_testkit::repo_root().join("examples/workers/upper.sh");
    for b in backends().await {
        let src = format!(
            r#"
pipeline: exec{{s}}
dead_letter: exec{{s}}.dlq
topics:
  names{{s}}: {{ partitions: 2 }}
stages:
  upper: {{ kind: exec, from: names{{s}}, to: upper{{s}}, command: [sh, "{}"], workers: 2 }}
"#,
            worker.display()
        );
        b.create_topics(&src).await;
        let mut recs: Vec<ProduceRecord> = (0..20)
            .map(|i| ProduceRecord {
                key: Some(format!("k{}", i % 4).into_bytes().into()),
                value: format!("{{\"name\":\"n{i}\",\"seq\":{i}}}")
                    .into_bytes()
                    .into(),
                ..Default::default()
            })
            .collect();
        recs.push(ProduceRecord::value(&b"not json"[..]));
        b.produce(&b.t("names"), recs).await;
        let summary = b.run_batch(&src).await;
        assert_conserved(&summary);
        let c = stage(&summary, "upper").counters;
        assert_eq!(
            (c.records_in, c.out, c.dead_lettered),
            (21, 20, 1),
            "[{}] {c:?}",
            b.name
        );
        let out = b.read_all(&b.t("upper")).await;
        assert_eq!(out.len(), 20, "[{}]", b.name);
        for r in &out {
            let v: serde_json::Value = serde_json::from_slice(&r.value).expect("json");
            let seq = v["seq"].as_i64().expect("seq");
            assert_eq!(
                v["name"],
                serde_json::json!(format!("N{seq}")),
                "[{}]",
                b.name
            );
            let key = format!("k{}", seq % 4);
            assert_eq!(r.key.as_deref(), Some(key.as_bytes()), "[{}]", b.name);
        }
        // Records of one key keep their order (one key, one input partition).
        assert_order_per_partition(&out, |r| {
            let v: serde_json::Value = serde_json::from_slice(&r.value).expect("json");
            let seq = v["seq"].as_i64().expect("seq");
            ((seq % 4).to_string(), seq)
        });
        let dead = b.read_all(&format!("{}.dlq", b.t("exec"))).await;
        assert_eq!(dead.len(), 1, "[{}]", b.name);
        assert_eq!(dead[0].value.as_ref(), b"not json");
        assert!(
            header(&dead[0], "millrace.error")
                .expect("error")
                .contains("not JSON")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_go_to_the_dead_letter_topic_and_the_pipeline_goes_on() {
    for b in backends().await {
        let src = r#"
pipeline: dlq{s}
dead_letter: dlq{s}.dlq
topics:
  in{s}: { partitions: 1 }
stages:
  f: { kind: filter, from: in{s}, to: out{s}, where: '.n > 1' }
  m: { kind: map, from: in{s}, to: mapped{s}, expr: '{n: (.n + 1)}' }
  even: { kind: filter, from: in{s}, to: even{s}, where: '.n % 2 == 1' }
"#;
        b.create_topics(src).await;
        b.produce_values(
            &b.t("in"),
            &[
                r#"{"n":1}"#,
                "not json",
                r#"{"n":5}"#,
                r#"{"n":"five"}"#,
                "",
            ],
        )
        .await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        let f = stage(&summary, "f").counters;
        assert_eq!(
            (f.records_in, f.out, f.filtered, f.dead_lettered),
            (5, 2, 1, 2),
            "[{}] {f:?}",
            b.name
        );
        let m = stage(&summary, "m").counters;
        assert_eq!(
            (m.records_in, m.out, m.dead_lettered),
            (5, 2, 3),
            "[{}] {m:?}",
            b.name
        );
        // `.n % 2` on "five" is jq's error, which the native evaluation leaves to jaq.
        let even = stage(&summary, "even").counters;
        assert_eq!(
            (even.records_in, even.out, even.filtered, even.dead_lettered),
            (5, 2, 0, 3),
            "[{}] {even:?}",
            b.name
        );
        let dead = b.read_all(&format!("{}.dlq", b.t("dlq"))).await;
        assert_eq!(dead.len(), 8);
        let five = dead
            .iter()
            .find(|r| {
                header(r, "millrace.stage").as_deref() == Some("even")
                    && header(r, "millrace.source.offset").as_deref() == Some("3")
            })
            .expect("{\"n\":\"five\"}, dead-lettered by even");
        let error = header(five, "millrace.error").expect("error");
        assert!(
            error.contains("remainder") || error.contains('%'),
            "{error}"
        );
        let bad = dead
            .iter()
            .find(|r| {
                header(r, "millrace.stage").as_deref() == Some("f")
                    && r.value.as_ref() == b"not json"
            })
            .expect("the not-JSON record, dead-lettered by f");
        assert!(
            header(bad, "millrace.error")
                .expect("error")
                .contains("not JSON")
        );
        assert_eq!(header(bad, "millrace.attempts").as_deref(), Some("1"));
        assert_eq!(header(bad, "millrace.source.topic"), Some(b.t("in")));
        assert_eq!(
            header(bad, "millrace.source.partition").as_deref(),
            Some("0")
        );
        assert_eq!(header(bad, "millrace.source.offset").as_deref(), Some("1"));
        assert_eq!(b.values(&b.t("mapped")).await, [r#"{"n":2}"#, r#"{"n":6}"#]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_run_resumes_from_committed_offsets() {
    for b in backends().await {
        let src = r#"
pipeline: again{s}
topics:
  in{s}: { partitions: 2 }
stages:
  copy: { kind: copier, from: in{s}, to: [out{s}] }
"#;
        b.create_topics(src).await;
        b.produce_values(&b.t("in"), &["1", "2", "3"]).await;
        let first = b.run_batch(src).await;
        assert_eq!(stage(&first, "copy").counters.records_in, 3);
        b.produce_values(&b.t("in"), &["4", "5"]).await;
        let second = b.run_batch(src).await;
        assert_eq!(
            stage(&second, "copy").counters.records_in,
            2,
            "[{}] only the new records",
            b.name
        );
        assert_eq!(
            b.sorted_values(&b.t("out")).await,
            ["1", "2", "3", "4", "5"]
        );
        // Nothing new: the run ends at once.
        let third = b.run_batch(src).await;
        assert_eq!(stage(&third, "copy").counters.records_in, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_stages_finishes_the_whole_batch() {
    for b in backends().await {
        let src = r#"
pipeline: chain{s}
topics:
  in{s}: { partitions: 3 }
  mid{s}: { partitions: 2 }
stages:
  one: { kind: map, from: in{s}, to: mid{s}, expr: '{n: .}' }
  two: { kind: filter, from: mid{s}, to: kept{s}, where: '.n % 2 == 0' }
  three: { kind: copier, from: kept{s}, to: [end{s}] }
"#;
        b.create_topics(src).await;
        let values: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        b.produce_values(
            &b.t("in"),
            &values.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        )
        .await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        assert_eq!(
            stage(&summary, "three").counters.records_in,
            500,
            "[{}]",
            b.name
        );
        assert_eq!(b.values(&b.t("end")).await.len(), 500);
    }
}
