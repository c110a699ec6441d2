//! The store of a data directory that another millrace process holds, reached as the
//! Kafka broker that process serves (`crate::holder`).
//!
//! What differs from a Kafka cluster:
//! - the holder may leave, and another process then serves the store at the same
//!   address within about a tenth of a second: clients try to reconnect every 10 ms
//!   to 100 ms instead of librdkafka's 100 ms to 10 s, so none waits long for it;
//! - group consumers offer the `range` assignor, the one consumers inside the holder
//!   use, so both share a group's partitions (librdkafka cannot offer an eager and a
//!   cooperative assignor together, and millrace's default is cooperative-sticky);
//! - before anything else the broker's cluster id is checked against the data
//!   directory's: an address recorded in the directory may since have been taken by
//!   something else (another broker on 9092, a holder of another directory).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{Flavour, KafkaBroker, blocking};
use crate::error::BrokerError;

/// How the backend of a held store is named in messages and `/api/stats`.
pub const HELD_BACKEND: &str = "embedded (through the process holding the store)";

static HELD: Flavour = Flavour {
    backend: HELD_BACKEND,
    consumer_defaults: &[("partition.assignment.strategy", "range")],
    quiet_transport: true,
};

/// Client settings for every connection to a holder (producer, consumers, admin).
const RECONNECT: &[(&str, &str)] = &[
    ("reconnect.backoff.ms", "10"),
    ("reconnect.backoff.max.ms", "100"),
];

impl KafkaBroker {
    /// The store in `dir`, served by the process holding it at `addr`. Fails with
    /// [`BrokerError::Unreachable`] when nothing answers there, and with
    /// [`BrokerError::NotTheStore`] when what answers is not the store of `dir`.
    pub async fn connect_to_holder(
        dir: &Path,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<KafkaBroker, BrokerError> {
        let mut props: BTreeMap<String, String> = RECONNECT
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        // As the holder's own consumers name themselves: `groups describe` then tells
        // the processes apart.
        props.insert(
            "client.id".to_string(),
            format!("millrace-{}", std::process::id()),
        );
        let broker = KafkaBroker::connect_as(&addr.to_string(), props, timeout, &HELD).await?;
        let expected = millrace_server::cluster_id(dir);
        let producer = Arc::clone(&broker.inner.producer);
        let found = blocking(move || producer.client().fetch_cluster_id(timeout)).await?;
        if found.as_deref() != Some(expected.as_str()) {
            return Err(BrokerError::NotTheStore {
                addr: addr.to_string(),
                dir: dir.to_path_buf(),
            });
        }
        Ok(broker)
    }
}
