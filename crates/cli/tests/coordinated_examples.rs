//! The coordinated examples through the real `millrace` binary on every
//! backend, with several partitions, and on Kafka with two `millrace run` processes
//! sharing the work: examples/wordcount.yaml, examples/images.yaml, examples/zip.yaml.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

#[test]
fn rename_keeps_longer_names_and_paths_intact() {
    let src = "from: words\nto: words-unsharded\ncommand: [python3, examples/workers/images.py]\n";
    assert_eq!(
        rename(src, &["words", "images"], "-x"),
        "from: words-x\nto: words-unsharded\ncommand: [python3, examples/workers/images.py]\n"
    );
}
