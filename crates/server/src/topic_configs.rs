//! Kafka's topic configs over the store's: which keys a topic may be given, what they
//! do, and how a topic's configs are described.
//!
//! - Acted on — the store's [`TopicConfig`]: `durability` (millrace's own: `none`,
//!   `batch`, `interval:<ms>`), `segment.bytes`, `retention.bytes`, `retention.ms`.
//! - Kept and described but not acted on — the store's extra settings: keys Kafka
//!   clients set as a matter of course, Kafka Streams on its internal topics above all
//!   (`cleanup.policy`, `message.timestamp.type`, `segment.ms`, ...). A value the store
//!   cannot honour is refused: `message.timestamp.type` must be `CreateTime` (records
//!   keep their producer's timestamps) and `min.insync.replicas` 1 (one node).
//!   `cleanup.policy=compact` is accepted and kept but the log is not compacted: a
//!   reader of a changelog still ends with each key's last value, it only reads more.
//! - Kafka's fsync settings map onto `durability` (Kafka's tools refuse config names
//!   Kafka does not know, so `kafka-topics --config durability=…` cannot be given):
//!   `flush.messages=1` is `durability=batch` (fsync before acknowledging),
//!   `flush.ms=<ms>` is `interval:<ms>`, and either at Kafka's default (the largest
//!   long: never) is `none`. Other `flush.messages` values are refused, as is a flush
//!   setting that contradicts a `durability` given with it. Described topics show
//!   `flush.messages` and `flush.ms` as their durability makes them.
//! - Anything else is refused with INVALID_CONFIG naming the keys, so a setting never
//!   silently does nothing.

use std::collections::BTreeMap;

use millrace_store::{Durability, TopicConfig};

/// A check a value must pass: why not, if it does not.
type Check = fn(&str) -> Result<(), String>;

/// Kafka keys kept but not acted on, with the check their value must pass.
const KEPT: &[(&str, Check)] = &[
    ("cleanup.policy", cleanup_policy),
    ("message.timestamp.type", create_time),
    ("min.insync.replicas", one),
    ("segment.ms", any),
    ("segment.jitter.ms", any),
    ("segment.index.bytes", any),
    ("index.interval.bytes", any),
    ("min.compaction.lag.ms", any),
    ("max.compaction.lag.ms", any),
    ("delete.retention.ms", any),
    ("min.cleanable.dirty.ratio", any),
    ("max.message.bytes", any),
    ("message.timestamp.difference.max.ms", any),
    ("message.timestamp.before.max.ms", any),
    ("message.timestamp.after.max.ms", any),
    ("unclean.leader.election.enable", any),
    ("compression.type", any),
    ("file.delete.delay.ms", any),
    ("preallocate", any),
];

/// The store's keys, which it acts on.
const STORE_KEYS: &[&str] = &[
    "durability",
    "segment.bytes",
    "retention.bytes",
    "retention.ms",
];

/// What Kafka tools expect a topic to describe even when nobody set it.
const DESCRIBED_DEFAULTS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("message.timestamp.type", "CreateTime"),
    ("min.insync.replicas", "1"),
    ("compression.type", "producer"),
    ("unclean.leader.election.enable", "false"),
];

fn any(_: &str) -> Result<(), String> {
    Ok(())
}

fn cleanup_policy(v: &str) -> Result<(), String> {
    let ok = v
        .split(',')
        .all(|p| matches!(p.trim(), "delete" | "compact"));
    if ok && !v.trim().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "cleanup.policy={v}: expected delete, compact or both"
        ))
    }
}

fn create_time(v: &str) -> Result<(), String> {
    if v == "CreateTime" {
        Ok(())
    } else {
        Err(format!(
            "message.timestamp.type={v}: only CreateTime (records keep their producer's timestamps)"
        ))
    }
}

fn one(v: &str) -> Result<(), String> {
    if v == "1" {
        Ok(())
    } else {
        Err(format!(
            "min.insync.replicas={v}: this server is one node, so only 1"
        ))
    }
}

/// Splits Kafka config pairs into the store's config and the extra settings kept,
/// reporting every refused pair at once.
pub fn split(
    pairs: &BTreeMap<String, String>,
) -> Result<(TopicConfig, BTreeMap<String, String>), String> {
    let mut store = BTreeMap::new();
    let mut extra = BTreeMap::new();
    let mut errors = Vec::new();
    let mut flush: Vec<(String, String)> = Vec::new();
    for (k, v) in pairs {
        if STORE_KEYS.contains(&k.as_str()) {
            store.insert(k.clone(), v.clone());
        } else if let Some((_, check)) = KEPT.iter().find(|(name, _)| *name == k) {
            match check(v) {
                Ok(()) => {
                    extra.insert(k.clone(), v.clone());
                }
                Err(e) => errors.push(e),
            }
        } else if k == "flush.messages" || k == "flush.ms" {
            match flush_durability(k, v) {
                Ok(d) => flush.push((k.clone(), d)),
                Err(e) => errors.push(e),
            }
        } else {
            errors.push(format!(
                "unknown config '{k}' (not supported by millrace serve)"
            ));
        }
    }
    for (k, durability) in flush {
        match store.get("durability") {
            Some(d) if *d != durability => errors.push(format!(
                "{k} means durability={durability}, but durability={d} is given too"
            )),
            _ => {
                store.insert("durability".to_string(), durability);
            }
        }
    }
    match TopicConfig::from_pairs(&store) {
        Ok(c) if errors.is_empty() => Ok((c, extra)),
        Ok(_) => Err(errors.join("; ")),
        Err(e) => {
            errors.insert(0, e.to_string());
            Err(errors.join("; "))
        }
    }
}

/// Kafka's "never": the largest long, the default of `flush.messages` and `flush.ms`.
const NEVER: &str = "9223372036854775807";

/// The durability a Kafka flush setting asks for.
fn flush_durability(key: &str, value: &str) -> Result<String, String> {
    match (key, value) {
        (_, NEVER) => Ok("none".into()),
        ("flush.messages", "1") => Ok("batch".into()),
        ("flush.ms", ms) if ms.parse::<u64>().is_ok_and(|n| n > 0) => Ok(format!("interval:{ms}")),
        _ => Err(format!(
            "{key}={value}: only flush.messages=1 (durability=batch), flush.ms=<ms> \
             (durability=interval:<ms>) or {NEVER} (durability=none)"
        )),
    }
}

/// A topic's configs as Kafka pairs: the store's, then the extra settings.
pub fn pairs(config: &TopicConfig, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut all = config.to_pairs();
    all.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

/// Where a described config's value comes from (Kafka's `ConfigSource`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Set on the topic (`DYNAMIC_TOPIC_CONFIG`).
    Topic = 1,
    /// The default (`DEFAULT_CONFIG`).
    Default = 5,
}

/// A topic's configs as DescribeConfigs lists them: every store key, every extra
/// setting, and the defaults Kafka tools expect.
pub fn describe(
    config: &TopicConfig,
    extra: &BTreeMap<String, String>,
) -> Vec<(String, String, Source)> {
    let defaults = TopicConfig::default().to_pairs();
    let mut out: Vec<(String, String, Source)> = config
        .to_pairs()
        .into_iter()
        .map(|(k, v)| {
            let source = if defaults.get(&k) == Some(&v) {
                Source::Default
            } else {
                Source::Topic
            };
            (k, v, source)
        })
        .collect();
    out.extend(
        extra
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), Source::Topic)),
    );
    let (messages, ms) = match config.durability {
        Durability::None => (NEVER.to_string(), NEVER.to_string()),
        Durability::Batch => ("1".to_string(), NEVER.to_string()),
        Durability::Interval(d) => (NEVER.to_string(), d.as_millis().to_string()),
    };
    let source = if config.durability == TopicConfig::default().durability {
        Source::Default
    } else {
        Source::Topic
    };
    out.push(("flush.messages".into(), messages, source));
    out.push(("flush.ms".into(), ms, source));
    for (k, v) in DESCRIBED_DEFAULTS {
        if !extra.contains_key(*k) {
            out.push((k.to_string(), v.to_string(), Source::Default));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn store_keys_act_kafka_streams_keys_are_kept_and_the_rest_refused() {
        let (c, extra) = split(&map(&[
            ("durability", "none"),
            ("segment.bytes", "52428800"),
            ("retention.ms", "-1"),
            ("cleanup.policy", "compact,delete"),
            ("message.timestamp.type", "CreateTime"),
        ]))
        .unwrap();
        assert_eq!(c.durability, Durability::None);
        assert_eq!(c.segment_bytes, 52_428_800);
        assert_eq!(extra.len(), 2);
        let e = split(&map(&[
            ("cleanup.policy", "shred"),
            ("message.timestamp.type", "LogAppendTime"),
            ("flush.messages", "7"),
            ("bogus.key", "x"),
            ("durability", "sometimes"),
        ]))
        .unwrap_err();
        for part in [
            "cleanup.policy=shred",
            "LogAppendTime",
            "flush.messages",
            "'bogus.key'",
            "durability=sometimes",
        ] {
            assert!(e.contains(part), "{part} missing from {e}");
        }
    }

    #[test]
    fn kafka_flush_settings_choose_the_durability() {
        let d = |kv: &[(&str, &str)]| split(&map(kv)).map(|(c, _)| c.durability);
        assert_eq!(d(&[("flush.messages", "1")]), Ok(Durability::Batch));
        assert_eq!(d(&[("flush.messages", NEVER)]), Ok(Durability::None));
        assert_eq!(
            d(&[("flush.ms", "250")]),
            Ok(Durability::Interval(std::time::Duration::from_millis(250)))
        );
        assert!(d(&[("flush.messages", "10")]).is_err());
        assert!(d(&[("flush.messages", "1"), ("durability", "none")]).is_err());
        assert_eq!(
            d(&[("flush.messages", "1"), ("durability", "batch")]),
            Ok(Durability::Batch)
        );
        let (c, extra) = split(&map(&[("flush.ms", NEVER)])).unwrap();
        let described = describe(&c, &extra);
        assert!(described.contains(&("flush.messages".into(), NEVER.into(), Source::Topic)));
    }

    #[test]
    fn a_description_lists_store_keys_extras_and_kafka_defaults() {
        let (c, extra) = split(&map(&[
            ("retention.ms", "1000"),
            ("cleanup.policy", "compact"),
        ]))
        .unwrap();
        let d = describe(&c, &extra);
        let get = |k: &str| d.iter().find(|(n, _, _)| n == k).cloned().unwrap();
        assert_eq!(
            get("retention.ms"),
            ("retention.ms".into(), "1000".into(), Source::Topic)
        );
        assert_eq!(get("durability").2, Source::Default);
        assert_eq!(get("cleanup.policy").1, "compact");
        assert_eq!(get("min.insync.replicas").1, "1");
        assert_eq!(
            pairs(&c, &extra).get("cleanup.policy").map(String::as_str),
            Some("compact")
        );
    }
}
