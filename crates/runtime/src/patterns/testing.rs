//! What the patterns' unit tests share: a record as a consumer hands it over, with a
//! key, headers and a timestamp, so a test can see which of them an output keeps.

use std::sync::Arc;

use bytes::Bytes;
use millrace_broker::{ConsumedRecord, Header};

use crate::operator::{Emit, RecordOperator};

/// A record at `in`/0, offset 7, keyed `key`, with one `trace` header.
pub fn record(key: Option<&str>, value: &[u8]) -> ConsumedRecord {
    ConsumedRecord {
        topic: Arc::from("in"),
        partition: 0,
        offset: 7,
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: Bytes::copy_from_slice(value),
        headers: vec![Header::new("trace", Bytes::from_static(b"t-1"))],
        timestamp: 1_700_000_000_000,
    }
}

/// Asserts that `emit` carries `rec`'s key, headers and timestamp, and no partition of
/// its own (the task picks it).
pub fn assert_keeps_key_headers_and_time(emit: &Emit, rec: &ConsumedRecord) {
    assert_eq!(emit.record.key, rec.key, "the key travels with the record");
    assert_eq!(emit.record.headers, rec.headers, "so do the headers");
    assert_eq!(emit.record.timestamp, Some(rec.timestamp), "and the time");
    assert_eq!(emit.record.partition, None);
}

/// The (output, value) of each emit, in order.
pub fn routes(emits: &[Emit]) -> Vec<(usize, Bytes)> {
    emits
        .iter()
        .map(|e| (e.output, e.record.value.clone()))
        .collect()
}

/// What a one-output operator wrote for a record (its values, each checked to keep the
/// record's key, headers and time), or the record's error.
pub fn one_output(
    op: &mut impl RecordOperator,
    rec: &ConsumedRecord,
) -> Result<Vec<Bytes>, String> {
    let mut emits = Vec::new();
    op.process_one(rec, &mut emits).map_err(|e| e.error)?;
    Ok(emits
        .into_iter()
        .map(|e| {
            assert_eq!(e.output, 0, "the one output");
            assert_keeps_key_headers_and_time(&e, rec);
            e.record.value
        })
        .collect())
}
