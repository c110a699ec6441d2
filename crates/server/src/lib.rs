//! millrace-server: Apache Kafka's wire protocol over the embedded store — a single-node
//! broker (replication factor 1) that every Kafka client, tool and script can use.
//!
//! # Layout
//! - `group`: the group coordinator (Kafka's classic protocol), independent of the wire.
pub mod group;
