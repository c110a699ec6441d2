//! The exec worker pool against real processes: small Python workers written into a
//! temp dir, plus the shipped examples/workers. No mocks: crashes, hangs and garbage are
//! real process behaviour.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use millrace_runtime::exec::{ExecConfig, ExecError, ExecFailure, WorkItem, WorkerPool};
use serde_json::{Value, json};
use tokio::task::JoinSet;

/// One scripted worker: what it does depends on the item's `cmd`, so each test can
/// provoke exactly the failure it is about. Every request is logged (one line:
/// `key seq pid cmd`) to the file in $LOG when set, so tests can count attempts and
/// check processing order.
const SCRIPTED: &str = r#"
import json, os, sys, time
log = os.environ.get("LOG")
time.sleep(int(os.environ.get("STARTUP_SLEEP_MS", "0")) / 1000)
def note(req, v):
    if log:
        with open(log, "a") as f:
            f.write(f"{req.get('key')} {v.get('seq')} {os.getpid()} {v.get('cmd')}\n")
while True:
    line = sys.stdin.readline()
    if not line:
        break
    req = json.loads(line)
    v = req["value"]
    if not isinstance(v, dict):
        v = {"v": v}
    note(req, v)
    cmd = v.get("cmd")
    rid = req["id"]
    if v.get("sleep_ms"):
        time.sleep(v["sleep_ms"] / 1000)
    if cmd == "crash":
        sys.stderr.write("worker: about to crash\n"); sys.stderr.flush()
        sys.exit(3)
    if cmd == "crash_once":
        marker = v["marker"]
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(4)
    if cmd == "hang":
        time.sleep(3600)
    if cmd == "garbage":
        print("this is not json", flush=True); continue
    if cmd == "wrong_id":
        print(json.dumps({"id": rid + 1000, "out": [1]}), flush=True); continue
    if cmd == "huge":
        sys.stdout.write("x" * v["bytes"] + "\n"); sys.stdout.flush(); continue
    if cmd == "reject":
        print(json.dumps({"id": rid, "error": "bad email: " + v.get("email", "")}), flush=True); continue
    if cmd == "exit_after":
        print(json.dumps({"id": rid, "out": [os.getpid()]}), flush=True); sys.exit(0)
    if cmd == "many":
        print(json.dumps({"id": rid, "out": list(range(v["n"]))}), flush=True); continue
    if cmd == "none":
        print(json.dumps({"id": rid, "out": []}), flush=True); continue
    print(json.dumps({"id": rid, "out": [{"echo": v, "pid": os.getpid(), "key": req["key"],
        "topic": req["topic"], "partition": req["partition"], "offset": req["offset"]}]}), flush=True)
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("worker.py"), SCRIPTED).expect("write worker");
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> PathBuf {
        self.path("log.txt")
    }

    /// A fast-failing config: short timeout and backoff so failure tests stay quick.
    fn config(&self, workers: usize) -> ExecConfig {
        ExecConfig {
            command: vec![
                "python3".into(),
                self.path("worker.py").to_string_lossy().into_owned(),
            ],
            workers,
            timeout: Duration::from_secs(5),
            startup_timeout: Duration::from_secs(5),
            retries: 2,
            backoff: Duration::from_millis(10),
            env: vec![("LOG".into(), self.log().to_string_lossy().into_owned())],
            cwd: None,
            max_line_bytes: 1024 * 1024,
        }
    }

    /// Log lines as (key, seq, pid, cmd).
    fn log_lines(&self) -> Vec<(String, String, String, String)> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let p: Vec<&str> = l.split(' ').collect();
                (p[0].into(), p[1].into(), p[2].into(), p[3].into())
            })
            .collect()
    }
}

fn item(value: Value) -> WorkItem {
    WorkItem::new(value)
}

/// Awaits `fut`, failing the test if it takes longer than a generous minute: a bound
/// on a hang, not a speed check (speeds are `millrace bench` rows).
async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within a minute"))
}

/// Waits (up to a minute) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    bounded(what, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Whether process `pid` has exited (gone, or a zombie not yet reaped).
fn exited(pid: &Value) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('Z')),
    }
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workers")
}

#[tokio::test]
async fn many_items_over_several_workers() {
    let fx = Fixture::new();
    let pool = Arc::new(WorkerPool::start(fx.config(4)).expect("start"));
    assert_eq!(pool.workers(), 4);
    let mut tasks = JoinSet::new();
    for i in 0..60i64 {
        let pool = Arc::clone(&pool);
        tasks.spawn(async move {
            let mut it = item(json!({"seq": i, "sleep_ms": 5}));
            it.key = Some(format!("k{i}"));
            it.topic = "photos".into();
            it.partition = 2;
            it.offset = 100 + i;
            (i, pool.call(it).await)
        });
    }
    let mut pids = HashSet::new();
    let mut seen = 0;
    while let Some(res) = tasks.join_next().await {
        let (i, out) = res.expect("join");
        let out = out.expect("item ok");
        assert_eq!(out.len(), 1);
        let o = &out[0];
        assert_eq!(o["echo"], json!({"seq": i, "sleep_ms": 5}));
        assert_eq!(o["key"], json!(format!("k{i}")));
        assert_eq!(o["topic"], json!("photos"));
        assert_eq!(o["partition"], json!(2));
        assert_eq!(o["offset"], json!(100 + i));
        pids.insert(o["pid"].as_u64().expect("pid"));
        seen += 1;
    }
    assert_eq!(seen, 60);
    assert!(pids.len() > 1, "work spread over workers: {pids:?}");
    Arc::into_inner(pool).expect("sole owner").shutdown().await;
}

#[tokio::test]
async fn zero_and_many_outputs_per_item() {
    let fx = Fixture::new();
    let pool = WorkerPool::start(fx.config(1)).expect("start");
    let out = pool.call(item(json!({"cmd": "none"}))).await.expect("ok");
    assert!(out.is_empty());
    let out = pool
        .call(item(json!({"cmd": "many", "n": 3})))
        .await
        .expect("ok");
    assert_eq!(out, vec![json!(0), json!(1), json!(2)]);
    pool.shutdown().await;
}

#[tokio::test]
async fn crash_is_restarted_retried_then_fails() {
    let fx = Fixture::new();
    let pool = WorkerPool::start(fx.config(1)).expect("start");
    let err = pool
        .call(item(json!({"cmd": "crash"})))
        .await
        .expect_err("always crashes");
    assert_eq!(err.attempts, 3, "retries + 1: {err:?}");
    assert!(err.error.contains("exit code 3"), "{}", err.error);
    assert!(
        err.error.contains("about to crash"),
        "stderr in reason: {}",
        err.error
    );
    let crash_pids: HashSet<_> = fx
        .log_lines()
        .into_iter()
        .filter(|l| l.3 == "crash")
        .map(|l| l.2)
        .collect();
    assert_eq!(crash_pids.len(), 3, "each attempt on a fresh worker");
    // The pool recovered: the next item is fine.
    let out = pool.call(item(json!({"seq": 1}))).await.expect("ok");
    assert_eq!(out[0]["echo"], json!({"seq": 1}));
    pool.shutdown().await;
}

#[tokio::test]
async fn crash_once_then_retry_succeeds() {
    let fx = Fixture::new();
    let pool = WorkerPool::start(fx.config(1)).expect("start");
    let marker = fx.path("marker").to_string_lossy().into_owned();
    let out = pool
        .call(item(json!({"cmd": "crash_once", "marker": marker})))
        .await
        .expect("second attempt succeeds");
    assert_eq!(out[0]["echo"]["cmd"], json!("crash_once"));
    assert_eq!(fx.log_lines().len(), 2);
    pool.shutdown().await;
}

#[tokio::test]
async fn hung_worker_times_out_and_is_replaced() {
    let fx = Fixture::new();
    let mut cfg = fx.config(1);
    cfg.timeout = Duration::from_millis(300);
    // Enough for python to start on a loaded machine; the hang's second attempt, on a
    // new worker, waits all of it.
    cfg.startup_timeout = Duration::from_secs(4);
    cfg.retries = 1;
    let pool = WorkerPool::start(cfg).expect("start");
    let before = pool.call(item(json!({"seq": 0}))).await.expect("ok")[0]["pid"].clone();
    let err = bounded(
        "a call to a hung worker",
        pool.call(item(json!({"cmd": "hang"}))),
    )
    .await
    .expect_err("hangs");
    assert_eq!(err.attempts, 2);
    assert!(err.error.contains("timeout"), "{}", err.error);
    let hung: Vec<String> = fx
        .log_lines()
        .into_iter()
        .filter(|l| l.3 == "hang")
        .map(|l| l.2)
        .collect();
    assert_eq!(hung.len(), 2, "asked twice");
    assert_ne!(hung[0], hung[1], "each attempt on a new worker");
    let after = pool.call(item(json!({"seq": 1}))).await.expect("ok")[0]["pid"].clone();
    assert_ne!(before, after, "the hung worker was replaced");
    pool.shutdown().await;
}

#[tokio::test]
async fn slow_starting_worker_gets_the_startup_allowance() {
    let fx = Fixture::new();
    let mut cfg = fx.config(1);
    cfg.env.push(("STARTUP_SLEEP_MS".into(), "600".into()));
    cfg.timeout = Duration::from_millis(200);
    // Far more than the start takes even on a loaded machine; the test ends when the
    // worker answers.
    cfg.startup_timeout = Duration::from_secs(30);
    cfg.retries = 0;
    let pool = WorkerPool::start(cfg).expect("start");
    // Slower than `timeout`, but the worker is new: no restart loop.
    let out = pool
        .call(item(json!({"seq": 0})))
        .await
        .expect("first item ok");
    assert_eq!(out[0]["echo"]["seq"], json!(0));
    pool.shutdown().await;
}

#[tokio::test]
async fn garbage_replies_are_retried_then_fail() {
    let fx = Fixture::new();
    let pool = WorkerPool::start(fx.config(2)).expect("start");
    for (cmd, needle) in [("garbage", "not JSON"), ("wrong_id", "expected")] {
        let err = pool
            .call(item(json!({"cmd": cmd})))
            .await
            .expect_err("garbage");
        assert_eq!(err.attempts, 3, "{cmd}: {err:?}");
        assert!(err.error.contains("garbage"), "{}", err.error);
        assert!(err.error.contains(needle), "{}", err.error);
    }
    let attempts = fx.log_lines().len();
    assert_eq!(attempts, 6);
    pool.shutdown().await;
}

#[tokio::test]
async fn huge_line_is_garbage_without_buffering_it() {
    let fx = Fixture::new();
    let mut cfg = fx.config(1);
    cfg.max_line_bytes = 64 * 1024;
    cfg.retries = 1;
    let pool = WorkerPool::start(cfg).expect("start");
    // 32 MiB reply: far over the limit. The pool stops reading at 64 KiB and kills the
    // worker (which is then blocked on a full pipe), so this is fast and small.
    let huge = pool.call(item(json!({"cmd": "huge", "bytes": 32 * 1024 * 1024})));
    let err = bounded("a call answered by a 32 MiB line", huge)
        .await
        .expect_err("too long");
    assert_eq!(err.attempts, 2);
    assert!(err.error.contains("max_line_bytes"), "{}", err.error);
    // A reply just under the limit is fine: the limit is the line, not the item.
    let out = pool
        .call(item(json!({"cmd": "many", "n": 1000})))
        .await
        .expect("ok");
    assert_eq!(out.len(), 1000);
    pool.shutdown().await;
}

#[tokio::test]
async fn worker_reported_error_is_not_retried() {
    let fx = Fixture::new();
    let mut cfg = fx.config(1);
    cfg.retries = 5;
    let pool = WorkerPool::start(cfg).expect("start");
    let err = pool
        .call(item(json!({"cmd": "reject", "email": "nope"})))
        .await
        .expect_err("rejected");
    assert_eq!(
        err,
        ExecFailure {
            error: "bad email: nope".into(),
            attempts: 1
        }
    );
    assert_eq!(fx.log_lines().len(), 1, "asked once");
    // The worker is healthy and kept: same pid as the rejecting one.
    let pid = pool.call(item(json!({"seq": 1}))).await.expect("ok")[0]["pid"].to_string();
    let log = fx.log_lines();
    assert_eq!(log[0].2, log[1].2);
    assert_eq!(log[1].2, pid);
    pool.shutdown().await;
}

#[tokio::test]
async fn worker_that_exits_while_idle_is_restarted_without_costing_an_attempt() {
    let fx = Fixture::new();
    let mut cfg = fx.config(1);
    cfg.retries = 0;
    let pool = WorkerPool::start(cfg).expect("start");
    let first = pool
        .call(item(json!({"cmd": "exit_after"})))
        .await
        .expect("ok");
    until("the worker exits after its reply", || exited(&first[0])).await;
    let second = pool
        .call(item(json!({"cmd": "exit_after"})))
        .await
        .expect("idle exit noticed before dispatch");
    assert_ne!(first, second);
    pool.shutdown().await;
}

#[tokio::test]
async fn start_errors_are_clear() {
    let err = WorkerPool::start(ExecConfig::new(["/no/such/worker-program", "arg"]))
        .err()
        .expect("spawn fails");
    assert!(matches!(err, ExecError::Spawn { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("/no/such/worker-program"), "{msg}");
    assert!(msg.contains("no such program"), "{msg}");

    let err = WorkerPool::start(ExecConfig::new(Vec::<String>::new()))
        .err()
        .expect("empty");
    assert!(matches!(err, ExecError::EmptyCommand));

    let mut cfg = ExecConfig::new(["cat"]);
    cfg.workers = 0;
    let err = WorkerPool::start(cfg).err().expect("zero workers");
    assert!(matches!(err, ExecError::InvalidConfig(_)), "{err:?}");

    let mut cfg = ExecConfig::new(["cat"]);
    cfg.cwd = Some(PathBuf::from("/no/such/dir"));
    let err = WorkerPool::start(cfg).err().expect("bad cwd");
    assert!(matches!(err, ExecError::Spawn { .. }), "{err:?}");
}

#[tokio::test]
async fn cat_is_the_identity_worker() {
    // The "value" shorthand: echoing the request line answers with its value.
    let pool = WorkerPool::start(ExecConfig::new(["cat"])).expect("start");
    let v = json!({"text": "line\nbreak", "n": [1, 2]});
    assert_eq!(pool.call(item(v.clone())).await.expect("ok"), vec![v]);
    pool.shutdown().await;
}

#[tokio::test]
async fn ordered_by_key_keeps_order_per_key() {
    let fx = Fixture::new();
    let pool = WorkerPool::start(fx.config(3)).expect("start");
    let keys = ["alpha", "bravo", "charlie", "delta", "echo"];
    let mut tasks = JoinSet::new();
    // All calls are issued before any is awaited: order comes from the pool, not from
    // the caller waiting for each answer.
    for seq in 0..12u64 {
        for key in keys {
            let mut it = item(json!({"seq": seq, "sleep_ms": (seq * 7 + key.len() as u64) % 5}));
            it.key = Some(key.into());
            let fut = pool.call_ordered(key.as_bytes(), it);
            tasks.spawn(async move { (key, seq, fut.await) });
        }
    }
    while let Some(res) = tasks.join_next().await {
        let (key, seq, out) = res.expect("join");
        assert_eq!(out.expect("ok")[0]["echo"]["seq"], json!(seq), "{key}");
    }
    let mut per_key: HashMap<String, Vec<u64>> = HashMap::new();
    let mut pids: HashMap<String, HashSet<String>> = HashMap::new();
    for (key, seq, pid, _) in fx.log_lines() {
        per_key
            .entry(key.clone())
            .or_default()
            .push(seq.parse().expect("seq"));
        pids.entry(key).or_default().insert(pid);
    }
    for key in keys {
        assert_eq!(per_key[key], (0..12).collect::<Vec<_>>(), "order of {key}");
        assert_eq!(pids[key].len(), 1, "{key} stays on one worker");
    }
    pool.shutdown().await;
}

#[tokio::test]
async fn shutdown_kills_a_hung_worker_and_abandons_its_item() {
    let fx = Fixture::new();
    let pool = WorkerPool::start(fx.config(3)).expect("start");
    pool.call(item(json!({"seq": 0}))).await.expect("ok");
    let orphan = tokio::spawn(pool.call_ordered(b"k", item(json!({"cmd": "hang"}))));
    until("a worker has the hanging item", || {
        fx.log_lines().iter().any(|l| l.3 == "hang")
    })
    .await;
    let pids: Vec<String> = fx.log_lines().into_iter().map(|l| l.2).collect();
    // Idle workers exit on stdin EOF at once; the hung one is abandoned and killed
    // within the grace period.
    bounded("shutdown with a hung worker", pool.shutdown()).await;
    for pid in &pids {
        assert!(
            exited(&json!(pid.parse::<u64>().expect("pid"))),
            "worker {pid} outlived the pool"
        );
    }
    let err = bounded("the abandoned call", orphan)
        .await
        .expect("join")
        .expect_err("abandoned");
    assert_eq!(err.attempts, 0);
}

#[tokio::test]
async fn example_echo_py() {
    let script = examples_dir().join("echo.py");
    let cmd = ["python3", script.to_str().expect("utf8")];
    let pool = WorkerPool::start(ExecConfig::new(cmd)).expect("start");
    let v = json!({"a": [1, "two", null]});
    assert_eq!(pool.call(item(v.clone())).await.expect("ok"), vec![v]);
    pool.shutdown().await;
}

#[tokio::test]
async fn example_send_verification_py() {
    let script = examples_dir().join("send_verification.py");
    let mut cfg = ExecConfig::new(["python3", script.to_str().expect("utf8")]);
    cfg.workers = 2;
    let pool = WorkerPool::start(cfg).expect("start");
    let out = pool
        .call(item(
            json!({"user_id": 7, "email": "ada@example.com", "phone": "+44 1",
                          "region": "eu", "notify": ["email", "sms"]}),
        ))
        .await
        .expect("ok");
    assert_eq!(
        out,
        vec![json!({"user_id": 7, "email": "ada@example.com", "region": "eu"})]
    );
    let err = pool
        .call(item(
            json!({"user_id": 8, "phone": "+1", "region": "us", "notify": []}),
        ))
        .await
        .expect_err("no email");
    assert_eq!(err.attempts, 1);
    assert!(err.error.contains("email"), "{}", err.error);
    pool.shutdown().await;
}

#[tokio::test]
async fn example_image_workers_py() {
    let input =
        json!({"url": "https://img.example/cars/42.jpg", "vehicle": "truck", "color": "red"});
    let blur = examples_dir().join("blur_plate.py");
    let pool = WorkerPool::start(ExecConfig::new(["python3", blur.to_str().expect("utf8")]))
        .expect("start");
    assert_eq!(
        pool.call(item(input.clone())).await.expect("ok"),
        vec![json!({"url": "https://img.example/cars/42.jpg",
                    "blurred_url": "https://img.example/cars/blurred/42.jpg"})]
    );
    pool.shutdown().await;

    let detect = examples_dir().join("detect_vehicle.py");
    let pool = WorkerPool::start(ExecConfig::new(["python3", detect.to_str().expect("utf8")]))
        .expect("start");
    assert_eq!(
        pool.call(item(input)).await.expect("ok"),
        vec![json!({"url": "https://img.example/cars/42.jpg", "type": "truck", "color": "red"})]
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn example_upper_sh() {
    let script = examples_dir().join("upper.sh");
    let mut cfg = ExecConfig::new(["sh", script.to_str().expect("utf8")]);
    cfg.workers = 2;
    let pool = WorkerPool::start(cfg).expect("start");
    let mut it =
        item(json!({"name": "bo", "tags": ["a\nb", "é", "say \"hi\""], "ok": true, "n": 1.5}));
    it.key = Some("user-1".into());
    it.topic = "names".into();
    assert_eq!(
        pool.call(it).await.expect("ok"),
        vec![json!({"name": "BO", "tags": ["A\nB", "é", "SAY \"HI\""], "ok": true, "n": 1.5})]
    );
    assert_eq!(
        pool.call(item(json!("hello"))).await.expect("ok"),
        vec![json!("HELLO")]
    );
    pool.shutdown().await;
}
