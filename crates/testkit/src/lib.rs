//! millrace-testkit: what the tests of every crate share — the backends to run against,
//! one rule for when Kafka must be there, and where Kafka's jars are.
//!
//! The rule: a test that needs Kafka (a broker at `MILLRACE_TEST_BOOTSTRAP`, Kafka's
//! jars and Java) runs when it is there. In CI (`CI=true`) a missing one fails the
//! test; elsewhere the test says on standard error that its Kafka part is skipped.
//! `scripts/kafka.sh start` starts a broker and prints the address to export;
//! `scripts/kafka.sh fetch` fetches the jars.
//!
//! Layout (all in this file, it is small):
//! - the rule: [`in_ci`], [`kafka_bootstrap`], [`missing`], [`have`] (a tool);
//! - Kafka's jars: [`kafka_home`], [`fetched_jars`], [`kafka_libs`];
//! - the backends: [`backends`] (the embedded store, Kafka, and the store served over
//!   Kafka's protocol by the process that holds it), [`unique`] names;
//! - waits: [`poll_until_assigned`].

// Test code: a failed setup is the test's failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use millrace_broker::{Broker, Consumer};

/// Whether the tests run in CI, where nothing they need may be missing.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Says that `what` is missing: fails in CI, else notes on standard error that the part
/// of the test needing it does not run, and how to get it.
pub fn missing(what: &str, how: &str) {
    assert!(
        !in_ci(),
        "{what} is missing but CI=true: this test must run ({how})"
    );
    eprintln!("{what} is missing ({how}): the part of this test that needs it is skipped");
}

/// The Kafka broker the tests use (`MILLRACE_TEST_BOOTSTRAP`), if one is named; see
/// the rule above for when it is not.
pub fn kafka_bootstrap() -> Option<String> {
    let bootstrap = std::env::var("MILLRACE_TEST_BOOTSTRAP")
        .ok()
        .filter(|s| !s.trim().is_empty());
    if bootstrap.is_none() {
        missing(
            "MILLRACE_TEST_BOOTSTRAP",
            "start a broker with `scripts/kafka.sh start` and export \
             MILLRACE_TEST_BOOTSTRAP=127.0.0.1:9092",
        );
    }
    bootstrap
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where `scripts/kafka.sh` keeps Kafka's jars and its brokers' state:
/// `KAFKA_HOME_CACHE`, else `<repo>/.kafka`.
pub fn kafka_home() -> PathBuf {
    std::env::var_os("KAFKA_HOME_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".kafka"))
}

/// The `libs` directory of `<kafka home>/<prefix><version>` that a complete fetch left
/// (`fetch` names the command that fetches it), if there is one.
pub fn fetched_jars(prefix: &str, what: &str, fetch: &str) -> Option<PathBuf> {
    let libs = std::fs::read_dir(kafka_home()).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_prefix(prefix)
                    .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
            })
            .map(|e| e.path().join("libs"))
            .find(|p| p.join(".complete").exists())
    });
    if libs.is_none() {
        missing(what, fetch);
    }
    libs
}

/// Whether `program args…` runs (`install` says how to get it); see [`missing`] for
/// when it does not.
pub fn have(what: &str, program: &str, args: &[&str], install: &str) -> bool {
    let ok = std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        missing(what, install);
    }
    ok
}

/// Apache Kafka's jars (`scripts/kafka.sh fetch`), if fetched and `java` runs.
pub fn kafka_libs() -> Option<PathBuf> {
    let java = have(
        "java",
        "java",
        &["-version"],
        "apt-get install -y openjdk-17-jre-headless",
    );
    fetched_jars("kafka-", "Kafka's jars", "scripts/kafka.sh fetch").filter(|_| java)
}

/// A backend under test. Holds what must live as long as the broker (the process's
/// hold on a data directory, and the directory).
pub struct Backend {
    pub name: &'static str,
    pub broker: Arc<dyn Broker>,
    /// The data directory, on the backends that have one.
    pub dir: Option<PathBuf>,
    #[cfg(feature = "kafka")]
    _holder: Option<HolderThread>,
    _guard: Option<tempfile::TempDir>,
}

/// A holder serving a data directory from a thread and an async runtime of its own, as
/// another process would: the test's own tasks (a pipeline's dozens of stages on two
/// worker threads) never hold up its server.
#[cfg(feature = "kafka")]
struct HolderThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(feature = "kafka")]
impl HolderThread {
    /// Holds `dir` and serves it; returns once it serves, with its address.
    fn start(dir: &std::path::Path) -> (HolderThread, std::net::SocketAddr) {
        use millrace_broker::holder::{Holder, Listen};
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = dir.to_path_buf();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the holder's runtime");
            runtime.block_on(async move {
                let holder = Holder::open(&dir, Listen::Recorded)
                    .await
                    .expect("hold and serve the store");
                let _ = tx.send(holder.addr());
                let _ = stopped.await;
                drop(holder);
            });
        });
        let addr = rx.recv().expect("the holder serves");
        (
            HolderThread {
                stop: Some(stop),
                thread: Some(thread),
            },
            addr,
        )
    }
}

#[cfg(feature = "kafka")]
impl Drop for HolderThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The name of the embedded store's backend.
pub const EMBEDDED: &str = "embedded";
/// The name of the Kafka backend against the broker at `MILLRACE_TEST_BOOTSTRAP`.
pub const KAFKA: &str = "kafka";
/// The name of the Kafka backend against the Kafka server of a process holding a data
/// directory.
pub const KAFKA_TO_HOLDER: &str = "kafka-to-holder";

impl Backend {
    /// Whether topics and groups are shared with other tests and runs (a real Kafka
    /// broker): such a test names them with [`unique`].
    pub fn shared(&self) -> bool {
        self.name == KAFKA
    }
}

/// The embedded store in a fresh directory.
pub fn embedded() -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = millrace_broker::embedded::EmbeddedBroker::open(dir.path())
        .expect("open the embedded store");
    Backend {
        name: EMBEDDED,
        broker: Arc::new(embedded),
        dir: Some(dir.path().to_path_buf()),
        #[cfg(feature = "kafka")]
        _holder: None,
        _guard: Some(dir),
    }
}

/// The Kafka backend against the broker at `bootstrap`.
#[cfg(feature = "kafka")]
pub async fn kafka(bootstrap: &str) -> Backend {
    let kafka = millrace_broker::kafka::KafkaBroker::connect(
        bootstrap,
        Default::default(),
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_else(|e| panic!("MILLRACE_TEST_BOOTSTRAP={bootstrap}: {e}"));
    Backend {
        name: KAFKA,
        broker: Arc::new(kafka),
        dir: None,
        _holder: None,
        _guard: None,
    }
}

/// Kafka's protocol against the store itself: the Kafka backend reaching a data
/// directory through the process that holds it, as every millrace command does.
#[cfg(feature = "kafka")]
pub async fn kafka_to_holder() -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let (holder, addr) = HolderThread::start(dir.path());
    let kafka = millrace_broker::kafka::KafkaBroker::connect_to_holder(
        dir.path(),
        addr,
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_else(|e| panic!("the holder at {addr}: {e}"));
    Backend {
        name: KAFKA_TO_HOLDER,
        broker: Arc::new(kafka),
        dir: Some(dir.path().to_path_buf()),
        _holder: Some(holder),
        _guard: Some(dir),
    }
}

/// Every backend a test runs against: the embedded store always; with the `kafka`
/// feature, Kafka when `MILLRACE_TEST_BOOTSTRAP` names a broker (see the rule above),
/// and the store served over Kafka's protocol by the process that holds it.
pub async fn backends() -> Vec<Backend> {
    #[allow(unused_mut)]
    let mut out = vec![embedded()];
    #[cfg(feature = "kafka")]
    {
        if let Some(bootstrap) = kafka_bootstrap() {
            out.push(kafka(&bootstrap).await);
        }
        out.push(kafka_to_holder().await);
    }
    #[cfg(not(feature = "kafka"))]
    if kafka_bootstrap().is_some() {
        missing(
            "the kafka feature",
            "MILLRACE_TEST_BOOTSTRAP is set: build the tests with --features kafka",
        );
    }
    out
}

/// A topic (or group) name no other test or run has used: Kafka is shared between runs.
pub fn unique(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `consumer` until the group has given it a partition (a group member learns
/// its partitions by polling), for at most `bound`; panics naming `what` past it.
/// Records the polls returned meanwhile are kept and returned.
pub async fn poll_until_assigned(
    consumer: &mut dyn Consumer,
    what: &str,
    bound: Duration,
) -> Vec<millrace_broker::ConsumedRecord> {
    let deadline = Instant::now() + bound;
    let mut got = Vec::new();
    while consumer.assignment().is_empty() {
        assert!(
            Instant::now() < deadline,
            "{what} was given no partition within {bound:?}"
        );
        got.extend(
            consumer
                .poll(10, Duration::from_millis(100))
                .await
                .expect("poll"),
        );
    }
    got
}
