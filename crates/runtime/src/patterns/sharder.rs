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
    pub by: Option<Selector>,
    pub target: Target,
    pub format: Format,
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
            Some(sel) => {
                let v = value_of(rec, self.format)?;
                with_vars(rec, |vars| sel.key(&v, vars)).map_err(RecordError::new)?
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
