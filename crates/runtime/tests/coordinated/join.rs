//! Join: by key (a key missing an input is dead-lettered) and by arrival order (zip).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_join_combines_parts_and_dead_letters_a_key_missing_an_input() {
    for b in backends().await {
        let src = r#"
pipeline: keyjoin{s}
topics:
  orders{s}: { partitions: 2 }
  payments{s}: { partitions: 2 }
stages:
  match: { kind: join, mode: key, from: [orders{s}, payments{s}], key: .order, timeout: 30s, to: paid{s} }
"#;
        b.create_topics(src).await;
        let key = |o: &str| Some(bytes::Bytes::from(o.to_string()));
        b.produce(
            &b.t("orders"),
            vec![
                ProduceRecord {
                    key: key("o1"),
                    value: r#"{"order":"o1","item":"book"}"#.into(),
                    ..Default::default()
                },
                ProduceRecord {
                    key: key("o2"),
                    value: r#"{"order":"o2","item":"pen"}"#.into(),
                    ..Default::default()
                },
                ProduceRecord {
                    key: key("o3"),
                    value: r#"{"order":"o3","item":"ink"}"#.into(),
                    ..Default::default()
                },
            ],
        )
        .await;
        b.produce(
            &b.t("payments"),
            vec![
                ProduceRecord {
                    key: key("o2"),
                    value: r#"{"order":"o2","paid":2}"#.into(),
                    ..Default::default()
                },
                ProduceRecord {
                    key: key("o1"),
                    value: r#"{"order":"o1","paid":9}"#.into(),
                    ..Default::default()
                },
            ],
        )
        .await;
        let summary = b.run_batch(src).await;
        assert_conserved(&summary);
        let mut paid = json_values(b.values(&b.t("paid")).await);
        paid.sort_by_key(|v| v["order"].as_str().map(String::from));
        assert_eq!(
            paid,
            vec![
                json!({"order":"o1","item":"book","paid":9}),
                json!({"order":"o2","item":"pen","paid":2}),
            ],
            "[{}]",
            b.name
        );
        let dead = b.read_all(&format!("keyjoin{}.dlq", b.suffix)).await;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].value.as_ref(), br#"{"order":"o3","item":"ink"}"#);
        let err = header(&dead[0], "millrace.error").expect("error");
        assert!(
            err.contains("o3") && err.contains(&b.t("payments")),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_pairs_items_by_arrival_order() {
    for b in backends().await {
        let src = r#"
pipeline: zip{s}
topics:
  photos{s}: { partitions: 1 }
  photos-2{s}: { partitions: 1 }
stages:
  pair: { kind: join, mode: zip, from: [photos{s}, photos-2{s}], to: pairs{s} }
"#;
        b.create_topics(src).await;
        b.produce_values(&b.t("photos"), &[r#""a.jpg""#, r#""b.jpg""#, r#""c.jpg""#])
            .await;
        b.produce_values(&b.t("photos-2"), &[r#""A.jpg""#, r#""B.jpg""#])
            .await;
        let summary = b.run_batch(src).await;
        let out = json_values(b.values(&b.t("pairs")).await);
        assert_eq!(
            out,
            vec![json!(["a.jpg", "A.jpg"]), json!(["b.jpg", "B.jpg"])],
            "[{}]",
            b.name
        );
        // The unpaired item waits, uncommitted, for its partner.
        assert_eq!(stage(&summary, "pair").counters.in_flight, 1);
        b.produce_values(&b.t("photos-2"), &[r#""C.jpg""#]).await;
        b.run_batch(src).await;
        let out = json_values(b.values(&b.t("pairs")).await);
        assert_eq!(
            out.last(),
            Some(&json!(["c.jpg", "C.jpg"])),
            "[{}] {out:?}",
            b.name
        );
        assert_eq!(out.len(), 3);
    }
}
