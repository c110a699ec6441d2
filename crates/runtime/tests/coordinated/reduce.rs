//! Reduce: the built-ins against a plain computation, combined reduces, histograms,
//! partials before the final, replay after a stop, and batches cut by count in a
//! continuous run.

use super::*;

/// Sale `i` of the reduce tests: its shop, its amount, and the record (`{shop, amount,
/// size}` JSON, on partition `i % 3` of 3).
fn sale(i: i64) -> (&'static str, i64, ProduceRecord) {
    let shops = ["north", "south", "east", "west", "mall"];
    let shop = shops[(i * 7 % 5) as usize];
    let amount = (i * 37) % 101;
    let record = ProduceRecord {
        partition: Some((i % 3) as i32),
        value: format!(
            "{{\"shop\":\"{shop}\",\"amount\":{amount},\"size\":{}}}",
            amount % 4
        )
        .into_bytes()
        .into(),
        ..Default::default()
    };
    (shop, amount, record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reduce_builtins_match_a_plain_computation() {
    for b in backends().await {
        let src = r#"
pipeline: reducers{s}
topics:
  sales{s}: { partitions: 3 }
stages:
  by-shop: { kind: sharder, from: sales{s}, by: .shop, to: shops{s}, shards: 3 }
  count: { kind: reduce, from: shops{s}, to: r-count{s}, group_by: .shop, reducer: count }
  sum: { kind: reduce, from: shops{s}, to: r-sum{s}, group_by: .shop, reducer: sum, of: .amount }
  min: { kind: reduce, from: shops{s}, to: r-min{s}, group_by: .shop, reducer: min, of: .amount }
  max: { kind: reduce, from: shops{s}, to: r-max{s}, group_by: .shop, reducer: max, of: .amount }
  mean: { kind: reduce, from: shops{s}, to: r-mean{s}, group_by: .shop, reducer: mean, of: .amount }
  hist: { kind: reduce, from: shops{s}, to: r-hist{s}, group_by: .shop, reducer: histogram, of: .size }
  all: { kind: reduce, from: shops{s}, to: r-collect{s}, group_by: .shop, reducer: collect, of: .amount }
  custom:
    kind: reduce
    from: shops{s}
    to: r-custom{s}
    group_by: .shop
    reducer: { init: '{n: 0, big: 0}', update: '.n += 1 | if $item.amount > 50 then .big += 1 else . end', merge: '.n += $other.n | .big += $other.big' }
"#;
        b.create_topics(src).await;
        let mut want: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        let mut recs = Vec::new();
        for i in 0..500i64 {
            let (shop, amount, record) = sale(i);
            want.entry(shop).or_default().push(amount);
            recs.push(record);
        }
        b.produce(&b.t("sales"), recs).await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        let results = |t: &str| {
            let b = &b;
            let t = b.t(t);
            async move {
                let mut m = BTreeMap::new();
                for v in json_values(b.values(&t).await) {
                    assert_eq!(v["final"], json!(true));
                    let prev = m.insert(
                        v["group"].as_str().expect("group").to_string(),
                        v["value"].clone(),
                    );
                    assert!(prev.is_none(), "one final result per group per batch");
                }
                m
            }
        };
        let count = results("r-count").await;
        let sum = results("r-sum").await;
        let min = results("r-min").await;
        let max = results("r-max").await;
        let mean = results("r-mean").await;
        let hist = results("r-hist").await;
        let collect = results("r-collect").await;
        let custom = results("r-custom").await;
        assert_eq!(count.len(), 5, "[{}]", b.name);
        for (shop, amounts) in &want {
            let n = amounts.len() as i64;
            let total: i64 = amounts.iter().sum();
            assert_eq!(count[*shop], json!(n), "[{}] count {shop}", b.name);
            assert_eq!(sum[*shop], json!(total));
            assert_eq!(min[*shop], json!(amounts.iter().min().expect("min")));
            assert_eq!(max[*shop], json!(amounts.iter().max().expect("max")));
            let m = mean[*shop].as_f64().expect("mean");
            assert!((m - total as f64 / n as f64).abs() < 1e-9);
            assert_eq!(hist[*shop]["count"], json!(n));
            let buckets: i64 = hist[*shop]["buckets"]
                .as_object()
                .expect("buckets")
                .values()
                .map(|v| v.as_i64().expect("n"))
                .sum();
            assert_eq!(buckets, n, "histogram buckets add up to its population");
            let mut got: Vec<i64> = collect[*shop]
                .as_array()
                .expect("array")
                .iter()
                .map(|v| v.as_i64().expect("i"))
                .collect();
            got.sort();
            let mut exp = amounts.clone();
            exp.sort();
            assert_eq!(got, exp);
            assert_eq!(custom[*shop]["n"], json!(n));
            assert_eq!(
                custom[*shop]["big"],
                json!(amounts.iter().filter(|a| **a > 50).count())
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_reduces_match_the_plain_ones() {
    // Each reducer twice: plain, and with `combine: true` (its map aggregates before
    // the sharder). Both must give the same results, and the combined reduce must
    // read fewer records than there are items.
    let reducers = [
        ("count", "reducer: count"),
        ("sum", "reducer: sum, of: .amount"),
        ("min", "reducer: min, of: .amount"),
        ("max", "reducer: max, of: .amount"),
        ("mean", "reducer: mean, of: .amount"),
        ("hist", "reducer: histogram, of: .size"),
        ("all", "reducer: collect, of: .amount"),
        (
            "custom",
            "reducer: { init: '{n: 0, big: 0}', update: '.n += 1 | if $item.amount > 50 then .big += 1 else . end', merge: '.n += $other.n | .big += $other.big' }",
        ),
    ];
    for b in backends().await {
        let mut src = String::from(
            "pipeline: combined{s}\ntopics:\n  sales{s}: { partitions: 3 }\nstages:\n",
        );
        for (i, (name, reducer)) in reducers.iter().enumerate() {
            // Half the maps are within the native grammar, half run through jaq.
            let expr = if i % 2 == 0 {
                "'{shop, amount, size}'"
            } else {
                "'.'"
            };
            for (tag, combine) in [("p", "false"), ("c", "true")] {
                src.push_str(&format!(
                    "  m-{tag}{name}: {{ kind: map, from: sales{{s}}, to: u-{tag}{name}{{s}}, expr: {expr} }}\n  \
                     s-{tag}{name}: {{ kind: sharder, from: u-{tag}{name}{{s}}, by: .shop, to: sh-{tag}{name}{{s}}, shards: 3 }}\n  \
                     {tag}{name}: {{ kind: reduce, from: sh-{tag}{name}{{s}}, to: r-{tag}{name}{{s}}, group_by: .shop, {reducer}, combine: {combine} }}\n"
                ));
            }
        }
        b.create_topics(&src).await;
        let recs: Vec<ProduceRecord> = (0..600i64).map(|i| sale(i).2).collect();
        b.produce(&b.t("sales"), recs).await;
        let summary = b.run_batch(&src).await;
        assert_conserved(&summary);
        for (name, _) in reducers {
            let results = |t: String| {
                let b = &b;
                async move {
                    let mut m = BTreeMap::new();
                    for v in json_values(b.values(&b.t(&t)).await) {
                        assert_eq!(v["final"], json!(true));
                        let mut value = v["value"].clone();
                        // Collected items come in arrival order, which combining changes.
                        if let Some(a) = value.as_array_mut() {
                            a.sort_by_key(|x| x.as_i64());
                        }
                        assert!(
                            m.insert(v["group"].to_string(), value).is_none(),
                            "one final result per group"
                        );
                    }
                    m
                }
            };
            let plain = results(format!("r-p{name}")).await;
            let combined = results(format!("r-c{name}")).await;
            assert_eq!(plain.len(), 5, "[{}] {name}", b.name);
            assert_eq!(combined, plain, "[{}] {name}: combined vs plain", b.name);
            let read = stage(&summary, &format!("c{name}")).counters.records_in;
            assert!(
                (5..600).contains(&read),
                "[{}] {name}: the combined reduce read {read} records",
                b.name
            );
            assert_eq!(
                stage(&summary, &format!("p{name}")).counters.records_in,
                600
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histograms_merge_weighted_by_population() {
    // The book's family-size example: two partial histograms merge by adding counts,
    // so the bigger population weighs more in the merged distribution.
    for b in backends().await {
        let src = r#"
pipeline: families{s}
topics:
  partials{s}: { partitions: 1 }
stages:
  merge: { kind: reduce, from: partials{s}, to: merged{s}, reducer: histogram, of: '.' }
"#;
        b.create_topics(src).await;
        b.produce_values(
            &b.t("partials"),
            &[
                r#"{"count": 10, "buckets": {"2": 5, "4": 5}}"#,
                r#"{"count": 30, "buckets": {"2": 3, "3": 27}}"#,
            ],
        )
        .await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        let out = json_values(b.values(&b.t("merged")).await);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0]["value"],
            json!({"count": 40, "buckets": {"2": 8, "3": 27, "4": 5}}),
            "[{}]",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reduce_emits_partials_tagged_with_completeness_then_the_final() {
    for b in backends().await {
        let src = r#"
pipeline: partials{s}
topics:
  in{s}: { partitions: 1 }
stages:
  count: { kind: reduce, from: in{s}, to: counts{s}, reducer: count, emit: { every_records: 10 } }
"#;
        b.create_topics(src).await;
        let values: Vec<String> = (0..35).map(|i| i.to_string()).collect();
        b.produce_values(
            &b.t("in"),
            &values.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        )
        .await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        let out = json_values(b.values(&b.t("counts")).await);
        let finals: Vec<&Value> = out.iter().filter(|v| v["final"] == json!(true)).collect();
        let partials: Vec<&Value> = out.iter().filter(|v| v["final"] == json!(false)).collect();
        assert_eq!(finals.len(), 1, "[{}] {out:?}", b.name);
        assert_eq!(finals[0]["value"], json!(35));
        assert_eq!(
            (finals[0]["done"].clone(), finals[0]["of"].clone()),
            (json!(1), json!(1))
        );
        assert!(
            partials.len() >= 3,
            "[{}] partials every 10 items: {out:?}",
            b.name
        );
        assert!(
            partials
                .iter()
                .all(|p| p["of"] == json!(1) && p["value"].as_i64().expect("n") < 35)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_reduce_replays_its_held_items_and_counts_exactly() {
    for b in backends().await {
        let src = r#"
pipeline: replay{s}
topics:
  in{s}: { partitions: 2 }
stages:
  slow: { kind: map, from: in{s}, to: mid{s}, expr: '{w: .}' }
  count: { kind: reduce, from: mid{s}, to: counts{s}, group_by: .w, reducer: count }
"#;
        b.create_topics(src).await;
        let values: Vec<String> = (0..2000).map(|i| format!("\"w{}\"", i % 7)).collect();
        b.produce_values(
            &b.t("in"),
            &values.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        )
        .await;
        // Stop the first run as soon as the reduce holds some items.
        let plan = b.plan(src);
        let rt = Runtime::new(millrace_runtime::build::from_plan(&plan).expect("build"));
        let state = rt.state();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let opts = RunOptions {
            batch: true,
            max_batch: 100,
            ..RunOptions::default()
        };
        let run = tokio::spawn(rt.run(b.broker.clone(), opts, rx));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while state.stages[1].counters.snapshot().records_in == 0 {
            assert!(
                std::time::Instant::now() < deadline && !run.is_finished(),
                "[{}] the reduce read nothing before the run ended",
                b.name
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = tx.send(true);
        run.await.expect("join").expect("first run stops cleanly");
        let before = b.values(&b.t("counts")).await;
        assert!(
            before.is_empty(),
            "[{}] nothing final before the batch ends",
            b.name
        );
        // The second run finishes the batch: held items were not committed, so they are
        // read again and each counted once.
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        let out = json_values(b.values(&b.t("counts")).await);
        let total: i64 = out
            .iter()
            .map(|v| v["value"].as_i64().expect("count"))
            .sum();
        assert_eq!(total, 2000, "[{}] {out:?}", b.name);
        assert_eq!(out.len(), 7);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_run_cuts_batches_by_count_and_reduces_each() {
    for b in backends().await {
        let src = r#"
pipeline: micro{s}
topics:
  in{s}: { partitions: 2 }
stages:
  tag: { kind: map, from: in{s}, to: mid{s}, expr: '{w: .}', batch: { records: 5 } }
  count: { kind: reduce, from: mid{s}, to: counts{s}, group_by: .w, reducer: count }
"#;
        b.create_topics(src).await;
        b.produce_values(
            &b.t("in"),
            &[r#""a""#, r#""b""#, r#""a""#, r#""a""#, r#""b""#, r#""a""#],
        )
        .await;
        let plan = b.plan(src);
        let rt = Runtime::new(millrace_runtime::build::from_plan(&plan).expect("build"));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let run = tokio::spawn(rt.run(b.broker.clone(), RunOptions::default(), rx));
        // The first batch: the six records waiting at start (six ≥ five).
        let first = wait_for(&b, 2).await;
        let batch1 = first[0]["batch"].clone();
        assert_eq!(
            batch1,
            json!(6),
            "[{}] numbered by the source records it covers",
            b.name
        );
        let count = |f: &[Value], batch: &Value, w: &str| {
            f.iter()
                .find(|v| v["batch"] == *batch && v["group"] == json!(w))
                .map(|v| v["value"].clone())
        };
        assert_eq!(count(&first, &batch1, "a"), Some(json!(4)));
        assert_eq!(count(&first, &batch1, "b"), Some(json!(2)));
        // Three more records are not a batch yet; two more make five.
        b.produce_values(&b.t("in"), &[r#""b""#, r#""b""#, r#""c""#])
            .await;
        // A window far longer than a due batch takes: the stage does not read records
        // until a batch is due, so nothing else can be waited on.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            finals(&b).await.len(),
            2,
            "[{}] no batch before five records wait",
            b.name
        );
        b.produce_values(&b.t("in"), &[r#""c""#, r#""a""#]).await;
        let all = wait_for(&b, 5).await;
        let batch2 = json!(11);
        assert_eq!(
            count(&all, &batch2, "a"),
            Some(json!(1)),
            "[{}] {all:?}",
            b.name
        );
        assert_eq!(count(&all, &batch2, "b"), Some(json!(2)));
        assert_eq!(count(&all, &batch2, "c"), Some(json!(2)));
        let _ = tx.send(true);
        let summary = run.await.expect("join").expect("run");
        assert_eq!(stage(&summary, "count").counters.records_in, 11);
    }
}

async fn finals(b: &TestBackend) -> Vec<Value> {
    json_values(b.values(&b.t("counts")).await)
        .into_iter()
        .filter(|v| v["final"] == json!(true))
        .collect()
}

async fn wait_for(b: &TestBackend, n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let f = finals(b).await;
        if f.len() >= n {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("[{}] fewer than {n} results: {:?}", b.name, finals(b).await);
}
