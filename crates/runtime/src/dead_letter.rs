//! Dead-letter records: the input as it was, plus headers that say what went wrong and
//! where the record came from, so it can be inspected and replayed.

use bytes::Bytes;
use millrace_broker::{ConsumedRecord, Header, ProduceRecord};

pub const STAGE: &str = "millrace.stage";
pub const ERROR: &str = "millrace.error";
pub const ATTEMPTS: &str = "millrace.attempts";
pub const SOURCE_TOPIC: &str = "millrace.source.topic";
pub const SOURCE_PARTITION: &str = "millrace.source.partition";
pub const SOURCE_OFFSET: &str = "millrace.source.offset";

/// Longest error text kept in a header; worker errors can be arbitrarily long.
const MAX_ERROR_BYTES: usize = 4096;

pub fn record(stage: &str, source: &ConsumedRecord, error: &str, attempts: u32) -> ProduceRecord {
    let mut error = error.to_string();
    if error.len() > MAX_ERROR_BYTES {
        let mut cut = MAX_ERROR_BYTES;
        while !error.is_char_boundary(cut) {
            cut -= 1;
        }
        error.truncate(cut);
        error.push('…');
    }
    let mut headers = source.headers.clone();
    headers.push(Header::new(STAGE, Bytes::from(stage.to_string())));
    headers.push(Header::new(ERROR, Bytes::from(error)));
    headers.push(Header::new(ATTEMPTS, Bytes::from(attempts.to_string())));
    headers.push(Header::new(
        SOURCE_TOPIC,
        Bytes::copy_from_slice(source.topic.as_bytes()),
    ));
    headers.push(Header::new(
        SOURCE_PARTITION,
        Bytes::from(source.partition.to_string()),
    ));
    headers.push(Header::new(
        SOURCE_OFFSET,
        Bytes::from(source.offset.to_string()),
    ));
    ProduceRecord {
        partition: None,
        key: source.key.clone(),
        value: source.value.clone(),
        headers,
        timestamp: Some(source.timestamp),
    }
}
