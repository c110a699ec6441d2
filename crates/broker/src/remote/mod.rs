//! Reaching an embedded store that another process holds.
//!
//! Only one process may open a data directory. So that the book's three-terminal
//! session works (a producer, a consumer and a running pipeline on one store), the
//! holder serves the broker interface on a Unix socket inside the data directory
//! (`millrace.sock`, private to the directory's owner) and other `millrace` commands
//! speak to it instead of opening the store.
//!
//! - `protocol`: frames (length-prefixed JSON) and the request/response types.
//! - `server`: serves a `Broker` on the socket.
//! - `client`: `RemoteBroker`, the `Broker` implementation that talks to a server.

mod client;
mod protocol;
mod server;

pub use client::RemoteBroker;
pub use server::serve;

/// The socket's file name inside the data directory.
pub const SOCKET_NAME: &str = "millrace.sock";
