//! Kafka faults on the three-broker cluster (`scripts/kafka.sh start-cluster`, reached
//! through `MILLRACE_TEST_CLUSTER_BOOTSTRAP`; under CI=true a missing cluster fails the
//! run). Topics have replication factor 3 and min.insync.replicas=2, as the book's.
//! (a) the leader of a partition is killed (SIGKILL) mid-run and restarted; (b) one of
//! two `millrace run` instances is stopped mid-run and its partitions move to the other.
//! Every record must reach the output; duplicates are counted (at-least-once).

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Backend, repo_root, signal, wait_until};
use crate::support::{drain_stderr, figure, heavy, is_ci, knob, no_panic, tail};

fn cluster() -> Option<String> {
    match std::env::var("MILLRACE_TEST_CLUSTER_BOOTSTRAP") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            assert!(
                !is_ci(),
                "CI=true but MILLRACE_TEST_CLUSTER_BOOTSTRAP is not set: start the cluster \
                 (scripts/kafka.sh start-cluster) and export it"
            );
            eprintln!("MILLRACE_TEST_CLUSTER_BOOTSTRAP unset: Kafka cluster fault tests not run");
            None
        }
    }
}

/// Where scripts/kafka.sh keeps the cluster's nodes (node<id>/kafka.pid, server.log).
fn cluster_run_dir() -> PathBuf {
    let cache = std::env::var("KAFKA_HOME_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".kafka"));
    cache.join("run").join("cluster")
}

fn create_replicated(b: &Backend, topic: &str, partitions: u32) {
    b.ok(
        &[
            "topics",
            "create",
            "--topic",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            "3",
            "--config",
            "min.insync.replicas=2",
        ],
        b"",
    );
}

fn copier_file(b: &Backend, name: &str, from: &str, partitions: u32, to: &str) -> PathBuf {
    let path = b.data_dir().join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "pipeline: {name}\ntopics:\n  {from}: {{partitions: {partitions}}}\nstages:\n  copy:\n    kind: copier\n    from: {from}\n    to: [{to}]\n"
        ),
    )
    .expect("write pipeline");
    path
}

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

fn produce_n(b: &Backend, topic: &str, n: u64, tag: &str) {
    let mut s = String::with_capacity(n as usize * 16);
    for i in 0..n {
        s.push_str(&format!("{tag}-{i}\n"));
    }
    let f = b.data_dir().join(format!("{topic}.in"));
    std::fs::write(&f, s).expect("write input");
    b.ok(
        &[
            "produce",
            "--topic",
            topic,
            "--file",
            f.to_str().expect("path"),
        ],
        b"",
    );
}

/// Reads `topic` whole and checks every `tag-i` for i < n is there; returns duplicates.
fn every_record_once_or_more(b: &Backend, topic: &str, n: u64, tag: &str) -> u64 {
    let total = b.records_in(topic);
    let out = b.ok(
        &[
            "consume",
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            &total.to_string(),
            "--timeout-ms",
            "30000",
        ],
        b"",
    );
    let mut seen: HashMap<String, u64> = HashMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        *seen.entry(l.to_string()).or_insert(0) += 1;
    }
    let missing: Vec<String> = (0..n)
        .map(|i| format!("{tag}-{i}"))
        .filter(|v| !seen.contains_key(v))
        .collect();
    assert!(
        missing.is_empty(),
        "LOST {} of {n} records, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(
        seen.len() as u64,
        n,
        "values that were never produced appeared"
    );
    seen.values().map(|c| c - 1).sum()
}

/// The leader broker id of `topic`'s partition 0, from `millrace topics describe`.
fn leader(b: &Backend, topic: &str) -> Option<i32> {
    let out = b.run(&["topics", "describe", "--topic", topic], b"");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("Partition: 0\t"))
        .and_then(|l| l.split("Leader: ").nth(1))
        .and_then(|r| r.split('\t').next())
        .and_then(|id| id.trim().parse().ok())
}

/// A broker killed with SIGKILL; restarted with the same command line when dropped (so
/// a failing test still gives the cluster its node back).
struct KilledBroker {
    node_dir: PathBuf,
    argv: Vec<String>,
    cwd: PathBuf,
    restarted: bool,
}

impl KilledBroker {
    fn kill(node: i32) -> KilledBroker {
        let node_dir = cluster_run_dir().join(format!("node{node}"));
        let pid: i32 = std::fs::read_to_string(node_dir.join("kafka.pid"))
            .unwrap_or_else(|e| panic!("{}: {e}", node_dir.display()))
            .trim()
            .parse()
            .expect("pid");
        let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
            .expect("broker cmdline")
            .split(|&c| c == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("broker cwd");
        let ok = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -9 {pid}");
        let gone = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists()
            && gone.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        KilledBroker {
            node_dir,
            argv,
            cwd,
            restarted: false,
        }
    }

    fn restart(&mut self) {
        if self.restarted {
            return;
        }
        self.restarted = true;
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.node_dir.join("server.log"))
            .expect("server.log");
        let child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0) // outlives this test, as scripts/kafka.sh's nodes do
            .spawn()
            .expect("restart broker");
        std::fs::write(self.node_dir.join("kafka.pid"), child.id().to_string()).expect("pid file");
        std::mem::forget(child);
    }
}

impl Drop for KilledBroker {
    fn drop(&mut self) {
        self.restart();
    }
}

#[test]
fn kafka_leader_killed_mid_run_loses_nothing() {
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
    let dups = every_record_once_or_more(&b, &dst, n, "leader");
    figure(
        "kafka_leader_kill",
        &[
            ("records", n.to_string()),
            ("brokers_killed", "1".into()),
            ("copied_at_kill", copied_at_kill.to_string()),
            ("duplicates", dups.to_string()),
            ("lost", "0".into()),
        ],
    );
}

#[test]
fn kafka_instance_stopped_mid_run_its_partitions_move_to_the_other() {
    let Some(bootstrap) = cluster() else { return };
    let _heavy = heavy();
    let n = knob("MILLRACE_REL_KAFKA_RECORDS", 200_000, 1_000_000);
    let b = Backend::kafka(bootstrap);
    let (src, dst) = (b.topic("rel-two-src"), b.topic("rel-two-dst"));
    create_replicated(&b, &src, 6);
    create_replicated(&b, &dst, 6);
    let file = copier_file(&b, &b.topic("rel-two"), &src, 6, &dst);
    let f = file.to_str().expect("path");
    let mut a = b.spawn(&["run", f, "--no-http"]);
    let a_err = drain_stderr(&mut a);
    let mut c = b.spawn(&["run", f, "--no-http"]);
    let c_err = drain_stderr(&mut c);
    std::thread::sleep(Duration::from_secs(3)); // both join the group
    produce_n(&b, &src, n, "two");
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
    // B alone must finish the job.
    wait_until(
        Duration::from_secs(180),
        "instance B to copy everything",
        || b.records_in(&dst) >= n as i64,
    );
    std::thread::sleep(Duration::from_secs(2));
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
    let dups = every_record_once_or_more(&b, &dst, n, "two");
    figure(
        "kafka_instance_stopped",
        &[
            ("records", n.to_string()),
            ("instances_stopped", "1".into()),
            ("copied_at_stop", at_stop.to_string()),
            ("duplicates", dups.to_string()),
            ("lost", "0".into()),
        ],
    );
}
