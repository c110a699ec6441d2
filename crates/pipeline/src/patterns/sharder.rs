//! sharder: the same shard key always lands in the same shard — one of the `to`
//! topics, a named shard's topic, or a partition of the one `to` topic.
//!
//! ```yaml
//! by-user: {kind: sharder, from: clicks, by: .user, to: clicks-by-user, shards: 8}
//! by-region:
//!   kind: sharder
//!   from: signups
//!   by: .region
//!   shards: {eu: signups-eu, us: signups-us}
//!   default: signups-other
//! ```

use super::kind::{Kind, Planning, Reads, Writes};
use crate::expr::Selector;
use crate::yaml::node::{ExprSrc, Pos, Sp, Value};
use crate::yaml::reader::{Fields, Reader};

pub const KIND: Kind = Kind {
    name: "sharder",
    fields: &["by", "shards", "default"],
    reads: Reads::One,
    // Named shards name their topics: `to` may be left out then.
    writes: Writes::ManyOrNamed(|f| {
        matches!(f.get("shards").map(|n| &n.value), Some(Value::Map(_)))
    }),
};

/// Where a sharder sends a record once it has the shard key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardTarget {
    /// Shard `murmur2(key) & 0x7fffffff % topics.len()` goes to `topics[shard]`.
    Topics(Vec<String>),
    /// The shard key (as a string) names the topic; other keys go to `default`, or are
    /// record errors (dead letter) when there is none.
    Named {
        shards: Vec<(String, String)>,
        default: Option<String>,
    },
    /// The partitions of one topic are the shards: partition = murmur2(key) % count.
    Partitions { topic: String, count: u32 },
}

#[derive(Clone, Debug)]
pub struct Sharder {
    /// `None`: the record key. A record without a key is a record error then.
    /// `Some`: the selector's value; the output record is keyed by it (so downstream
    /// stages and Kafka tools see the same partitioning).
    pub by: Option<Selector>,
    pub target: ShardTarget,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SharderSpec {
    pub by: Option<ExprSrc>,
    pub shards: Option<ShardsSpec>,
    pub default: Option<Sp<String>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ShardsSpec {
    /// `shards: 8`: the partitions of the one `to` topic.
    Count(Sp<u32>),
    /// `shards: {eu: signups-eu, ...}`: shard key → topic.
    Named(Vec<(Sp<String>, Sp<String>)>),
}

impl SharderSpec {
    /// The topics named in its fields: the named shards', then the default's.
    pub fn outputs(&self) -> impl Iterator<Item = &Sp<String>> {
        let named = match &self.shards {
            Some(ShardsSpec::Named(named)) => named.as_slice(),
            _ => &[],
        };
        named.iter().map(|(_, t)| t).chain(self.default.iter())
    }

    /// When it writes into the partitions of one topic (`to` is that topic, written
    /// alone): the topic, and the `shards` count if it gives one.
    pub fn partitioned_topic<'s>(
        &'s self,
        to: &'s [Sp<String>],
        to_is_list: bool,
    ) -> Option<(&'s str, Option<&'s Sp<u32>>)> {
        if to_is_list || matches!(self.shards, Some(ShardsSpec::Named(_))) {
            return None;
        }
        let count = match &self.shards {
            Some(ShardsSpec::Count(c)) => Some(c),
            _ => None,
        };
        Some((to.first()?.value.as_str(), count))
    }
}

pub(crate) fn read(
    r: &mut Reader<'_>,
    f: &Fields<'_>,
    _at: Pos,
    _what: &str,
) -> Option<SharderSpec> {
    let by = match f.get("by") {
        Some(n) => Some(r.expr(n, "`by`")?),
        None => None,
    };
    let shards = match f.get("shards") {
        None => None,
        Some(n) => match &n.value {
            Value::Int(_) => Some(ShardsSpec::Count(r.uint(n, "`shards`", 1)?)),
            Value::Map(entries) => {
                let mut out = Vec::new();
                for (k, v) in entries {
                    let key = Sp {
                        value: k.key_text(),
                        pos: k.pos,
                    };
                    out.push((key, r.string(v, "a shard's topic")?));
                }
                if out.is_empty() {
                    r.err(
                        n.pos,
                        "`shards` is empty",
                        "shards: {eu: signups-eu, us: signups-us}",
                    );
                }
                Some(ShardsSpec::Named(out))
            }
            _ => {
                r.err(
                    n.pos,
                    format!(
                        "`shards` must be a count or a mapping of shard key to topic, found {}",
                        n.type_name()
                    ),
                    "shards: 8 (partitions of `to`) or shards: {eu: signups-eu, us: signups-us}",
                );
                return None;
            }
        },
    };
    let default = match f.get("default") {
        Some(n) => Some(r.string(n, "`default`")?),
        None => None,
    };
    Some(SharderSpec {
        by,
        shards,
        default,
    })
}

pub(crate) fn plan(spec: &SharderSpec, cx: &mut Planning<'_>) -> Option<Sharder> {
    let by = match &spec.by {
        Some(e) => Some(cx.selector(e, "by")?),
        None => None,
    };
    let target = target(spec, cx)?;
    Some(Sharder { by, target })
}

/// Where the shards go: checks named shards against `to`, and `shards` and `default`
/// against how `to` is written.
fn target(spec: &SharderSpec, cx: &mut Planning<'_>) -> Option<ShardTarget> {
    let name = cx.stage;
    match &spec.shards {
        Some(ShardsSpec::Named(named)) => {
            // With both, `to` lists the shard topics: each shard must go to one of them.
            let mut ok = true;
            if !cx.to.is_empty() {
                let to = cx.to;
                for (key, topic) in named {
                    if !to.iter().any(|x| x.value == topic.value) {
                        ok = false;
                        cx.error(
                            topic.pos,
                            format!(
                                "shard `{}` of sharder `{name}` goes to `{}`, which is not in its `to`",
                                key.value, topic.value
                            ),
                            "add the topic to `to`, or leave `to` out: the shards name the topics",
                        );
                    }
                }
                for t in to {
                    let used = named.iter().any(|(_, x)| x.value == t.value)
                        || spec.default.as_ref().is_some_and(|d| d.value == t.value);
                    if !used {
                        ok = false;
                        cx.error(
                            t.pos,
                            format!(
                                "sharder `{name}` lists `{}` in `to` but no shard goes there",
                                t.value
                            ),
                            "name it in `shards`, or remove it from `to`",
                        );
                    }
                }
            }
            ok.then(|| ShardTarget::Named {
                shards: named
                    .iter()
                    .map(|(k, t)| (k.value.clone(), t.value.clone()))
                    .collect(),
                default: spec.default.as_ref().map(|d| d.value.clone()),
            })
        }
        other => {
            if let Some(d) = &spec.default {
                cx.error(
                    d.pos,
                    format!("`default` of sharder `{name}` only applies with named `shards`"),
                    "hash sharding always finds a shard; remove `default`",
                );
                return None;
            }
            if cx.to_is_list {
                if let Some(ShardsSpec::Count(c)) = other {
                    cx.error(
                        c.pos,
                        format!(
                            "`shards: {}` of sharder `{name}` applies when `to` is one topic",
                            c.value
                        ),
                        "with a list, there is one shard per topic; write `to: topic` to shard into its partitions",
                    );
                    return None;
                }
                Some(ShardTarget::Topics(
                    cx.to.iter().map(|t| t.value.clone()).collect(),
                ))
            } else {
                let topic = cx.to.first()?.value.clone();
                let count = match other {
                    Some(ShardsSpec::Count(c)) => c.value,
                    _ => (cx.partitions_of)(&topic),
                };
                Some(ShardTarget::Partitions { topic, count })
            }
        }
    }
}
