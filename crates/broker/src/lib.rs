//! millrace-broker: one broker interface, several backends.
//!
//! Layout:
//! - `api`: the `Broker` and `Consumer` traits and the types they speak in (Kafka's names):
//!   records, topics, consumer groups, one file each.
//! - `encoded`: records moved as stored, the embedded store's optional fast path
//!   (`Broker::encoded`, `Consumer::encoded`).
//! - `partitioner`: Kafka's keyed partitioner (murmur2), for stages that place records.
//! - `error`: `BrokerError`, the one error type of this layer.
//! - `hand_over`: `InFlight`, the work a consumer waits for before it gives partitions up.
//! - `embedded`: the embedded store (`millrace-store`) behind the traits, on the hub it
//!   shares with the Kafka server of the same store.
//! - `holder`: a data directory held by this process and served with Kafka's protocol,
//!   and the watch of a process that reaches it as a client, ready to take it over.
//! - `kafka` (feature `kafka`): Apache Kafka through rdkafka.
pub mod api;
pub mod embedded;
pub mod encoded;
pub mod error;
pub mod hand_over;
pub mod holder;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod partitioner;

pub use api::*;
pub use error::BrokerError;
pub use hand_over::{InFlight, InFlightGuard};
