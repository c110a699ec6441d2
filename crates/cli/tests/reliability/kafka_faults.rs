//! Kafka faults on the three-broker cluster (`scripts/kafka.sh start-cluster`, reached
//! through `MILLRACE_TEST_CLUSTER_BOOTSTRAP`; under CI=true a missing cluster fails the
//! run). Topics have replication factor 3 and min.insync.replicas=2, as the book's.
//! (a) the leader of a partition is killed (SIGKILL) mid-run and restarted; (b) one of
//! two `millrace run` instances is stopped mid-run and its partitions move to the other,
//! which copies the input that arrives after the stop.
//! Every record must reach the output exactly once: nothing lost, no output written
//! twice (by value, and by lineage).

use std::time::{Duration, Instant};

use crate::cluster::{
    KilledBroker, cluster, copier_file, create_replicated, describe_group,
    every_record_exactly_once, leader, produce_n, produce_range,
};
use crate::common::{Backend, signal, wait_until};
use crate::support::{drain_stderr, figure, heavy, knob, no_panic, tail};

/// Waits until `dst` holds more than `at_least` records. Returns false if a run exits
/// first or 90 s pass (the caller then fails with the runs' stderr).
fn wait_for_copies(
    b: &Backend,
    runs: &mut [&mut std::process::Child],
    dst: &str,
    at_least: i64,
) -> bool {
    let start = Instant::now();
    loop {
        for r in runs.iter_mut() {
            if r.try_wait().expect("try_wait").is_some() {
                return false;
            }
        }
        if b.records_in(dst) > at_least {
            return true;
        }
        if start.elapsed() > Duration::from_secs(90) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn kafka_leader_killed_mid_run_loses_nothing_and_copies_nothing_twice() {
    let Some(bootstrap) = cluster() else { return };
    let _heavy = heavy();
    let n = knob("MILLRACE_REL_KAFKA_RECORDS", 200_000, 1_000_000);
    let b = Backend::kafka(bootstrap);
    let (src, dst) = (b.topic("rel-src"), b.topic("rel-dst"));
    create_replicated(&b, &src, 3);
    create_replicated(&b, &dst, 3);
    produce_n(&b, &src, n, "leader");
    let file = copier_file(&b, &b.topic("rel-leader"), &src, 3, &dst);

    let mut run = b.spawn(&["run", file.to_str().expect("path"), "--batch", "--no-http"]);
    let err = drain_stderr(&mut run);
    if !wait_for_copies(&b, &mut [&mut run], &dst, (n / 10) as i64) {
        let _ = run.kill();
        panic!(
            "the copier did not start copying:\n{}",
            tail(&err.join().unwrap_or_default(), 30)
        );
    }
    let victim = leader(&b, &dst).expect("partition 0 has a leader");
    let copied_at_kill = b.records_in(&dst);
    let mut killed = KilledBroker::kill(victim);
    eprintln!("killed broker {victim} (leader of {dst}/0) with {copied_at_kill} of {n} copied");
    std::thread::sleep(Duration::from_secs(5));
    killed.restart();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = run.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(180) {
            let _ = run.kill();
            panic!(
                "the copier did not finish within 180 s after the leader came back:\n{}",
                tail(&err.join().unwrap_or_default(), 30)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let e = err.join().unwrap_or_default();
    no_panic("copier across a leader kill", &e);
    assert!(
        status.success(),
        "copier failed across the leader kill:\n{}",
        tail(&e, 30)
    );
    let checked = every_record_exactly_once(&b, &dst, n, "leader");
    figure(
        "kafka_leader_kill",
        &[
            ("records", n.to_string()),
            ("brokers_killed", "1".into()),
            ("copied_at_kill", copied_at_kill.to_string()),
            ("outputs_checked_by_lineage", checked.to_string()),
            ("duplicates", "0".into()),
            ("lost", "0".into()),
        ],
    );
}

#[test]
fn kafka_instance_stopped_mid_run_its_partitions_move_to_the_other_exactly_once() {
    let Some(bootstrap) = cluster() else { return };
    let _heavy = heavy();
    let n = knob("MILLRACE_REL_KAFKA_RECORDS", 200_000, 1_000_000);
    let b = Backend::kafka(bootstrap.clone());
    let (src, dst) = (b.topic("rel-two-src"), b.topic("rel-two-dst"));
    create_replicated(&b, &src, 6);
    create_replicated(&b, &dst, 6);
    let file = copier_file(&b, &b.topic("rel-two"), &src, 6, &dst);
    let f = file.to_str().expect("path");
    let mut a = b.spawn(&["run", f, "--no-http"]);
    let a_err = drain_stderr(&mut a);
    let mut c = b.spawn(&["run", f, "--no-http"]);
    let c_err = drain_stderr(&mut c);
    // Both in the group, each with some of the six partitions, before any input: the
    // partitions A has when it stops must move.
    let group = format!("{}.copy", b.topic("rel-two"));
    let start = Instant::now();
    loop {
        let view = describe_group(&bootstrap, &group);
        if matches!(&view, Ok(v) if v.state == "Stable" && v.members == 2) {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = a.kill();
            let _ = c.kill();
            let view = match view {
                Ok(v) => format!("{} with {} members", v.state, v.members),
                Err(e) => format!("not described: {e}"),
            };
            panic!(
                "the group of both instances is not stable after 120 s (last seen: {view})\n\
                 instance A:\n{}\ninstance B:\n{}",
                tail(&a_err.join().unwrap_or_default(), 30),
                tail(&c_err.join().unwrap_or_default(), 30)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Half the input now; the other half once A is gone, so that B must copy records of
    // the partitions A had.
    produce_range(&b, &src, 0..n / 2, "two");
    if !wait_for_copies(&b, &mut [&mut a, &mut c], &dst, (n / 5) as i64) {
        let _ = a.kill();
        let _ = c.kill();
        panic!(
            "copying did not start\ninstance A:\n{}\ninstance B:\n{}",
            tail(&a_err.join().unwrap_or_default(), 20),
            tail(&c_err.join().unwrap_or_default(), 20)
        );
    }
    let at_stop = b.records_in(&dst);
    signal(&a, "TERM");
    let a_out = {
        let start = Instant::now();
        loop {
            if let Some(s) = a.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "instance A ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let ae = a_err.join().unwrap_or_default();
    no_panic("instance A", &ae);
    assert!(
        a_out.success(),
        "instance A exited {a_out} on SIGTERM:\n{}",
        tail(&ae, 20)
    );
    produce_range(&b, &src, n / 2..n, "two");
    // B alone must finish the job.
    wait_until(
        Duration::from_secs(180),
        "instance B to copy everything",
        || b.records_in(&dst) >= n as i64,
    );
    signal(&c, "TERM");
    let start = Instant::now();
    let c_status = loop {
        if let Some(s) = c.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "instance B ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let ce = c_err.join().unwrap_or_default();
    no_panic("instance B", &ce);
    assert!(
        c_status.success(),
        "instance B: {c_status}\n{}",
        tail(&ce, 20)
    );
    let checked = every_record_exactly_once(&b, &dst, n, "two");
    figure(
        "kafka_instance_stopped",
        &[
            ("records", n.to_string()),
            ("instances_stopped", "1".into()),
            ("copied_at_stop", at_stop.to_string()),
            ("outputs_checked_by_lineage", checked.to_string()),
            ("duplicates", "0".into()),
            ("lost", "0".into()),
        ],
    );
}
