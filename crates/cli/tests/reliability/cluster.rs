//! The three-broker cluster of `scripts/kafka.sh start-cluster` (ports 19092-19094,
//! `MILLRACE_TEST_CLUSTER_BOOTSTRAP`): finding it, making replicated topics, and taking
//! its brokers away — killed (SIGKILL, restarted with their own command line) or
//! stopped (SIGSTOP, a broker that hangs) — always given back when the guard drops, so
//! a failing test leaves the cluster whole.

use std::collections::{HashMap, HashSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Backend;
use crate::inspect::assert_no_duplicates;
use crate::kill_loop::{exactly_once, read_all};
use crate::support::{is_ci, tail};

/// The cluster's bootstrap; `None` (with a message) outside CI when it is not running.
pub fn cluster() -> Option<String> {
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
pub fn cluster_run_dir() -> PathBuf {
    millrace_testkit::kafka_home().join("run").join("cluster")
}

/// Waits (up to two minutes) until every broker of `bootstrap` takes connections and all
/// three are in the cluster's metadata with a controller, so a test starts, and leaves,
/// with the cluster whole.
pub fn wait_for_brokers(bootstrap: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for addr in bootstrap.split(',') {
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "broker {addr} is not back after two minutes"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let script = format!(
        "from kafka.admin import KafkaAdminClient\n\
         a = KafkaAdminClient(bootstrap_servers={bootstrap:?}.split(','))\n\
         c = a.describe_cluster()\n\
         assert len(c['brokers']) == 3 and c['controller_id'] != -1, c\n"
    );
    loop {
        let out = kafka_python(&script);
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster is not whole after two minutes: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The directory of node `node` (its `kafka.pid`, `server.log` and `data/`).
pub fn node_dir(node: i32) -> PathBuf {
    cluster_run_dir().join(format!("node{node}"))
}

/// The pid of node `node`'s broker, from its pid file.
pub fn node_pid(node: i32) -> i32 {
    let dir = node_dir(node);
    std::fs::read_to_string(dir.join("kafka.pid"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .trim()
        .parse()
        .expect("pid")
}

pub fn create_replicated(b: &Backend, topic: &str, partitions: u32) {
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

/// Creates single-partition `topics` whose replicas are `replicas` in that order (the
/// first is the leader), with min.insync.replicas=2. `millrace topics create` has no
/// replica placement, so Kafka's own admin API does it here (kafka-python).
pub fn create_placed(bootstrap: &str, topics: &[&str], replicas: [i32; 3]) {
    let script = format!(
        "from kafka.admin import KafkaAdminClient, NewTopic\n\
         a = KafkaAdminClient(bootstrap_servers={bootstrap:?}.split(','))\n\
         a.create_topics([NewTopic(t, -1, -1, replica_assignments={{0: {replicas:?}}}, \
         topic_configs={{'min.insync.replicas': '2'}}) for t in {topics:?}])\n"
    );
    let out = kafka_python(&script);
    assert!(
        out.status.success(),
        "creating {topics:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `script` in python3, which has kafka-python.
fn kafka_python(script: &str) -> std::process::Output {
    Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 (kafka-python)")
}

/// A consumer group's state ("Stable", "PreparingRebalance", …) and member count.
pub struct GroupView {
    pub state: String,
    pub members: usize,
}

/// Consumer group `group` as Kafka's own admin API describes it (kafka-python; 3.x
/// names it `describe_groups`, 2.x `describe_consumer_groups`), or what went wrong
/// asking.
pub fn describe_group(bootstrap: &str, group: &str) -> Result<GroupView, String> {
    let script = format!(
        "from kafka.admin import KafkaAdminClient\n\
         a = KafkaAdminClient(bootstrap_servers={bootstrap:?}.split(','))\n\
         g = {group:?}\n\
         d = a.describe_groups([g])[g] if hasattr(a, 'describe_groups') \
         else a.describe_consumer_groups([g])[0]\n\
         state, members = (d['group_state'], d['members']) if isinstance(d, dict) \
         else (d.state, d.members)\n\
         print(state, len(members))\n"
    );
    let out = kafka_python(&script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut words = stdout.split_whitespace();
    match (words.next(), words.next().and_then(|m| m.parse().ok())) {
        (Some(state), Some(members)) if out.status.success() => Ok(GroupView {
            state: state.to_string(),
            members,
        }),
        _ => Err(format!(
            "{stdout}{}",
            tail(&String::from_utf8_lossy(&out.stderr), 5)
        )),
    }
}

/// Bytes in the log of `topic`'s partition `partition` on node `node`: what the broker
/// appended, acknowledged or not.
pub fn log_bytes(node: i32, topic: &str, partition: i32) -> u64 {
    let dir = node_dir(node)
        .join("data")
        .join(format!("{topic}-{partition}"));
    std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .map(|e| e.metadata().map_or(0, |m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

pub fn copier_file(b: &Backend, name: &str, from: &str, partitions: u32, to: &str) -> PathBuf {
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

pub fn produce_n(b: &Backend, topic: &str, n: u64, tag: &str) {
    produce_range(b, topic, 0..n, tag);
}

/// Produces `tag-i` for every i of `range` into `topic`.
pub fn produce_range(b: &Backend, topic: &str, range: std::ops::Range<u64>, tag: &str) {
    let mut s = String::with_capacity(range.clone().count() * 16);
    for i in range {
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

/// The leader broker id of `topic`'s partition 0, from `millrace topics describe`.
pub fn leader(b: &Backend, topic: &str) -> Option<i32> {
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
pub struct KilledBroker {
    node_dir: PathBuf,
    argv: Vec<String>,
    cwd: PathBuf,
    restarted: bool,
}

impl KilledBroker {
    pub fn kill(node: i32) -> KilledBroker {
        let node_dir = node_dir(node);
        let pid = node_pid(node);
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

    pub fn restart(&mut self) {
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

/// A broker stopped with SIGSTOP (it hangs: connections stay open, nothing is read);
/// continued with SIGCONT when dropped.
pub struct StoppedBroker(i32);

impl StoppedBroker {
    pub fn stop(node: i32) -> StoppedBroker {
        let pid = node_pid(node);
        let ok = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -STOP {pid}");
        StoppedBroker(pid)
    }
}

impl Drop for StoppedBroker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// Reads `topic` whole and checks every `tag-i` for i < n is there exactly once, and
/// that no output was written twice; returns the records checked.
pub fn every_record_exactly_once(b: &Backend, topic: &str, n: u64, tag: &str) -> usize {
    let mut seen: HashMap<String, u64> = HashMap::new();
    for v in read_all(b, topic) {
        *seen.entry(v).or_insert(0) += 1;
    }
    let expected: HashSet<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    exactly_once(&seen, &expected, topic);
    assert_no_duplicates(b, &[topic], topic)
}
