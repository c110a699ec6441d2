//! What the CLI says when something is wrong: errors with hints (unknown topics,
//! partitions, properties), `validate`'s report printed once with counts in words,
//! warnings from `validate` and `run`, and one wording for a value that is not JSON
//! whatever kind of stage read it.

mod common;

use std::io::{BufRead, BufReader};

use common::*;

/// Writes `text` to `dir/name`; the path, as text for a command line.
fn write_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("path").to_owned()
}

/// A topic that does not exist: how to create it, or the name it is close to.
#[test]
fn unknown_topics_come_with_a_hint() {
    for b in Backend::all() {
        let orders = b.topic("orders");
        let create = format!(
            "error: unknown topic '{orders}'\n  hint: create it with `millrace topics create --topic {orders}`, or run the pipeline that declares it once\n"
        );
        for args in [
            &["produce", "--topic", &orders][..],
            &["consume", "--topic", &orders, "--timeout-ms", "100"],
            &["topics", "describe", "--topic", &orders],
        ] {
            let out = b.run(args, b"{}\n");
            assert!(!out.status.success(), "[{}] {args:?}", b.name);
            assert_eq!(stderr(&out), create, "[{}] {args:?}", b.name);
        }
        let order = b.topic("order");
        b.ok(&["topics", "create", "--topic", &order], b"");
        let out = b.run(&["produce", "--topic", &orders], b"{}\n");
        assert_eq!(
            stderr(&out),
            format!(
                "error: unknown topic '{orders}'\n  hint: did you mean '{order}'? (or create it: `millrace topics create --topic {orders}`)\n"
            ),
            "[{}]",
            b.name
        );
        let out = b.run(&["topics", "delete", "--topic", &orders], b"");
        assert_eq!(
            stderr(&out),
            format!("error: unknown topic '{orders}'\n  hint: did you mean '{order}'?\n"),
            "[{}]",
            b.name
        );
    }
}

/// `validate` prints a file's problems as they are (one `error:` each, no prefix of
/// its own), its warnings on standard error, and counts in words.
#[test]
fn validate_reports_once_with_counts_in_words() {
    let b = Backend::embedded();
    let bad = &write_file(
        b.data_dir(),
        "bad.yaml",
        "pipeline: p\ntopics: {a: 1}\nstages:\n  s: {kind: splitter, from: a, by: .k, shards: 2}\n  r: {kind: reduce, from: a, to: n, reducer: sum, of: amount}\n",
    );
    let out = b.run(&["validate", bad], b"");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.starts_with(&format!("{bad}:4:3: error: ")), "{err}");
    assert!(
        !err.contains("error: error") && !err.contains(&format!("error: {bad}")),
        "{err}"
    );
    assert!(
        err.contains("hint: `by` is a field of a sharder (did you mean `kind: sharder`?)"),
        "{err}"
    );
    assert!(
        err.contains("hint: to read the field, write `.amount`"),
        "{err}"
    );
    assert!(
        err.ends_with(&format!("{bad}: 5 errors, 1 warning\n")),
        "{err}"
    );

    let good = &write_file(
        b.data_dir(),
        "good.yaml",
        "pipeline: p\ntopics: {a: 1}\nstages:\n  r: {kind: reduce, from: a, to: n, reducer: count}\n",
    );
    let out = b.ok(&["validate", good], b"");
    assert_eq!(
        stdout(&out),
        format!("{good}: ok (1 stage, 3 topics, 1 warning)\n")
    );
    assert!(
        stderr(&out).starts_with(&format!(
            "{good}:4:13: warning: reduce `r` never sees a batch end in a continuous run"
        )),
        "{}",
        stderr(&out)
    );
}

/// `run` prints the warnings too; a `--batch` run leaves out the one about batches,
/// which do end there.
#[test]
fn run_warns_about_a_reduce_that_would_never_finish_unless_batch() {
    let b = Backend::embedded();
    b.ok(&["topics", "create", "--topic", "a"], b"");
    let file = &write_file(
        b.data_dir(),
        "r.yaml",
        "pipeline: r\ntopics: {a: 1}\nstages:\n  r: {kind: reduce, from: a, to: n, reducer: count}\n",
    );
    let out = b.ok(&["run", "--batch", "--no-http", file], b"");
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));

    let mut child = b.spawn(&["run", "--no-http", file]);
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(err).read_line(&mut first);
        let _ = tx.send(first);
    });
    // A run that says nothing goes on quietly: a minute of silence fails the test.
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_default();
    signal(&child, "INT");
    let _ = wait_for_exit(child, std::time::Duration::from_secs(30));
    assert!(
        first.starts_with(&format!(
            "{file}:4:13: warning: reduce `r` never sees a batch end in a continuous run"
        )),
        "{first}"
    );
}

/// Every stage that parses values says the same of a value that is not JSON, in its
/// dead letter: `value is not JSON: <what> at byte <N>`.
#[test]
fn not_json_reads_the_same_from_every_kind_of_stage() {
    for b in Backend::all() {
        let t = |n: &str| b.topic(n);
        let name = format!("nj{}", b.suffix);
        let kinds = [
            (
                "f",
                format!(
                    "{{kind: filter, from: {}, to: {}, where: '.a == 1'}}",
                    t("f-in"),
                    t("f-out")
                ),
            ),
            (
                "s",
                format!(
                    "{{kind: splitter, from: {}, routes: [{{when: '.a == 1', to: {}}}], default: {}}}",
                    t("s-in"),
                    t("s-a"),
                    t("s-b")
                ),
            ),
            (
                "sh",
                format!(
                    "{{kind: sharder, from: {}, to: [{}, {}], by: .a}}",
                    t("sh-in"),
                    t("sh0"),
                    t("sh1")
                ),
            ),
            (
                "m",
                format!(
                    "{{kind: map, from: {}, to: {}, expr: '{{b: .a}}'}}",
                    t("m-in"),
                    t("m-out")
                ),
            ),
            (
                "e",
                format!(
                    "{{kind: exec, from: {}, to: {}, command: [cat]}}",
                    t("e-in"),
                    t("e-out")
                ),
            ),
            (
                "jk",
                format!(
                    "{{kind: join, from: [{}, {}], to: {}, mode: key, key: .a}}",
                    t("jk-in"),
                    t("e-out"),
                    t("jk-out")
                ),
            ),
            (
                "jz",
                format!(
                    "{{kind: join, from: [{}, {}], to: {}, mode: zip}}",
                    t("jz-in"),
                    t("e-out"),
                    t("jz-out")
                ),
            ),
            (
                "r",
                format!(
                    "{{kind: reduce, from: {}, to: {}, reducer: sum, of: .a}}",
                    t("r-in"),
                    t("r-out")
                ),
            ),
        ];
        let inputs: Vec<String> = kinds.iter().map(|(k, _)| t(&format!("{k}-in"))).collect();
        let mut yaml = format!(
            "pipeline: {name}\ntopics:\n  {}: 1\nstages:\n  copy: {{kind: copier, from: {}, to: [{}]}}\n",
            t("in"),
            t("in"),
            inputs.join(", ")
        );
        for (k, spec) in &kinds {
            yaml.push_str(&format!("  {k}: {spec}\n"));
        }
        let file = b.data_dir().join("nj.yaml");
        std::fs::write(&file, yaml).expect("write");
        b.ok(&["topics", "create", "--topic", &t("in")], b"");
        b.ok(&["produce", "--topic", &t("in")], b"not json\n");
        b.root_ok(
            &["run", "--batch", "--no-http", file.to_str().expect("path")],
            b"",
        );
        let dlq = format!("{name}.dlq");
        let letters = b.records_in(&dlq);
        let out = b.ok(
            &[
                "consume",
                "--topic",
                &dlq,
                "--from-beginning",
                "--max-messages",
                &letters.to_string(),
                "--timeout-ms",
                "20000",
                "--property",
                "print.headers=true",
            ],
            b"",
        );
        let mut said: Vec<(String, String)> = stdout(&out)
            .lines()
            .map(|l| {
                let header = |k: &str| {
                    l.split(&format!("millrace.{k}:"))
                        .nth(1)
                        .and_then(|v| v.split([',', '\t']).next())
                        .unwrap_or("")
                        .to_owned()
                };
                (header("stage"), header("error"))
            })
            .collect();
        said.sort();
        let mut want: Vec<(String, String)> = kinds
            .iter()
            .map(|(k, _)| {
                (
                    k.to_string(),
                    "value is not JSON: expected ident at byte 1".to_owned(),
                )
            })
            .collect();
        want.sort();
        assert_eq!(said, want, "[{}] {}", b.name, stdout(&out));
    }
}

/// A partition the topic lacks, or a misspelt --property, says what there is.
#[test]
fn partitions_and_properties_are_named_from_what_exists() {
    let b = Backend::embedded();
    b.ok(&["topics", "create", "--topic", "x"], b"");
    let no_partition =
        "error: topic 'x' has no partition 5\n  hint: it has 1 partition: --partition 0\n";
    for args in [
        &["produce", "--topic", "x", "--partition", "5"][..],
        &[
            "consume",
            "--topic",
            "x",
            "--partition",
            "5",
            "--timeout-ms",
            "100",
        ],
    ] {
        assert_eq!(stderr(&b.run(args, b"a\n")), no_partition, "{args:?}");
    }
    let out = b.run(
        &["consume", "--topic", "x", "--property", "print.keys=true"],
        b"",
    );
    assert!(
        stderr(&out).starts_with(
            "error: unknown --property 'print.keys'\n  hint: did you mean print.key? known: "
        ),
        "{}",
        stderr(&out)
    );
}
