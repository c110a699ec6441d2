//! Store and topic configuration. Topic config keys are Kafka's names where Kafka has
//! one (`segment.bytes`, `retention.bytes`, `retention.ms`), so `--config k=v` carries over.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;
use crate::io::{OsStorage, Storage};

/// When an append is acknowledged, relative to `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged once written to the page cache. Survives a process crash, not a
    /// power loss.
    None,
    /// Acknowledged after an `fdatasync` covering the batch; concurrent appenders share
    /// one `fdatasync` (group commit).
    #[default]
    Batch,
    /// Acknowledged once written; a background flusher fsyncs at this interval, and
    /// readers see records once they are fsynced.
    Interval(Duration),
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::None => f.write_str("none"),
            Durability::Batch => f.write_str("batch"),
            Durability::Interval(d) => write!(f, "interval:{}", d.as_millis()),
        }
    }
}

impl std::str::FromStr for Durability {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "none" => Ok(Durability::None),
            "batch" => Ok(Durability::Batch),
            _ => {
                let ms = s
                    .strip_prefix("interval:")
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| {
                        StoreError::InvalidConfig(format!(
                            "durability={s}: expected none, batch or interval:<ms> with ms >= 1"
                        ))
                    })?;
                Ok(Durability::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

/// Per-topic settings, stored in the topic's `topic.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    pub durability: Durability,
    /// A segment is rolled when the next batch would take it past this size.
    pub segment_bytes: u64,
    /// Oldest sealed segments are deleted while the partition stays at least this big
    /// without them. `None` keeps everything.
    pub retention_bytes: Option<u64>,
    /// Sealed segments whose newest record is older than this are deleted. `None` keeps
    /// everything.
    pub retention_ms: Option<u64>,
}

/// Kafka's default segment size.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// Small enough for tests that roll every batch, large enough to hold a batch header.
pub const MIN_SEGMENT_BYTES: u64 = 64;

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            durability: Durability::Batch,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            retention_bytes: None,
            retention_ms: None,
        }
    }
}

const KEYS: &str = "durability, segment.bytes, retention.bytes, retention.ms";

impl TopicConfig {
    /// Parses `--config k=v` pairs over the defaults. Reports every bad pair at once.
    /// `retention.bytes=-1` / `retention.ms=-1` mean "unlimited", as in Kafka.
    pub fn from_pairs(pairs: &BTreeMap<String, String>) -> Result<Self, StoreError> {
        let mut c = TopicConfig::default();
        let mut errors = Vec::new();
        for (k, v) in pairs {
            let r = match k.as_str() {
                "durability" => v.parse().map(|d| c.durability = d),
                "segment.bytes" => parse_u64(k, v).and_then(|n| {
                    if n < MIN_SEGMENT_BYTES {
                        Err(StoreError::InvalidConfig(format!(
                            "segment.bytes={v}: must be at least {MIN_SEGMENT_BYTES}"
                        )))
                    } else {
                        c.segment_bytes = n;
                        Ok(())
                    }
                }),
                "retention.bytes" => parse_limit(k, v).map(|n| c.retention_bytes = n),
                "retention.ms" => parse_limit(k, v).map(|n| c.retention_ms = n),
                _ => Err(StoreError::InvalidConfig(format!(
                    "unknown key '{k}' (known keys: {KEYS})"
                ))),
            };
            if let Err(e) = r {
                errors.push(match e {
                    StoreError::InvalidConfig(m) => m,
                    other => other.to_string(),
                });
            }
        }
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(StoreError::InvalidConfig(errors.join("; ")))
        }
    }

    /// The pairs that [`TopicConfig::from_pairs`] reads back to this config.
    pub fn to_pairs(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("durability".to_string(), self.durability.to_string());
        m.insert("segment.bytes".to_string(), self.segment_bytes.to_string());
        let limit = |x: Option<u64>| x.map_or("-1".to_string(), |n| n.to_string());
        m.insert("retention.bytes".to_string(), limit(self.retention_bytes));
        m.insert("retention.ms".to_string(), limit(self.retention_ms));
        m
    }
}

fn parse_u64(k: &str, v: &str) -> Result<u64, StoreError> {
    v.parse::<u64>()
        .map_err(|_| StoreError::InvalidConfig(format!("{k}={v}: expected a non-negative integer")))
}

fn parse_limit(k: &str, v: &str) -> Result<Option<u64>, StoreError> {
    if v == "-1" {
        Ok(None)
    } else {
        parse_u64(k, v).map(Some)
    }
}

/// Options for [`crate::Store::open`].
#[derive(Clone)]
pub struct StoreOptions {
    /// The file I/O seam; tests swap in a faulty one.
    pub storage: Arc<dyn Storage>,
    /// A sparse index entry is added for a batch that starts at least this many bytes
    /// after the previous entry.
    pub index_interval_bytes: u64,
    /// The size at which the journal's active file is rotated, and a checkpoint syncs
    /// the segments its entries went to and deletes it. Bounds what recovery replays.
    pub journal_file_bytes: u64,
    /// A partition's appended bytes are buffered and written to its segment with one
    /// write once they reach this size (or sooner: a roll, a checkpoint, close, the
    /// flusher's tick for durability=none topics).
    pub segment_buffer_bytes: usize,
    /// The most bytes all partitions' buffers hold together; past it, an append writes
    /// its partition's buffer out at once.
    pub segment_buffers_max: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            storage: Arc::new(OsStorage),
            index_interval_bytes: 64 * 1024,
            journal_file_bytes: crate::journal::DEFAULT_FILE_BYTES,
            segment_buffer_bytes: 128 * 1024,
            segment_buffers_max: 64 << 20,
        }
    }
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreOptions")
            .field("index_interval_bytes", &self.index_interval_bytes)
            .field("journal_file_bytes", &self.journal_file_bytes)
            .field("segment_buffer_bytes", &self.segment_buffer_bytes)
            .field("segment_buffers_max", &self.segment_buffers_max)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn pairs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn topic_config_round_trips_through_pairs() {
        let c = TopicConfig::from_pairs(&pairs(&[
            ("durability", "interval:250"),
            ("segment.bytes", "4096"),
            ("retention.bytes", "100000"),
            ("retention.ms", "-1"),
        ]))
        .unwrap();
        assert_eq!(
            c.durability,
            Durability::Interval(Duration::from_millis(250))
        );
        assert_eq!(c.retention_bytes, Some(100_000));
        assert_eq!(c.retention_ms, None);
        assert_eq!(TopicConfig::from_pairs(&c.to_pairs()).unwrap(), c);
        assert_eq!(
            TopicConfig::from_pairs(&BTreeMap::new())
                .unwrap()
                .durability,
            Durability::Batch
        );
    }

    #[test]
    fn topic_config_reports_every_bad_pair_at_once() {
        let e = TopicConfig::from_pairs(&pairs(&[
            ("cleanup.policy", "compact"),
            ("durability", "fast"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown key 'cleanup.policy'"), "{e}");
        assert!(e.contains("durability=fast"), "{e}");
    }
}
