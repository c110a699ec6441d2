//! Picks the backend a command talks to: Kafka with --bootstrap-server, otherwise the
//! embedded store in --data — opened directly, or, while a running pipeline holds it,
//! reached through the endpoint that pipeline serves.
//!
//! Only the commands that define topics (`topics create`, `run`) create a missing data
//! directory, and say so: any other command given a directory that does not exist
//! stops with an error, so a mistyped `--data` never leaves a new empty store behind
//! and never reads as "no topics".

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use millrace_broker::embedded::EmbeddedBroker;
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

/// Opens the backend the global flags select.
pub async fn connect(g: &Global, dir: DataDir) -> anyhow::Result<Arc<dyn Broker>> {
    if let Some(bootstrap) = &g.bootstrap_server {
        return connect_kafka(g, bootstrap, BTreeMap::new()).await;
    }
    let creating = check_data_dir(&g.data, dir)?;
    // A short-lived command may hold the store for a moment, and a pipeline that is
    // starting holds it before its endpoint answers: retry briefly before giving up.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        match EmbeddedBroker::open(&g.data) {
            Ok(b) => {
                if creating {
                    note_created(&g.data);
                }
                return Ok(Arc::new(b));
            }
            Err(BrokerError::Store(locked @ StoreError::Locked { .. })) => {
                // A running pipeline serves the store it holds.
                if let Ok(remote) = millrace_broker::remote::RemoteBroker::connect(&g.data).await {
                    return Ok(Arc::new(remote));
                }
                if std::time::Instant::now() >= deadline {
                    return Err(anyhow::anyhow!(
                        "{locked}; it does not serve the store to other commands (only `millrace run` does)"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open {}", g.data.display()));
            }
        }
    }
}

/// Opens the embedded store for exclusive use (a pipeline that will serve others),
/// creating its directory if need be. Another command holding it for a moment is
/// waited for, briefly.
pub async fn open_embedded(g: &Global) -> anyhow::Result<EmbeddedBroker> {
    let creating = check_data_dir(&g.data, DataDir::Create)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match EmbeddedBroker::open(&g.data) {
            Err(BrokerError::Store(StoreError::Locked { .. }))
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(b) => {
                if creating {
                    note_created(&g.data);
                }
                return Ok(b);
            }
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", g.data.display())),
        }
    }
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
