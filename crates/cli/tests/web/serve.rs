//! `millrace serve --http` as an operator scrapes it: a real `millrace serve`, records
//! produced by kcat (a Kafka client nobody here wrote, which scripts/test.sh
//! installs), a group's offsets committed by `millrace consume --bootstrap-server
//! --group` over Kafka's protocol, and `/metrics` read by Prometheus' own parser: the
//! topic's end offsets and the group's committed offsets and lag under
//! kafka_exporter's names, and the server's requests and bytes per API.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::prometheus::{self, Family, value};
use super::{Server, wait_until};
use crate::common::bin;

/// `millrace --bootstrap-server ADDR ARGS…`, asserted to succeed.
fn millrace(kafka: SocketAddr, args: &[&str]) -> String {
    let out = Command::new(bin())
        .env_remove("MILLRACE_BOOTSTRAP")
        .arg("--bootstrap-server")
        .arg(kafka.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run millrace");
    assert!(
        out.status.success(),
        "millrace {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// kcat `-P` of `values` (one per line) to one partition; kcat waits until the broker
/// has acknowledged them before it exits.
fn kcat_produce(kafka: SocketAddr, topic: &str, partition: u32, values: &[&str]) {
    let mut child = Command::new("kcat")
        .args(["-P", "-b", &kafka.to_string(), "-t", topic])
        .args(["-p", &partition.to_string()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("kcat (scripts/test.sh installs it): {e}"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("kcat stdin");
        stdin
            .write_all(format!("{}\n", values.join("\n")).as_bytes())
            .expect("write to kcat");
    }
    let out = child.wait_with_output().expect("kcat");
    assert!(
        out.status.success(),
        "kcat -P: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A connection that sent ApiVersions v0 and read its answer: admitted and counted.
fn api_versions(kafka: SocketAddr) -> TcpStream {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(kafka).expect("connect to serve");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    // size 10, api key 18, version 0, correlation id 7, client id null
    s.write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 7, 0xff, 0xff])
        .expect("send ApiVersions");
    let mut head = [0u8; 8];
    s.read_exact(&mut head).expect("ApiVersions answer");
    assert_eq!(
        head[4..8],
        7i32.to_be_bytes(),
        "the answer's correlation id"
    );
    s
}

fn endpoint(data: &Path) -> SocketAddr {
    let text = std::fs::read_to_string(data.join("endpoint")).expect("endpoint file");
    text.trim().parse().expect("endpoint is HOST:PORT")
}

fn scrape(server: &Server) -> Vec<Family> {
    let r = server.get("/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    prometheus::parse(&r.body)
}

#[test]
fn serve_http_reports_offsets_group_lag_and_requests_to_prometheus() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::serve(
        data.path(),
        &["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
    );
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(server.addr.port(), 0, "the printed port is the bound one");
    let kafka = endpoint(data.path());
    let topic = "orders";
    let group = "billing";

    millrace(
        kafka,
        &["topics", "create", "--topic", topic, "--partitions", "2"],
    );
    kcat_produce(kafka, topic, 0, &["a", "b", "c", "d", "e"]);
    kcat_produce(kafka, topic, 1, &["f", "g"]);
    // The group reads all seven and commits: its committed offsets are the end offsets.
    let read = millrace(
        kafka,
        &[
            "consume",
            "--topic",
            topic,
            "--group",
            group,
            "--from-beginning",
            "--max-messages",
            "7",
            "--timeout-ms",
            "60000",
        ],
    );
    assert_eq!(read.lines().count(), 7, "{read}");
    // Then four more arrive on partition 1 that the group has not read.
    kcat_produce(kafka, topic, 1, &["h", "i", "j", "k"]);

    let end = |f: &[Family], p: &str| {
        value(
            f,
            "kafka_topic_partition_current_offset",
            &[("topic", topic), ("partition", p)],
        )
    };
    let families = wait_until(
        "/metrics to show the last four records",
        Duration::from_secs(30),
        || {
            let f = scrape(&server);
            (end(&f, "1") == Some(6.0)).then_some(f)
        },
    );
    let get = |name: &str, labels: &[(&str, &str)]| {
        value(&families, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?}"))
    };
    let at = |p: &'static str| [("consumergroup", group), ("topic", topic), ("partition", p)];
    assert_eq!(end(&families, "0"), Some(5.0));
    for p in ["0", "1"] {
        assert_eq!(
            get(
                "kafka_topic_partition_oldest_offset",
                &[("topic", topic), ("partition", p)]
            ),
            0.0
        );
    }
    assert_eq!(get("kafka_topic_partitions", &[("topic", topic)]), 2.0);
    assert_eq!(get("kafka_consumergroup_current_offset", &at("0")), 5.0);
    assert_eq!(get("kafka_consumergroup_current_offset", &at("1")), 2.0);
    assert_eq!(get("kafka_consumergroup_lag", &at("0")), 0.0);
    assert_eq!(get("kafka_consumergroup_lag", &at("1")), 4.0);
    assert_eq!(
        get(
            "kafka_consumergroup_lag_sum",
            &[("consumergroup", group), ("topic", topic)]
        ),
        4.0
    );
    assert_eq!(get("kafka_brokers", &[]), 1.0);

    // Three kcat producers' requests; the consumer's fetches carried seven records.
    let produce = [("request", "Produce")];
    assert!(get("millrace_broker_requests_total", &produce) >= 3.0);
    assert!(get("millrace_broker_request_bytes_total", &produce) > 0.0);
    assert!(
        get(
            "millrace_broker_response_bytes_total",
            &[("request", "Fetch")]
        ) > 0.0
    );
    assert!(
        get(
            "millrace_broker_requests_total",
            &[("request", "OffsetCommit")]
        ) >= 1.0
    );
    assert!(get("millrace_broker_connections_accepted_total", &[]) >= 5.0);

    for f in &families {
        assert!(!f.help.is_empty(), "{} has no HELP", f.name);
        let expected =
            if f.name.starts_with("millrace_broker_") && f.name != "millrace_broker_connections" {
                "counter"
            } else {
                "gauge"
            };
        assert_eq!(f.kind, expected, "{}", f.name);
    }

    // A connection is counted open while it is: every client above has exited, so one
    // held here is the only one, and none once it closes.
    let open = |n: f64| {
        wait_until(
            &format!("{n} Kafka connections open"),
            Duration::from_secs(30),
            || {
                (value(&scrape(&server), "millrace_broker_connections", &[]) == Some(n))
                    .then_some(())
            },
        )
    };
    let held = api_versions(kafka);
    open(1.0);
    drop(held);
    open(0.0);

    // /api/stats says the same as JSON.
    let stats = server.json("/api/stats");
    let g = stats["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["group"] == group))
        .unwrap_or_else(|| panic!("no group {group} in {stats}"));
    let lag: Vec<(u64, u64)> = g["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| {
            (
                o["partition"].as_u64().expect("partition"),
                o["lag"].as_u64().expect("lag"),
            )
        })
        .collect();
    assert_eq!(lag, vec![(0, 0), (1, 4)], "{stats}");

    let log = server.stop();
    assert!(log.contains("serving Kafka on"), "{log}");
}

/// The TCP ports process `pid` listens on, as `ss` lists them.
fn listening_ports(pid: u32) -> Vec<u16> {
    let out = Command::new("ss")
        .args(["-ltnpH"])
        .output()
        .expect("ss (iproute2)");
    let needle = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| {
            l.split_whitespace()
                .nth(3)?
                .rsplit(':')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn serve_listens_for_http_only_with_http_and_says_when_it_cannot() {
    // Without --http: the Kafka listener is the only one.
    let data = tempfile::tempdir().expect("tempdir");
    let log = data.path().join("serve.log");
    let mut child = Command::new(bin())
        .env_remove("MILLRACE_BOOTSTRAP")
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn millrace serve");
    let kafka = wait_until(
        "serve to record its endpoint",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(data.path().join("endpoint")).ok()?;
            text.trim().parse::<SocketAddr>().ok()
        },
    );
    let ports = wait_until("serve to listen", Duration::from_secs(30), || {
        let p = listening_ports(child.id());
        (!p.is_empty()).then_some(p)
    });
    super::signal(child.id(), "TERM");
    let status = child.wait().expect("wait for serve");
    let said = std::fs::read_to_string(&log).expect("log");
    assert!(status.success(), "{said}");
    assert_eq!(ports, vec![kafka.port()], "{said}");
    assert!(!said.contains("http://"), "{said}");

    // A port in use: serve says it cannot listen there and exits.
    let data = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let at = taken.local_addr().expect("addr").to_string();
    let out = Command::new(bin())
        .env_remove("MILLRACE_BOOTSTRAP")
        .args(["serve", "--listen", "127.0.0.1:0", "--http", &at, "--data"])
        .arg(data.path())
        .stdin(Stdio::null())
        .output()
        .expect("run millrace serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("--http {at}")), "{err}");

    let help = Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .expect("millrace serve --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--http") && help.contains("Without it, no HTTP is served"),
        "{help}"
    );
}
