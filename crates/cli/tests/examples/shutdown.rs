//! Stopping a continuous run with SIGTERM: it commits what it did, loses nothing,
//! writes nothing twice, and finishes the batch in hand.

use super::*;

/// SIGTERM stops a continuous run cleanly: exit 0, offsets committed, so a second run
/// processes only what came after — no record copied twice.
#[test]
fn sigterm_commits_and_the_next_run_does_not_reprocess() {
    for b in Backend::all() {
        let file = b.example("copier.yaml", COPIER_TOPICS);
        let file = path_str(&file);
        let (src, dst) = (b.topic("photos-topic"), b.topic("photos-topic-2"));
        let first: Vec<String> = (0..100).map(|i| format!("photo-{i:03}.jpg")).collect();
        let second: Vec<String> = (100..150).map(|i| format!("photo-{i:03}.jpg")).collect();

        let run = Running::held(&b, &["run", file]);
        wait_for_topic(&b, &dst);
        b.ok(&["produce", "--topic", &src], first.join("\n").as_bytes());
        // Quiet: everything copied and committed before the signal.
        wait_until(Duration::from_secs(60), "the copier to commit", || {
            stdout(&b.run(&["status", file], b"")).contains("lag 0") && b.records_in(&dst) == 100
        });
        let (ok, err) = run.stop("TERM");
        assert!(ok, "[{}] SIGTERM should exit 0:\n{err}", b.name);
        assert!(err.contains("stopping"), "{err}");
        assert_eq!(
            parse_summary(&err)["copy"].1,
            [100, 100, 0, 0, 100],
            "{err}"
        );
        let group = format!("{}.copy", b.topic("copier"));
        assert_eq!(
            inspect::committed_total(&b, &group, &src),
            100,
            "[{}] the group committed everything it copied",
            b.name
        );

        b.ok(&["produce", "--topic", &src], second.join("\n").as_bytes());
        let out = b.root_ok(&["run", file, "--batch", "--no-http"], b"");
        let err = stderr(&out);
        assert_eq!(
            parse_summary(&err)["copy"].1,
            [50, 50, 0, 0, 50],
            "[{}] the second run starts at the committed offset:\n{err}",
            b.name
        );
        let mut got = b.read_exactly(&dst, 150);
        got.sort();
        let want: Vec<String> = first.iter().chain(&second).cloned().collect();
        assert_eq!(got, want, "[{}] each record once", b.name);
    }
}

/// SIGTERM in the middle of a stream, then a `--batch` run for the rest: every record
/// copied exactly once (nothing lost, no output written twice), and everything committed.
#[test]
fn sigterm_under_load_loses_nothing_and_writes_nothing_twice() {
    for b in Backend::all() {
        let file = b.example("copier.yaml", COPIER_TOPICS);
        let file = path_str(&file);
        let (src, dst) = (b.topic("photos-topic"), b.topic("photos-topic-2"));
        let n = 30_000;
        // Create the topics with a batch run (empty), then load the input.
        b.root_ok(&["run", file, "--batch", "--no-http"], b"");
        let input: String = (0..n).map(|i| format!("r{i:06}\n")).collect();
        b.ok(&["produce", "--topic", &src], input.as_bytes());

        let run = Running::held(&b, &["run", file]);
        wait_until(Duration::from_secs(60), "the first copies", || {
            b.records_in(&dst) > 0
        });
        let (ok, err) = run.stop("TERM");
        assert!(ok, "[{}] SIGTERM should exit 0:\n{err}", b.name);
        b.root_ok(&["run", file, "--batch", "--no-http"], b"");

        let total = usize::try_from(b.records_in(&dst)).expect("count");
        let got = b.read_exactly(&dst, total);
        let distinct: BTreeSet<&String> = got.iter().collect();
        assert_eq!(distinct.len(), n, "[{}] every record copied", b.name);
        assert_eq!(total, n, "[{}] {} records copied twice", b.name, total - n);
        inspect::assert_no_duplicates(&b, &[&dst], b.name);
        let group = format!("{}.copy", b.topic("copier"));
        assert_eq!(
            inspect::committed_total(&b, &group, &src),
            n as i64,
            "[{}] everything copied is committed",
            b.name
        );
    }
}

/// An exec worker that takes its time: it notes each item it starts in the file named
/// by its argument, then answers after 20 ms.
const SLOW_WORKER: &str = r#"
import json, sys, time
progress = open(sys.argv[1], "a")
for line in sys.stdin:
    req = json.loads(line)
    progress.write("started\n"); progress.flush()
    time.sleep(0.02)
    print(json.dumps({"id": req["id"], "out": [req["value"]]}), flush=True)
"#;

/// SIGTERM while an exec stage is in the middle of a batch: the run finishes the batch
/// in hand, produces it and commits it before exiting 0. Checked through the group's
/// committed offsets, which lineage skipping on the next run could not hide.
#[test]
fn sigterm_mid_batch_finishes_the_batch_in_hand_and_commits_it() {
    for b in Backend::all() {
        let dir = b.data_dir();
        let worker = dir.join("slow.py");
        std::fs::write(&worker, SLOW_WORKER).expect("write worker");
        let progress = dir.join("progress");
        let started = || {
            std::fs::read_to_string(&progress)
                .map(|s| s.lines().count())
                .unwrap_or(0)
        };
        let (pipeline, jobs, done) = (b.topic("sigterm"), b.topic("jobs"), b.topic("done"));
        let file = dir.join("sigterm.yaml");
        std::fs::write(
            &file,
            format!(
                "pipeline: {pipeline}\ntopics:\n  {jobs}: {{partitions: 1}}\nstages:\n  work:\n    kind: exec\n    from: {jobs}\n    to: {done}\n    command: [python3, {}, {}]\n",
                worker.display(),
                progress.display()
            ),
        )
        .expect("write pipeline");
        let file = path_str(&file);
        let group = format!("{pipeline}.work");
        b.root_ok(&["run", file, "--batch", "--no-http"], b"");

        // A first small batch, done and committed; then a big one the stage takes in
        // hand and is signalled in the middle of.
        let run = Running::held(&b, &["run", file]);
        let first: String = (0..5).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        b.ok(&["produce", "--topic", &jobs], first.as_bytes());
        wait_until(Duration::from_secs(60), "the first batch", || {
            b.records_in(&done) == 5
        });
        let more: String = (5..305).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        b.ok(&["produce", "--topic", &jobs], more.as_bytes());
        // Mid-batch: the worker has begun items whose outputs are not written yet
        // (read in that order, so the items counted were begun before the outputs were).
        let mut at_signal = 0;
        wait_until(
            Duration::from_secs(60),
            "the worker in the middle of a batch",
            || {
                at_signal = started();
                at_signal > 5 && b.records_in(&done) < at_signal as i64
            },
        );
        let (ok, err) = run.stop("TERM");
        assert!(ok, "[{}] SIGTERM should exit 0:\n{err}", b.name);

        let outputs = b.records_in(&done);
        assert!(
            outputs >= at_signal as i64,
            "[{}] {outputs} outputs after the stop: the batch in hand ({at_signal} items begun) was abandoned\n{err}",
            b.name
        );
        assert_eq!(
            inspect::committed_total(&b, &group, &jobs),
            outputs,
            "[{}] what was produced is what was committed\n{err}",
            b.name
        );

        // The rest, in a batch run: every item once, all committed.
        b.root_ok(&["run", file, "--batch", "--no-http"], b"");
        let got = b.read_exactly(&done, 305);
        let distinct: BTreeSet<&String> = got.iter().collect();
        assert_eq!(distinct.len(), 305, "[{}] every item once", b.name);
        inspect::assert_no_duplicates(&b, &[&done], b.name);
        assert_eq!(inspect::committed_total(&b, &group, &jobs), 305);
    }
}
