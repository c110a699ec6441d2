//! Two `millrace run` instances of one pipeline on one data directory: the first holds
//! the store and runs its stages in-process, the second reaches it over Kafka's
//! protocol. Each stage's consumer group has both as members (an in-process member
//! of the store's group coordinator beside a Kafka client), they split every stage's
//! partitions, and together they process every record once: the outputs are exact.

mod common;
mod session;

use std::time::{Duration, Instant};

use common::{Backend, parse_summary, stdout};
use session::{Terminal, WAIT, wait_for_holder};

const PIPELINE: &str = "pipeline: shared\ntopics:\n  in: { partitions: 4 }\n  \
    mid: { partitions: 4 }\n  out: { partitions: 4 }\nstages:\n  \
    double: { kind: map, from: in, to: mid, expr: '{n: .n, twice: (.n * 2)}' }\n  \
    keep: { kind: filter, from: mid, to: out, where: '.twice == .n * 2' }\n";

const RUN: &[&str] = &["run", "shared.yaml", "--no-http"];

/// Records the pipeline is given, in produce calls of a hundred.
const RECORDS: usize = 2000;

/// How many members `millrace groups describe` shows for `group`, and its state.
fn members(b: &Backend, group: &str) -> Option<(String, usize)> {
    let out = b.run(&["groups", "describe", "--group", group], b"");
    let text = stdout(&out);
    text.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        match cols.as_slice() {
            [g, _strategy, state, n] if *g == group => Some((state.to_string(), n.parse().ok()?)),
            _ => None,
        }
    })
}

#[test]
fn two_runs_of_one_pipeline_share_its_partitions_and_process_every_record_once() {
    let b = Backend::embedded();
    let data = b.data_dir();
    std::fs::write(data.join("shared.yaml"), PIPELINE).expect("write the pipeline");
    let first = Terminal::start(&b, "first run", data, RUN);
    wait_for_holder(data, &[&first]);
    let second = Terminal::start(&b, "second run", data, RUN);
    // Both are members of each stage's group before any record comes, so no
    // rebalance moves a partition with records in flight.
    let start = Instant::now();
    for group in ["shared.double", "shared.keep"] {
        while members(&b, group) != Some(("Stable".to_string(), 2)) {
            assert!(
                start.elapsed() < WAIT,
                "{group}: {:?}\nfirst: {}\nsecond: {}",
                members(&b, group),
                first.stderr(),
                second.stderr()
            );
            first.assert_running();
            second.assert_running();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for chunk in 0..RECORDS / 100 {
        let lines: Vec<String> = (chunk * 100..chunk * 100 + 100)
            .map(|n| format!("{{\"n\":{n}}}"))
            .collect();
        b.ok(&["produce", "--topic", "in"], lines.join("\n").as_bytes());
    }
    let want = RECORDS.to_string();
    let out = b.ok(
        &[
            "consume",
            "--topic",
            "out",
            "--from-beginning",
            "--max-messages",
            &want,
            "--timeout-ms",
            "60000",
        ],
        b"",
    );
    let mut ns: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            let n = v["n"].as_u64().expect("n");
            assert_eq!(v["twice"].as_u64(), Some(n * 2), "{l}");
            n
        })
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..RECORDS as u64).collect::<Vec<_>>());

    // The second leaves first (its partitions go back to the first), then the first.
    let second = parse_summary(&second.stop_cleanly("INT"));
    let first = parse_summary(&first.stop_cleanly("INT"));
    for stage in ["double", "keep"] {
        let (a, b) = (first[stage].1[0], second[stage].1[0]);
        assert!(
            a > 0 && b > 0,
            "{stage}: both runs took part ({a} and {b} records)"
        );
        assert_eq!(a + b, RECORDS as u64, "{stage}: every record read once");
    }
    // Nothing more was written after the consumer above had read its fill.
    let status = stdout(&b.ok(&["status"], b""));
    assert!(
        status.contains(&format!("topic out: 4 partitions, {RECORDS} records")),
        "{status}"
    );
}
