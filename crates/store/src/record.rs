//! The record: what producers write and consumers read.

use std::sync::Arc;

use bytes::Bytes;

/// One header. Kafka allows duplicate names and keeps their order, so headers are a
/// list, not a map. The name is shared (`Arc<str>`): the same few names repeat on every
/// record, so a reader decodes each once per batch and copies are a reference count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub key: Arc<str>,
    pub value: Bytes,
}

impl Header {
    pub fn new(key: impl Into<Arc<str>>, value: impl Into<Bytes>) -> Self {
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

/// A record borrowed for encoding, so callers append records they do not own (a
/// stage's outputs, a broker client's produce request) without copying them first.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: &'a [Header],
    pub timestamp: i64,
}

impl Record {
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            key: self.key.as_deref(),
            value: &self.value,
            headers: &self.headers,
            timestamp: self.timestamp,
        }
    }
}

/// A record read back from a partition, with the offset it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: u64,
    pub record: Record,
}
