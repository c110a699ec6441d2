//! [`Holder`]: a data directory held by this process — the store opened, its hub
//! built, and the hub served with Kafka's protocol, its address recorded in
//! `<data>/endpoint`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use millrace_server::{ListenerPolicy, ServerConfig, ServerError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::endpoint::{read_endpoint, write_endpoint};
use crate::embedded::EmbeddedBroker;
use crate::error::BrokerError;

pub use millrace_server::cluster_id;

/// Where a holder listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// The loopback address recorded in the data directory, so clients and tools
    /// pointed at it keep working; a new port on 127.0.0.1 when there is none or it
    /// cannot be bound.
    Recorded,
    /// Exactly this address (`millrace serve --listen`), or an error.
    At(SocketAddr),
}

/// A data directory this process holds and serves. Stopping it ([`Holder::stop`])
/// closes the listener after the requests in hand; the store's lock goes with the
/// last handle on the store (this process's stages may still hold one).
pub struct Holder {
    broker: EmbeddedBroker,
    addr: SocketAddr,
    bound: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<Result<(), ServerError>>,
}

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holder")
            .field("dir", &self.broker.store().dir())
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// What a holder serves with unless told otherwise: Kafka's broker defaults, on
/// loopback, for the data directory owner's processes only.
pub fn holder_config(dir: &Path) -> Result<ServerConfig, BrokerError> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(dir)
        .map_err(|e| BrokerError::io(format!("cannot read {}", dir.display()), e))?
        .uid();
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let access = ListenerPolicy::default()
        .access(loopback, None, owner)
        .map_err(|e| BrokerError::server("the listener's access", e))?;
    Ok(ServerConfig {
        access,
        ..ServerConfig::default()
    })
}

impl Holder {
    /// Opens `dir` (taking its lock: [`millrace_store::StoreError::Locked`] when another
    /// process holds it) and serves it on loopback ([`holder_config`]).
    pub async fn open(dir: &Path, listen: Listen) -> Result<Holder, BrokerError> {
        let broker = open_store(dir).await?;
        let config = holder_config(dir)?;
        Holder::serve(broker, listen, config).await
    }

    /// Serves `broker`'s hub with `config` and records the address.
    pub async fn serve(
        broker: EmbeddedBroker,
        listen: Listen,
        config: ServerConfig,
    ) -> Result<Holder, BrokerError> {
        let dir = broker.store().dir().to_path_buf();
        let listener = match listen {
            Listen::At(addr) => TcpListener::bind(addr)
                .await
                .map_err(|e| BrokerError::io(format!("cannot listen on {addr}"), e))?,
            Listen::Recorded => bind_recorded(&dir).await?,
        };
        Holder::on_listener(broker, listener, config)
    }

    /// Serves `broker`'s hub on `listener` and records its address.
    pub fn on_listener(
        broker: EmbeddedBroker,
        listener: TcpListener,
        config: ServerConfig,
    ) -> Result<Holder, BrokerError> {
        let dir = broker.store().dir().to_path_buf();
        let bound = listener
            .local_addr()
            .map_err(|e| BrokerError::io("listener", e))?;
        let addr = write_endpoint(&dir, bound).map_err(|e| {
            BrokerError::io(
                format!(
                    "cannot record the address in {}",
                    dir.join(super::ENDPOINT_FILE).display()
                ),
                e,
            )
        })?;
        let (stop, mut stopped) = watch::channel(false);
        let hub = Arc::clone(broker.hub());
        let server = tokio::spawn(millrace_server::serve(listener, hub, config, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Ok(Holder {
            broker,
            addr,
            bound,
            stop,
            server,
        })
    }

    /// The store, for this process's own use.
    pub fn broker(&self) -> &EmbeddedBroker {
        &self.broker
    }

    /// The address served, as recorded in `<data>/endpoint`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the listener is bound to (`0.0.0.0:9092` where the recorded one is
    /// `127.0.0.1:9092`).
    pub fn bound(&self) -> SocketAddr {
        self.bound
    }

    /// Stops serving: connections finish the request in hand (a produce is answered
    /// once durable) and close; clients then find the next holder. Returns once the
    /// listener is closed.
    pub async fn stop(self) -> Result<(), BrokerError> {
        let _ = self.stop.send(true);
        match self.server.await {
            Ok(r) => r.map_err(|e| BrokerError::server("serving the store", e)),
            Err(e) => Err(BrokerError::task("serving the store", e)),
        }
    }
}

/// Opens the store off the async threads (recovery reads every partition's tail),
/// with the group settings of a process holding a data directory
/// ([`crate::embedded::groups_config`]).
pub async fn open_store(dir: &Path) -> Result<EmbeddedBroker, BrokerError> {
    open_store_with(dir, crate::embedded::groups_config()).await
}

/// [`open_store`] with the group coordinator's settings.
pub async fn open_store_with(
    dir: &Path,
    groups: millrace_server::group::CoordinatorConfig,
) -> Result<EmbeddedBroker, BrokerError> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || EmbeddedBroker::open_with_groups(&dir, groups))
        .await
        .map_err(|e| BrokerError::task("opening the store", e))?
}

/// The recorded loopback address if it can be bound, else a new port on 127.0.0.1.
async fn bind_recorded(dir: &Path) -> Result<TcpListener, BrokerError> {
    if let Some(addr) = read_endpoint(dir).filter(|a| a.ip().is_loopback())
        && let Ok(l) = TcpListener::bind(addr).await
    {
        return Ok(l);
    }
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    TcpListener::bind(any)
        .await
        .map_err(|e| BrokerError::io(format!("cannot listen on {any}"), e))
}
