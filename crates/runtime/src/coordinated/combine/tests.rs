use std::sync::Arc;

use bytes::Bytes;
use millrace_pipeline::{Expr, Format, Mapper, Reducer, Selector};

use super::*;
use crate::coordinated::reduce::COMBINED_HEADER;

fn combiner(max_groups: usize) -> Combiner {
    let expr = r#"ascii_downcase | scan("[a-z]+") | {word: .}"#;
    let map = Map::new(Mapper::Jq(Expr::compile(expr).expect("map")), Format::Text);
    let c = Combine {
        reduce: "count".into(),
        group_by: Some(Selector::Jq(Expr::compile(".word").expect("group_by"))),
        reducer: Reducer::Count,
        of: None,
        format: Format::Json,
        route_by: Vec::new(),
    };
    Combiner::new(map, &c).with_max_groups(max_groups)
}

fn line(partition: i32, offset: i64, text: &str) -> ConsumedRecord {
    ConsumedRecord {
        topic: Arc::from("lines"),
        partition,
        offset,
        key: None,
        value: Bytes::from(text.to_string()),
        headers: Vec::new(),
        timestamp: 0,
    }
}

/// Emits, dead letters and lineage tags of absorbing one poll.
type Absorbed = (
    Vec<Emit>,
    Vec<(ConsumedRecord, RecordError)>,
    Vec<LineageTag>,
);

fn absorb_poll(c: &mut Combiner, batch: &[ConsumedRecord]) -> Absorbed {
    let (mut emits, mut dead, mut tags) = (Vec::new(), Vec::new(), Vec::new());
    c.absorb_all(batch, Progress::default(), &mut emits, &mut dead, &mut tags)
        .expect("absorbs whole polls");
    (emits, dead, tags)
}

/// A combined record's count (its `millrace.combined` header).
fn combined_count(e: &Emit) -> u64 {
    e.record
        .headers
        .iter()
        .find(|h| &*h.key == COMBINED_HEADER)
        .map(|h| {
            std::str::from_utf8(&h.value)
                .expect("utf8")
                .parse()
                .expect("n")
        })
        .expect("combined header")
}

/// word → count, from combined records.
fn counts(emits: &[Emit]) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for e in emits {
        let v: serde_json::Value = serde_json::from_slice(&e.record.value).expect("json");
        *m.entry(v["word"].as_str().expect("word").to_string())
            .or_default() += combined_count(e);
    }
    m
}

#[tokio::test]
async fn ranges_close_at_the_group_limit_on_the_record_that_reaches_it() {
    let mut c = combiner(3);
    // Partition 0 reaches 3 groups at its second record; partition 1 never does.
    let batch = vec![
        line(0, 10, "a b a"),
        line(0, 11, "c a"),
        line(0, 12, "a"),
        line(1, 5, "x x"),
        line(1, 6, "X"),
    ];
    let (mut emits, mut dead, mut tags) = (Vec::new(), Vec::new(), Vec::new());
    let progress = Progress::default();
    let t = c
        .absorb_all(&batch, progress, &mut emits, &mut dead, &mut tags)
        .expect("absorbs whole polls");
    assert!(dead.is_empty());
    // The first range (offsets 10..=11) went out, named after its last record.
    let origin = |p: i32| format!("lines/{p}");
    assert_eq!(
        tags,
        vec![
            LineageTag::new(origin(0), 11, 0),
            LineageTag::new(origin(0), 11, 1),
            LineageTag::new(origin(0), 11, 2)
        ]
    );
    assert_eq!(
        counts(&emits),
        [("a".to_string(), 3), ("b".into(), 1), ("c".into(), 1)].into()
    );
    assert_eq!(t.out, 2, "two input records written out");
    // What is still held: partition 0 from 12, partition 1 from 5.
    assert_eq!(c.held_from(&TopicPartition::new("lines", 0)), Some(12));
    assert_eq!(c.held_from(&TopicPartition::new("lines", 1)), Some(5));

    // The batch's end writes the rest, named after each range's last record.
    emits.clear();
    let lineage = std::sync::Mutex::new(crate::lineage::Lineage::new("s"));
    let read_upto = Default::default();
    let broker =
        millrace_broker::embedded::EmbeddedBroker::open(tempfile::tempdir().expect("tmp").path())
            .expect("broker");
    let ctx = FinishContext {
        broker: &broker,
        stage: "s",
        read_upto: &read_upto,
        lineage: &lineage,
    };
    let t = c
        .finish(progress, &ctx, &mut emits, &mut dead)
        .await
        .expect("finish");
    assert_eq!(t.out, 3);
    assert_eq!(
        counts(&emits),
        [("a".to_string(), 1), ("x".into(), 3)].into()
    );
    let tags = c.finish_tags().expect("names its results");
    assert_eq!(
        tags,
        vec![
            LineageTag::new("lines/0", 12, 0),
            LineageTag::new("lines/1", 6, 0)
        ]
    );
    assert_eq!(c.held_from(&TopicPartition::new("lines", 0)), None);
}

#[test]
fn text_the_native_map_cannot_read_goes_through_jaq_and_is_held() {
    let mut c = combiner(100);
    let mut bad = line(0, 3, "ok");
    bad.value = Bytes::from_static(b"\xff\xfe");
    let (mut emits, mut dead) = (Vec::new(), Vec::new());
    // Not UTF-8 text is jaq's to read (lossily): it gives a word, no error.
    let t = c.absorb(&bad, Progress::default(), &mut emits, &mut dead);
    assert_eq!(t.dead_lettered, 0);
    assert!(emits.is_empty());
    assert_eq!(c.held_from(&TopicPartition::new("lines", 0)), Some(3));
}

#[test]
fn a_replay_ends_its_ranges_where_the_lineage_found_them_ended() {
    // A run before this one wrote a range ending at offset 11 (then stopped before
    // committing): the replay from 10 must end its range there too, even though the
    // group limit is far, so it writes the very same records.
    let mut c = combiner(1000);
    let mut cuts = HashMap::new();
    cuts.insert("lines/0".to_string(), vec![7, 11, 30]);
    c.cuts = cuts;
    let batch = vec![line(0, 10, "a b"), line(0, 11, "a"), line(0, 12, "c")];
    let (emits, _, tags) = absorb_poll(&mut c, &batch);
    assert_eq!(
        counts(&emits),
        [("a".to_string(), 2), ("b".into(), 1)].into()
    );
    assert_eq!(
        tags.iter().map(|t| t.offset).collect::<Vec<_>>(),
        vec![11, 11]
    );
    // The next range (from 12) runs to the next cut, 30.
    assert_eq!(c.held_from(&TopicPartition::new("lines", 0)), Some(12));
    assert_eq!(c.ranges[0].cut, Some(30));
}

#[test]
fn outputs_combine_per_record_key_and_a_bad_output_is_dead_lettered_alone() {
    // Outputs `{"w": {"x": …}}` grouped by `.w.x`; `{"w": "oops"}` has no group key
    // (jq cannot index a string), which the reduce would dead-letter.
    let map = Map::new(Mapper::Jq(Expr::compile(".[]").expect("map")), Format::Json);
    let c = Combine {
        reduce: "count".into(),
        group_by: Some(Selector::Jq(Expr::compile(".w.x").expect("group_by"))),
        reducer: Reducer::Count,
        of: None,
        format: Format::Json,
        route_by: Vec::new(),
    };
    let mut c = Combiner::new(map, &c);
    assert!(
        c.how.by_value,
        "plain paths: equal outputs are found by their bytes"
    );
    let keyed = |offset: i64, key: &'static str, value: &'static str| {
        let mut r = line(0, offset, value);
        r.key = Some(Bytes::from_static(key.as_bytes()));
        r
    };
    let batch = vec![
        keyed(
            0,
            "k1",
            r#"[{"w":{"x":"a"}},{"w":"oops"},{"w":{"x":"a"}},{"w":{"x":"b"}},{"w":{"x":"a"}}]"#,
        ),
        keyed(1, "k2", r#"[{"w":{"x":"a"}}]"#),
        keyed(2, "k1", r#"[{"w":{"x":"a"}}]"#),
    ];
    let (_, dead, mut tags) = absorb_poll(&mut c, &batch);
    assert_eq!(dead.len(), 1);
    assert_eq!(&dead[0].0.value[..], br#"{"w":"oops"}"#);
    assert_eq!(dead[0].0.offset, 0);
    // Flush what is held.
    let mut emits = Vec::new();
    for range in &mut c.ranges {
        c.how.flush(range, &mut emits, &mut tags);
    }
    let mut got: Vec<(String, String, u64)> = emits
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_slice(&e.record.value).expect("json");
            let n = combined_count(e);
            let key = e.record.key.as_deref().expect("keyed");
            let key = String::from_utf8(key.to_vec()).expect("utf8");
            (key, v["w"]["x"].as_str().expect("x").to_string(), n)
        })
        .collect();
    got.sort();
    let want = [("k1", "a", 4), ("k1", "b", 1), ("k2", "a", 1)];
    let want: Vec<(String, String, u64)> = want
        .iter()
        .map(|(k, x, n)| (k.to_string(), x.to_string(), *n))
        .collect();
    assert_eq!(got, want);
}
