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

/// Names shared by many records (topics, header keys): one `Arc<str>` per distinct
/// name instead of an allocation per record.
#[derive(Debug, Default)]
pub struct Names(Vec<Arc<str>>);

impl Names {
    /// Names remembered; past this, new names are allocated each time (a topic or
    /// header name set that large is unusual, and the lookup is a linear scan).
    const KEPT: usize = 32;

    pub fn get(&mut self, name: &str) -> Arc<str> {
        match self.find(name.as_bytes()) {
            Some(n) => n,
            None => self.keep(Arc::from(name)),
        }
    }

    /// [`get`](Self::get) for a name in bytes, which must be UTF-8.
    pub fn get_utf8(&mut self, raw: &[u8]) -> Result<Arc<str>, std::str::Utf8Error> {
        match self.find(raw) {
            Some(n) => Ok(n),
            None => Ok(self.keep(Arc::from(std::str::from_utf8(raw)?))),
        }
    }

    fn find(&self, raw: &[u8]) -> Option<Arc<str>> {
        self.0.iter().find(|n| n.as_bytes() == raw).cloned()
    }

    fn keep(&mut self, name: Arc<str>) -> Arc<str> {
        if self.0.len() < Self::KEPT {
            self.0.push(Arc::clone(&name));
        }
        name
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
