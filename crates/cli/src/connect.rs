//! Picks the backend a command talks to: Kafka with --bootstrap-server, otherwise the
//! embedded store in --data — opened directly, or, while a running pipeline holds it,
//! reached through the endpoint that pipeline serves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use millrace_broker::embedded::EmbeddedBroker;
use millrace_broker::{Broker, BrokerError};
use millrace_store::StoreError;

use crate::args::Global;

/// Opens the backend the global flags select.
pub async fn connect(g: &Global) -> anyhow::Result<Arc<dyn Broker>> {
    if let Some(bootstrap) = &g.bootstrap_server {
        return connect_kafka(g, bootstrap).await;
    }
    // A short-lived command may hold the store for a moment, and a pipeline that is
    // starting holds it before its endpoint answers: retry briefly before giving up.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        match EmbeddedBroker::open(&g.data) {
            Ok(b) => return Ok(Arc::new(b)),
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

/// The backend a pipeline file runs on, picked as `millrace run` picks it: the flags
/// (or their environment variables) first, then the file's `backend:`.
pub async fn for_plan(
    g: &Global,
    plan: &millrace_pipeline::Plan,
) -> anyhow::Result<Arc<dyn Broker>> {
    let mut g = g.clone();
    match &plan.backend {
        millrace_pipeline::Backend::Kafka {
            bootstrap,
            properties,
        } => {
            g.bootstrap_server.get_or_insert_with(|| bootstrap.clone());
            return connect_with_properties(&g, properties.clone()).await;
        }
        millrace_pipeline::Backend::EmbeddedAt { data }
            if g.data == std::path::Path::new(crate::args::DEFAULT_DATA) =>
        {
            g.data = data.clone();
        }
        _ => {}
    }
    connect(&g).await
}

/// Opens the embedded store for exclusive use (a pipeline that will serve others).
/// Another command holding it for a moment is waited for, briefly.
pub async fn open_embedded(g: &Global) -> anyhow::Result<EmbeddedBroker> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match EmbeddedBroker::open(&g.data) {
            Err(BrokerError::Store(StoreError::Locked { .. }))
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => return r.with_context(|| format!("cannot open {}", g.data.display())),
        }
    }
}

/// Kafka with extra client properties (from a pipeline file) under the CLI's.
pub async fn connect_with_properties(
    g: &Global,
    extra: BTreeMap<String, String>,
) -> anyhow::Result<Arc<dyn Broker>> {
    match &g.bootstrap_server {
        Some(b) => connect_kafka_props(g, b, extra).await,
        None => connect(g).await,
    }
}

async fn connect_kafka(g: &Global, bootstrap: &str) -> anyhow::Result<Arc<dyn Broker>> {
    connect_kafka_props(g, bootstrap, BTreeMap::new()).await
}

#[cfg(feature = "kafka")]
async fn connect_kafka_props(
    g: &Global,
    bootstrap: &str,
    mut props: BTreeMap<String, String>,
) -> anyhow::Result<Arc<dyn Broker>> {
    // `--command-config`: Kafka's .properties format, read as the Kafka backend reads it
    // (continuation lines, escapes, a Java `sasl.jaas.config` translated).
    if let Some(path) = &g.command_config {
        props.extend(millrace_broker::kafka::read_properties_file(path)?);
    }
    let b = millrace_broker::kafka::KafkaBroker::connect(
        bootstrap,
        props,
        Duration::from_millis(g.connect_timeout_ms),
    )
    .await?;
    Ok(Arc::new(b))
}

#[cfg(not(feature = "kafka"))]
async fn connect_kafka_props(
    g: &Global,
    _bootstrap: &str,
    _props: BTreeMap<String, String>,
) -> anyhow::Result<Arc<dyn Broker>> {
    let _ = (&g.command_config, g.connect_timeout_ms);
    anyhow::bail!(
        "this millrace was built without Kafka support; rebuild with `cargo build --release --features kafka`"
    )
}
