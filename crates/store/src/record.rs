//! The record: what producers write and consumers read.

use bytes::Bytes;

/// One header. Kafka allows duplicate names and keeps their order, so headers are a
/// list, not a map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Bytes,
}

impl Header {
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Header {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A record as a producer hands it over: optional key, value, ordered headers and a
/// timestamp in milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<Header>,
    pub timestamp: i64,
}

impl Record {
    pub fn new(key: Option<Bytes>, value: impl Into<Bytes>, timestamp: i64) -> Self {
        Record {
            key,
            value: value.into(),
            headers: Vec::new(),
            timestamp,
        }
    }
}

/// A record read back from a partition, with the offset it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: u64,
    pub record: Record,
}
