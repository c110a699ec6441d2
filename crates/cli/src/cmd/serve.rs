//! `millrace serve`: the embedded store as a single-node Kafka broker. Opens the data
//! directory (taking its lock), serves Kafka's protocol on `--listen` until SIGINT or
//! SIGTERM, and records the address in `<data>/endpoint` (`HOST:PORT`, owner-only,
//! removed on exit) so other millrace commands can find it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use millrace_server::{Hub, ListenerPolicy, ServerConfig, Users};
use millrace_store::{Store, StoreError, StoreOptions};

use crate::args::{Global, ServeArgs};

/// The file in the data directory that names the address being served.
pub const ENDPOINT_FILE: &str = "endpoint";

pub async fn run(g: &Global, args: ServeArgs) -> anyhow::Result<i32> {
    let addr = resolve(&args.listen).await?;
    let users = args
        .users
        .as_deref()
        .map(Users::load)
        .transpose()?
        .map(Arc::new);
    let store = Arc::new(open_store(&g.data).await?);
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
    let hub = Hub::new(Arc::clone(&store))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let _endpoint = Endpoint::write(&g.data, bound)?;
    eprintln!(
        "millrace: serving Kafka on {bound} over {} (stop with Ctrl-C)",
        g.data.display()
    );
    millrace_server::serve(listener, hub, config, signal()).await?;
    eprintln!("millrace: stopped");
    Ok(0)
}

/// `HOST:PORT` to one socket address (the first a name resolves to).
async fn resolve(listen: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(listen)
        .await
        .with_context(|| format!("--listen {listen}: expected HOST:PORT"))?
        .next()
        .with_context(|| format!("--listen {listen}: the name resolves to no address"))
}

/// Opens the store, waiting briefly for a command that holds it for a moment.
async fn open_store(dir: &Path) -> anyhow::Result<Store> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Store::open(dir, StoreOptions::default()) {
            Ok((store, report)) => {
                if !report.is_clean() {
                    eprintln!("millrace: {report}");
                }
                return Ok(store);
            }
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", dir.display())),
        }
    }
}

/// `<data>/endpoint` while the server runs: written owner-only, removed when dropped.
struct Endpoint(PathBuf);

impl Endpoint {
    fn write(dir: &Path, bound: SocketAddr) -> anyhow::Result<Endpoint> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // An unspecified address (0.0.0.0, ::) is reachable on loopback.
        let host = if bound.ip().is_unspecified() {
            match bound {
                SocketAddr::V4(_) => "127.0.0.1".to_string(),
                SocketAddr::V6(_) => "[::1]".to_string(),
            }
        } else if bound.is_ipv6() {
            format!("[{}]", bound.ip())
        } else {
            bound.ip().to_string()
        };
        let path = dir.join(ENDPOINT_FILE);
        let tmp = dir.join(format!("{ENDPOINT_FILE}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        writeln!(f, "{host}:{}", bound.port())?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Endpoint(path))
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
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
