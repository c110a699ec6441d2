//! The server's one error type: what makes a connection close, or the server refuse
//! to start. Errors a client caused by asking something wrong are not here: they are
//! Kafka error codes in the response.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// A frame's length is negative or over `socket.request.max.bytes`.
    #[error(
        "a request of {size} bytes is over the limit of {limit} bytes (socket.request.max.bytes)"
    )]
    FrameTooLarge { size: i64, limit: usize },

    /// The peer closed the connection in the middle of a frame.
    #[error("the connection closed in the middle of a request ({read} of {size} bytes read)")]
    TruncatedFrame { read: usize, size: usize },

    /// Bytes that do not decode as the request they claim to be.
    #[error("undecodable request (api key {api_key}, version {api_version}): {reason}")]
    BadRequest {
        api_key: i16,
        api_version: i16,
        reason: String,
    },

    /// An API key no Kafka version defines: there is no response shape to answer with.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),

    /// A version of an API that neither this server nor the protocol library can read.
    #[error("api key {api_key} version {api_version} is not supported")]
    UnsupportedVersion { api_key: i16, api_version: i16 },

    /// A request other than the SASL handshake before the client authenticated.
    #[error("api key {0} sent before authenticating")]
    Unauthenticated(i16),

    #[error("authentication failed: {0}")]
    AuthenticationFailed(String),

    /// A peer on loopback that is not the data directory's owner.
    #[error(
        "connection from {peer} refused: it is not from the data directory owner's user (uid {owner}); pass --allow-any-user to accept it"
    )]
    ForeignUser {
        peer: std::net::SocketAddr,
        owner: u32,
    },

    /// The users file is unreadable, malformed, or readable by others.
    #[error("users file {}: {reason}", path.display())]
    Users { path: PathBuf, reason: String },

    /// A listener the configuration refuses (e.g. off loopback without authentication).
    #[error("{0}")]
    Config(String),

    #[error(transparent)]
    Store(#[from] millrace_store::StoreError),
}
