//! `millrace serve`: the embedded store as a single-node Kafka broker. Holds the data
//! directory (its lock), serves Kafka's protocol on `--listen` until SIGINT or
//! SIGTERM, and records the address in `<data>/endpoint` (`HOST:PORT`, owner-only) so
//! other millrace commands reach the store through it — as they reach any millrace
//! process that holds a data directory (`millrace_broker::holder`). With `--http`, it
//! also serves the broker's `/metrics`, `/api/stats` and `/healthz` (`http::broker`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use millrace_broker::BrokerError;
use millrace_broker::embedded::EmbeddedBroker;
use millrace_broker::holder::{Holder, Listen, open_store_with, read_endpoint};
use millrace_server::group::CoordinatorConfig;
use millrace_server::{ListenerPolicy, ServerConfig, Users};
use millrace_store::StoreError;

use crate::args::{Global, ServeArgs};
use crate::http;
use crate::report::hinted;

pub async fn run(g: &Global, args: ServeArgs) -> anyhow::Result<i32> {
    let addr = resolve(&args.listen).await?;
    let users = args
        .users
        .as_deref()
        .map(Users::load)
        .transpose()?
        .map(Arc::new);
    let groups = CoordinatorConfig {
        initial_rebalance_delay: Duration::from_millis(args.group_initial_rebalance_delay_ms),
        ..CoordinatorConfig::default()
    };
    let broker = open_store(&g.data, groups).await?;
    let owner = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&g.data)
            .with_context(|| format!("cannot read {}", g.data.display()))?
            .uid()
    };
    let policy = ListenerPolicy {
        insecure: args.insecure,
        allow_any_user: args.allow_any_user,
    };
    let access = policy.access(addr, users, owner)?;
    let config = ServerConfig {
        access,
        ..ServerConfig::default()
    };
    let holder = Holder::serve(broker, Listen::At(addr), config).await?;
    let (stop_http, http_stopped) = tokio::sync::watch::channel(false);
    if let Some(at) = &args.http {
        let router = http::broker::router(Arc::clone(holder.broker().hub()));
        match serve_http(at, router, http_stopped).await {
            Ok(bound) => eprintln!("millrace: serving http://{bound}/metrics"),
            Err(e) => {
                holder.stop().await?;
                return Err(e);
            }
        }
    }
    eprintln!(
        "millrace: serving Kafka on {} over {} (stop with Ctrl-C)",
        holder.bound(),
        g.data.display()
    );
    signal().await;
    let _ = stop_http.send(true);
    holder.stop().await?;
    eprintln!("millrace: stopped");
    Ok(0)
}

/// Serves `router` on `at` until `stopped` turns true; returns once bound, with the
/// bound address, or with why it could not bind.
async fn serve_http(
    at: &str,
    router: axum::Router,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let (bound_tx, bound) = tokio::sync::oneshot::channel();
    let at_owned = at.to_owned();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        http::serve_router(&at_owned, router, bound_tx, shutdown).await
    });
    match bound.await {
        Ok(addr) => {
            // Serving goes on in its task; an error after binding is only logged.
            tokio::spawn(async move {
                if let Ok(Err(e)) = server.await {
                    tracing::warn!("--http: {e:#}");
                }
            });
            Ok(addr)
        }
        // The sender is dropped unsent only when binding failed: the task says why.
        Err(_) => match server.await {
            Ok(Err(e)) => Err(e.context(format!("--http {at}"))),
            Ok(Ok(())) => anyhow::bail!("--http {at}: stopped before binding"),
            Err(e) => anyhow::bail!("--http {at}: {e}"),
        },
    }
}

/// `HOST:PORT` to one socket address (the first a name resolves to).
async fn resolve(listen: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(listen)
        .await
        .with_context(|| format!("--listen {listen}: expected HOST:PORT"))?
        .next()
        .with_context(|| format!("--listen {listen}: the name resolves to no address"))
}

/// Opens the store with Kafka's group settings (by default Kafka's own: clients expect
/// its 3 s `group.initial.rebalance.delay.ms`), waiting briefly for a command that
/// holds it for a moment. A store held for longer is served by its holder already.
async fn open_store(dir: &Path, groups: CoordinatorConfig) -> anyhow::Result<EmbeddedBroker> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match open_store_with(dir, groups.clone()).await {
            Ok(b) => return Ok(b),
            Err(BrokerError::Store(StoreError::Locked { .. }))
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(BrokerError::Store(locked @ StoreError::Locked { .. })) => {
                let hint = match read_endpoint(dir) {
                    Some(at) => format!(
                        "that process serves the store with Kafka's protocol at {at} already: point Kafka clients there"
                    ),
                    None => "stop that process first".to_string(),
                };
                return Err(hinted(locked.to_string(), hint));
            }
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", dir.display())),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers the server runs until the process is killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!("millrace: stopping");
}
