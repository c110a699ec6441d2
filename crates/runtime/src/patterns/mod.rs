//! The event-driven patterns, one file each, as `Operator`s.
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

use millrace_broker::ConsumedRecord;
use millrace_pipeline::Predicate;
use millrace_pipeline::expr::{Format, NativePredicates, Projection, RecordVars, Val, parse_value};

use crate::operator::RecordError;

/// Parses the value as the stage's format says; not JSON is a record error.
pub fn value_of(rec: &ConsumedRecord, format: Format) -> Result<Val, RecordError> {
    parse_value(&rec.value, format).map_err(RecordError::new)
}

/// The jq sources of predicates on JSON records: `None` for text records, or when a
/// predicate is a closure.
fn jq_sources<'a>(
    predicates: impl IntoIterator<Item = &'a Predicate>,
    format: Format,
) -> Option<Vec<&'a str>> {
    if !matches!(format, Format::Json) {
        return None;
    }
    predicates.into_iter().map(Predicate::source).collect()
}

/// The projection jq predicates are evaluated on, when they all read JSON values only
/// through a few plain paths (see `expr::Projection`).
pub fn projection_of<'a>(
    predicates: impl IntoIterator<Item = &'a Predicate>,
    format: Format,
) -> Option<Projection> {
    Projection::of_all(jq_sources(predicates, format)?)
}

/// Native forms of the predicates (see `NativePredicates`), when every one is a jq
/// condition within their grammar.
pub fn native_of<'a>(
    predicates: impl IntoIterator<Item = &'a Predicate>,
    format: Format,
) -> Option<NativePredicates> {
    NativePredicates::compile(jq_sources(predicates, format)?)
}

/// The value predicates see: the record's projection when it can be picked, else the
/// whole record parsed.
pub fn value_for(
    rec: &ConsumedRecord,
    format: Format,
    projection: Option<&Projection>,
) -> Result<Val, RecordError> {
    if let Some(v) = projection.and_then(|p| p.project(&rec.value)) {
        return Ok(v);
    }
    value_of(rec, format)
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
