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
use millrace_broker::partitioner::partition_for_key;
use millrace_pipeline::expr::CompiledSelector;
use millrace_pipeline::{Format, Selector, ShardTarget, Stage};

use super::with_vars;
use crate::error::{RuntimeError, SetupError};
use crate::operator::{Emit, RecordError, RecordOperator, derived, output_index};

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

impl Target {
    /// Where a plan's shards go, as the stage's output numbers.
    pub fn of_stage(stage: &Stage, target: &ShardTarget) -> Result<Target, RuntimeError> {
        Ok(match target {
            ShardTarget::Topics(ts) => {
                // Shard i must be outputs[i]; the plan lists shards in order.
                for (i, t) in ts.iter().enumerate() {
                    if output_index(stage, t)? != i {
                        return Err(RuntimeError::setup(
                            &stage.name,
                            SetupError::ShardsOutOfOrder,
                        ));
                    }
                }
                Target::Outputs(u32::try_from(ts.len()).unwrap_or(1))
            }
            ShardTarget::Named { shards, default } => {
                let mut map = HashMap::new();
                for (k, t) in shards {
                    map.insert(k.as_bytes().to_vec(), output_index(stage, t)?);
                }
                Target::Named {
                    shards: map,
                    default: default
                        .as_deref()
                        .map(|d| output_index(stage, d))
                        .transpose()?,
                }
            }
            ShardTarget::Partitions { count, .. } => Target::Partitions(*count),
        })
    }
}

pub struct Sharder {
    /// `None`: the record key.
    by: Option<CompiledSelector>,
    target: Target,
}

impl Sharder {
    pub fn new(by: Option<Selector>, target: Target, format: Format) -> Self {
        Sharder {
            by: by.map(|s| CompiledSelector::new(s, format)),
            target,
        }
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
            Some(by) => {
                with_vars(rec, |vars| by.key(&rec.value, vars)).map_err(RecordError::new)?
            }
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
    fn a_shard_key_by_expression_keys_the_output_record() {
        // Keys reach the output record: alice's key is her name.
        let mut s = Sharder::new(by(".user"), Target::Outputs(4), Format::Json);
        let (_, _, key) = shard(&mut s, br#"{"user":"alice"}"#).expect("sharded");
        assert_eq!(key.as_deref(), Some(&b"alice"[..]));
        // The same key, the same shard; the partition is murmur2's, as Kafka's.
        let mut p = Sharder::new(by(".user"), Target::Partitions(6), Format::Json);
        let (_, part, _) = shard(&mut p, br#"{"n":1,"user":"alice"}"#).expect("sharded");
        let want = i32::try_from(partition_for_key(b"alice", 6)).expect("small");
        assert_eq!(part, Some(want));
        // Text values are strings to jq: the whole line is the key.
        let mut t = Sharder::new(by("."), Target::Outputs(2), Format::Text);
        let (_, _, key) = shard(&mut t, b"{\"user\":\"x\"}").expect("sharded");
        assert_eq!(key.as_deref(), Some(&b"{\"user\":\"x\"}"[..]));
    }
}
