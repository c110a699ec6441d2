//! Load: a producer faster than the pipeline for a sustained period. The pipeline reads
//! at its own pace from the log: when it is stopped, what it wrote is exactly a prefix
//! of each input partition, in order, once, and all of it committed. Memory and rates
//! are reported as figures, not limits: as limits they belong to `millrace bench
//! pipeline` (its `load:` rows), where a shared machine's timing is read as a ratio.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Backend, signal, stderr};
use crate::inspect::{assert_no_duplicates, committed_total, records};
use crate::support::{figure, heavy, knob, no_panic, tail, wait_with_deadline};

/// Resident memory split as /proc reports it: (VmRSS, RssAnon) in KiB. RssAnon is the
/// process's own heap; VmRSS also counts mapped segment files (page cache).
fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    Some((field("VmRSS:")?, field("RssAnon:")?))
}

const FILE: &str = "pipeline: load\ntopics:\n  in: {partitions: 2}\nstages:\n  slow:\n    kind: exec\n    from: in\n    to: out\n    command: [python3, examples/workers/echo.py]\n    workers: 1\n";

#[test]
fn fast_producer_slow_pipeline_stops_with_a_committed_ordered_prefix_of_its_input() {
    let _heavy = heavy();
    let secs = knob("MILLRACE_REL_LOAD_SECS", 20, 120);
    let b = Backend::embedded();
    let file = b.data_dir().join("load.yaml");
    std::fs::write(&file, FILE).expect("write");
    let f = file.to_str().expect("path");
    b.root_ok(&["run", f, "--batch", "--no-http"], b""); // creates the topics

    let mut run = b.spawn(&["run", f, "--no-http"]);
    let pid = run.id();
    let run_err = crate::support::drain_stderr(&mut run);
    // The run holds the store once its lock names it and it records the address it
    // serves the other commands at.
    let data = b.data_dir();
    crate::common::wait_until(Duration::from_secs(60), "the run to hold the store", || {
        std::fs::read_to_string(data.join("LOCK")).is_ok_and(|l| l.trim() == pid.to_string())
            && data.join("endpoint").exists()
    });

    // The producer reaches the store through the pipeline, which holds and serves it.
    let mut producer = b
        .root_cmd()
        .args(["produce", "--topic", "in"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn producer");
    let mut stdin = producer.stdin.take().expect("stdin");
    let until = Instant::now() + Duration::from_secs(secs);
    let writer = std::thread::spawn(move || {
        let mut n = 0u64;
        let mut buf = String::with_capacity(1 << 16);
        while Instant::now() < until {
            buf.clear();
            for _ in 0..1000 {
                buf.push_str(&format!("{{\"n\":{n},\"pad\":\"0123456789abcdef\"}}\n"));
                n += 1;
            }
            if stdin.write_all(buf.as_bytes()).is_err() {
                break;
            }
        }
        n
    });

    // Sample memory and progress once a second while the producer runs.
    let mut samples: Vec<(f64, u64, u64, i64)> = Vec::new(); // (t, rss, anon, out)
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        let (rss, anon) = memory(pid).expect("millrace run is alive");
        let out = b.records_in("out");
        samples.push((t0.elapsed().as_secs_f64(), rss, anon, out));
    }
    let produced = writer.join().expect("writer");
    let p = wait_with_deadline(producer, Duration::from_secs(60), "producer");
    no_panic("producer", &stderr(&p));
    assert!(p.status.success(), "producer failed: {}", stderr(&p));
    let backlog = b.records_in("in") - b.records_in("out");

    signal(&run, "TERM");
    let status = {
        let start = Instant::now();
        loop {
            if let Some(s) = run.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "run did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let err = run_err.join().unwrap_or_default();
    no_panic("run under load", &err);
    assert!(
        status.success(),
        "run under load exited {status}:\n{}",
        tail(&err, 20)
    );

    let n = samples.len();
    assert!(n >= 6, "too few samples: {samples:?}");
    let third = n / 3;
    let rate = |s: &[(f64, u64, u64, i64)]| -> f64 {
        let (a, b) = (s[0], s[s.len() - 1]);
        (b.3 - a.3) as f64 / (b.0 - a.0).max(0.001)
    };
    let first_rate = rate(&samples[..=third]);
    let last_rate = rate(&samples[n - third - 1..]);
    let max_rss = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let max_anon = samples.iter().map(|s| s.2).max().unwrap_or(0);
    let anon_first = samples[..third].iter().map(|s| s.2).max().unwrap_or(0);
    let anon_last = samples[n - third..].iter().map(|s| s.2).max().unwrap_or(0);
    figure(
        "load_backpressure",
        &[
            ("seconds", secs.to_string()),
            ("produced", produced.to_string()),
            ("processed", samples[n - 1].3.to_string()),
            ("backlog_at_end", backlog.to_string()),
            ("rate_first_third", format!("{first_rate:.0}")),
            ("rate_last_third", format!("{last_rate:.0}")),
            ("max_vmrss_kib", max_rss.to_string()),
            ("max_rss_anon_kib", max_anon.to_string()),
            ("rss_anon_first_third_kib", anon_first.to_string()),
            ("rss_anon_last_third_kib", anon_last.to_string()),
        ],
    );
    assert!(
        backlog > 0,
        "the producer was not faster than the pipeline; the test proves nothing"
    );
    // What the stage wrote: per input partition, its first records, in order, once.
    let inputs = records(&b, "in");
    let outputs = records(&b, "out");
    assert_no_duplicates(&b, &["out"], "load");
    for p in 0..2 {
        let want: Vec<&[u8]> = inputs
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.value.as_ref())
            .collect();
        let got: Vec<&[u8]> = outputs
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.value.as_ref())
            .collect();
        assert!(
            got.len() <= want.len() && got[..] == want[..got.len()],
            "partition {p}: the outputs are not the input's first {} records in order",
            got.len()
        );
    }
    assert_eq!(
        committed_total(&b, "load.slow", "in"),
        outputs.len() as i64,
        "what the stage wrote is what it committed"
    );
}
