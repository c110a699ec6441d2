//! The shop the dead-letter tests run: items in three partitions, an exec stage whose
//! real worker process fails one item in seven while a flag file exists (a service
//! that is down), a filter downstream of it, and a copier beside it on the same input
//! topic — the stage that must never see a redriven record.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// Items 0..ITEMS; those with n % 7 == 0 fail while the flag is set: 0, 7, 14. Item 0
/// is the first record of its partition: no output of that partition is older than
/// its redriven one, which a replay check naming it after its first place would skip.
pub const ITEMS: u64 = 21;
pub const FAILING: [u64; 3] = [0, 7, 14];

const WORKER: &str = r#"import json, os, sys
flag = os.environ["FLAG"]
for line in sys.stdin:
    if not line.strip():
        continue
    req = json.loads(line)
    n = req["value"]["n"]
    if n % 7 == 0 and os.path.exists(flag):
        reply = {"id": req["id"], "error": "item %d: service down" % n}
    else:
        reply = {"id": req["id"], "out": [{"n": n, "enriched": True, "seen": [req["topic"], req["partition"], req["offset"]]}]}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
"#;

pub struct Shop<'a> {
    pub b: &'a Backend,
    /// Holds the pipeline file, the worker and the flag.
    _dir: tempfile::TempDir,
    pub file: PathBuf,
    pub flag: PathBuf,
    pub pipeline: String,
    pub items: String,
    pub enriched: String,
    pub kept: String,
    pub audited: String,
}

/// The shop: `$S` is the backend's suffix, `$WORKER` the flaky worker, `$FLAG` its flag.
const SHOP: &str = r#"pipeline: shop$S
topics:
  items$S: { partitions: 3 }
stages:
  enrich:
    kind: exec
    from: items$S
    to: enriched$S
    command: [python3, $WORKER]
    workers: 2
    env: { FLAG: $FLAG }
  keep:
    kind: filter
    from: enriched$S
    where: '.enriched'
    to: kept$S
  audit:
    kind: copier
    from: items$S
    to: [audited$S]
"#;

impl<'a> Shop<'a> {
    /// The shop's pipeline file, its worker, the flag set, and the items topic.
    pub fn new(b: &'a Backend) -> Shop<'a> {
        Shop::with(b, SHOP)
    }

    /// Another pipeline of the shop's topics and worker (see [`SHOP`]).
    pub fn with(b: &'a Backend, template: &str) -> Shop<'a> {
        let dir = tempfile::tempdir().expect("tempdir");
        let worker = dir.path().join("flaky.py");
        std::fs::write(&worker, WORKER).expect("worker");
        let flag = dir.path().join("service-down");
        std::fs::write(&flag, b"").expect("flag");
        let file = dir.path().join("shop.yaml");
        let yaml = template
            .replace("$S", &b.suffix)
            .replace("$WORKER", &worker.display().to_string())
            .replace("$FLAG", &flag.display().to_string());
        std::fs::write(&file, yaml).expect("pipeline file");
        let shop = Shop {
            b,
            file,
            flag,
            pipeline: format!("shop{}", b.suffix),
            items: b.topic("items"),
            enriched: b.topic("enriched"),
            kept: b.topic("kept"),
            audited: b.topic("audited"),
            _dir: dir,
        };
        b.ok(
            &[
                "topics",
                "create",
                "--topic",
                &shop.items,
                "--partitions",
                "3",
            ],
            b"",
        );
        shop
    }

    pub fn path(&self) -> &str {
        self.file.to_str().expect("utf-8 path")
    }

    pub fn dead_letter(&self) -> String {
        format!("{}.dlq", self.pipeline)
    }

    pub fn redrive_topic(&self) -> String {
        format!("{}.redrive", self.pipeline)
    }

    /// The service comes back.
    pub fn fix(&self) {
        std::fs::remove_file(&self.flag).expect("clear the flag");
    }

    /// Items `range`, item n into partition n % 3 (unkeyed, so its outputs stay with
    /// its partition).
    pub fn produce(&self, range: std::ops::Range<u64>) {
        for p in 0..3 {
            let lines: String = range
                .clone()
                .filter(|n| n % 3 == p)
                .map(|n| format!("{{\"n\":{n}}}\n"))
                .collect();
            let p = p.to_string();
            self.b.ok(
                &["produce", "--topic", &self.items, "--partition", &p],
                lines.as_bytes(),
            );
        }
    }

    /// `millrace run FILE --batch`; its summary: stage → (pattern, [in, out, filtered,
    /// dead-lettered, emitted]).
    pub fn run_batch(&self) -> BTreeMap<String, (String, [u64; 5])> {
        let out = self
            .b
            .ok(&["run", self.path(), "--batch", "--no-http"], b"");
        parse_summary(&stderr(&out))
    }

    /// `millrace dlq ARGS…` (the file's commands get the file first).
    pub fn dlq(&self, args: &[&str]) -> Output {
        let mut all = vec!["dlq"];
        all.extend_from_slice(args);
        self.b.run(&all, b"")
    }

    pub fn dlq_ok(&self, args: &[&str]) -> String {
        let out = self.dlq(args);
        assert!(
            out.status.success(),
            "[{}] dlq {args:?}: {}\n{}",
            self.b.name,
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// `dlq redrive FILE --stage S EXTRA…`'s report.
    pub fn redrive(&self, stage: &str, extra: &[&str]) -> String {
        let mut args = vec!["redrive", self.path(), "--stage", stage];
        args.extend_from_slice(extra);
        self.dlq_ok(&args)
    }

    /// Every dead letter, as `dlq show` prints them.
    pub fn dead_letters(&self) -> Vec<Value> {
        self.dlq_ok(&["show", self.path()])
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// Each record of `topic` as (partition, value), checked against its end offsets.
    pub fn values_in(&self, topic: &str) -> Vec<(i32, Value)> {
        let n = usize::try_from(self.b.records_in(topic)).expect("count");
        self.b
            .read_exactly_with(topic, n, &["--property", "print.partition=true"])
            .iter()
            .map(|l| {
                let (p, v) = l.split_once('\t').expect("partition and value");
                let p = p
                    .trim_start_matches("Partition:")
                    .parse()
                    .expect("partition");
                (p, serde_json::from_str(v).expect("JSON value"))
            })
            .collect()
    }

    /// Each record of `topic` as (partition, n).
    pub fn items_in(&self, topic: &str) -> Vec<(i32, u64)> {
        self.values_in(topic)
            .into_iter()
            .map(|(p, v)| (p, v["n"].as_u64().expect("n")))
            .collect()
    }

    /// Asserts the enriched, kept and audited topics hold every item once.
    pub fn assert_all_outputs_once(&self) {
        for topic in [&self.enriched, &self.kept, &self.audited] {
            self.assert_every_item_once(topic);
        }
    }

    /// Asserts `topic` holds every item once, each in its own partition (n % 3): where
    /// it would be had nothing ever failed.
    pub fn assert_every_item_once(&self, topic: &str) {
        let mut got = self.items_in(topic);
        got.sort_by_key(|(_, n)| *n);
        let want: Vec<(i32, u64)> = (0..ITEMS)
            .map(|n| (i32::try_from(n % 3).expect("partition"), n))
            .collect();
        assert_eq!(got, want, "[{}] {topic}", self.b.name);
    }
}

/// A header's value in a `dlq show` record.
pub fn header<'v>(rec: &'v Value, name: &str) -> Option<&'v str> {
    rec["headers"]
        .as_array()?
        .iter()
        .rev()
        .find(|h| h["key"] == name)
        .and_then(|h| h["value"].as_str())
}

/// The `n` of a dead letter's value.
pub fn item_of(rec: &Value) -> u64 {
    let v: Value =
        serde_json::from_str(rec["value"].as_str().expect("a text value")).expect("JSON value");
    v["n"].as_u64().expect("n")
}

/// The numbers a redrive report gives: (sent, skipped, left).
pub fn redrive_counts(report: &str) -> (u64, u64, u64) {
    let line = report
        .lines()
        .find(|l| l.starts_with("redrive to stage"))
        .unwrap_or_else(|| panic!("no summary line in:\n{report}"));
    let num = |word: &str| -> u64 {
        let at = line
            .find(word)
            .unwrap_or_else(|| panic!("no '{word}' in {line}"));
        line[at + word.len()..]
            .split(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no number after '{word}' in {line}"))
    };
    if line.contains("dry run") {
        (num("would send "), num("skip "), num("leave "))
    } else {
        (num("sent "), num("skipped "), num("left "))
    }
}

/// A continuous `millrace run` in the background, its standard error collected.
pub struct Running {
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    pub addr: String,
}

impl Running {
    /// Starts the shop's pipeline and waits until it serves HTTP (it holds the store).
    pub fn start(shop: &Shop<'_>) -> Running {
        let mut child = shop.b.spawn(&["run", shop.path()]);
        let pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut run = Running {
            child: Some(child),
            stderr,
            addr: String::new(),
        };
        wait_until(Duration::from_secs(60), "the run to serve HTTP", || {
            run.addr = run
                .stderr()
                .split("serving http://")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .unwrap_or_default()
                .to_string();
            !run.addr.is_empty()
        });
        run
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A counter of `/metrics` for a stage (0 when the series is not there).
    pub fn metric(&self, family: &str, stage: &str) -> f64 {
        let body = http_get(&self.addr, "/metrics");
        let label = format!("stage=\"{stage}\"");
        body.lines()
            .filter(|l| l.starts_with(family) && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Ctrl-C; returns the run's standard error once it has exited 0.
    pub fn stop(mut self) -> String {
        let child = self.child.take().expect("running");
        signal(&child, "INT");
        let out = wait_for_exit(child, Duration::from_secs(60));
        let err = self.stderr();
        assert!(out.status.success(), "the run should exit 0:\n{err}");
        err
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A GET over plain HTTP/1.1; the body.
pub fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "GET {path}: {out}");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Writes records straight to a topic through the backend's client library, as a
/// user's script would: dead letters written by hand.
pub fn produce_by_hand(b: &Backend, topic: &str, records: &[millrace_broker::ProduceRecord]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let broker: Box<dyn millrace_broker::Broker> = match &b.bootstrap {
            Some(bootstrap) => Box::new(
                millrace_broker::kafka::KafkaBroker::connect(
                    bootstrap,
                    BTreeMap::new(),
                    Duration::from_secs(10),
                )
                .await
                .expect("connect to Kafka"),
            ),
            None => Box::new(
                millrace_broker::embedded::EmbeddedBroker::open(b.data_dir())
                    .expect("open the store"),
            ),
        };
        broker.produce(topic, records).await.expect("produce");
    });
}

/// A record with these headers (name, bytes), to partition 0.
pub fn with_headers(value: &str, headers: &[(&str, &[u8])]) -> millrace_broker::ProduceRecord {
    let mut r = millrace_broker::ProduceRecord::value(value.as_bytes().to_vec());
    r.partition = Some(0);
    r.headers = headers
        .iter()
        .map(|(k, v)| millrace_broker::Header::new(*k, v.to_vec()))
        .collect();
    r
}
