//! The event-driven patterns, one file each, as `Operator`s: each is built from its
//! plan stage (`crate::build` picks the file) and runs its logic through
//! `millrace_pipeline::expr`'s compiled types, which pick the fastest tier once.
//!
//! Each takes the record value untouched unless its job is to change it (map, exec):
//! a copier or a filter writes the very bytes it read, so no JSON is re-encoded.

pub mod copier;
pub mod exec;
pub mod filter;
pub mod map;
pub mod merger;
pub mod sharder;
pub mod splitter;
#[cfg(test)]
mod testing;

use millrace_broker::ConsumedRecord;
use millrace_pipeline::expr::{Format, RecordVars, Val, parse_value};

use crate::operator::RecordError;

/// Parses the value as the stage's format says; not JSON is a record error.
pub fn value_of(rec: &ConsumedRecord, format: Format) -> Result<Val, RecordError> {
    parse_value(&rec.value, format).map_err(RecordError::new)
}

/// Runs `f` with the record's variables ($key, $headers, $topic, $partition, $offset,
/// $timestamp) borrowed from the record.
pub fn with_vars<T>(rec: &ConsumedRecord, f: impl FnOnce(&RecordVars<'_>) -> T) -> T {
    let headers = |g: &mut dyn FnMut(&str, &[u8])| {
        for h in &rec.headers {
            g(&h.key, &h.value)
        }
    };
    let vars = RecordVars::new(&rec.topic, u32::try_from(rec.partition).unwrap_or(0))
        .key(rec.key.as_deref())
        .headers(&headers)
        .offset(u64::try_from(rec.offset).unwrap_or(0))
        .timestamp(rec.timestamp);
    f(&vars)
}
