//! Wire format of the local endpoint.
//!
//! | bytes | field                                       |
//! |-------|---------------------------------------------|
//! | 4     | body length N, u32 big-endian (≤ 64 MiB)    |
//! | N     | body: one JSON `Request` or `Response`      |
//!
//! One request, then its response, in turn on each connection. A consumer lives on
//! the connection that opened it and leaves its group when the connection closes.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::api::*;
use crate::error::BrokerError;

/// Frames larger than this are refused before anything is allocated for them.
pub const MAX_FRAME: u32 = 64 << 20;

#[derive(Serialize, Deserialize, Debug)]
pub enum Request {
    CreateTopic {
        name: String,
        partitions: i32,
        replication_factor: i16,
        config: BTreeMap<String, String>,
    },
    ListTopics,
    DescribeTopic(String),
    DeleteTopic(String),
    Produce {
        topic: String,
        records: Vec<WireRecord>,
    },
    Committed {
        group: String,
        topic: String,
    },
    OpenConsumer {
        group: Option<String>,
        topics: Vec<String>,
        earliest: bool,
    },
    Poll {
        max_records: usize,
        timeout_ms: u64,
    },
    TakeRebalances,
    Commit(Vec<(String, i32, i64)>),
    Seek {
        topic: String,
        partition: i32,
        to: WireSeek,
    },
}

#[derive(Serialize, Deserialize, Debug)]
pub enum WireSeek {
    Beginning,
    End,
    Offset(i64),
    Timestamp(i64),
}

#[derive(Serialize, Deserialize, Debug)]
pub enum Response {
    Ok,
    Topics(Vec<String>),
    Description {
        name: String,
        partitions: Vec<(i32, i64, i64)>,
        config: BTreeMap<String, String>,
    },
    Delivered(Vec<(i32, i64)>),
    Committed(Vec<(i32, Option<i64>)>),
    /// The consumer's assignment after the call.
    Records {
        records: Vec<WireRecord>,
        assignment: Vec<(String, i32)>,
    },
    Rebalances(Vec<(bool, Vec<(String, i32)>)>),
    Error {
        kind: ErrorKind,
        message: String,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub enum ErrorKind {
    TopicExists,
    UnknownTopic,
    Invalid,
    Other,
}

/// A record on the wire, produced or consumed.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct WireRecord {
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub partition: Option<i32>,
    #[serde(default)]
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: Option<i64>,
}

impl WireRecord {
    pub fn from_produce(r: &ProduceRecord) -> Self {
        WireRecord {
            partition: r.partition,
            key: r.key.as_ref().map(|k| k.to_vec()),
            value: r.value.to_vec(),
            headers: r
                .headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.to_vec()))
                .collect(),
            timestamp: r.timestamp,
            ..Default::default()
        }
    }

    pub fn into_produce(self) -> ProduceRecord {
        ProduceRecord {
            partition: self.partition,
            key: self.key.map(Bytes::from),
            value: Bytes::from(self.value),
            headers: self
                .headers
                .into_iter()
                .map(|(k, v)| Header::new(k, Bytes::from(v)))
                .collect(),
            timestamp: self.timestamp,
        }
    }

    pub fn from_consumed(r: ConsumedRecord) -> Self {
        WireRecord {
            topic: r.topic.to_string(),
            partition: Some(r.partition),
            offset: r.offset,
            key: r.key.map(|k| k.to_vec()),
            value: r.value.to_vec(),
            headers: r
                .headers
                .into_iter()
                .map(|h| (h.key.to_string(), h.value.to_vec()))
                .collect(),
            timestamp: Some(r.timestamp),
        }
    }

    pub fn into_consumed(self) -> ConsumedRecord {
        ConsumedRecord {
            topic: self.topic.into(),
            partition: self.partition.unwrap_or(0),
            offset: self.offset,
            key: self.key.map(Bytes::from),
            value: Bytes::from(self.value),
            headers: self
                .headers
                .into_iter()
                .map(|(k, v)| Header::new(k, Bytes::from(v)))
                .collect(),
            timestamp: self.timestamp.unwrap_or(0),
        }
    }
}

pub fn error_response(e: &BrokerError) -> Response {
    let kind = match e {
        BrokerError::TopicExists(_) => ErrorKind::TopicExists,
        BrokerError::UnknownTopic(_) => ErrorKind::UnknownTopic,
        BrokerError::Invalid(_) => ErrorKind::Invalid,
        _ => ErrorKind::Other,
    };
    let message = match e {
        BrokerError::TopicExists(t) | BrokerError::UnknownTopic(t) => t.clone(),
        BrokerError::Invalid(m) => m.clone(),
        other => other.to_string(),
    };
    Response::Error { kind, message }
}

pub fn into_error(kind: ErrorKind, message: String) -> BrokerError {
    match kind {
        ErrorKind::TopicExists => BrokerError::TopicExists(message),
        ErrorKind::UnknownTopic => BrokerError::UnknownTopic(message),
        ErrorKind::Invalid => BrokerError::Invalid(message),
        ErrorKind::Other => BrokerError::Other(message),
    }
}

pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::other("frame larger than 64 MiB"))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(&body).await?;
    w.flush().await
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> std::io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes exceeds the 64 MiB limit"
        )));
    }
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
