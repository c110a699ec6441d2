//! The HTTP surface of `millrace run` as a client meets it: real TCP on 127.0.0.1
//! against the real binary on the embedded store, records produced by other
//! `millrace produce` processes through the store the running pipeline serves, and the
//! pipeline page rendered by a real headless Chromium.

mod common;
mod web;

use std::time::Duration;

use common::*;
use web::prometheus::{self, stage_value};
use web::{Server, counter, settled, stage, wait_for_topic, wait_until, write_pipeline};

/// filter → splitter, and a copier beside them: every bucket of the counters is used
/// (out, filtered, dead-lettered, emitted > out).
const SHOP: &str = r#"pipeline: shop
topics:
  orders: { partitions: 2 }
stages:
  only-eu:
    kind: filter
    from: orders
    where: '.region == "eu"'
    to: eu-orders
  by-size:
    kind: splitter
    from: eu-orders
    routes:
      - { when: '.total >= 100', to: big-orders }
    default: small-orders
  archive:
    kind: copier
    from: orders
    to: [orders-archive, orders-audit]
"#;

/// Six orders: four from eu (two big), two from us.
const ORDERS: &[u8] = br#"{"id":1,"region":"eu","total":250}
{"id":2,"region":"eu","total":20}
{"id":3,"region":"us","total":300}
{"id":4,"region":"eu","total":100}
{"id":5,"region":"us","total":5}
{"id":6,"region":"eu","total":99}
"#;

fn assert_conservation(stats: &serde_json::Value) {
    for s in stats["stages"].as_array().expect("stages") {
        let c = &s["counters"];
        let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
        assert_eq!(
            n("records_in"),
            n("out") + n("filtered") + n("dead_lettered") + n("in_flight"),
            "in = out + filtered + dead_lettered + in_flight for {s}"
        );
    }
}

#[test]
fn default_bind_is_loopback() {
    let b = Backend::embedded();
    let file = write_pipeline(b.data_dir(), "shop.yaml", SHOP);
    // No --http: the default address.
    let server = Server::start(&b, &file, &[]);
    assert!(
        server.addr.ip().is_loopback() && server.addr.ip().to_string() == "127.0.0.1",
        "default bind {} is not 127.0.0.1",
        server.addr
    );
    assert_ne!(server.addr.port(), 0, "the printed port is the bound one");
    let r = server.get("/healthz");
    assert_eq!((r.status, r.body.trim()), (200, "ok"));
    server.stop();
}

#[test]
fn no_http_serves_nothing() {
    let b = Backend::embedded();
    let file = write_pipeline(b.data_dir(), "shop.yaml", SHOP);
    let child = b
        .cmd()
        .arg("run")
        .arg(&file)
        .arg("--no-http")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Once the store is served to other processes (its address is recorded and a
    // describe goes through it), HTTP would long have been announced. Waiting for the
    // address first keeps the describe from holding the store itself before the
    // pipeline does.
    wait_until("the store's endpoint", Duration::from_secs(30), || {
        b.data_dir().join("endpoint").exists().then_some(())
    });
    wait_for_topic(&b, "orders");
    web::signal(child.id(), "TERM");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("serving http"),
        "--no-http still served:\n{err}"
    );
}

#[test]
fn endpoints_count_what_other_processes_produce() {
    let b = Backend::embedded();
    let file = write_pipeline(b.data_dir(), "shop.yaml", SHOP);
    let server = Server::start(&b, &file, &["--http", "127.0.0.1:0"]);
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");

    let r = server.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.trim(), "ok");

    // The graph: every stage with its pattern, its topics, and the edges between them.
    let g = server.json("/api/graph");
    assert_eq!(g["pipeline"], "shop");
    let kinds: Vec<(String, String)> = g["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (name, kind) in [
        ("only-eu", "filter"),
        ("by-size", "splitter"),
        ("archive", "copier"),
    ] {
        assert!(
            kinds.contains(&(name.to_owned(), kind.to_owned())),
            "{name} ({kind}) missing from {kinds:?}"
        );
    }
    let edges: Vec<(String, String, Option<String>)> = g["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap_or_default().to_owned(),
                e["to"].as_str().unwrap_or_default().to_owned(),
                e["label"].as_str().map(str::to_owned),
            )
        })
        .collect();
    for (from, to) in [
        ("topic:orders", "stage:only-eu"),
        ("stage:only-eu", "topic:eu-orders"),
        ("topic:eu-orders", "stage:by-size"),
        ("stage:by-size", "topic:big-orders"),
        ("topic:orders", "stage:archive"),
        ("stage:archive", "topic:orders-archive"),
        ("stage:archive", "topic:orders-audit"),
    ] {
        assert!(
            edges.iter().any(|(a, b, _)| a == from && b == to),
            "edge {from} -> {to} missing from {edges:?}"
        );
    }
    assert!(
        edges.iter().any(|(a, b, l)| a == "stage:by-size"
            && b == "topic:small-orders"
            && l.as_deref() == Some("default")),
        "the splitter's default edge is labelled: {edges:?}"
    );
    let topics: Vec<&str> = g["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for t in [
        "orders",
        "eu-orders",
        "big-orders",
        "small-orders",
        "shop.dlq",
    ] {
        assert!(topics.contains(&t), "topic {t} missing from {topics:?}");
    }

    // Nothing produced yet: nothing counted, nothing dead-lettered.
    wait_for_topic(&b, "orders");
    let s0 = server.json("/api/stats");
    assert_eq!(s0["backend"], "embedded");
    assert_eq!(s0["dead_letter"]["topic"], "shop.dlq");
    assert_eq!(s0["dead_letter"]["records"], 0);
    assert_conservation(&s0);

    // Another process produces through the store the pipeline serves.
    b.ok(&["produce", "--topic", "orders"], ORDERS);
    let s1 = wait_until("the six orders counted", Duration::from_secs(30), || {
        let s = server.json("/api/stats");
        settled(&s, &[("only-eu", 6), ("archive", 6), ("by-size", 4)]).then_some(s)
    });
    assert_conservation(&s1);
    assert_eq!(counter(&s1, "only-eu", "out"), 4);
    assert_eq!(counter(&s1, "only-eu", "filtered"), 2);
    assert_eq!(counter(&s1, "by-size", "out"), 4);
    assert_eq!(counter(&s1, "archive", "emitted"), 12, "two copies each");
    assert_eq!(s1["dead_letter"]["records"], 0);

    // /metrics agrees with what was produced.
    let m = server.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        m.headers
    );
    let fams = prometheus::parse(&m.body);
    for (st, n) in [("only-eu", 6.0), ("archive", 6.0), ("by-size", 4.0)] {
        assert_eq!(
            stage_value(&fams, "millrace_stage_records_in_total", st),
            Some(n),
            "records_in of {st} in:\n{}",
            m.body
        );
    }
    assert_eq!(
        stage_value(&fams, "millrace_stage_records_filtered_total", "only-eu"),
        Some(2.0)
    );
    assert_eq!(
        stage_value(&fams, "millrace_stage_records_emitted_total", "archive"),
        Some(12.0)
    );
    assert_eq!(
        prometheus::value(
            &fams,
            "millrace_stage_records_in_total",
            &[
                ("stage", "only-eu"),
                ("kind", "filter"),
                ("pipeline", "shop")
            ]
        ),
        Some(6.0),
        "{}",
        m.body
    );

    // A record that is not JSON: the filter dead-letters it, the copier copies it.
    b.ok(&["produce", "--topic", "orders"], b"this is not json\n");
    // Committed after processing: the lag reaches 0. The commit follows the counters
    // (it waits for the outputs to be durable), so a snapshot can briefly show the
    // record processed and not yet committed.
    let s2 = wait_until(
        "the bad record dead-lettered and its offset committed",
        Duration::from_secs(30),
        || {
            let s = server.json("/api/stats");
            (settled(&s, &[("only-eu", 7), ("archive", 7)])
                && s["dead_letter"]["records"] == 1
                && stage(&s, "only-eu")["lag"] == 0)
                .then_some(s)
        },
    );
    assert_conservation(&s2);
    assert_eq!(counter(&s2, "only-eu", "dead_lettered"), 1);
    assert_eq!(counter(&s2, "archive", "out"), 7);
    let m = server.get("/metrics").body;
    let fams = prometheus::parse(&m);
    assert_eq!(
        stage_value(
            &fams,
            "millrace_stage_records_dead_lettered_total",
            "only-eu"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        prometheus::value(
            &fams,
            "millrace_dead_letter_records",
            &[("topic", "shop.dlq")]
        ),
        Some(1.0),
        "{m}"
    );

    let log = server.stop();
    assert!(
        log.contains("only-eu"),
        "the summary names the stages:\n{log}"
    );
}

/// The element of `tag` whose start tag contains `attr`, up to its closing tag (the
/// page never nests an element in one of its own tag inside the ones looked up here).
fn element<'a>(dom: &'a str, tag: &str, attr: &str) -> Option<&'a str> {
    let open = format!("<{tag} ");
    let mut from = 0;
    while let Some(i) = dom[from..].find(&open) {
        let start = from + i;
        let head_end = start + dom[start..].find('>')?;
        if dom[start..head_end].contains(attr) {
            let close = format!("</{tag}>");
            let end = head_end + dom[head_end..].find(&close)? + close.len();
            return Some(&dom[start..end]);
        }
        from = head_end;
    }
    None
}

/// The text of the table cell `data-col="col"` in a row.
fn cell(row: &str, col: &str) -> String {
    let td = element(row, "td", &format!("data-col=\"{col}\""))
        .unwrap_or_else(|| panic!("no {col} cell in {row}"));
    let inner = &td[td.find('>').map_or(0, |i| i + 1)..td.len() - "</td>".len()];
    inner.to_owned()
}

/// The book's sign-up flow in a real browser: the DAG is drawn with each stage's
/// pattern and every topic, the table shows the counts of what was produced, and a
/// sign-up from an unknown region shows up as a dead letter.
#[test]
fn page_in_headless_chromium_draws_the_pipeline_and_its_counts() {
    let Some(bin) = web::chromium::find() else {
        return;
    };
    let root = repo_root();
    let b = Backend::embedded();
    let server = Server::start_in(
        &b,
        &root.join("examples/signup.yaml"),
        &["--http", "127.0.0.1:0"],
        Some(&root),
    );
    wait_for_topic(&b, "signups");
    wait_for_topic(&b, "verified");
    let signups = br#"{"user_id":"u1","email":"ada@example.com","region":"eu","notify":["email"]}
{"user_id":"u2","email":"bob@example.com","region":"us","notify":["sms"]}
{"user_id":"u3","email":"cy@example.com","region":"ap","notify":[]}
{"user_id":"u4","email":"dee@example.com","region":"eu","notify":["email","sms"]}
{"user_id":"u5","email":"eve@example.com","region":"mars","notify":[]}
"#;
    let verified = br#"{"user_id":"u1","notify":["email"]}
{"user_id":"u2","notify":["sms","email"]}
{"user_id":"u4","notify":[]}
"#;
    b.ok(&["produce", "--topic", "signups"], signups);
    b.ok(&["produce", "--topic", "verified"], verified);
    let expected_in = [
        ("shard-by-region", 5),
        ("verify-eu", 2),
        ("verify-us", 1),
        ("verify-ap", 1),
        ("welcome", 3),
        ("notify", 3),
    ];
    let stats = wait_until("the sign-ups processed", Duration::from_secs(60), || {
        let s = server.json("/api/stats");
        // Lag 0 too: the page below must show every offset committed.
        let committed = expected_in
            .iter()
            .all(|(name, _)| stage(&s, name)["lag"] == 0);
        (settled(&s, &expected_in) && s["dead_letter"]["records"] == 1 && committed).then_some(s)
    });
    assert_eq!(counter(&stats, "shard-by-region", "dead_lettered"), 1);

    let mut browser = web::cdp::Browser::launch(&bin, 1280, 800);
    let dom = web::page_dom(&mut browser, &server.url("/"));
    let graph = server.json("/api/graph");
    for s in graph["stages"].as_array().expect("stages") {
        let (name, kind) = (
            s["name"].as_str().unwrap_or(""),
            s["kind"].as_str().unwrap_or(""),
        );
        let node = element(&dom, "g", &format!("data-stage=\"{name}\""))
            .unwrap_or_else(|| panic!("no SVG node for stage {name}:\n{dom}"));
        assert!(node.contains(&format!("data-pattern=\"{kind}\"")), "{node}");
        assert!(
            node.contains(&format!(">{}", kind.to_uppercase())),
            "stage {name} is not labelled {kind}: {node}"
        );
        assert!(
            node.contains(&format!(">{name}<")),
            "stage {name} unnamed: {node}"
        );
    }
    for t in graph["topics"].as_array().expect("topics") {
        let name = t["name"].as_str().unwrap_or("");
        let node = element(&dom, "g", &format!("data-topic=\"{name}\""))
            .unwrap_or_else(|| panic!("no SVG node for topic {name}:\n{dom}"));
        assert!(
            node.contains(&format!(">{name}<")),
            "topic {name} unnamed: {node}"
        );
    }
    for kind in ["sharder", "exec", "copier", "splitter"] {
        assert!(
            dom.contains(&format!(">{}", kind.to_uppercase())),
            "no {kind} label drawn"
        );
    }
    let edges = dom.matches("<path class=\"edge").count();
    assert_eq!(
        edges,
        graph["edges"].as_array().map_or(0, Vec::len),
        "one drawn path per edge"
    );
    for (name, n) in expected_in {
        let row = element(&dom, "tr", &format!("data-stage=\"{name}\""))
            .unwrap_or_else(|| panic!("no table row for {name}:\n{dom}"));
        assert_eq!(cell(row, "in"), n.to_string(), "in of {name}: {row}");
        assert_eq!(cell(row, "in_flight"), "0", "{row}");
        assert_eq!(cell(row, "lag"), "0", "{row}");
    }
    let shard = element(&dom, "tr", "data-stage=\"shard-by-region\"").expect("row");
    assert_eq!(cell(shard, "out"), "4");
    assert_eq!(cell(shard, "dead_lettered"), "1");
    let stage_node = element(&dom, "g", "data-stage=\"shard-by-region\"").expect("node");
    assert!(stage_node.contains("✕ 1 dead"), "{stage_node}");
    let dlq = element(&dom, "span", "id=\"dlq\"").expect("dead-letter indicator");
    assert!(
        dlq.contains("data-records=\"1\"") && dlq.contains("signup.dlq: 1 record<"),
        "{dlq}"
    );

    // The dead-letter node counts what it holds and names the stage that sent it.
    let dlq_node = element(&dom, "g", "data-topic=\"signup.dlq\"").expect("dead-letter node");
    assert!(dlq_node.contains("data-records=\"1\""), "{dlq_node}");
    assert!(
        dlq_node.contains("data-dlq-stage=\"shard-by-region\"")
            && dlq_node.contains(">✕ 1 from shard-by-region<"),
        "{dlq_node}"
    );

    let shots = tempfile::tempdir().expect("tempdir");
    let png = browser.screenshot(&shots.path().join("signup.png"));
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(
        bytes.len() > 20_000,
        "screenshot is {} bytes: blank?",
        bytes.len()
    );
    if let Some(keep) = std::env::var_os("MILLRACE_KEEP_SCREENSHOT") {
        std::fs::copy(&png, keep).expect("keep screenshot");
    }
    server.stop();
}

/// A join barrier's progress as the API, the metrics and the page report it: batches of
/// four records cut at the source, each released once both partitions of its input are
/// read to the batch's end.
#[test]
fn barrier_progress_is_served_measured_and_drawn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_pipeline(
        dir.path(),
        "barrier.yaml",
        r#"pipeline: barrier
topics:
  parts: { partitions: 2 }
  tagged: { partitions: 2 }
stages:
  tag: { kind: map, from: parts, to: tagged, expr: '.', batch: { records: 4 } }
  all-done: { kind: join, mode: barrier, from: tagged, to: released }
"#,
    );
    let b = Backend::embedded();
    let server = Server::start(&b, &file, &["--http", "127.0.0.1:0"]);
    wait_for_topic(&b, "parts");
    let before = server.json("/api/stats");
    assert!(
        stage(&before, "tag")["barrier"].is_null(),
        "an event-driven stage has no barrier: {before}"
    );
    b.ok(
        &["produce", "--topic", "parts"],
        b"{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n",
    );
    let stats = wait_until("the first batch released", Duration::from_secs(60), || {
        let s = server.json("/api/stats");
        (stage(&s, "all-done")["barrier"]["released"] == 1).then_some(s)
    });
    let bar = &stage(&stats, "all-done")["barrier"];
    assert_eq!(bar["done"], 2, "{bar}");
    assert_eq!(bar["of"], 2, "{bar}");
    let batch = bar["batch"].as_u64().expect("batch number");
    assert!(batch > 0, "{bar}");
    assert_eq!(counter(&stats, "all-done", "out"), 4);

    // Barrier progress as Prometheus reads it: gauges, and released batches a counter.
    let metrics = server.get("/metrics").body;
    let fams = prometheus::parse(&metrics);
    for (name, kind) in [
        ("millrace_barrier_batch", "gauge"),
        ("millrace_barrier_partitions_done", "gauge"),
        ("millrace_barrier_partitions", "gauge"),
        ("millrace_barrier_batches_released", "counter"),
    ] {
        let f = prometheus::family(&fams, name);
        assert_eq!(f.kind, kind, "{name}");
        assert!(f.help.contains("join or reduce"), "{name}: {}", f.help);
    }
    let of_join = |name: &str| stage_value(&fams, name, "all-done");
    assert_eq!(of_join("millrace_barrier_partitions_done"), Some(2.0));
    assert_eq!(of_join("millrace_barrier_partitions"), Some(2.0));
    assert_eq!(of_join("millrace_barrier_batch"), Some(batch as f64));
    assert_eq!(
        of_join("millrace_barrier_batches_released_total"),
        Some(1.0)
    );
    // What the barrier released is what it emitted.
    assert_eq!(of_join("millrace_stage_records_emitted_total"), Some(4.0));
    assert_eq!(counter(&stats, "all-done", "emitted"), 4, "{stats}");
    assert_eq!(
        stage_value(&fams, "millrace_barrier_partitions", "tag"),
        None
    );

    let Some(bin) = web::chromium::find() else {
        server.stop();
        return;
    };
    let mut browser = web::cdp::Browser::launch(&bin, 1280, 800);
    let dom = web::page_dom(&mut browser, &server.url("/"));
    let row = element(&dom, "tr", "data-stage=\"all-done\"")
        .unwrap_or_else(|| panic!("no table row for the join:\n{dom}"));
    assert_eq!(
        cell(row, "barrier"),
        format!("batch {batch}: 2/2 · 1 released"),
        "{row}"
    );
    let map_row = element(&dom, "tr", "data-stage=\"tag\"").expect("map row");
    assert_eq!(cell(map_row, "barrier"), "–", "{map_row}");
    let node = element(&dom, "g", "data-stage=\"all-done\"").expect("join node");
    // The hourglass is drawn (no installed font has one), beside the progress.
    assert!(node.contains("class=\"barrier-icon\""), "{node}");
    assert!(node.contains(&format!(">2/2 of batch {batch}<")), "{node}");
    assert!(node.contains(">in 4 · released 4<"), "{node}");
    server.stop();
}

/// A Kafka-backed file's client properties never reach `graph`'s output (nor
/// `validate`'s). `/api/graph` serves the same `graph::to_json`; the running surface is
/// checked in src/http/tests.rs.
#[test]
fn kafka_properties_stay_out_of_graph_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_pipeline(
        dir.path(),
        "secretive.yaml",
        r#"pipeline: secretive
backend:
  kafka:
    bootstrap: "127.0.0.1:9092"
    properties:
      security.protocol: SASL_SSL
      sasl.mechanism: PLAIN
      sasl.username: alice
      sasl.password: hunter2
topics:
  in: 1
stages:
  keep: { kind: filter, from: in, to: out, where: '.ok' }
"#,
    );
    let b = Backend::embedded();
    let f = file.to_str().expect("utf-8 path");
    for format in ["json", "mermaid", "dot"] {
        let out = b.ok(&["graph", f, "--format", format], b"");
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(text.contains("keep"), "[{format}] {text}");
        assert!(
            !text.contains("hunter2"),
            "[{format}] leaks the password:\n{text}"
        );
    }
    let out = b.ok(&["validate", f], b"");
    assert!(!format!("{}{}", stdout(&out), stderr(&out)).contains("hunter2"));
}
