//! millrace-broker: one broker interface, several backends.
//!
//! Layout:
//! - `api`: the `Broker` and `Consumer` traits and the types they speak in (Kafka's names).
//! - `error`: `BrokerError`, the one error type of this layer.
//! - `hand_over`: `InFlight`, the work a consumer waits for before it gives partitions up.
//! - `embedded`: the embedded store (`millrace-store`) behind the traits.
//! - `remote`: a store held by another process, reached through its local endpoint.
//! - `kafka` (feature `kafka`): Apache Kafka through rdkafka.
pub mod api;
pub mod embedded;
pub mod error;
pub mod hand_over;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod remote;

pub use api::*;
pub use error::BrokerError;
pub use hand_over::{InFlight, InFlightGuard};
