//! Safety: exec never hands record content to a shell; the data directory is private to
//! its user. (HTTP binds to loopback by default: crates/cli/tests/http.rs
//! `default_bind_is_loopback`. Secrets stay out of errors, logs and /api:
//! crates/broker/tests/conformance_kafka.rs `secrets_never_appear_in_errors` and
//! crates/cli/tests/http.rs `kafka_properties_stay_out_of_graph_output`.)

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::common::{Backend, stderr};
use crate::support::{figure, no_panic, tail, wait_with_deadline};

#[test]
fn exec_never_runs_record_content_through_a_shell() {
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let canary = |n: u32| std::path::PathBuf::from(format!("/tmp/pwned-{tag}-{n}"));
    let attacks = [
        format!("$(touch {})", canary(1).display()),
        format!("; touch {}", canary(2).display()),
        format!("`touch {}`", canary(3).display()),
        format!("| touch {}", canary(4).display()),
        format!("&& touch {} &&", canary(5).display()),
        format!("\\\"; touch {}; echo \\\"", canary(6).display()),
        format!("'$(touch {})'", canary(7).display()),
        format!("\\n touch {}", canary(8).display()),
    ];
    let b = Backend::embedded();
    let file = b.data_dir().join("shell.yaml");
    std::fs::write(
        &file,
        "pipeline: shell\ntopics:\n  in: {partitions: 1}\nstages:\n  up:\n    kind: exec\n    from: in\n    to: upper\n    command: [sh, examples/workers/upper.sh]\n  echo:\n    kind: exec\n    from: in\n    to: echoed\n    command: [python3, examples/workers/echo.py]\n",
    )
    .expect("write");
    let f = file.to_str().expect("path");
    b.root_ok(&["run", f, "--batch", "--no-http"], b"");
    // Each attack as a JSON string value, and as a key (parse.key) in a second round.
    let values: String = attacks
        .iter()
        .map(|a| format!("{}\n", serde_json::json!({ "cmd": a })))
        .collect();
    b.ok(&["produce", "--topic", "in"], values.as_bytes());
    let keyed: String = attacks
        .iter()
        .map(|a| {
            format!(
                "{}\t{}\n",
                a.replace('\t', " "),
                serde_json::json!({ "k": 1 })
            )
        })
        .collect();
    b.ok(
        &["produce", "--topic", "in", "--property", "parse.key=true"],
        keyed.as_bytes(),
    );
    let n = attacks.len() * 2;
    let child = b.spawn(&["run", f, "--batch", "--no-http"]);
    let out = wait_with_deadline(child, Duration::from_secs(120), "exec shell test");
    let err = stderr(&out);
    no_panic("exec shell test", &err);
    assert!(out.status.success(), "{}", tail(&err, 20));
    assert_eq!(
        b.records_in("echoed"),
        n as i64,
        "echo.py answered every item"
    );
    assert_eq!(
        b.records_in("upper"),
        n as i64,
        "upper.sh answered every item"
    );
    let echoed = crate::kill_loop::read_all(&b, "echoed");
    for a in &attacks {
        assert!(
            echoed
                .iter()
                .any(|v| v.contains(&serde_json::json!(a).to_string()[1..10])),
            "the attack string did not come through unchanged: {a}"
        );
    }
    for i in 1..=attacks.len() as u32 {
        let c = canary(i);
        let hit = c.exists();
        let _ = std::fs::remove_file(&c);
        assert!(
            !hit,
            "record content ran as a shell command: {} exists",
            c.display()
        );
    }
    figure(
        "exec_no_shell",
        &[("attacks", n.to_string()), ("files_created", "0".into())],
    );
}

#[test]
fn data_directory_is_created_private_to_its_user() {
    let parent = tempfile::tempdir().expect("tempdir");
    let pipeline = parent.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        "pipeline: p\ntopics:\n  a: {partitions: 1}\nstages:\n  c: {kind: copier, from: a, to: [b]}\n",
    )
    .expect("write pipeline");
    // The commands that make a data directory make it mode 0700.
    for (i, args) in [
        vec!["topics", "create", "--topic", "t"],
        vec![
            "run",
            pipeline.to_str().expect("path"),
            "--batch",
            "--no-http",
        ],
    ]
    .iter()
    .enumerate()
    {
        let data = parent.path().join(format!("fresh-{i}/nested/data"));
        let b = Backend::embedded();
        let mut c = b.cmd();
        c.env("MILLRACE_DATA", &data);
        let out = crate::common::run_with(c, args, b"");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let mode = std::fs::metadata(&data)
            .expect("data dir")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(
            mode,
            0o700,
            "{args:?} made {} with mode {mode:o}",
            data.display()
        );
    }
    // One that only looks makes none, and says so.
    let data = parent.path().join("fresh-list/data");
    let b = Backend::embedded();
    let mut c = b.cmd();
    c.env("MILLRACE_DATA", &data);
    let out = crate::common::run_with(c, &["topics", "list"], b"");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no data directory"),
        "{}",
        stderr(&out)
    );
    assert!(!data.exists(), "`topics list` made {}", data.display());
}
