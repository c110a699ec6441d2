//! The CLI as a good Unix tool: a closed pipe is a quiet, normal end; no colour off a
//! terminal or under `NO_COLOR`; a Kafka client's repeated complaints folded into one
//! line per condition; and a data directory that is never made behind the user's back.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

/// Writes `text` to `dir/name`; the path, as text for a command line.
fn write_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("path").to_owned()
}

/// Runs `millrace ARGS` with its standard output closed before it writes (as
/// `millrace … | true`), and returns its status and standard error.
fn into_closed_pipe(b: &Backend, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = b
        .cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    (out.status, stderr(&out))
}

/// A closed pipe ends every command that writes to standard output quietly, with 0.
#[test]
fn a_closed_pipe_is_a_quiet_normal_exit_for_every_command() {
    let b = Backend::embedded();
    for t in ["a", "b", "c"] {
        b.ok(&["topics", "create", "--topic", t], b"");
    }
    let file = &write_file(
        b.data_dir(),
        "p.yaml",
        "pipeline: p\ntopics: {a: 1}\nstages:\n  c: {kind: copier, from: a, to: b}\n",
    );
    for args in [
        &["status"][..],
        &["status", file],
        &["topics", "list"],
        &["topics", "describe", "--topic", "a"],
        &["validate", file],
        &["graph", file],
        &["graph", file, "--format", "json"],
    ] {
        let (status, err) = into_closed_pipe(&b, args);
        assert!(
            status.success(),
            "millrace {args:?}: {status}; stderr: {err}"
        );
        assert_eq!(err, "", "millrace {args:?} says nothing on a closed pipe");
    }
}

/// `millrace consume … | head -1`: the reader goes after one line of 100 000.
#[test]
fn consume_into_head_ends_quietly() {
    let b = Backend::embedded();
    b.ok(&["topics", "create", "--topic", "many"], b"");
    let input: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
    b.ok(&["produce", "--topic", "many"], input.as_bytes());
    let mut child = b
        .cmd()
        .args([
            "consume",
            "--topic",
            "many",
            "--from-beginning",
            "--timeout-ms",
            "2000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read");
    assert_eq!(first, "line 0\n");
    // The reader is gone; the rest of the 100 000 lines meet a closed pipe.
    let out = wait_for_exit(child, std::time::Duration::from_secs(60));
    assert!(out.status.success(), "exit status {}", out.status);
    assert_eq!(stderr(&out), "", "nothing on stderr, not even the total");
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// librdkafka retries a closed port every few milliseconds and logs each attempt:
/// hundreds of lines in a few seconds. They come out as one line per condition, one
/// line of counts, and the error that says what was tried.
#[test]
fn kafka_at_a_closed_port_is_a_few_lines_and_a_plain_error() {
    let b = Backend::embedded();
    let at = format!("127.0.0.1:{}", closed_port());
    let out = b.run(
        &[
            "--bootstrap-server",
            &at,
            "--connect-timeout-ms",
            "4000",
            "topics",
            "list",
        ],
        b"",
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() <= 7, "{} lines on stderr:\n{err}", lines.len());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("librdkafka: repeated and not shown: ") && l.contains(" times")),
        "the repeats are counted in one line:\n{err}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("error: "))
            .copied()
            .collect::<Vec<_>>(),
        [format!(
            "error: cannot reach Kafka at {at} after 4 s: connection refused"
        )],
        "{err}"
    );
    assert!(
        lines.last().is_some_and(|l| l.starts_with("  hint: ")),
        "{err}"
    );
    // The same lines, all the same, with no colour: standard error is not a terminal.
    assert!(!err.contains("\x1b["), "colour off a terminal:\n{err:?}");
}

/// `script` runs a command on a pseudo-terminal; its output is what the terminal showed.
fn on_a_terminal(args: &[&str], no_color: bool) -> String {
    let mut line = shell_quote(&bin().display().to_string());
    for a in args {
        line.push(' ');
        line.push_str(&shell_quote(a));
    }
    let mut c = Command::new("script");
    c.args(["-qec", &line, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("MILLRACE_BOOTSTRAP")
        .env("TERM", "xterm");
    if no_color {
        c.env("NO_COLOR", "1");
    }
    let out = c.stdin(Stdio::null()).output().expect("run script(1)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// On a terminal the log lines and clap's messages are coloured, unless `NO_COLOR` is
/// set; then nothing is.
#[test]
fn no_color_turns_colour_off_on_a_terminal() {
    let data = tempfile::tempdir().expect("tempdir");
    let at = format!("127.0.0.1:{}", closed_port());
    let data_dir = data.path().to_str().expect("path");
    let kafka = [
        "--data",
        data_dir,
        "--bootstrap-server",
        &at,
        "--connect-timeout-ms",
        "1000",
        "topics",
        "list",
    ];
    let unknown_flag = ["--no-such-flag"];
    for args in [&kafka[..], &unknown_flag[..]] {
        let coloured = on_a_terminal(args, false);
        assert!(
            coloured.contains("\x1b["),
            "a terminal gets colour ({args:?}): {coloured:?}"
        );
        let plain = on_a_terminal(args, true);
        assert!(
            !plain.contains("\x1b[") && plain.contains("error"),
            "NO_COLOR=1 ({args:?}): {plain:?}"
        );
    }
}

fn missing_dir_error(out: &std::process::Output, dir: &std::path::Path) -> String {
    assert!(!out.status.success());
    let err = stderr(out);
    assert!(
        err.starts_with(&format!("error: no data directory at {}\n", dir.display())),
        "{err}"
    );
    err
}

/// Commands that only read never create a data directory: a mistyped --data is an
/// error naming the directory (and the one it is close to), not an empty store.
#[test]
fn reading_commands_refuse_a_data_directory_that_does_not_exist() {
    let b = Backend::embedded();
    b.ok(&["topics", "create", "--topic", "t"], b"");
    let parent = tempfile::tempdir().expect("tempdir");
    let real = parent.path().join("millrace-data");
    std::fs::rename(b.data_dir(), &real).expect("move the store");
    let typo = parent.path().join("millrace-dta");
    let pipeline = &write_file(
        parent.path(),
        "p.yaml",
        "pipeline: p\ntopics: {t: 1}\nstages:\n  c: {kind: copier, from: t, to: u}\n",
    );
    for args in [
        &["topics", "list"][..],
        &["topics", "describe", "--topic", "t"],
        &["topics", "delete", "--topic", "t"],
        &["consume", "--topic", "t", "--timeout-ms", "100"],
        &["produce", "--topic", "t"],
        &["status"],
        &["status", pipeline],
    ] {
        let mut c = b.cmd();
        c.env("MILLRACE_DATA", &typo);
        let out = run_with(c, args, b"x\n");
        let err = missing_dir_error(&out, &typo);
        assert!(
            err.contains(&format!("hint: did you mean --data {}?", real.display())),
            "{args:?}: {err}"
        );
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
    // Far from any directory there: how to make one.
    let nowhere = parent.path().join("elsewhere");
    let mut c = b.cmd();
    c.env("MILLRACE_DATA", &nowhere);
    let err = missing_dir_error(&run_with(c, &["topics", "list"], b""), &nowhere);
    assert!(
        err.contains("hint: `millrace topics create` or `millrace run` creates it"),
        "{err}"
    );
}

/// `topics create` and `run` make a new data directory, and say so once.
#[test]
fn creating_a_data_directory_is_said_once() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("fresh");
    let b = Backend::embedded();
    let mut c = b.cmd();
    c.env("MILLRACE_DATA", &dir);
    let out = run_with(c, &["topics", "create", "--topic", "t"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Created topic t.\n");
    assert_eq!(
        stderr(&out),
        format!("millrace: created a new data directory {}\n", dir.display())
    );
    let mut c = b.cmd();
    c.env("MILLRACE_DATA", &dir);
    let out = run_with(c, &["topics", "create", "--topic", "u"], b"");
    assert_eq!(stderr(&out), "", "an existing directory is not news");

    let other = parent.path().join("for-the-pipeline");
    let file = &write_file(
        parent.path(),
        "p.yaml",
        "pipeline: p\ntopics: {a: 1}\nstages:\n  c: {kind: copier, from: a, to: b}\n",
    );
    let mut c = b.cmd();
    c.env("MILLRACE_DATA", &other);
    let out = run_with(c, &["run", "--batch", "--no-http", file], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with(&format!(
            "millrace: created a new data directory {}\n",
            other.display()
        )),
        "{}",
        stderr(&out)
    );
}
