//! The coordinated examples through the real `millrace` binary on every
//! backend, with several partitions, and on Kafka with two `millrace run` processes
//! sharing the work: examples/wordcount.yaml, examples/images.yaml, examples/zip.yaml;
//! and a barrier join seen holding across two processes until its last part arrives.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Replaces whole names (not parts of longer names or paths) in a pipeline file.
fn rename(src: &str, names: &[&str], suffix: &str) -> String {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || "_-./".contains(c);
    let mut out = src.to_string();
    for name in names {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find(name) {
            let before = rest[..i].chars().last();
            let after = rest[i + name.len()..].chars().next();
            result.push_str(&rest[..i + name.len()]);
            if !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char) {
                result.push_str(suffix);
            }
            rest = &rest[i + name.len()..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// The example, with names made unique on a shared Kafka broker: only where the file
/// names a pipeline or topic (`pipeline:`, `from:`, `to:`, topic declarations), never
/// inside expressions. Returns its path.
fn example(b: &Backend, file: &str, names: &[&str]) -> PathBuf {
    let src = std::fs::read_to_string(repo().join("examples").join(file)).expect("example");
    let mut in_topics = false;
    let mut out = String::new();
    for line in src.lines() {
        let t = line.trim_start();
        if !line.starts_with(' ') {
            in_topics = t.starts_with("topics:");
        }
        let names_here = t.starts_with("pipeline:")
            || t.starts_with("from:")
            || t.starts_with("to:")
            || t.starts_with("default:")
            || t.starts_with("shards:")
            || t.starts_with("- {")
            || line.contains(" from: ")
            || (in_topics && line.starts_with("  ") && !line.starts_with("   "));
        if names_here {
            out.push_str(&rename(line, names, &b.suffix));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    let path = b.data_dir().join(file);
    std::fs::write(&path, out).expect("write example");
    path
}

fn run_cmd(b: &Backend, file: &Path) -> Command {
    let mut c = b.cmd();
    c.current_dir(repo())
        .args(["run", file.to_str().expect("path"), "--batch", "--no-http"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs the pipeline in `--batch` mode: one process, or two sharing the work.
fn run_batch(b: &Backend, file: &Path, processes: usize) {
    let mut children: Vec<_> = (0..processes)
        .map(|_| run_cmd(b, file).spawn().expect("spawn run"))
        .collect();
    // A batch run must end by itself; a hang is a failure with the run's own words.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while children
        .iter_mut()
        .any(|c| c.try_wait().ok().flatten().is_none())
    {
        if std::time::Instant::now() > deadline {
            for c in children.iter_mut() {
                let _ = c.kill();
            }
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "[{}] run failed ({}): {}",
            b.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn consume_json(b: &Backend, topic: &str) -> Vec<Value> {
    let out = b.ok(
        &[
            "consume",
            "--topic",
            topic,
            "--from-beginning",
            "--timeout-ms",
            "3000",
        ],
        b"",
    );
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn word_count(text: &str) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for w in text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        *m.entry(w.to_ascii_lowercase()).or_default() += 1;
    }
    m
}

fn backends_with_processes() -> Vec<(Backend, usize)> {
    let mut v = vec![(Backend::embedded(), 1)];
    if let Some(k) = kafka_bootstrap() {
        v.push((Backend::kafka(k.clone()), 1));
        v.push((Backend::kafka(k), 2));
    }
    v
}

#[test]
fn wordcount_counts_every_word_exactly_once_per_batch() {
    let names = [
        "wordcount",
        "lines",
        "words-unsharded",
        "words",
        "partial-counts",
        "counted",
        "word-counts",
    ];
    for (b, processes) in backends_with_processes() {
        let file = example(&b, "wordcount.yaml", &names);
        let lines = b.topic("lines");
        // Create the topics (an empty batch), then load text with punctuation, case and
        // non-ASCII letters, which split words.
        run_batch(&b, &file, 1);
        let mut text = String::new();
        for i in 0..400 {
            text.push_str(&format!(
                "The quick brown fox #{i} jumps over THE lazy dog; don't panic — naïve café {}\n",
                i % 13
            ));
        }
        b.ok(&["produce", "--topic", &lines], text.as_bytes());
        run_batch(&b, &file, processes);
        let want = word_count(&text);
        let got = consume_json(&b, &b.topic("word-counts"));
        let mut counts = BTreeMap::new();
        let batches: std::collections::BTreeSet<String> =
            got.iter().map(|v| v["batch"].to_string()).collect();
        assert_eq!(
            batches.len(),
            1,
            "[{} ×{processes}] one batch: {batches:?}",
            b.name
        );
        for v in &got {
            let w = v["word"].as_str().expect("word").to_string();
            let prev = counts.insert(w.clone(), v["count"].as_i64().expect("count"));
            assert!(
                prev.is_none(),
                "[{} ×{processes}] '{w}' twice in one batch",
                b.name
            );
        }
        assert_eq!(counts, want, "[{} ×{processes}]", b.name);

        // A second batch: only the new lines, numbered as a new batch.
        b.ok(&["produce", "--topic", &lines], b"fox fox\n");
        run_batch(&b, &file, processes);
        let all = consume_json(&b, &b.topic("word-counts"));
        let second: Vec<&Value> = all
            .iter()
            .filter(|v| v["batch"] != got[0]["batch"])
            .collect();
        assert_eq!(second.len(), 1, "[{} ×{processes}] {second:?}", b.name);
        assert_eq!(second[0]["word"], json!("fox"));
        assert_eq!(second[0]["count"], json!(2));
    }
}

#[test]
fn images_blur_then_delete_originals_and_report_traffic() {
    let names = [
        "images",
        "images-by-url",
        "blurred",
        "blurred-images",
        "blurred-batch",
        "delete-originals",
        "vehicle-analysis",
        "vehicles-by-url",
        "vehicles",
        "all-vehicles",
        "traffic-totals",
        "traffic-report",
    ];
    for (b, processes) in backends_with_processes() {
        let file = example(&b, "images.yaml", &names);
        run_batch(&b, &file, 1);
        let vehicles = ["car", "truck", "bus"];
        let colors = ["red", "blue", "white", "black"];
        let mut input = String::new();
        let mut want_v: BTreeMap<&str, i64> = BTreeMap::new();
        let mut want_c: BTreeMap<&str, i64> = BTreeMap::new();
        for i in 0..60 {
            let (v, c) = (vehicles[i % 3], colors[i % 4]);
            *want_v.entry(v).or_default() += 1;
            *want_c.entry(c).or_default() += 1;
            input.push_str(&format!(
                "{{\"url\":\"https://cams.example/cars/{i}.jpg\",\"vehicle\":\"{v}\",\"color\":\"{c}\"}}\n"
            ));
        }
        b.ok(
            &["produce", "--topic", &b.topic("images")],
            input.as_bytes(),
        );
        run_batch(&b, &file, processes);

        let deleted = consume_json(&b, &b.topic("delete-originals"));
        let mut urls: Vec<&str> = deleted
            .iter()
            .map(|v| v["url"].as_str().expect("url"))
            .collect();
        urls.sort();
        urls.dedup();
        assert_eq!(
            urls.len(),
            60,
            "[{} ×{processes}] one delete per image",
            b.name
        );
        assert!(deleted.iter().all(|v| {
            v["blurred_url"]
                .as_str()
                .is_some_and(|u| u.contains("/blurred/"))
        }));
        let report = consume_json(&b, &b.topic("traffic-report"));
        assert_eq!(
            report.len(),
            1,
            "[{} ×{processes}] one report per batch: {report:?}",
            b.name
        );
        let want = json!({ "vehicles": want_v, "colors": want_c });
        assert_eq!(
            report[0]["vehicles"], want["vehicles"],
            "[{} ×{processes}]",
            b.name
        );
        assert_eq!(report[0]["colors"], want["colors"]);
        assert!(report[0]["batch"].is_number());
    }
}

#[test]
fn zip_prints_the_two_topics_as_pairs() {
    let names = ["zip", "photos-topic", "photos-topic-2", "photo-pairs"];
    for (b, processes) in backends_with_processes() {
        let file = example(&b, "zip.yaml", &names);
        run_batch(&b, &file, 1);
        b.ok(
            &["produce", "--topic", &b.topic("photos-topic")],
            b"\"a.jpg\"\n\"b.jpg\"\n\"c.jpg\"\n",
        );
        b.ok(
            &["produce", "--topic", &b.topic("photos-topic-2")],
            b"\"a-small.jpg\"\n\"b-small.jpg\"\n\"c-small.jpg\"\n",
        );
        run_batch(&b, &file, processes);
        let pairs = consume_json(&b, &b.topic("photo-pairs"));
        assert_eq!(
            pairs,
            vec![
                json!(["a.jpg", "a-small.jpg"]),
                json!(["b.jpg", "b-small.jpg"]),
                json!(["c.jpg", "c-small.jpg"])
            ],
            "[{} ×{processes}]",
            b.name
        );
    }
}

/// An exec worker that echoes each item, but holds one marked `"hold": true` until the
/// file named by its argument exists.
const GATED_WORKER: &str = r#"
import json, os, sys, time
gate = sys.argv[1]
for line in sys.stdin:
    req = json.loads(line)
    if req["value"].get("hold"):
        while not os.path.exists(gate):
            time.sleep(0.05)
    print(json.dumps({"id": req["id"], "out": [req["value"]]}), flush=True)
"#;

/// A `millrace run` whose standard error is collected as it comes.
struct Instance {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Instance {
    fn start(b: &Backend, file: &Path) -> Instance {
        let mut child = b
            .cmd()
            .current_dir(repo())
            .args([
                "run",
                file.to_str().expect("path"),
                "--batch",
                "--http",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn run");
        let pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        Instance { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The `host:port` the run serves HTTP on, once it says so.
    fn address(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let err = self.stderr();
            if let Some(rest) = err.split("serving http://").nth(1) {
                return rest.split('/').next().expect("address").to_string();
            }
            assert!(
                Instant::now() < deadline && self.child.try_wait().expect("try_wait").is_none(),
                "the run never served HTTP:\n{err}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `GET path` from a run's HTTP endpoint, as JSON.
fn get_json(addr: &str, path: &str) -> Option<Value> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

/// A stage's barrier progress in `/api/stats`: (batch, done, of, released).
fn barrier(stats: &Value, stage: &str) -> Option<(u64, u64, u64, u64)> {
    let st = stats["stages"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == stage)?;
    let b = &st["barrier"];
    Some((
        b["batch"].as_u64()?,
        b["done"].as_u64()?,
        b["of"].as_u64()?,
        b["released"].as_u64()?,
    ))
}

/// Two processes share a barrier join over two inputs: one a source read to its end at
/// once, the other written by an exec stage whose worker holds one item. Both processes
/// report the barrier holding at k < n (the source's partitions read, the other's not
/// complete) in `/api/stats`, nothing is released and the join's group commits nothing,
/// until the held item is let go: then both finish, and every item is released once.
#[test]
fn barrier_join_holds_at_k_of_n_across_two_processes_until_the_last_part_arrives() {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let b = Backend::kafka(bootstrap);
    let dir = b.data_dir();
    let worker = dir.join("gated.py");
    std::fs::write(&worker, GATED_WORKER).expect("write worker");
    let gate = dir.join("let-go");
    let (pipeline, parts, direct, worked, released) = (
        b.topic("holding"),
        b.topic("parts"),
        b.topic("direct"),
        b.topic("worked"),
        b.topic("released"),
    );
    let file = dir.join("holding.yaml");
    std::fs::write(
        &file,
        format!(
            "pipeline: {pipeline}\ntopics:\n  {parts}: {{partitions: 2}}\n  {direct}: {{partitions: 2}}\n  {worked}: {{partitions: 2}}\nstages:\n  work:\n    kind: exec\n    from: {parts}\n    to: {worked}\n    command: [python3, {}, {}]\n  all-in:\n    kind: join\n    from: [{direct}, {worked}]\n    to: {released}\n    mode: barrier\n",
            worker.display(),
            gate.display()
        ),
    )
    .expect("write pipeline");
    run_batch(&b, &file, 1);
    let items = |tag: &str, hold: Option<usize>| -> String {
        (0..20)
            .map(|i| {
                let held = if Some(i) == hold {
                    ", \"hold\": true"
                } else {
                    ""
                };
                format!("{{\"{tag}\": {i}{held}}}\n")
            })
            .collect()
    };
    b.ok(
        &["produce", "--topic", &direct],
        items("d", None).as_bytes(),
    );
    b.ok(
        &["produce", "--topic", &parts],
        items("p", Some(7)).as_bytes(),
    );

    let mut runs = [Instance::start(&b, &file), Instance::start(&b, &file)];
    let addrs: Vec<String> = runs.iter_mut().map(Instance::address).collect();
    // Holding: between them the two have read both partitions of the source (k = 2),
    // of the join's n = 4 input partitions, and released nothing.
    let deadline = Instant::now() + Duration::from_secs(90);
    let seen;
    loop {
        let now: Vec<_> = addrs
            .iter()
            .map(|a| get_json(a, "/api/stats").and_then(|s| barrier(&s, "all-in")))
            .collect();
        let holding = now.iter().all(|p| {
            p.is_some_and(|(batch, done, of, released)| {
                batch > 0 && of == 4 && done < of && released == 0
            })
        }) && now.iter().flatten().map(|p| p.1).sum::<u64>() == 2;
        if holding {
            seen = now;
            break;
        }
        for r in runs.iter_mut() {
            assert!(
                r.child.try_wait().expect("try_wait").is_none(),
                "a run ended while an item was held:\n{}",
                r.stderr()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the barrier never showed k < n in both processes: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        b.records_in(&released),
        0,
        "released before the last part arrived"
    );
    let group = format!("{pipeline}.all-in");
    let held_back = committed(&b, &group, &direct);
    assert!(
        held_back.iter().all(|(_, o)| o.unwrap_or(0) == 0),
        "the join committed past items it holds: {held_back:?}"
    );

    std::fs::write(&gate, b"").expect("open the gate");
    for r in runs {
        let out = wait_for_exit(r.child, Duration::from_secs(180));
        assert!(
            out.status.success(),
            "run failed:\n{}",
            r.stderr.lock().unwrap_or_else(|e| e.into_inner())
        );
    }
    let got = consume_json(&b, &released);
    assert_eq!(got.len(), 40, "every item released once: {got:?}");
    let mut ids: Vec<String> = got
        .iter()
        .map(|v| {
            v.as_object()
                .map(|o| format!("{:?}", o.iter().next()))
                .unwrap_or_default()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "each item once");
    let all: i64 = committed(&b, &group, &direct)
        .iter()
        .chain(&committed(&b, &group, &worked))
        .map(|(_, o)| o.unwrap_or(0))
        .sum();
    assert_eq!(all, 40, "the join committed everything once it released");
    eprintln!("barrier held at {seen:?} (batch, done, of, released per process)");
}

/// The committed offsets of `group` on `topic`, from the broker.
fn committed(b: &Backend, group: &str, topic: &str) -> Vec<(i32, Option<i64>)> {
    let bootstrap = b.bootstrap.clone().expect("kafka");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            use millrace_broker::Broker;
            let k = millrace_broker::kafka::KafkaBroker::connect(
                &bootstrap,
                BTreeMap::new(),
                Duration::from_secs(10),
            )
            .await
            .expect("connect");
            k.committed(group, topic).await.expect("committed")
        })
}

#[test]
fn rename_keeps_longer_names_and_paths_intact() {
    let src = "from: words\nto: words-unsharded\ncommand: [python3, examples/workers/images.py]\n";
    assert_eq!(
        rename(src, &["words", "images"], "-x"),
        "from: words-x\nto: words-unsharded\ncommand: [python3, examples/workers/images.py]\n"
    );
}
