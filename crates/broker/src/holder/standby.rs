//! [`Standby`]: a process that reaches a data directory as a Kafka client of its
//! holder watches the directory's lock and takes the store over when the holder goes.
//!
//! Every [`TRY_EVERY`] it tries the lock. The process that gets it opens the store,
//! builds a hub and serves it at the address its clients were using, so they —
//! including this process's own Kafka client — reconnect as to a restarted broker:
//! acknowledged records are in the store, committed offsets in its journal, and
//! consumer groups form again as members rejoin. If that address cannot be bound it
//! serves a new one and says so; every client of the old address is then told
//! ([`Moved`]), as is a standby that sees another process record a new address.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace_store::StoreError;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::endpoint::read_endpoint;
use super::hold::{Holder, holder_config, open_store};
use crate::error::BrokerError;

/// How often a standby tries the lock: how long clients may wait for a new holder
/// after the old one exits.
pub const TRY_EVERY: Duration = Duration::from_millis(100);

/// The store is served at a new address: clients of the old one cannot follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moved {
    pub from: SocketAddr,
    pub to: SocketAddr,
}

/// Watches a data directory held by another process, ready to take it over.
pub struct Standby {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    holding: Arc<Mutex<Option<SocketAddr>>>,
}

impl Standby {
    /// Starts watching `dir`, whose holder serves `addr`. `moved` is called (once) if
    /// the store comes to be served elsewhere.
    pub fn start(
        dir: PathBuf,
        addr: SocketAddr,
        moved: impl FnOnce(Moved) + Send + 'static,
    ) -> Standby {
        let (stop, stopped) = watch::channel(false);
        let holding = Arc::new(Mutex::new(None));
        let task = tokio::spawn(watch(dir, addr, stopped, Arc::clone(&holding), moved));
        Standby {
            stop,
            task,
            holding,
        }
    }

    /// The address this process serves the store at, once it has taken it over.
    pub fn holding(&self) -> Option<SocketAddr> {
        *self.holding.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops watching; a store taken over is served until the requests in hand are
    /// answered, then let go.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn watch(
    dir: PathBuf,
    addr: SocketAddr,
    mut stopped: watch::Receiver<bool>,
    holding: Arc<Mutex<Option<SocketAddr>>>,
    moved: impl FnOnce(Moved) + Send + 'static,
) {
    let mut moved = Some(moved);
    let mut tell = |m: Moved| {
        if let Some(f) = moved.take() {
            f(m);
        }
    };
    let mut complained = false;
    let holder = loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            () = tokio::time::sleep(TRY_EVERY) => {}
        }
        // A directory that is gone is not recreated empty.
        if !dir.join("LOCK").exists() {
            continue;
        }
        match take_over(&dir, addr).await {
            Ok(h) => break h,
            Err(BrokerError::Store(StoreError::Locked { .. })) => {
                // Another process holds it; it serves where it says.
                if let Some(now) = read_endpoint(&dir)
                    && now != addr
                {
                    tell(Moved {
                        from: addr,
                        to: now,
                    });
                    return;
                }
            }
            Err(e) => {
                if !complained {
                    tracing::warn!("cannot take over {}: {e}", dir.display());
                    complained = true;
                }
            }
        }
    };
    let served = holder.addr();
    *holding.lock().unwrap_or_else(|e| e.into_inner()) = Some(served);
    if served == addr {
        tracing::info!(
            "took over {} from the process that held it; serving it at {served}",
            dir.display()
        );
    } else {
        tracing::warn!(
            "took over {} from the process that held it, but could not serve it at {addr} \
             again; serving it at {served}",
            dir.display()
        );
        tell(Moved {
            from: addr,
            to: served,
        });
    }
    let _ = stopped.wait_for(|s| *s).await;
    if let Err(e) = holder.stop().await {
        tracing::warn!("{e}");
    }
}

/// Opens the store (if its lock is free) and serves it at `addr`, or at a new port
/// when `addr` cannot be bound.
async fn take_over(dir: &Path, addr: SocketAddr) -> Result<Holder, BrokerError> {
    let broker = open_store(dir).await?;
    let config = holder_config(dir)?;
    let listener = match bind_again(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("cannot listen on {addr} again: {e}");
            let any = SocketAddr::new(addr.ip(), 0);
            TcpListener::bind(any)
                .await
                .map_err(|e| BrokerError::io(format!("cannot listen on {any}"), e))?
        }
    };
    Holder::on_listener(broker, listener, config)
}

/// Binds `addr`, retrying for a moment: the old holder closes its listener before it
/// lets go of the lock, but a port just freed may take a moment to be free to bind.
async fn bind_again(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..10 {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no attempt")))
}
