//! Redrive with `--batch` runs: the service is down, then fixed, then the dead letters
//! go back to the stage that failed them and to it alone.

use serde_json::Value;

use crate::common::*;
use crate::support::*;

/// The item a dead letter came from, and its place in the items topic.
fn source_of(rec: &Value) -> (String, i32, i64) {
    (
        header(rec, "millrace.source.topic")
            .expect("source topic")
            .into(),
        header(rec, "millrace.source.partition")
            .and_then(|p| p.parse().ok())
            .expect("source partition"),
        header(rec, "millrace.source.offset")
            .and_then(|o| o.parse().ok())
            .expect("source offset"),
    )
}

/// Item n is the (n / 3)th record of partition n % 3.
fn place_of(items: &str, n: u64) -> (String, i32, i64) {
    (
        items.to_string(),
        i32::try_from(n % 3).expect("partition"),
        i64::try_from(n / 3).expect("offset"),
    )
}

/// The dead-letter offset of item n.
fn offset_of(dead: &[Value], n: u64) -> i64 {
    dead.iter()
        .find(|r| item_of(r) == n)
        .and_then(|r| r["offset"].as_i64())
        .unwrap_or_else(|| panic!("no dead letter of item {n}"))
}

#[test]
fn a_service_down_then_fixed_is_redriven_to_its_stage_alone() {
    for b in Backend::all() {
        let shop = Shop::new(&b);
        shop.produce(0..ITEMS);
        let first = shop.run_batch();
        assert_eq!(first["enrich"].1, [21, 18, 0, 3, 18], "[{}]", b.name);
        assert_eq!(first["audit"].1[0], 21, "[{}]", b.name);

        // The dead letters say why and where from.
        let dead = shop.dead_letters();
        let mut failed: Vec<u64> = dead.iter().map(item_of).collect();
        failed.sort_unstable();
        assert_eq!(failed, FAILING, "[{}]", b.name);
        for rec in &dead {
            let n = item_of(rec);
            assert_eq!(header(rec, "millrace.stage"), Some("enrich"));
            let why = format!("item {n}: service down");
            assert_eq!(header(rec, "millrace.error"), Some(why.as_str()));
            assert_eq!(header(rec, "millrace.attempts"), Some("1"));
            assert_eq!(source_of(rec), place_of(&shop.items, n), "[{}]", b.name);
        }
        let groups: Vec<Value> = shop
            .dlq_ok(&["list", shop.path(), "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        assert_eq!(groups.len(), 3, "[{}] one group per error", b.name);
        for g in &groups {
            assert_eq!(g["stage"], "enrich");
            assert_eq!(
                (g["records"].as_u64(), g["redriven"].as_u64()),
                (Some(1), Some(0))
            );
        }

        // The service is back: redrive, and the next batch takes the records in.
        shop.fix();
        let report = shop.redrive("enrich", &[]);
        assert_eq!(redrive_counts(&report), (3, 0, 0), "[{}] {report}", b.name);
        let second = shop.run_batch();
        assert_eq!(second["enrich"].1, [3, 3, 0, 0, 3], "[{}]", b.name);
        assert_eq!(
            second["audit"].1[0], 0,
            "[{}] the copier reading the same input passes redriven records over",
            b.name
        );
        shop.assert_all_outputs_once();
        // The worker saw each redriven item as it first saw it.
        for (_, v) in shop.values_in(&shop.enriched) {
            let n = v["n"].as_u64().expect("n");
            let (t, p, o) = place_of(&shop.items, n);
            assert_eq!(
                v["seen"],
                serde_json::json!([t, p, o]),
                "[{}] item {n}",
                b.name
            );
        }

        // The same selection again sends nothing, and nothing changes.
        let again = shop.redrive("enrich", &[]);
        assert_eq!(redrive_counts(&again), (0, 3, 0), "[{}] {again}", b.name);
        let third = shop.run_batch();
        assert_eq!(third["enrich"].1[0], 0, "[{}]", b.name);
        shop.assert_every_item_once(&shop.enriched);
        let list = shop.dlq_ok(&["list", shop.path()]);
        assert_eq!(
            list.matches("redriven 1 of 1").count(),
            3,
            "[{}] {list}",
            b.name
        );
        assert!(
            list.contains("enrich: every dead letter was redriven"),
            "{list}"
        );
    }
}

#[test]
fn a_redrive_while_the_stage_still_fails_returns_them_with_attempts_plus_one() {
    for b in Backend::all() {
        let shop = Shop::new(&b);
        shop.produce(0..ITEMS);
        shop.run_batch();
        let first = shop.dead_letters();
        assert_eq!(first.len(), 3, "[{}]", b.name);

        // Still down: the redriven records fail again.
        assert_eq!(redrive_counts(&shop.redrive("enrich", &[])), (3, 0, 0));
        let run = shop.run_batch();
        assert_eq!(run["enrich"].1, [3, 0, 0, 3, 0], "[{}]", b.name);
        let all = shop.dead_letters();
        assert_eq!(all.len(), 6, "[{}] nothing lost", b.name);
        let dl = shop.dead_letter();
        for rec in all.iter().skip(3) {
            let n = item_of(rec);
            assert_eq!(header(rec, "millrace.attempts"), Some("2"), "[{}]", b.name);
            assert_eq!(
                source_of(rec),
                place_of(&shop.items, n),
                "[{}] its original source",
                b.name
            );
            let link = format!("{dl}/0#{}", offset_of(&first, n));
            assert_eq!(
                header(rec, "millrace.redrive.from"),
                Some(link.as_str()),
                "[{}] linked to its previous dead letter",
                b.name
            );
            for h in ["millrace.redrive.stage", "millrace.redrive.attempts"] {
                assert_eq!(header(rec, h), None, "[{}] {h} stays off", b.name);
            }
        }
        assert_eq!(shop.items_in(&shop.enriched).len(), 18, "[{}]", b.name);

        // Fixed: the first dead letters were redriven already, the new ones go.
        shop.fix();
        let report = shop.redrive("enrich", &[]);
        assert_eq!(redrive_counts(&report), (3, 3, 0), "[{}] {report}", b.name);
        shop.run_batch();
        shop.assert_all_outputs_once();
    }
}

#[test]
fn a_selection_redrives_only_what_it_selects_and_a_dry_run_writes_nothing() {
    for b in Backend::all() {
        let shop = Shop::new(&b);
        shop.produce(0..ITEMS);
        shop.run_batch();
        let dead = shop.dead_letters();
        shop.fix();
        let redrive_topic = shop.redrive_topic();
        let sent_so_far = || b.records_in(&redrive_topic);

        // A dry run says what it would send and writes nothing.
        let dry = shop.redrive("enrich", &["--dry-run"]);
        assert_eq!(redrive_counts(&dry), (3, 0, 0), "[{}] {dry}", b.name);
        let lines = dry.lines().filter(|l| l.starts_with("would send ")).count();
        assert_eq!(lines, 3, "[{}] one line per record: {dry}", b.name);
        assert_eq!(sent_so_far(), 0, "[{}] a dry run sent something", b.name);

        // By error: item 7 only.
        let report = shop.redrive("enrich", &["--error", "item 7:"]);
        assert_eq!(redrive_counts(&report), (1, 0, 0), "[{}] {report}", b.name);
        assert_eq!(shop.run_batch()["enrich"].1[0], 1, "[{}]", b.name);
        let enriched: Vec<u64> = shop
            .items_in(&shop.enriched)
            .iter()
            .map(|(_, n)| *n)
            .collect();
        assert!(enriched.contains(&7), "[{}]", b.name);
        assert!(
            !enriched.contains(&0) && !enriched.contains(&14),
            "[{}]",
            b.name
        );

        // By offset range: item 14's dead letter alone.
        let at = offset_of(&dead, 14).to_string();
        let report = shop.redrive("enrich", &["--from-offset", &at, "--to-offset", &at]);
        assert_eq!(redrive_counts(&report), (1, 0, 0), "[{}] {report}", b.name);
        shop.run_batch();
        assert_eq!(shop.items_in(&shop.enriched).len(), 20, "[{}]", b.name);

        // What is left: a dry run names it; the redrive sends it and skips the rest.
        let dry = shop.redrive("enrich", &["--dry-run"]);
        assert_eq!(redrive_counts(&dry), (1, 2, 0), "[{}] {dry}", b.name);
        let item_0 = format!(
            "would send {}/0#{} ",
            shop.dead_letter(),
            offset_of(&dead, 0)
        );
        assert!(dry.contains(&item_0), "[{}] {dry}", b.name);
        assert_eq!(sent_so_far(), 2, "[{}]", b.name);
        assert_eq!(redrive_counts(&shop.redrive("enrich", &[])), (1, 2, 0));
        shop.run_batch();
        shop.assert_all_outputs_once();
    }
}

/// `dlq show` prints records for jq; `dlq list` reads a topic named on the command
/// line; without a file or a topic the commands say what to give them.
#[test]
fn show_and_list_read_what_they_are_pointed_at() {
    let b = Backend::embedded();
    let shop = Shop::new(&b);
    shop.produce(0..ITEMS);
    shop.run_batch();
    let one = shop.dlq_ok(&["show", shop.path(), "--max-messages", "1"]);
    assert_eq!(one.lines().count(), 1, "{one}");
    let rec: Value = serde_json::from_str(one.trim()).expect("JSON");
    for field in [
        "partition",
        "offset",
        "timestamp",
        "key",
        "value",
        "headers",
    ] {
        assert!(rec.get(field).is_some(), "no {field} in {rec}");
    }
    let of_7 = shop.dlq_ok(&["show", shop.path(), "--error", "item 7:"]);
    assert_eq!(of_7.lines().count(), 1, "{of_7}");

    let dl = shop.dead_letter();
    let list = shop.dlq_ok(&["list", "--dead-letter-topic", &dl]);
    assert!(list.starts_with(&format!("{dl}: 3 dead letters")), "{list}");
    assert!(list.contains("stage enrich — 3\n"), "{list}");
    let list = shop.dlq_ok(&["list", shop.path()]);
    assert!(list.contains("stage enrich (exec) — 3"), "{list}");
    assert!(
        list.contains(&format!(
            "send enrich's 3 not redriven yet back: millrace dlq redrive {} --stage enrich",
            shop.path()
        )),
        "{list}"
    );
    for cmd in ["list", "show"] {
        let out = shop.dlq(&[cmd]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("give the pipeline file"),
            "{}",
            stderr(&out)
        );
    }
}

/// In a batched pipeline with a reduce, a record redriven to a stage downstream of the
/// one that stamps the batch is counted in the batch that processes it: the batch it
/// failed in was written without it.
#[test]
fn a_redriven_record_counts_in_the_batch_that_processes_it() {
    const TALLY: &str = r#"pipeline: shop$S
topics:
  items$S: { partitions: 3 }
stages:
  take:
    kind: copier
    from: items$S
    to: [staged$S]
  enrich:
    kind: exec
    from: staged$S
    to: enriched$S
    command: [python3, $WORKER]
    env: { FLAG: $FLAG }
  count:
    kind: reduce
    from: enriched$S
    to: totals$S
    reducer: count
"#;
    for b in Backend::all() {
        let shop = Shop::with(&b, TALLY);
        shop.produce(0..ITEMS);
        shop.run_batch();
        let dead = shop.dead_letters();
        assert_eq!(dead.len(), 3, "[{}]", b.name);
        assert!(
            dead.iter()
                .all(|d| header(d, "millrace.batch") == Some("21")),
            "[{}] the dead letters came in batch 21",
            b.name
        );
        shop.fix();
        assert_eq!(redrive_counts(&shop.redrive("enrich", &[])), (3, 0, 0));
        shop.run_batch();
        // Batch 24: the 21 items and the 3 records redriven since.
        let totals: Vec<(u64, u64)> = shop
            .values_in(&b.topic("totals"))
            .into_iter()
            .filter(|(_, v)| v["final"] == true)
            .map(|(_, v)| {
                (
                    v["batch"].as_u64().expect("batch"),
                    v["value"].as_u64().expect("count"),
                )
            })
            .collect();
        assert_eq!(totals, [(21, 18), (24, 3)], "[{}]", b.name);
        shop.assert_every_item_once(&shop.enriched);
    }
}

/// A stage that replays its input after a crash or a rebalance dead-letters a failure
/// again: the copies are one failure, redriven once.
#[test]
fn a_failure_dead_lettered_twice_is_redriven_once() {
    for b in Backend::all() {
        let shop = Shop::new(&b);
        shop.produce(0..ITEMS);
        shop.run_batch();
        let dead = shop.dead_letters();
        let copy_of = |rec: &Value| {
            let headers: Vec<(&str, &[u8])> = rec["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|h| {
                    let k = h["key"].as_str().expect("key");
                    (k, h["value"].as_str().expect("text").as_bytes())
                })
                .collect();
            let mut r = with_headers(rec["value"].as_str().expect("value"), &headers);
            r.timestamp = rec["timestamp"].as_i64();
            r
        };
        let copy = copy_of(&dead[1]);
        produce_by_hand(&b, &shop.dead_letter(), &[copy]);
        shop.fix();
        let report = shop.redrive("enrich", &[]);
        assert_eq!(redrive_counts(&report), (3, 1, 0), "[{}] {report}", b.name);
        assert!(report.contains("1 of the skipped are copies"), "{report}");
        shop.run_batch();
        shop.assert_all_outputs_once();
        // Once redriven, a copy written later is skipped as its original is.
        let copy = copy_of(&dead[2]);
        produce_by_hand(&b, &shop.dead_letter(), &[copy]);
        let report = shop.redrive("enrich", &[]);
        assert_eq!(redrive_counts(&report), (0, 5, 0), "[{}] {report}", b.name);
        let list = shop.dlq_ok(&["list", shop.path()]);
        assert!(
            list.contains("enrich: every dead letter was redriven"),
            "{list}"
        );
    }
}
