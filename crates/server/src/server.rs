//! The accept loop: one task per connection, each reading a request, answering it,
//! and reading the next (Kafka's order: one request at a time per connection, answers
//! in order). The caller owns shutdown: [`serve`] stops accepting when its `shutdown`
//! future resolves, tells every connection to close after the request it is handling,
//! and returns once they have (or after a few seconds, closing the stragglers).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::{Authentication, peer};
use crate::config::ServerConfig;
use crate::connection::Connection;
use crate::dispatch::dispatch;
use crate::error::ServerError;
use crate::handlers::{Ctx, Session};
use crate::hub::Hub;

/// How long shutdown waits for connections to finish the request they are handling.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves Kafka's protocol on `listener` over `hub`'s store until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    config: ServerConfig,
    shutdown: impl Future,
) -> Result<(), ServerError> {
    let ctx = Arc::new(Ctx {
        cluster_id: cluster_id(hub.store().dir()),
        hub,
        config,
    });
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(Arc::clone(&ctx), stream, stopped.clone()));
                }
                // Out of file descriptors and the like: say so, wait, go on.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Reap finished connections so the set does not grow with every client.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let _ = stop.send(true);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "closing connections still busy at shutdown"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// A stable cluster id for a data directory: 16 bytes of a hash of its path, in
/// base64url as Kafka writes cluster ids. A client that found the address in the
/// directory checks it, so an address served by something else is not mistaken for
/// the store's.
pub fn cluster_id(dir: &std::path::Path) -> String {
    let path = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

async fn connection(ctx: Arc<Ctx>, stream: TcpStream, mut stop: watch::Receiver<bool>) {
    let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
        return;
    };
    if let Err(e) = admit(&ctx.config, peer, local) {
        tracing::warn!(%peer, "{e}");
        return;
    }
    let _open = ctx.hub.stats().connected();
    // Requests and responses are small and latency matters (a produce waits for it).
    let _ = stream.set_nodelay(true);
    let mut conn = Connection::new(stream, ctx.config.max_request_bytes);
    let mut session = Session {
        peer,
        local,
        auth: Authentication::new(ctx.config.access.users.clone()),
    };
    tracing::debug!(%peer, "connected");
    loop {
        let frame = tokio::select! {
            frame = conn.read_frame() => frame,
            _ = stop.changed() => break,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            // A client that went away without closing (killed, or its host's connection
            // reset) is no news: Kafka's clients do it all the time.
            Err(ServerError::Io(e)) if gone(&e) => {
                tracing::debug!(%peer, "closing the connection: {e}");
                break;
            }
            Err(e) => {
                tracing::warn!(%peer, "closing the connection: {e}");
                break;
            }
        };
        match dispatch(&ctx, &mut session, frame).await {
            Ok(Some(response)) => {
                if let Err(e) = conn.write_frame(response).await {
                    tracing::debug!(%peer, "closing the connection: {e}");
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%peer, "closing the connection: {e}");
                break;
            }
        }
        if session.auth.failed() {
            break;
        }
    }
    tracing::debug!(%peer, "disconnected");
}

/// Whether an i/o error says the peer is gone.
fn gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}

/// Whether a connection may be served at all: on a loopback listener that only the
/// data directory's owner may use, the peer's process must run as that user.
fn admit(
    config: &ServerConfig,
    peer: std::net::SocketAddr,
    local: std::net::SocketAddr,
) -> Result<(), ServerError> {
    let Some(owner) = config.access.owner_uid else {
        return Ok(());
    };
    match peer::uid_of(peer, local) {
        Some(uid) if uid == owner => Ok(()),
        _ => Err(ServerError::ForeignUser { peer, owner }),
    }
}
