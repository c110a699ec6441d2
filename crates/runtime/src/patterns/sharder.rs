//! sharder: the same shard key always lands in the same shard — one of N output
//! topics, a named shard, or one of the partitions of a single output topic.
//!
//! By key hash: murmur2 of the record key, as Kafka's Java client partitions. By
//! expression: a jq filter (or closure) gives the shard key, which then becomes the
//! output record's key, so a later stage grouping by it (reduce, join by key) finds
//! each key in one partition, and Kafka tools see the same partitioning.

use std::collections::HashMap;

use bytes::Bytes;
use millrace_broker::ConsumedRecord;
use millrace_pipeline::expr::{PlainPath, pick};
use millrace_pipeline::{Format, Selector};
use millrace_store::partition_for_key;

use super::{value_of, with_vars};
use crate::operator::{Emit, RecordError, RecordOperator, derived};

pub enum Target {
    /// Shard i goes to output i.
    Outputs(u32),
    /// The shard key names the output; others go to `default` or are record errors.
    Named {
        shards: HashMap<Vec<u8>, usize>,
        default: Option<usize>,
    },
    /// Shard i goes to partition i of output 0.
    Partitions(u32),
}

pub struct Sharder {
    by: Option<Selector>,
    target: Target,
    format: Format,
    /// `by` as a plain path (`.user`) over JSON values: the key is picked from the
    /// record's bytes, without parsing it into a jq value (the general path decides
    /// whenever the pick gives up).
    plain: Option<PlainPath>,
}

impl Sharder {
    pub fn new(by: Option<Selector>, target: Target, format: Format) -> Self {
        let plain = match format {
            Format::Json => by.as_ref().and_then(Selector::as_plain_path),
            Format::Text => None,
        };
        Sharder {
            by,
            target,
            format,
            plain,
        }
    }

    /// The shard key `by` selects from a record.
    fn key_of(&self, sel: &Selector, rec: &ConsumedRecord) -> Result<Vec<u8>, RecordError> {
        if let Some(path) = &self.plain
            && let Some([picked]) = pick(&rec.value, [path])
            && let Ok(key) = picked.key()
        {
            return Ok(key.into_owned());
        }
        let v = value_of(rec, self.format)?;
        with_vars(rec, |vars| sel.key(&v, vars)).map_err(RecordError::new)
    }
}

impl RecordOperator for Sharder {
    fn process_one(
        &mut self,
        rec: &ConsumedRecord,
        emits: &mut Vec<Emit>,
    ) -> Result<(), RecordError> {
        let key: Vec<u8> = match &self.by {
            None => match &rec.key {
                Some(k) => k.to_vec(),
                None => {
                    return Err(RecordError::new(
                        "sharding by key hash needs a record key, and this record has none",
                    ));
                }
            },
            Some(sel) => self.key_of(sel, rec)?,
        };
        let mut record = derived(rec, rec.value.clone());
        let output = match &self.target {
            Target::Outputs(n) => {
                usize::try_from(partition_for_key(&key, (*n).max(1))).unwrap_or(0)
            }
            Target::Named { shards, default } => match shards.get(&key).copied().or(*default) {
                Some(o) => o,
                None => {
                    return Err(RecordError::new(format!(
                        "shard key '{}' names no shard and there is no default",
                        String::from_utf8_lossy(&key)
                    )));
                }
            },
            Target::Partitions(n) => {
                record.partition =
                    Some(i32::try_from(partition_for_key(&key, (*n).max(1))).unwrap_or(0));
                0
            }
        };
        if self.by.is_some() {
            record.key = Some(Bytes::from(key));
        }
        emits.push(Emit { output, record });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use millrace_pipeline::Expr;

    use super::*;

    fn rec(value: &[u8]) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::from("in"),
            partition: 0,
            offset: 0,
            key: None,
            value: Bytes::copy_from_slice(value),
            headers: Vec::new(),
            timestamp: 0,
        }
    }

    fn by(src: &str) -> Option<Selector> {
        Some(Selector::Jq(Expr::compile(src).expect("compiles")))
    }

    /// What a sharder emits (output, partition, key), or its error.
    fn shard(s: &mut Sharder, value: &[u8]) -> Result<(usize, Option<i32>, Option<Bytes>), String> {
        let mut emits = Vec::new();
        s.process_one(&rec(value), &mut emits)
            .map_err(|e| e.error)?;
        let e = emits.pop().expect("one output");
        Ok((e.output, e.record.partition, e.record.key))
    }

    #[test]
    fn a_picked_shard_key_is_the_key_jq_gives() {
        let values: &[&[u8]] = &[
            br#"{"user":"alice","n":1}"#,
            br#"{"n":1,"user":"bob"}"#,
            br#"{"user":"caf\u00e9"}"#,
            br#"{"user":"a\"b"}"#,
            br#"{"user":42}"#,
            br#"{"user":{"id":[1,2]}}"#,
            br#"{"user":null}"#,
            br#"{"other":1}"#,
            br#"  {"user" : "spaced"}  "#,
            br#"{"user":"x","user":"y"}"#,
            b"[1,2]",
            b"7",
            b"not json",
            b"",
            b"{\"user\":\"\xff\"}",
        ];
        for target in [Target::Outputs(4), Target::Partitions(6)] {
            let keep = match target {
                Target::Outputs(n) => Target::Outputs(n),
                Target::Partitions(n) => Target::Partitions(n),
                Target::Named { .. } => unreachable!(),
            };
            let mut fast = Sharder::new(by(".user"), target, Format::Json);
            assert!(fast.plain.is_some(), "`.user` is a plain path");
            let mut general = Sharder::new(by(".user"), keep, Format::Json);
            general.plain = None;
            for v in values {
                assert_eq!(
                    shard(&mut fast, v),
                    shard(&mut general, v),
                    "{}",
                    String::from_utf8_lossy(v)
                );
            }
        }
        // Keys reach the output record: alice's key is her name.
        let mut s = Sharder::new(by(".user"), Target::Outputs(4), Format::Json);
        let (_, _, key) = shard(&mut s, br#"{"user":"alice"}"#).expect("sharded");
        assert_eq!(key.as_deref(), Some(&b"alice"[..]));
        // Text values are strings to jq: no plain path over them.
        assert!(
            Sharder::new(by("."), Target::Outputs(2), Format::Text)
                .plain
                .is_none()
        );
    }
}
