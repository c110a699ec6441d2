//! `/metrics` after a known run, read whole by Prometheus' own text parser: every
//! family with its `# HELP` and `# TYPE`, counters named `…_total`, and values that
//! follow from the records produced — ten orders through a filter that keeps six, the
//! six paired with payments by a key join, and one order that is not JSON — on the
//! embedded store and on Kafka (its lag from the broker's committed offsets).

use std::time::Duration;

use super::prometheus::{self, Family, stage_value};
use super::{Server, counter, stage, wait_for_topic, wait_until, write_pipeline};
use crate::common::{Backend, rename_words};

/// A filter, and a key join of what it keeps with payments (the page test adds a stage).
pub(super) const KNOWN: &str = r#"pipeline: known
topics:
  orders: { partitions: 2 }
  payments: { partitions: 2 }
stages:
  keep-eu: { kind: filter, from: orders, where: '.region == "eu"', to: eu-orders }
  with-payment: { kind: join, mode: key, from: [eu-orders, payments], key: .id, to: paid }
"#;

/// Ten orders, six from eu (ids 1 2 4 5 7 9), and one record that is not JSON.
fn orders() -> Vec<u8> {
    let mut out = String::new();
    for id in 1..=10 {
        let region = if [1, 2, 4, 5, 7, 9].contains(&id) {
            "eu"
        } else {
            "us"
        };
        out.push_str(&format!("{{\"id\":{id},\"region\":\"{region}\"}}\n"));
    }
    out.push_str("not json\n");
    out.into_bytes()
}

fn payments(ids: &[u32]) -> Vec<u8> {
    ids.iter()
        .map(|id| format!("{{\"id\":{id},\"paid\":true}}\n"))
        .collect::<String>()
        .into_bytes()
}

/// The families the run serves (without a join or reduce barrier: see the barrier
/// test in http.rs), as the parser names them, with their type and a phrase of their
/// help.
const FAMILIES: [(&str, &str, &str); 10] = [
    (
        "millrace_stage_records_in",
        "counter",
        "read from its input topics",
    ),
    ("millrace_stage_records_out", "counter", "gave output"),
    (
        "millrace_stage_records_filtered",
        "counter",
        "gave no output",
    ),
    (
        "millrace_stage_records_dead_lettered",
        "counter",
        "sent to the dead-letter topic",
    ),
    (
        "millrace_stage_records_emitted",
        "counter",
        "Output records",
    ),
    ("millrace_stage_records_in_flight", "gauge", "not done with"),
    (
        "millrace_stage_lag",
        "gauge",
        "consumer group has not committed",
    ),
    ("millrace_dead_letter_records", "gauge", "dead-letter topic"),
    (
        "millrace_stage_records_redriven",
        "counter",
        "Records redriven to the stage",
    ),
    (
        "millrace_stage_records_redrive_failed",
        "counter",
        "failed again",
    ),
];

/// The conventions every family keeps: a help text, the `millrace_` prefix, counters'
/// samples ending in `_total`, every series naming its pipeline.
fn assert_conventions(fams: &[Family], pipeline: &str, text: &str) {
    for f in fams {
        assert!(f.name.starts_with("millrace_"), "{}", f.name);
        assert!(
            !f.help.trim().is_empty(),
            "{} has no # HELP:\n{text}",
            f.name
        );
        assert!(
            ["counter", "gauge"].contains(&f.kind.as_str()),
            "{} is {} (no # TYPE?):\n{text}",
            f.name,
            f.kind
        );
        for s in &f.samples {
            if f.kind == "counter" {
                assert_eq!(s.name, format!("{}_total", f.name), "{text}");
            }
            assert_eq!(
                s.labels.get("pipeline").map(String::as_str),
                Some(pipeline),
                "{s:?}"
            );
        }
    }
}

#[test]
fn metrics_parse_as_prometheus_text_with_the_counts_of_a_known_run() {
    for b in Backend::all() {
        known_run(&b);
    }
}

/// On Kafka (shared between tests) the pipeline and its topics carry the backend's
/// suffix: its consumer groups and its dead-letter topic are its own.
fn known_run(b: &Backend) {
    let names = ["known", "orders", "payments", "eu-orders", "paid"];
    let file = write_pipeline(
        b.data_dir(),
        "known.yaml",
        &rename_words(KNOWN, &names, &b.suffix),
    );
    let pipeline = format!("known{}", b.suffix);
    let [orders_topic, payments_topic, eu_orders] =
        ["orders", "payments", "eu-orders"].map(|t| b.topic(t));
    let dead_letter = b.dead_letter("known");
    let server = Server::start(b, &file, &["--http", "127.0.0.1:0"]);
    wait_for_topic(b, &orders_topic);
    wait_for_topic(b, &payments_topic);

    let m = server.get("/metrics");
    assert_eq!(m.status, 200);
    assert_eq!(
        m.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let fams = prometheus::parse(&m.body);
    assert_conventions(&fams, &pipeline, &m.body);
    assert_eq!(
        stage_value(&fams, "millrace_stage_records_in_total", "keep-eu"),
        Some(0.0),
        "nothing read yet:\n{}",
        m.body
    );

    b.ok(&["produce", "--topic", &orders_topic], &orders());
    // Payments for five of the six eu orders: order 9 waits for its payment.
    b.ok(
        &["produce", "--topic", &payments_topic],
        &payments(&[1, 2, 4, 5, 7]),
    );
    wait_until(
        "the orders filtered and five pairs joined",
        Duration::from_secs(60),
        || {
            let s = server.json("/api/stats");
            (counter(&s, "keep-eu", "records_in") == 11
                && counter(&s, "keep-eu", "in_flight") == 0
                && stage(&s, "keep-eu")["lag"] == 0
                && counter(&s, "with-payment", "records_in") == 11
                && counter(&s, "with-payment", "emitted") == 5
                && s["dead_letter"]["records"] == 1)
                .then_some(())
        },
    );
    let m = server.get("/metrics").body;
    let fams = prometheus::parse(&m);
    assert_conventions(&fams, &pipeline, &m);
    let mut names: Vec<&str> = fams.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    let mut want: Vec<&str> = FAMILIES.iter().map(|f| f.0).collect();
    want.sort_unstable();
    assert_eq!(names, want, "{m}");
    for (name, kind, help) in FAMILIES {
        let f = prometheus::family(&fams, name);
        assert_eq!(f.kind, kind, "{name}");
        assert!(f.help.contains(help), "{name}: {}", f.help);
    }
    let v = |name: &str, st: &str| stage_value(&fams, name, st).unwrap_or(-1.0);
    // N = 10 orders and one bad record through a filter that keeps k = 6.
    assert_eq!(v("millrace_stage_records_in_total", "keep-eu"), 11.0, "{m}");
    assert_eq!(v("millrace_stage_records_out_total", "keep-eu"), 6.0, "{m}");
    assert_eq!(v("millrace_stage_records_filtered_total", "keep-eu"), 4.0);
    assert_eq!(
        v("millrace_stage_records_dead_lettered_total", "keep-eu"),
        1.0
    );
    assert_eq!(v("millrace_stage_records_emitted_total", "keep-eu"), 6.0);
    assert_eq!(v("millrace_stage_records_in_flight", "keep-eu"), 0.0);
    assert_eq!(v("millrace_stage_lag", "keep-eu"), 0.0, "{m}");
    // The join: ten parts paired into five records, order 9 held for its payment.
    assert_eq!(v("millrace_stage_records_in_total", "with-payment"), 11.0);
    assert_eq!(v("millrace_stage_records_out_total", "with-payment"), 10.0);
    assert_eq!(
        v("millrace_stage_records_emitted_total", "with-payment"),
        5.0
    );
    assert_eq!(v("millrace_stage_records_in_flight", "with-payment"), 1.0);
    assert!(
        v("millrace_stage_lag", "with-payment") >= 1.0,
        "the held order is not committed: lag > 0\n{m}"
    );
    // One series per input partition of each stage.
    for (st, topic) in [
        ("keep-eu", &orders_topic),
        ("with-payment", &eu_orders),
        ("with-payment", &payments_topic),
    ] {
        for p in ["0", "1"] {
            assert!(
                prometheus::value(
                    &fams,
                    "millrace_stage_lag",
                    &[("stage", st), ("topic", topic), ("partition", p)]
                )
                .is_some(),
                "no lag of {st} on {topic}/{p}:\n{m}"
            );
        }
    }
    assert_eq!(
        prometheus::value(
            &fams,
            "millrace_dead_letter_records",
            &[("topic", &dead_letter)]
        ),
        Some(1.0)
    );

    // The last payment: nothing held, every offset committed.
    b.ok(&["produce", "--topic", &payments_topic], &payments(&[9]));
    wait_until(
        "the last pair joined and committed",
        Duration::from_secs(60),
        || {
            let s = server.json("/api/stats");
            (counter(&s, "with-payment", "in_flight") == 0
                && counter(&s, "with-payment", "emitted") == 6
                && stage(&s, "with-payment")["lag"] == 0)
                .then_some(())
        },
    );
    let m = server.get("/metrics").body;
    let fams = prometheus::parse(&m);
    assert_eq!(
        sum_over_stages(&fams, "millrace_stage_records_out_total"),
        6.0 + 12.0
    );
    for st in ["keep-eu", "with-payment"] {
        assert_eq!(
            stage_value(&fams, "millrace_stage_lag", st),
            Some(0.0),
            "{m}"
        );
    }
    server.stop();
}

/// The sum of a family's samples over all stages.
fn sum_over_stages(fams: &[Family], name: &str) -> f64 {
    fams.iter()
        .flat_map(|f| &f.samples)
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}
