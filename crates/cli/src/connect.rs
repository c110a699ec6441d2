//! Picks the backend a command talks to: Kafka with --bootstrap-server; otherwise the
//! embedded store in --data — held by this process when its lock is free (opened, and
//! served to other processes with Kafka's protocol on loopback), or else reached with
//! the Kafka backend at the address its holder records in `<data>/endpoint`, ready to
//! take the store over should the holder leave (`millrace_broker::holder`).
//!
//! Holding and standing by outlive the command's own use of the broker: [`release`]
//! ends them once the command is done, so the store is served until then.
//!
//! Only the commands that define topics (`topics create`, `run`) create a missing data
//! directory, and say so: any other command given a directory that does not exist
//! stops with an error, so a mistyped `--data` never leaves a new empty store behind
//! and never reads as "no topics".

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use millrace_broker::holder::{Holder, Listen, Standby};
use millrace_broker::{Broker, BrokerError};
use millrace_pipeline::diagnostics::did_you_mean;
use millrace_store::StoreError;

use crate::args::Global;
use crate::report::{hinted, note};

/// Whether a command may create the embedded store's data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDir {
    /// A missing directory is created, with a note on standard error.
    Create,
    /// A missing directory is an error.
    Existing,
}

/// What this process does for the data directories it reached: holds and serves
/// them, or stands by to take them over.
enum Sharing {
    Held(Holder),
    Standby(Standby),
}

static SHARING: Mutex<Vec<Sharing>> = Mutex::new(Vec::new());

fn share(s: Sharing) {
    SHARING.lock().unwrap_or_else(|e| e.into_inner()).push(s);
}

/// Ends what this process does for the data directories it reached: a store it holds
/// is served until the requests in hand are answered, then let go (another process
/// takes it over); a standby stops watching. Called once the command is done.
pub async fn release() {
    let all = std::mem::take(&mut *SHARING.lock().unwrap_or_else(|e| e.into_inner()));
    for s in all {
        match s {
            Sharing::Held(h) => {
                if let Err(e) = h.stop().await {
                    tracing::warn!("{e}");
                }
            }
            Sharing::Standby(s) => s.stop().await,
        }
    }
}

/// Opens the backend the global flags select.
pub async fn connect(g: &Global, dir: DataDir) -> anyhow::Result<Arc<dyn Broker>> {
    if let Some(bootstrap) = &g.bootstrap_server {
        return connect_kafka(g, bootstrap, BTreeMap::new()).await;
    }
    let creating = check_data_dir(&g.data, dir)?;
    // The holder answers within moments unless it is starting or leaving: wait for the
    // one or for the lock to come free, as long as a Kafka connection would wait.
    let deadline = std::time::Instant::now() + Duration::from_millis(g.connect_timeout_ms);
    let holder = loop {
        match Holder::open(&g.data, Listen::Recorded).await {
            Err(BrokerError::Store(StoreError::Locked { pid, .. })) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                // A holder that is a short command (a `topics describe`) often stops
                // serving while a client is still connecting: whichever comes first,
                // the holder's answer or its lock, wins.
                tokio::select! {
                    reached = reach_holder(&g.data, pid, left) => match reached {
                        Ok(broker) => return Ok(broker),
                        Err(e) if left.is_zero() => return Err(e),
                        Err(_) => tokio::time::sleep(TRY_LOCK_EVERY).await,
                    },
                    opened = open_when_free(&g.data) => break opened,
                }
            }
            opened => break opened,
        }
    };
    let holder = holder.with_context(|| format!("cannot open {}", g.data.display()))?;
    if creating {
        note_created(&g.data);
    }
    let broker = holder.broker().clone();
    share(Sharing::Held(holder));
    Ok(Arc::new(broker))
}

/// How often a command waiting for a store's holder tries the store's lock (a try
/// costs a file open and a `flock`).
const TRY_LOCK_EVERY: Duration = Duration::from_millis(10);

/// Holds the store in `dir` as soon as its lock comes free.
async fn open_when_free(dir: &Path) -> Result<Holder, BrokerError> {
    loop {
        tokio::time::sleep(TRY_LOCK_EVERY).await;
        match Holder::open(dir, Listen::Recorded).await {
            Err(BrokerError::Store(StoreError::Locked { .. })) => {}
            opened => return opened,
        }
    }
}

/// The store held by process `pid`, as a Kafka client of the address it records, and
/// a standby that takes the store over when the holder leaves.
#[cfg(feature = "kafka")]
async fn reach_holder(dir: &Path, pid: u32, left: Duration) -> anyhow::Result<Arc<dyn Broker>> {
    use millrace_broker::holder::{Moved, read_endpoint};
    use millrace_broker::kafka::KafkaBroker;
    let Some(addr) = read_endpoint(dir) else {
        return Err(hinted(
            format!(
                "data directory {} is held by process {pid}, which records no address to reach it at",
                dir.display()
            ),
            "it may be a millrace that does not serve the store to other commands: stop it, or use another --data",
        ));
    };
    let timeout = left.max(Duration::from_secs(1));
    match KafkaBroker::connect_to_holder(dir, addr, timeout).await {
        Ok(broker) => {
            let shown = dir.display().to_string();
            share(Sharing::Standby(Standby::start(
                dir.to_path_buf(),
                addr,
                move |m: Moved| {
                    crate::report::exit_on_error(&hinted(
                        format!(
                            "the store in {shown} is now served at {}, not at {} where this command reached it",
                            m.to, m.from
                        ),
                        "run the command again",
                    ))
                },
            )));
            Ok(Arc::new(broker))
        }
        Err(e) => Err(hinted(
            format!(
                "data directory {} is held by process {pid}, which does not answer at {addr}: {e}",
                dir.display()
            ),
            "is that process stopped (Ctrl-Z, kill -STOP)? it serves the store to every other command",
        )),
    }
}

#[cfg(not(feature = "kafka"))]
async fn reach_holder(dir: &Path, pid: u32, _left: Duration) -> anyhow::Result<Arc<dyn Broker>> {
    Err(hinted(
        format!("data directory {} is held by process {pid}", dir.display()),
        "this millrace was built without Kafka support, which reaches a store another process holds; rebuild with `cargo build --release --features kafka`",
    ))
}

/// The flags a pipeline file's commands run with: the file's own backend (its Kafka
/// servers and client properties, or its data directory) where the command line and
/// environment leave it open. Returns the flags and the file's Kafka properties.
pub fn for_plan(g: &Global, plan: &millrace_pipeline::Plan) -> (Global, BTreeMap<String, String>) {
    let mut g = g.clone();
    let mut props = BTreeMap::new();
    match &plan.backend {
        millrace_pipeline::Backend::Kafka {
            bootstrap,
            properties,
        } => {
            if g.bootstrap_server.is_none() {
                g.bootstrap_server = Some(bootstrap.clone());
            }
            props.clone_from(properties);
        }
        // An explicit --data / MILLRACE_DATA wins over the file's.
        millrace_pipeline::Backend::EmbeddedAt { data }
            if g.data == Path::new(crate::args::DEFAULT_DATA) =>
        {
            g.data.clone_from(data);
        }
        _ => {}
    }
    (g, props)
}

/// Kafka with extra client properties (from a pipeline file) under the CLI's.
pub async fn connect_with_properties(
    g: &Global,
    extra: BTreeMap<String, String>,
    dir: DataDir,
) -> anyhow::Result<Arc<dyn Broker>> {
    match &g.bootstrap_server {
        Some(b) => connect_kafka(g, b, extra).await,
        None => connect(g, dir).await,
    }
}

/// Whether `path` is missing and will be created; an error when it is missing and
/// `dir` says it must exist, or when it is not a directory.
fn check_data_dir(path: &Path, dir: DataDir) -> anyhow::Result<bool> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(false),
        Ok(_) => Err(hinted(
            format!("--data {} is not a directory", path.display()),
            "--data names the embedded store's directory",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match dir {
            DataDir::Create => Ok(true),
            DataDir::Existing => Err(missing_data_dir(path)),
        },
        // Opening it will say what is wrong.
        Err(_) => Ok(false),
    }
}

fn note_created(path: &Path) {
    note!("millrace: created a new data directory {}", path.display());
}

fn missing_data_dir(path: &Path) -> anyhow::Error {
    let message = format!("no data directory at {}", path.display());
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let siblings: Vec<String> = std::fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let close = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|name| did_you_mean(name, siblings.iter().map(String::as_str)));
    let hint = match close {
        Some(c) => format!("did you mean --data {}?", parent.join(c).display()),
        None => format!(
            "`millrace topics create` or `millrace run` creates it; --data (or MILLRACE_DATA) picks another directory (default {})",
            crate::args::DEFAULT_DATA
        ),
    };
    hinted(message, hint)
}

#[cfg(feature = "kafka")]
async fn connect_kafka(
    g: &Global,
    bootstrap: &str,
    mut props: BTreeMap<String, String>,
) -> anyhow::Result<Arc<dyn Broker>> {
    // `--command-config`: Kafka's .properties format, read as the Kafka backend reads it
    // (continuation lines, escapes, a Java `sasl.jaas.config` translated).
    if let Some(path) = &g.command_config {
        props.extend(millrace_broker::kafka::read_properties_file(path)?);
    }
    let connected = millrace_broker::kafka::KafkaBroker::connect(
        bootstrap,
        props,
        Duration::from_millis(g.connect_timeout_ms),
    )
    .await;
    match connected {
        Ok(b) => Ok(Arc::new(b)),
        Err(BrokerError::Unreachable {
            bootstrap,
            timeout_ms,
            reason,
        }) => Err(unreachable(&bootstrap, timeout_ms, reason).await),
        Err(e) => Err(e.into()),
    }
}

/// `cannot reach Kafka at HOST:PORT after 10 s: connection refused`. librdkafka only
/// says its metadata request failed; one plain TCP connection per server finds out
/// why, in the words of the operating system.
#[cfg(feature = "kafka")]
async fn unreachable(bootstrap: &str, timeout_ms: u64, reason: String) -> anyhow::Error {
    let after = seconds(timeout_ms);
    match why_unreachable(bootstrap).await {
        Some(why) => hinted(
            format!("cannot reach Kafka at {bootstrap} after {after}: {why}"),
            "is a broker running there? --bootstrap-server (or MILLRACE_BOOTSTRAP) names the brokers as HOST:PORT[,HOST:PORT]",
        ),
        None => {
            // The hint below gives the broker layer's advice in full.
            let reason = reason
                .split(" (is a broker listening there?")
                .next()
                .unwrap_or_default();
            hinted(
                format!(
                    "cannot reach Kafka at {bootstrap} after {after}: the port accepts connections but no Kafka broker answered ({reason})"
                ),
                "is it a Kafka listener, and does security.protocol match it (--command-config)?",
            )
        }
    }
}

/// What stops a TCP connection to the servers in `bootstrap`; `None` when one of them
/// accepts (then the network is not the problem).
#[cfg(feature = "kafka")]
async fn why_unreachable(bootstrap: &str) -> Option<String> {
    const PROBE: Duration = Duration::from_secs(2);
    let mut causes: Vec<(String, String)> = Vec::new();
    for server in bootstrap
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        // `SASL_SSL://host:port` names the protocol as well.
        let addr = server.split_once("://").map_or(server, |(_, a)| a);
        let cause = match tokio::time::timeout(PROBE, tokio::net::lookup_host(addr)).await {
            Err(_) => "no answer from DNS".to_owned(),
            Ok(Err(_)) if !addr.contains(':') => "not HOST:PORT".to_owned(),
            Ok(Err(e)) => format!("cannot resolve it ({e})"),
            Ok(Ok(mut addrs)) => match addrs.next() {
                None => "cannot resolve it".to_owned(),
                Some(a) => {
                    match tokio::time::timeout(PROBE, tokio::net::TcpStream::connect(a)).await {
                        Ok(Ok(_)) => return None,
                        Ok(Err(e)) => e.kind().to_string(),
                        Err(_) => "connection timed out".to_owned(),
                    }
                }
            },
        };
        causes.push((server.to_owned(), cause));
    }
    let first = causes.first()?.1.clone();
    if causes.iter().all(|(_, c)| *c == first) {
        return Some(first);
    }
    let each: Vec<String> = causes.iter().map(|(s, c)| format!("{s}: {c}")).collect();
    Some(each.join("; "))
}

/// `10 s`, `2.5 s`.
#[cfg(feature = "kafka")]
fn seconds(ms: u64) -> String {
    let d = Duration::from_millis(ms);
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(not(feature = "kafka"))]
async fn connect_kafka(
    g: &Global,
    _bootstrap: &str,
    _props: BTreeMap<String, String>,
) -> anyhow::Result<Arc<dyn Broker>> {
    let _ = (&g.command_config, g.connect_timeout_ms);
    anyhow::bail!(
        "this millrace was built without Kafka support; rebuild with `cargo build --release --features kafka`"
    )
}
