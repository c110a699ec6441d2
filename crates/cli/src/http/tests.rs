//! The secrets rule for the HTTP surface: a pipeline file's Kafka client properties
//! (passwords, keys) never leave the process through `/api/*`, `/metrics` or the page.
//! Served over real TCP with the Kafka-backed plan's graph and an embedded broker
//! standing in for Kafka (the handlers only describe topics through the trait).

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{AppState, serve};

const SECRET: &str = "hunter2";

const KAFKA_FILE: &str = r#"pipeline: secretive
backend:
  kafka:
    bootstrap: "127.0.0.1:9092"
    properties:
      security.protocol: SASL_SSL
      sasl.mechanism: PLAIN
      sasl.username: alice
      sasl.password: hunter2
      ssl.key.password: hunter2
topics:
  in: 1
stages:
  keep: { kind: filter, from: in, to: out, where: '.ok' }
"#;

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "GET {path}: {out}");
    out
}

#[tokio::test]
async fn kafka_properties_are_not_served() {
    let plan = millrace_pipeline::parse_str(KAFKA_FILE, "secretive.yaml").expect("valid file");
    assert!(
        matches!(&plan.backend, millrace_pipeline::Backend::Kafka { properties, .. }
            if properties.values().any(|v| v == SECRET)),
        "the plan carries the properties (else this test proves nothing)"
    );
    let spec = millrace_runtime::build::from_plan(&plan).expect("spec");
    let dead_letter = spec.dead_letter.clone();
    let runtime = millrace_runtime::Runtime::new(spec);
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = millrace_broker::embedded::EmbeddedBroker::open(dir.path()).expect("store");
    let state = AppState::new(
        Arc::new(millrace_pipeline::graph::to_json(&plan)),
        runtime.state(),
        Arc::new(broker),
        dead_letter,
    );
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve("127.0.0.1:0", state, tx, async {
            let _ = stop_rx.await;
        })
        .await
    });
    let addr = rx.await.expect("bound");
    for path in [
        "/api/graph",
        "/api/stats",
        "/metrics",
        "/",
        "/healthz",
        "/patterns.js",
        "/dag.js",
        "/live.js",
    ] {
        let body = get(addr, path).await;
        assert!(
            !body.contains(SECRET),
            "{path} leaks a client property:\n{body}"
        );
        assert!(
            !body.contains("sasl"),
            "{path} names client properties:\n{body}"
        );
    }
    let graph = get(addr, "/api/graph").await;
    assert!(graph.contains("\"keep\""), "the graph is served: {graph}");
    let _ = stop_tx.send(());
    server.await.expect("join").expect("served");
}
