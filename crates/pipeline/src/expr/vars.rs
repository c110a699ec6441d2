//! The record variables an expression sees (`$key`, `$headers`, `$topic`,
//! `$partition`, `$offset`, `$timestamp`): borrowed from the record for one evaluation,
//! and built as jaq values only for the variables an expression names.

use std::fmt;

use super::Val;
use super::value::{bytes_to_str, int_val};

/// The record variables every expression can use, in the order they are bound.
pub const RECORD_VARS: [&str; 6] = [
    "$key",
    "$headers",
    "$topic",
    "$partition",
    "$offset",
    "$timestamp",
];

/// Where the record headers come from. Implemented for slices of pairs and for
/// closures, so a caller with its own header type can pass
/// `&|f: &mut dyn FnMut(&str, &[u8])| for h in &headers { f(&h.key, &h.value) }`
/// without building anything unless the expression uses `$headers`.
pub trait HeaderSource {
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &[u8]));
}

impl<F: Fn(&mut dyn FnMut(&str, &[u8]))> HeaderSource for F {
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &[u8])) {
        self(f)
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> HeaderSource for [(N, V)] {
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (n, v) in self {
            f(n.as_ref(), v.as_ref())
        }
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> HeaderSource for Vec<(N, V)> {
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &[u8])) {
        self.as_slice().for_each_header(f)
    }
}

/// The record's metadata, borrowed for one evaluation.
#[derive(Clone, Copy)]
pub struct RecordVars<'a> {
    pub key: Option<&'a [u8]>,
    pub headers: &'a dyn HeaderSource,
    pub topic: &'a str,
    pub partition: u32,
    pub offset: Option<u64>,
    pub timestamp: Option<i64>,
}

/// No headers at all.
struct NoHeaders;

impl HeaderSource for NoHeaders {
    fn for_each_header(&self, _f: &mut dyn FnMut(&str, &[u8])) {}
}

impl Default for RecordVars<'_> {
    fn default() -> Self {
        RecordVars {
            key: None,
            headers: &NoHeaders,
            topic: "",
            partition: 0,
            offset: None,
            timestamp: None,
        }
    }
}

impl fmt::Debug for RecordVars<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordVars")
            .field("key", &self.key.map(String::from_utf8_lossy))
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

impl<'a> RecordVars<'a> {
    /// Variables of a record read from `topic`/`partition`, with no key or headers yet.
    pub fn new(topic: &'a str, partition: u32) -> Self {
        RecordVars {
            topic,
            partition,
            ..RecordVars::default()
        }
    }
    pub fn key(mut self, key: Option<&'a [u8]>) -> Self {
        self.key = key;
        self
    }
    pub fn headers(mut self, headers: &'a dyn HeaderSource) -> Self {
        self.headers = headers;
        self
    }
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Which record variables an expression names; only those are built per record.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct UsedVars(pub(super) [bool; 6]);

/// Does `source` name `$var` as a whole identifier (`$key` but not `$keys`)?
/// A false positive only costs building one unused variable.
pub(super) fn mentions_var(source: &str, var: &str) -> bool {
    source.match_indices(var).any(|(i, _)| {
        let next = source[i + var.len()..].chars().next();
        !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

pub(super) fn record_vals<'v>(
    used: UsedVars,
    vars: &RecordVars<'v>,
) -> impl Iterator<Item = Val> + use<'v> {
    let vars = *vars;
    (0..RECORD_VARS.len()).map(move |i| {
        if !used.0[i] {
            return Val::Null;
        }
        match i {
            0 => vars.key.map_or(Val::Null, bytes_to_str),
            1 => {
                let mut map = jaq_json::Map::default();
                vars.headers.for_each_header(&mut |name, value| {
                    map.insert(Val::from(name.to_owned()), bytes_to_str(value));
                });
                Val::obj(map)
            }
            2 => Val::from(vars.topic.to_owned()),
            3 => Val::from(vars.partition as usize),
            4 => vars.offset.map_or(Val::Null, |o| int_val(o as i128)),
            _ => vars.timestamp.map_or(Val::Null, |t| int_val(t as i128)),
        }
    })
}
