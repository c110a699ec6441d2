//! Records as produced and consumed, and where they land.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;

use super::Result;

/// A record header: a name and bytes, as Kafka's. The store decodes records' headers
/// straight into this type, so a consumed record carries them without a copy; the
/// broker's records ([`ProduceRecord`], [`ConsumedRecord`]) speak it, and no caller
/// needs the store for it.
pub use millrace_store::Header;

/// A topic and one of its partitions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Shared: stage tasks make one per record they track, so a copy is a reference
    /// count.
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A record to produce. `partition: None` lets the backend choose: murmur2 of the key
/// (as the Java client does) or, without a key, spread the records.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProduceRecord {
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<Header>,
    /// Milliseconds since the epoch; `None` means "now".
    pub timestamp: Option<i64>,
}

impl ProduceRecord {
    pub fn value(value: impl Into<Bytes>) -> Self {
        ProduceRecord {
            value: value.into(),
            ..Default::default()
        }
    }

    pub fn keyed(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        ProduceRecord {
            key: Some(key.into()),
            value: value.into(),
            ..Default::default()
        }
    }
}

/// Where an acknowledged record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// The acknowledgements of one [`Broker::send`]: resolves once every record is durable,
/// with the position of each, in order. Owns everything it needs (no borrow of the
/// records), so a writer can keep several in flight.
pub struct Acks(Pin<Box<dyn Future<Output = Result<Vec<Delivered>>> + Send + 'static>>);

impl Acks {
    pub fn new(f: impl Future<Output = Result<Vec<Delivered>>> + Send + 'static) -> Acks {
        Acks(Box::pin(f))
    }

    /// Acknowledgements already in hand.
    pub fn ready(r: Result<Vec<Delivered>>) -> Acks {
        Acks::new(std::future::ready(r))
    }
}

impl Future for Acks {
    type Output = Result<Vec<Delivered>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// A record as a consumer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Shared by every record of a poll: one reference count, not one allocation, per
    /// record.
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<Header>,
    pub timestamp: i64,
}

/// Names shared by the records a consumer hands out (topics, header keys): one
/// `Arc<str>` per distinct name. The store decodes header names with the same table.
pub use millrace_store::Names;
