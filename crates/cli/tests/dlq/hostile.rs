//! Dead letters no stage wrote — headers missing, unreadable, naming a stage the
//! pipeline does not have or a topic the stage does not read — and records written
//! into the redrive topic by hand: each is reported or passed over, record by record;
//! nothing panics and nothing reaches a stage it is not addressed to.

use crate::common::*;
use crate::support::*;

/// The headers of a dead letter as a stage writes them.
fn dead(stage: &str, topic: &str, partition: &str, offset: &str) -> Vec<(String, Vec<u8>)> {
    [
        ("millrace.stage", stage),
        ("millrace.error", "written by hand"),
        ("millrace.attempts", "1"),
        ("millrace.source.topic", topic),
        ("millrace.source.partition", partition),
        ("millrace.source.offset", offset),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_string(), v.as_bytes().to_vec()))
    .collect()
}

fn set(headers: &mut Vec<(String, Vec<u8>)>, name: &str, value: Option<&[u8]>) {
    headers.retain(|(k, _)| k != name);
    if let Some(v) = value {
        headers.push((name.to_string(), v.to_vec()));
    }
}

fn record(value: &str, headers: &[(String, Vec<u8>)]) -> millrace_broker::ProduceRecord {
    let borrowed: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    with_headers(value, &borrowed)
}

#[test]
fn hand_written_dead_letters_are_reported_one_by_one_and_go_to_no_other_stage() {
    for b in Backend::all() {
        let shop = Shop::new(&b);
        shop.fix();
        shop.produce(0..ITEMS);
        shop.run_batch();
        let dl = shop.dead_letter();
        assert_eq!(b.records_in(&dl), 0, "[{}]", b.name);
        let items = shop.items.as_str();

        let mut many = dead("enrich", items, "0", "0");
        set(&mut many, "millrace.attempts", Some(b"many"));
        let mut no_offset = dead("enrich", items, "1", "0");
        set(&mut no_offset, "millrace.source.offset", None);
        let mut not_text = dead("enrich", items, "0", "2");
        set(&mut not_text, "millrace.stage", Some(b"\xff\xfe"));
        let hand = [
            record("garbage", &[]),
            record(r#"{"n":101}"#, &many),
            record(r#"{"n":102}"#, &no_offset),
            record(r#"{"n":103}"#, &dead("ghost", items, "0", "1")),
            record(r#"{"n":104}"#, &dead("enrich", "elsewhere", "0", "0")),
            record(r#"{"n":100}"#, &dead("audit", items, "0", "0")),
            record(r#"{"n":200}"#, &dead("enrich", items, "2", "5")),
            record(r#"{"n":107}"#, &not_text),
        ];
        produce_by_hand(&b, &dl, &hand);

        let list = shop.dlq_ok(&["list", shop.path()]);
        assert!(
            list.contains("records that name no stage"),
            "[{}] {list}",
            b.name
        );
        assert!(list.contains("no such stage"), "[{}] {list}", b.name);
        let shown = shop.dead_letters();
        assert_eq!(shown.len(), 8, "[{}]", b.name);
        let stage = shown[7]["headers"]
            .as_array()
            .and_then(|hs| hs.iter().find(|h| h["key"] == "millrace.stage"));
        assert!(
            stage.is_some_and(|h| h["value"]["base64"] == "//4="),
            "[{}] bytes that are not UTF-8 are shown in base64: {}",
            b.name,
            shown[7]
        );

        let report = shop.redrive("enrich", &[]);
        assert_eq!(redrive_counts(&report), (1, 0, 5), "[{}] {report}", b.name);
        for (offset, why) in [
            (0, "no millrace.stage header"),
            (1, "millrace.attempts header is not a number: 'many'"),
            (2, "no millrace.source.offset header"),
            (
                4,
                "its source topic 'elsewhere' is not an input of stage enrich",
            ),
            (7, "millrace.stage header is not UTF-8 text"),
        ] {
            let line = format!("left {dl}/0#{offset}: ");
            let found = report.lines().find(|l| l.starts_with(&line));
            assert!(
                found.is_some_and(|l| l.contains(why)),
                "[{}] {line}… {why}:\n{report}",
                b.name
            );
        }
        assert!(
            report.contains(
                "(2 dead letters of other stages not touched, 1 of them naming a stage pipeline"
            ),
            "{report}"
        );
        let report = shop.redrive("audit", &[]);
        assert_eq!(redrive_counts(&report), (1, 0, 2), "[{}] {report}", b.name);
        let ghost = shop.dlq(&["redrive", shop.path(), "--stage", "ghost"]);
        assert!(!ghost.status.success(), "[{}]", b.name);
        assert!(
            stderr(&ghost).contains("has no stage 'ghost'"),
            "{}",
            stderr(&ghost)
        );

        // Each stage took exactly what was addressed to it.
        let run = shop.run_batch();
        assert_eq!(run["enrich"].1[0], 1, "[{}] {run:?}", b.name);
        assert_eq!(run["audit"].1[0], 1, "[{}] {run:?}", b.name);
        let n_of = |topic: &str| -> Vec<(i32, u64)> {
            let mut v = shop.items_in(topic);
            v.retain(|(_, n)| *n >= ITEMS);
            v.sort_by_key(|(_, n)| *n);
            v
        };
        assert_eq!(n_of(&shop.enriched), [(2, 200)], "[{}]", b.name);
        assert_eq!(n_of(&shop.kept), [(2, 200)], "[{}]", b.name);
        assert_eq!(n_of(&shop.audited), [(0, 100)], "[{}]", b.name);

        // Records written into the redrive topic by hand: unaddressed or addressed to
        // no stage of the pipeline, nobody takes them; addressed to a stage, it does.
        let redrive = shop.redrive_topic();
        let mut to_ghost = dead("ghost", items, "0", "0");
        set(&mut to_ghost, "millrace.redrive.stage", Some(b"ghost"));
        let mut to_keep = dead("keep", &shop.enriched, "1", "0");
        set(&mut to_keep, "millrace.redrive.stage", Some(b"keep"));
        for h in ["topic", "partition", "offset"] {
            let from = format!("millrace.source.{h}");
            let value = to_keep
                .iter()
                .find(|(k, _)| *k == from)
                .map(|(_, v)| v.clone());
            set(
                &mut to_keep,
                &format!("millrace.redrive.source.{h}"),
                value.as_deref(),
            );
        }
        let before = b.records_in(&redrive);
        produce_by_hand(
            &b,
            &redrive,
            &[
                record(r#"{"n":500}"#, &[]),
                record(r#"{"n":501}"#, &to_ghost),
                record(r#"{"n":502,"enriched":true}"#, &to_keep),
                record(
                    r#"{"n":503}"#,
                    &[("millrace.redrive.stage".into(), b"enrich".to_vec())],
                ),
            ],
        );
        let run = shop.run_batch();
        assert_eq!(run["enrich"].1[0], 1, "[{}] {run:?}", b.name);
        assert_eq!(run["keep"].1[0], 2, "[{}] {run:?}", b.name);
        assert_eq!(run["audit"].1[0], 0, "[{}] {run:?}", b.name);
        assert_eq!(n_of(&shop.enriched), [(2, 200), (0, 503)], "[{}]", b.name);
        let kept = n_of(&shop.kept);
        assert_eq!(kept, [(2, 200), (1, 502), (0, 503)], "[{}]", b.name);
        // Without a source, the record is where the redrive topic has it.
        let seen = shop
            .values_in(&shop.enriched)
            .into_iter()
            .find(|(_, v)| v["n"] == 503)
            .map(|(_, v)| v["seen"].clone());
        assert_eq!(
            seen,
            Some(serde_json::json!([redrive, 0, before + 3])),
            "[{}]",
            b.name
        );
    }
}

/// A join's or a reduce's dead letters belong to a batch: redrive refuses, says why
/// and what to do instead, and sends nothing.
#[test]
fn coordinated_stages_are_not_redrive_targets() {
    for b in Backend::all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = &b.suffix;
        let file = dir.path().join("tally.yaml");
        std::fs::write(
            &file,
            format!(
                r#"pipeline: tally{s}
topics:
  words{s}: {{ partitions: 1 }}
  left{s}: {{ partitions: 1 }}
  right{s}: {{ partitions: 1 }}
stages:
  count:
    kind: reduce
    from: words{s}
    to: totals{s}
    reducer: count
  pair:
    kind: join
    mode: key
    from: [left{s}, right{s}]
    key: .id
    timeout: 1s
    to: pairs{s}
  clean:
    kind: filter
    from: words{s}
    where: '.ok'
    to: clean-words{s}
"#
            ),
        )
        .expect("pipeline file");
        let path = file.to_str().expect("utf-8");
        for (stage, what) in [("count", "is a reduce"), ("pair", "is a join")] {
            let out = b.run(&["dlq", "redrive", path, "--stage", stage], b"");
            assert!(!out.status.success(), "[{}] {stage}", b.name);
            let err = stderr(&out);
            assert!(
                err.contains(what) && err.contains("Rerun the batch") && err.contains("--batch"),
                "[{}] {err}",
                b.name
            );
        }
        let out = b.run(&["dlq", "redrive", path], b"");
        assert!(stderr(&out).contains("needs --stage"), "{}", stderr(&out));
        // Nothing was made for them: an event-driven stage's redrive makes the topic.
        let topics = stdout(&b.ok(&["topics", "list"], b""));
        let redrive = format!("tally{s}.redrive");
        assert!(
            !topics.lines().any(|t| t == redrive),
            "[{}] {topics}",
            b.name
        );
        let out = b.ok(&["dlq", "redrive", path, "--stage", "clean"], b"");
        assert!(stdout(&out).contains("no such topic"), "{}", stdout(&out));
        let topics = stdout(&b.ok(&["topics", "list"], b""));
        assert!(
            topics.lines().any(|t| t == redrive),
            "[{}] {topics}",
            b.name
        );
    }
}

/// A pipeline cannot use its redrive topic as a topic of its own: its stages would
/// pass over records that are not addressed to them.
#[test]
fn a_pipeline_topic_named_like_the_redrive_topic_is_refused() {
    let b = Backend::embedded();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("own.yaml");
    std::fs::write(
        &file,
        "pipeline: own\ntopics:\n  in: 1\nstages:\n  copy: { kind: copier, from: in, to: [own.redrive] }\n",
    )
    .expect("pipeline file");
    let out = b.run(&["run", file.to_str().expect("utf-8"), "--batch"], b"");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("'own.redrive' is the pipeline's redrive topic"),
        "{}",
        stderr(&out)
    );
}
