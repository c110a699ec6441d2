//! Hostile input: pipeline files built to break the parser, records built to break the
//! stages, and exec workers that crash, hang, babble or flood. Each must end in a clear
//! error (file:line:col for files) or a dead-letter entry with its reason, and the
//! pipeline goes on. Nothing panics.

use std::path::Path;
use std::time::Duration;

use crate::common::{Backend, stderr, stdout};
use crate::support::{figure, no_panic, tail, wait_with_deadline};

/// `millrace validate` on `src`: must fail, without a panic, with a `file:line:col`
/// error; returns stderr.
fn validate_rejects(name: &str, src: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, src).expect("write pipeline file");
    let b = Backend::embedded();
    let mut c = b.cmd();
    c.arg("validate").arg(&path);
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn validate");
    let out = wait_with_deadline(child, Duration::from_secs(60), &format!("validate {name}"));
    let err = stderr(&out);
    no_panic(&format!("validate {name}"), &err);
    assert!(
        !out.status.success(),
        "validate accepted the {name} file:\n{}",
        tail(&err, 20)
    );
    let shown = path.display().to_string();
    let located = err.lines().any(|l| {
        l.find(&shown).is_some_and(|at| {
            let rest = &l[at + shown.len()..];
            let mut parts = rest.splitn(3, ':');
            parts.next() == Some("")
                && parts
                    .next()
                    .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n >= 1))
                && parts
                    .next()
                    .is_some_and(|r| r.chars().next().is_some_and(|c| c.is_ascii_digit()))
        })
    });
    assert!(
        located,
        "the {name} error has no {shown}:LINE:COL location:\n{}",
        tail(&err, 20)
    );
    err
}

fn line_of(err: &str, path_suffix: &str) -> Option<u32> {
    err.lines().find_map(|l| {
        let at = l.find(path_suffix)? + path_suffix.len();
        l[at..].strip_prefix(':')?.split(':').next()?.parse().ok()
    })
}

#[test]
fn hostile_pipeline_files_get_located_errors_and_no_panic() {
    let mut tried = 0;
    let mut check = |name: &str, src: Vec<u8>| {
        tried += 1;
        validate_rejects(name, &src)
    };
    check(
        "malformed",
        b"pipeline: x\nstages:\n  a: {kind: copier, from: [in\n  b: ]]\n".to_vec(),
    );
    check(
        "tabs",
        b"pipeline: x\nstages:\n\ta:\n\t\tkind: copier\n".to_vec(),
    );
    check(
        "wrong-types",
        b"pipeline: x\ntopics:\n  a: {partitions: three}\nstages:\n  c: {kind: copier, from: a, to: 7}\n"
            .to_vec(),
    );
    let e = check(
        "unknown-field",
        b"pipeline: x\nstages:\n  c:\n    kind: copier\n    from: a\n    to: [b]\n    form: a\n"
            .to_vec(),
    );
    assert!(e.contains("form"), "the unknown field is not named: {e}");
    check(
        "unknown-kind",
        b"pipeline: x\nstages:\n  c: {kind: teleport, from: a, to: b}\n".to_vec(),
    );
    let e = check(
        "cycle",
        b"pipeline: x\nstages:\n  a: {kind: copier, from: t1, to: [t2]}\n  b: {kind: copier, from: t2, to: [t1]}\n"
            .to_vec(),
    );
    assert!(e.contains("cycle"), "the cycle is not called one: {e}");
    let e = check(
        "invalid-jq",
        b"pipeline: x\nstages:\n  f: {kind: filter, from: a, to: b, when: '.x | | ]['}\n".to_vec(),
    );
    assert!(
        e.contains("f") && (e.contains("jq") || e.contains("expression") || e.contains("compile")),
        "{e}"
    );
    check(
        "deep-brackets",
        [b"pipeline: x\nstages: ".to_vec(), vec![b'['; 10_000]].concat(),
    );
    check(
        "deep-maps",
        [
            b"pipeline: x\nstages:\n  a: ".to_vec(),
            "{a: ".repeat(10_000).into_bytes(),
        ]
        .concat(),
    );
    check("empty", Vec::new());
    check("not-utf8", b"pipeline: \xff\xfe\nstages: {}\n".to_vec());
    check("binary", (0..=255u8).cycle().take(4096).collect());
    // Billion laughs: aliases that would expand exponentially if resolved naively.
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..10 {
        let prev = (b'a' + i - 1) as char;
        let cur = (b'a' + i) as char;
        bomb.push_str(&format!("{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
    }
    bomb.push_str("pipeline: x\nstages: *j\n");
    check("alias-bomb", bomb.into_bytes());
    // 10 MB of nodes: the parser's budget refuses it, with a location, without
    // building 10 MB of nodes first.
    let mut huge = String::from("pipeline: huge\nstages:\n");
    let mut i = 0;
    while huge.len() < 10 << 20 {
        huge.push_str(&format!(
            "  s{i}: {{kind: copier, from: in{i}, to: [out{i}]}}\n"
        ));
        i += 1;
    }
    check("huge-nodes", huge.into_bytes());
    // 10 MB of comments around a small pipeline with a bad field on the last line: the
    // error must point at that line.
    let mut huge = String::from(
        "pipeline: huge\ntopics:\n  x: {partitions: 1}\nstages:\n  a: {kind: copier, from: x, to: [y]}\n",
    );
    let mut line = 5;
    let filler = format!("# {}\n", "lorem ipsum ".repeat(80));
    while huge.len() < 10 << 20 {
        huge.push_str(&filler);
        line += 1;
    }
    huge.push_str("  last: {kind: copier, from: y, to: [z], bogus: 1}\n");
    line += 1;
    let e = check("huge", huge.into_bytes());
    assert_eq!(
        line_of(&e, "huge.yaml"),
        Some(line),
        "the 10 MB file's error is on the wrong line:\n{}",
        tail(&e, 10)
    );
    figure(
        "hostile_pipeline_files",
        &[("files_tried", tried.to_string())],
    );
}

/// A map stage over JSON records into `out`; the pipeline's dead-letter topic is
/// `hostile.dlq`.
const MAP_FILE: &str = "pipeline: hostile\ntopics:\n  in: {partitions: 1}\nstages:\n  m:\n    kind: map\n    from: in\n    to: out\n    expr: '{n: .n, len: (.s // \"\" | length)}'\n";

/// Dead-letter records as (headers line, value).
fn dead_letters(b: &Backend, topic: &str, n: usize) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    let out = b.ok(
        &[
            "consume",
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            &n.to_string(),
            "--timeout-ms",
            "10000",
            "--property",
            "print.headers=true",
        ],
        b"",
    );
    stdout(&out).lines().map(String::from).collect()
}

fn run_batch(b: &Backend, file: &Path, limit: Duration) -> String {
    let child = b.spawn(&["run", file.to_str().expect("path"), "--batch", "--no-http"]);
    let out = wait_with_deadline(child, limit, "run --batch");
    let err = stderr(&out);
    no_panic("run --batch", &err);
    assert!(
        out.status.success(),
        "run --batch failed:\n{}",
        tail(&err, 30)
    );
    err
}

#[test]
fn hostile_records_are_dead_lettered_with_reasons_and_the_pipeline_goes_on() {
    let b = Backend::embedded();
    let file = b.data_dir().join("hostile.yaml");
    std::fs::write(&file, MAP_FILE).expect("write");
    run_batch(&b, &file, Duration::from_secs(30)); // creates the topics
    let mut input: Vec<u8> = Vec::new();
    input.extend_from_slice(b"{\"n\":1}\n");
    input.extend_from_slice(b"not json at all\n");
    input.extend_from_slice(b"{\"n\":2}\n");
    input.extend_from_slice(b"\xff\xfe\xfd invalid utf-8\n");
    input.extend_from_slice(b"\n"); // an empty record
    input.extend_from_slice(b"{\"n\":\"\xc3\x28\"}\n"); // JSON-shaped, invalid UTF-8 inside
    let mib = format!("{{\"n\":3,\"s\":\"{}\"}}\n", "m".repeat((1 << 20) - 20)); // ~1 MiB
    input.extend_from_slice(mib.as_bytes());
    input.extend_from_slice(b"{\"n\":4,\"deep\":");
    input.extend_from_slice(&vec![b'['; 100_000]);
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"{\"n\":5}\n");
    let produced = b.run(&["produce", "--topic", "in"], &input);
    no_panic("produce hostile records", &stderr(&produced));
    assert!(produced.status.success(), "{}", stderr(&produced));
    assert_eq!(b.records_in("in"), 9);

    let err = run_batch(&b, &file, Duration::from_secs(60));
    let outs: Vec<serde_json::Value> = crate::kill_loop::read_all(&b, "out")
        .iter()
        .map(|v| serde_json::from_str(v).expect("out is JSON"))
        .collect();
    let ns: Vec<i64> = outs.iter().filter_map(|v| v["n"].as_i64()).collect();
    assert_eq!(
        ns,
        [1, 2, 3, 5],
        "good records (incl. the 1 MiB one) come out, in order: {outs:?}\n{err}"
    );
    let mib = outs.iter().find(|v| v["n"] == 3).expect("the 1 MiB record");
    assert_eq!(mib["len"], (1 << 20) - 20, "the 1 MiB value arrived whole");
    // JSON with invalid UTF-8 inside a string is not JSON: it is dead-lettered, never
    // passed through with its bad bytes.
    assert_eq!(
        outs.len(),
        ns.len(),
        "a record with invalid UTF-8 came out: {outs:?}"
    );
    let dlq = b.records_in("hostile.dlq");
    let dl = dead_letters(&b, "hostile.dlq", usize::try_from(dlq).expect("n"));
    assert_eq!(
        dl.len() + outs.len(),
        9,
        "every record is in the output or dead-lettered: {dl:?}"
    );
    for d in &dl {
        assert!(
            d.contains("millrace.stage:m")
                && d.contains("millrace.error:")
                && d.contains("millrace.source.offset:"),
            "a dead letter lacks its reason or source: {d}"
        );
    }
    assert!(
        dl.iter().any(|d| d.contains("not UTF-8")),
        "the invalid UTF-8 record's dead letter does not say why: {dl:?}"
    );
    assert!(
        dl.iter().any(|d| d.contains("nested more than")
            || d.contains("depth")
            || d.contains("recursion")),
        "the deeply nested record's dead letter does not say why: {dl:?}"
    );
    figure(
        "hostile_records",
        &[
            ("records_tried", "9".into()),
            ("dead_lettered", dl.len().to_string()),
        ],
    );
}

#[test]
fn a_record_over_the_store_limit_is_refused_with_a_clear_error() {
    let b = Backend::embedded();
    b.ok(
        &["topics", "create", "--topic", "big", "--partitions", "1"],
        b"",
    );
    // The embedded store refuses batches over 64 MiB; one 65 MiB record is over it.
    let mut line = vec![b'a'; 65 << 20];
    line.push(b'\n');
    let out = b.run(&["produce", "--topic", "big"], &line);
    let err = stderr(&out);
    no_panic("produce 65 MiB", &err);
    assert!(!out.status.success(), "a 65 MiB record was accepted");
    assert!(
        err.contains("64 MiB") || err.contains("too large") || err.contains("limit"),
        "unclear error: {err}"
    );
    assert_eq!(b.records_in("big"), 0);
    // Exactly 1 MiB is fine.
    let mut line = vec![b'b'; 1 << 20];
    line.push(b'\n');
    b.ok(&["produce", "--topic", "big"], &line);
    assert_eq!(b.records_in("big"), 1);
    figure("oversize_record", &[("records_tried", "2".into())]);
}

#[test]
fn a_stage_output_over_the_limit_is_dead_lettered_not_fatal() {
    // A map that turns one 1 MiB record into 70 MiB: more than the store takes in one
    // batch. The record must be dead-lettered (oversize) and the next one processed.
    let b = Backend::embedded();
    let file = b.data_dir().join("blowup.yaml");
    std::fs::write(
        &file,
        "pipeline: blowup\ntopics:\n  in: {partitions: 1}\nstages:\n  m:\n    kind: map\n    from: in\n    to: out\n    expr: 'if .big then (. as $r | {s: ([range(70) | $r.s] | add)}) else . end'\n",
    )
    .expect("write");
    run_batch(&b, &file, Duration::from_secs(30));
    let big = format!("{{\"big\":true,\"s\":\"{}\"}}\n", "z".repeat(1 << 20));
    let input = [
        b"{\"n\":1}\n".to_vec(),
        big.into_bytes(),
        b"{\"n\":2}\n".to_vec(),
    ]
    .concat();
    b.ok(&["produce", "--topic", "in"], &input);
    let child = b.spawn(&["run", file.to_str().expect("path"), "--batch", "--no-http"]);
    let out = wait_with_deadline(
        child,
        Duration::from_secs(90),
        "run over an oversize output",
    );
    let err = stderr(&out);
    no_panic("oversize output", &err);
    assert!(
        out.status.success(),
        "an oversize output stopped the pipeline:\n{}",
        tail(&err, 20)
    );
    let outs = crate::kill_loop::read_all(&b, "out");
    assert_eq!(
        outs,
        ["{\"n\":1}", "{\"n\":2}"],
        "the good records are processed"
    );
    let dl = dead_letters(&b, "blowup.dlq", 1);
    assert!(dl[0].contains("millrace.error:"), "{dl:?}");
}

/// An exec worker that misbehaves on command: `{"do": "crash" | "hang" | "garbage" |
/// "huge" | "reject" | "ok"}`.
const NASTY_WORKER: &str = r#"
import json, sys, time
while True:
    line = sys.stdin.readline()
    if not line:
        break
    req = json.loads(line)
    do = req["value"].get("do")
    if do == "crash":
        sys.exit(3)
    if do == "hang":
        time.sleep(3600)
    if do == "garbage":
        sys.stdout.write("this is not json\n"); sys.stdout.flush(); continue
    if do == "huge":
        sys.stdout.write('{"id":%d,"out":["%s"]}\n' % (req["id"], "h" * (17 << 20))); sys.stdout.flush(); continue
    if do == "reject":
        sys.stdout.write(json.dumps({"id": req["id"], "error": "rejected on purpose"}) + "\n"); sys.stdout.flush(); continue
    sys.stdout.write(json.dumps({"id": req["id"], "out": [req["value"]]}) + "\n"); sys.stdout.flush()
"#;

#[test]
fn misbehaving_exec_workers_end_in_dead_letters_with_reasons() {
    let b = Backend::embedded();
    let worker = b.data_dir().join("nasty.py");
    std::fs::write(&worker, NASTY_WORKER).expect("write worker");
    let file = b.data_dir().join("nasty.yaml");
    std::fs::write(
        &file,
        format!(
            "pipeline: nasty\ntopics:\n  in: {{partitions: 1}}\nstages:\n  w:\n    kind: exec\n    from: in\n    to: out\n    command: [python3, {}]\n    workers: 2\n    timeout: 1s\n    retries: 1\n",
            worker.display()
        ),
    )
    .expect("write");
    run_batch(&b, &file, Duration::from_secs(30));
    let kinds = [
        "ok", "crash", "ok", "hang", "garbage", "ok", "huge", "reject", "ok",
    ];
    let input: String = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{{\"i\":{i},\"do\":\"{k}\"}}\n"))
        .collect();
    b.ok(&["produce", "--topic", "in"], input.as_bytes());
    let err = run_batch(&b, &file, Duration::from_secs(120));
    let outs: Vec<i64> = crate::kill_loop::read_all(&b, "out")
        .iter()
        .map(|v| {
            serde_json::from_str::<serde_json::Value>(v).expect("json")["i"]
                .as_i64()
                .expect("i")
        })
        .collect();
    assert_eq!(
        outs,
        [0, 2, 5, 8],
        "the good items come through\n{}",
        tail(&err, 20)
    );
    let dl = dead_letters(&b, "nasty.dlq", 5);
    assert_eq!(dl.len(), 5, "{dl:?}");
    let reason = |i: usize| -> &String {
        dl.iter()
            .find(|d| d.contains(&format!("\"i\":{i},")))
            .unwrap_or_else(|| panic!("no dead letter for item {i}: {dl:?}"))
    };
    let expect = [
        (1, "exit"),
        (3, "within the timeout"),
        (4, "garbage"),
        (6, "byte"),
        (7, "rejected on purpose"),
    ];
    for (i, word) in expect {
        let d = reason(i);
        assert!(
            d.to_lowercase().contains(word),
            "item {i}: the reason does not say '{word}': {d}"
        );
        assert!(d.contains("millrace.attempts:"), "{d}");
    }
    figure(
        "hostile_exec_workers",
        &[("misbehaviours", "5".into()), ("dead_lettered", "5".into())],
    );
}
