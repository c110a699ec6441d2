//! Topics and their partitions, as `topics create` and `topics describe` speak of them.

use std::collections::BTreeMap;

/// What `topics create` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Topic configs as Kafka names them (`retention.ms`, …) plus millrace's own
    /// (`durability`, `segment.bytes`, …).
    pub config: BTreeMap<String, String>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: 1,
            config: BTreeMap::new(),
        }
    }
}

/// One partition as `topics describe` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    /// First offset still stored (retention moves it forward).
    pub start_offset: i64,
    /// The offset the next record will get (Kafka's high watermark).
    pub end_offset: i64,
    pub leader: Option<i32>,
    pub replicas: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
    pub config: BTreeMap<String, String>,
}

impl TopicDescription {
    /// Records a group has not committed yet, over all partitions: end offset minus
    /// the committed offset (the start offset where nothing is committed).
    pub fn lag(&self, committed: &[(i32, Option<i64>)]) -> i64 {
        self.partitions
            .iter()
            .map(|p| {
                let c = committed_offset(committed, p.partition).unwrap_or(p.start_offset);
                (p.end_offset - c).max(0)
            })
            .sum()
    }
}

/// The committed offset of one partition in an answer of [`Broker::committed`].
pub fn committed_offset(committed: &[(i32, Option<i64>)], partition: i32) -> Option<i64> {
    committed
        .iter()
        .find(|(q, _)| *q == partition)
        .and_then(|(_, o)| *o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_start_where_nothing_is_committed() {
        let p = |partition, start_offset, end_offset| PartitionInfo {
            partition,
            start_offset,
            end_offset,
            leader: None,
            replicas: Vec::new(),
        };
        let d = TopicDescription {
            name: "t".into(),
            partitions: vec![p(0, 0, 10), p(1, 5, 8), p(2, 0, 4)],
            config: BTreeMap::new(),
        };
        let committed = [(0, Some(7)), (1, None), (2, Some(9))];
        assert_eq!(committed_offset(&committed, 0), Some(7));
        assert_eq!(committed_offset(&committed, 1), None);
        assert_eq!(committed_offset(&committed, 3), None);
        // 10-7, 8-5, and a commit past the end counts as no lag.
        assert_eq!(d.lag(&committed), 3 + 3);
    }
}
