//! The fast path (plain paths picked from the bytes) must give exactly what the general
//! path (jaq value + jq filters) gives: results, dead letters and their reasons, held
//! offsets.

use std::sync::Arc;

use bytes::Bytes;
use millrace_pipeline::Expr;

use super::*;
use crate::batch::BATCH_HEADER;

fn sel(src: &str) -> Selector {
    Selector::Jq(Expr::compile(src).expect("compiles"))
}

fn reduce(group_by: Option<&str>, reducer: Reducer, of: Option<&str>, emit: EmitPolicy) -> Reduce {
    Reduce::new(group_by.map(sel), reducer, of.map(sel), emit, Format::Json)
}

const BUILTINS: [Reducer; 7] = Reducer::BUILT_IN;

#[test]
fn plain_paths_and_built_in_reducers_take_the_fast_path() {
    let none = EmitPolicy::default();
    for r in BUILTINS {
        assert!(reduce(Some(".g"), r.clone(), Some(".v"), none).is_fast());
        assert!(reduce(Some(".a.b"), r.clone(), None, none).is_fast());
        assert!(reduce(None, r.clone(), Some("."), none).is_fast());
        assert!(!reduce(Some(".g | ascii_downcase"), r.clone(), None, none).is_fast());
        assert!(!reduce(Some(".g"), r.clone(), Some(".v[0]"), none).is_fast());
        assert!(!reduce(Some("$key"), r.clone(), None, none).is_fast());
        let text = Reduce::new(Some(sel(".g")), r, None, none, Format::Text);
        assert!(!text.is_fast());
    }
    let custom = Reducer::Custom {
        init: Expr::compile("0").expect("compiles"),
        update: Expr::compile_with(". + 1", &["item"]).expect("compiles"),
        merge: Expr::compile_with(". + $other", &["other"]).expect("compiles"),
    };
    assert!(!reduce(Some(".g"), custom, None, none).is_fast());
}

/// Record values: good ones of every kind, and every kind of bad one.
fn values() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        r#"{"g":"u1","v":1,"a":{"b":"x"}}"#,
        r#"{"g":"u2","v":2.5,"a":{"b":"y"}}"#,
        r#"{"g":"u1","v":-3,"a":{"b":{"k":[1,2]}}}"#,
        r#"{"g":null,"v":"str","a":null}"#,
        r#"{"v":7}"#,
        r#"{"g":12,"v":1e2,"a":{"b":12}}"#,
        r#"{"g":1.50,"v":0.1,"a":{"b":1.5}}"#,
        r#"{"g":{"z":1,"y":[true]},"v":0,"a":{"b":{"z":1,"y":[true]}}}"#,
        r#"{"g":"caf\u00e9","v":4}"#,
        r#"{"g":"café","v":5}"#,
        r#"{"g":"tab\there","v":5}"#,
        r#"{"g\u0031":"x","g":"u\u0031","v":6}"#,
        r#"{"g":"u1","g":"u2","v":6,"v":8}"#,
        r#"{"g":"u3","v":9007199254740993}"#,
        r#"{"g":"u3","v":12345678901234567890123}"#,
        r#"{"g":"u1","v":{"count":2,"buckets":{"x":2}}}"#,
        r#"{"g":"u1","v":[1,"a",null]}"#,
        r#"{"g":"\ud83d\ude00","v":1}"#,
        r#"{"g":"u1","v":1} # a comment: jaq reads it"#,
        r#"{"a":5,"g":"u1","v":1}"#,
        r#"{"a":{"b":1},"a":{"c":2},"g":"u2","v":2}"#,
        r#"[1,2]"#,
        r#""s""#,
        r#"null"#,
        r#"7"#,
        "not json",
        r#"{"g":"u1""#,
        r#"{"g":"u1",}"#,
        r#"{"g":"\ud800","v":1}"#,
        r#"{"g":NaN,"v":1}"#,
        r#"{"g":"u1","v":+1}"#,
        r#"{"g":"u1","v":007}"#,
        "",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.push(b"{\"g\":\"\xff\",\"v\":1}".to_vec());
    v.push(format!("{}{{\"g\":\"deep\"}}{}", "[".repeat(512), "]".repeat(512)).into_bytes());
    v.push(format!("{}{{\"g\":\"ok\"}}{}", "[".repeat(511), "]".repeat(511)).into_bytes());
    v
}

fn records() -> Vec<ConsumedRecord> {
    let topic: Arc<str> = Arc::from("in");
    let vals = values();
    let mut out = Vec::new();
    let mut offsets = [0i64; 2];
    // Partition 0 in order, partition 1 reversed, interleaved in runs.
    for (i, chunk) in vals.chunks(3).enumerate() {
        for v in chunk {
            let p = i % 2;
            out.push(ConsumedRecord {
                topic: topic.clone(),
                partition: i32::try_from(p).unwrap_or(0),
                offset: offsets[p],
                key: None,
                value: Bytes::from(v.clone()),
                headers: Vec::new(),
                timestamp: 0,
            });
            offsets[p] += 1;
        }
    }
    for v in vals.iter().rev() {
        out.push(ConsumedRecord {
            topic: topic.clone(),
            partition: 1,
            offset: offsets[1],
            key: None,
            value: Bytes::from(v.clone()),
            headers: Vec::new(),
            timestamp: 0,
        });
        offsets[1] += 1;
    }
    out
}

type Seen = Vec<(Option<Bytes>, Bytes)>;

/// Everything observable from a run over `recs`: emits, dead letters with reasons,
/// tallies and held offsets after every record, then the final results.
fn observe(mut r: Reduce, recs: &[ConsumedRecord], revoke_at: Option<usize>) -> Vec<String> {
    let tps = [TopicPartition::new("in", 0), TopicPartition::new("in", 1)];
    let progress = Progress {
        batch: 9,
        done: 1,
        of: 2,
    };
    let mut log = Vec::new();
    let show = |emits: &mut Vec<Emit>| -> Seen {
        emits
            .drain(..)
            .map(|e| (e.record.key, e.record.value))
            .collect()
    };
    for (i, rec) in recs.iter().enumerate() {
        let (mut emits, mut dead) = (Vec::new(), Vec::new());
        let t = r.absorb(rec, progress, &mut emits, &mut dead);
        let dead: Vec<(i32, i64, String)> = dead
            .iter()
            .map(|(d, e)| (d.partition, d.offset, e.error.clone()))
            .collect();
        let held: Vec<Option<i64>> = tps.iter().map(|tp| r.held_from(tp)).collect();
        log.push(format!(
            "{i}: {t:?} dead {dead:?} held {held:?} emits {:?}",
            show(&mut emits)
        ));
        if revoke_at == Some(i) {
            log.push(format!("revoked {}", r.revoke(&tps[1..])));
        }
    }
    let mut emits = Vec::new();
    let t = r.finish_batch(progress, &mut emits);
    log.push(format!("final {t:?} {:?}", show(&mut emits)));
    log
}

#[test]
fn the_fast_path_gives_what_the_general_path_gives() {
    // jaq's reader recurses once per level of the 511-deep record: a debug build needs
    // more than a test thread's stack.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(fast_and_general_agree)
        .expect("thread")
        .join()
        .expect("no panic");
}

fn fast_and_general_agree() {
    let recs = records();
    let emits = [
        EmitPolicy::default(),
        EmitPolicy {
            every_records: Some(4),
            every: None,
        },
    ];
    let mut checked = 0;
    for r in BUILTINS {
        let ofs: &[Option<&str>] = match r {
            Reducer::Count => &[None],
            _ => &[Some(".v"), None, Some(".a.b")],
        };
        for group_by in [Some(".g"), Some(".a.b"), None, Some(".")] {
            for of in ofs {
                for emit in emits {
                    for revoke_at in [None, Some(recs.len() / 2)] {
                        let fast = reduce(group_by, r.clone(), *of, emit);
                        assert!(fast.is_fast());
                        let mut general = reduce(group_by, r.clone(), *of, emit);
                        general.items.fast = None;
                        let (a, b) = (
                            observe(fast, &recs, revoke_at),
                            observe(general, &recs, revoke_at),
                        );
                        for (x, y) in a.iter().zip(&b) {
                            assert_eq!(x, y, "{} by {group_by:?} of {of:?}", r.name());
                        }
                        assert_eq!(a.len(), b.len());
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 50);
}

#[test]
fn a_count_of_good_records_holds_them_all_and_counts_each_group() {
    let mut r = reduce(Some(".user"), Reducer::Count, None, EmitPolicy::default());
    let topic: Arc<str> = Arc::from("in");
    let (mut emits, mut dead) = (Vec::new(), Vec::new());
    for i in 0..100i64 {
        let v = format!(r#"{{"n":{i},"user":"u{}","pad":"xx"}}"#, i % 7);
        let rec = ConsumedRecord {
            topic: topic.clone(),
            partition: i32::from(i % 2 == 0),
            offset: i / 2 + 10,
            key: None,
            value: Bytes::from(v),
            headers: Vec::new(),
            timestamp: 0,
        };
        let t = r.absorb(&rec, Progress::default(), &mut emits, &mut dead);
        assert_eq!(t, Tally::default());
    }
    assert!(emits.is_empty() && dead.is_empty());
    assert_eq!(r.held_from(&TopicPartition::new("in", 0)), Some(10));
    assert_eq!(r.held_from(&TopicPartition::new("in", 1)), Some(10));
    let t = r.finish_batch(Progress::default(), &mut emits);
    assert_eq!(t.out, 100);
    let counts: Vec<(String, u64)> = emits
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_slice(&e.record.value).expect("json");
            (
                v["group"].as_str().unwrap_or_default().to_string(),
                v["value"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = (0..7)
        .map(|g| {
            (
                format!("u{g}"),
                (0..100).filter(|i| i % 7 == g).count() as u64,
            )
        })
        .collect();
    assert_eq!(counts, want);
    assert_eq!(r.held_from(&TopicPartition::new("in", 0)), None);
}

fn rec(partition: i32, offset: i64, value: &str) -> ConsumedRecord {
    ConsumedRecord {
        topic: Arc::from("in"),
        partition,
        offset,
        key: None,
        value: Bytes::from(value.to_string()),
        headers: Vec::new(),
        timestamp: 0,
    }
}

fn finals(r: &mut Reduce) -> (Tally, Vec<(String, Value)>) {
    let mut emits = Vec::new();
    let t = r.finish_batch(Progress::default(), &mut emits);
    let out = emits
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_slice(&e.record.value).expect("json");
            (v["group"].to_string(), v["value"].clone())
        })
        .collect();
    (t, out)
}

#[test]
fn partitions_that_come_later_or_go_keep_every_group_right() {
    for fast in [true, false] {
        let mut r = reduce(
            Some(".g"),
            Reducer::Collect,
            Some(".v"),
            EmitPolicy::default(),
        );
        if !fast {
            r.items.fast = None;
        }
        let (mut emits, mut dead) = (Vec::new(), Vec::new());
        // Partition 2 first, then 0, then 1: the layout grows twice with groups in it.
        let mut offsets = [0i64; 3];
        for p in [2, 0, 1] {
            for g in 0..50 {
                let o = &mut offsets[usize::try_from(p).unwrap_or(0)];
                let v = format!(r#"{{"g":"g{g:02}","v":"{p}-{g}"}}"#);
                r.absorb(&rec(p, *o, &v), Progress::default(), &mut emits, &mut dead);
                *o += 1;
            }
        }
        // A group only partition 1 has.
        r.absorb(
            &rec(1, offsets[1], r#"{"g":"only1","v":"x"}"#),
            Progress::default(),
            &mut emits,
            &mut dead,
        );
        assert!(emits.is_empty() && dead.is_empty());
        assert_eq!(r.held_from(&TopicPartition::new("in", 1)), Some(0));
        assert_eq!(r.revoke(&[TopicPartition::new("in", 1)]), 51);
        assert_eq!(r.held_from(&TopicPartition::new("in", 1)), None);
        assert_eq!(r.held_from(&TopicPartition::new("in", 2)), Some(0));
        // Partition 1 comes back: it starts over.
        r.absorb(
            &rec(1, 0, r#"{"g":"g07","v":"again"}"#),
            Progress::default(),
            &mut emits,
            &mut dead,
        );
        let (t, out) = finals(&mut r);
        assert_eq!(t.out, 101);
        assert_eq!(out.len(), 50, "only1 went with its partition");
        for (i, (group, value)) in out.iter().enumerate() {
            assert_eq!(*group, format!("\"g{i:02}\""));
            // Merged in partition order, whatever order they came in.
            let mut want = vec![json!(format!("0-{i}"))];
            if i == 7 {
                want.push(json!("again"));
            }
            want.push(json!(format!("2-{i}")));
            assert_eq!(*value, Value::Array(want), "fast {fast}");
        }
        let (t, out) = finals(&mut r);
        assert_eq!((t.out, out.len()), (0, 0), "a batch starts empty");
    }
}

#[test]
fn partials_name_each_changed_group_once_and_survive_a_revoke() {
    let every = EmitPolicy {
        every_records: Some(3),
        every: None,
    };
    let mut r = reduce(Some(".g"), Reducer::Count, None, every);
    let (mut emits, mut dead) = (Vec::new(), Vec::new());
    let mut absorb = |r: &mut Reduce, p: i32, o: i64, g: &str| {
        let v = format!(r#"{{"g":"{g}"}}"#);
        r.absorb(&rec(p, o, &v), Progress::default(), &mut emits, &mut dead);
        let named: Vec<String> = emits
            .drain(..)
            .map(|e| String::from_utf8_lossy(e.record.key.as_deref().unwrap_or_default()).into())
            .collect();
        named
    };
    assert!(absorb(&mut r, 0, 0, "a").is_empty());
    assert!(absorb(&mut r, 1, 0, "b").is_empty());
    assert_eq!(absorb(&mut r, 0, 1, "a"), ["a", "b"]);
    assert!(absorb(&mut r, 1, 1, "b").is_empty());
    assert_eq!(r.revoke(&[TopicPartition::new("in", 1)]), 2);
    assert!(absorb(&mut r, 0, 2, "c").is_empty());
    // b went with partition 1; a and c changed.
    let mut named = absorb(&mut r, 0, 3, "a");
    named.sort();
    assert_eq!(named, ["a", "c"]);
}

#[test]
fn records_of_an_earlier_batch_are_counted_under_that_batch_and_of_a_later_one_in_this() {
    // Records an upstream stage released in batch 5 (then this reduce died before
    // committing them) come back while batch 9 is in hand: their counts must come out
    // as batch 5's again, not be added to batch 9's.
    let mut r = reduce(Some(".g"), Reducer::Count, None, EmitPolicy::default());
    let rec = |offset: i64, batch: Option<&str>| ConsumedRecord {
        topic: Arc::from("in"),
        partition: 0,
        offset,
        key: None,
        value: Bytes::from_static(br#"{"g":"w"}"#),
        headers: batch
            .map(|b: &str| vec![batch_header(b.parse().expect("batch"))])
            .unwrap_or_default(),
        timestamp: 0,
    };
    let progress = Progress {
        batch: 9,
        done: 1,
        of: 1,
    };
    let (mut emits, mut dead) = (Vec::new(), Vec::new());
    // A record naming a later batch (12) counts in the batch in hand.
    for (o, b) in [
        (0, Some("5")),
        (1, Some("5")),
        (2, None),
        (3, Some("9")),
        (4, Some("12")),
    ] {
        r.absorb(&rec(o, b), progress, &mut emits, &mut dead);
    }
    assert!(emits.is_empty() && dead.is_empty());
    r.finish_batch(progress, &mut emits);
    let mut got: Vec<(u64, u64, String)> = emits
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_slice(&e.record.value).expect("json");
            let header = e
                .record
                .headers
                .iter()
                .find(|h| &*h.key == BATCH_HEADER)
                .map(|h| String::from_utf8_lossy(&h.value).to_string())
                .expect("results name their batch");
            assert_eq!(
                e.record.key.as_deref(),
                Some(&b"w"[..]),
                "keyed by the group alone"
            );
            (
                v["batch"].as_u64().expect("batch"),
                v["value"].as_u64().expect("n"),
                header,
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, vec![(5, 2, "5".into()), (9, 3, "9".into())]);
}
