//! One data directory, several processes, one protocol: Kafka's.
//!
//! The process that holds a data directory (its lock) builds the store's hub, uses the
//! store in-process through [`EmbeddedBroker`](crate::embedded::EmbeddedBroker) on that
//! hub, and serves the same hub with Kafka's wire protocol on loopback, recording the
//! address in `<data>/endpoint`. Every other process on that directory is a Kafka
//! client of that address, and stands by to take the store over: when the holder
//! exits (cleanly or not), the first process to get the lock opens the store and
//! serves it at the *same* address, so every client — its own included — reconnects
//! to it as to a restarted broker.
//!
//! - `endpoint`: `<data>/endpoint`, the address served (owner-only).
//! - `hold`: [`Holder`] — the store opened, its hub served.
//! - `standby`: [`Standby`] — a client's watch on the lock, and the take-over.

mod endpoint;
mod hold;
mod standby;

pub use endpoint::{ENDPOINT_FILE, read_endpoint, write_endpoint};
pub use hold::{Holder, Listen, cluster_id, holder_config, open_store, open_store_with};
pub use standby::{Moved, Standby};
