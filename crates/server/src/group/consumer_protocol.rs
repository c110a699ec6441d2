//! The consumer protocol: what Kafka consumers put in a group's opaque bytes — a
//! member's [`Subscription`] (its JoinGroup metadata) and its [`Assignment`] (the
//! leader's SyncGroup part for it) — and Kafka's range assignor, so that a consumer in
//! this process can join a group and lead it as a Kafka client does.
//!
//! Bytes: `version i16` then kafka-protocol's `ConsumerProtocolSubscription` or
//! `ConsumerProtocolAssignment` at that version. A version newer than the newest known
//! (3) is read as 3, as Kafka's clients do: later versions only add fields at the end.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartitions;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::state::JoinedMember;

/// The protocol type of consumer groups.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// The name of the range assignor's protocol, as every Kafka client calls it.
pub const RANGE: &str = "range";

/// The newest version of the consumer protocol's messages this code knows.
const NEWEST: i16 = 3;

/// Bytes that are not a consumer protocol message.
#[derive(Debug, thiserror::Error)]
#[error("not a consumer protocol {what}: {reason}")]
pub struct ConsumerProtocolError {
    what: &'static str,
    reason: String,
}

/// A member's JoinGroup metadata under the consumer protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    pub topics: Vec<String>,
    pub user_data: Option<Bytes>,
    /// Partitions the member holds now (cooperative assignors read them).
    pub owned_partitions: Vec<(String, Vec<i32>)>,
    /// The generation the member last had, -1 for none.
    pub generation: i32,
    pub rack_id: Option<String>,
}

/// A member's part of the leader's assignment under the consumer protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// `(topic, partitions)`, one entry per topic.
    pub partitions: Vec<(String, Vec<i32>)>,
    pub user_data: Option<Bytes>,
}

fn read_version(what: &'static str, b: &mut &[u8]) -> Result<i16, ConsumerProtocolError> {
    if b.len() < 2 {
        return Err(ConsumerProtocolError {
            what,
            reason: format!("{} bytes are too few for a version", b.len()),
        });
    }
    let v = b.get_i16();
    if v < 0 {
        return Err(ConsumerProtocolError {
            what,
            reason: format!("negative version {v}"),
        });
    }
    Ok(v.min(NEWEST))
}

fn encode_at(what: &'static str, m: &impl Encodable) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(NEWEST);
    // Encoding an owned, well-formed message at a version it supports cannot fail;
    // should it, the member sends empty metadata rather than half a message.
    match m.encode(&mut b, NEWEST) {
        Ok(()) => b.freeze(),
        Err(e) => {
            tracing::error!(error = %e, "encoding a consumer protocol {what} failed");
            Bytes::new()
        }
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Subscription {
    /// A subscription to `topics`, with nothing owned yet.
    pub fn new(topics: impl IntoIterator<Item = impl Into<String>>) -> Subscription {
        Subscription {
            topics: topics.into_iter().map(Into::into).collect(),
            generation: -1,
            ..Subscription::default()
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Subscription, ConsumerProtocolError> {
        let what = "subscription";
        let mut b = bytes;
        let version = read_version(what, &mut b)?;
        let m = ConsumerProtocolSubscription::decode(&mut b, version).map_err(|e| {
            ConsumerProtocolError {
                what,
                reason: e.to_string(),
            }
        })?;
        Ok(Subscription {
            topics: m.topics.iter().map(|t| t.to_string()).collect(),
            user_data: m.user_data,
            owned_partitions: m
                .owned_partitions
                .into_iter()
                .map(|tp| (tp.topic.0.to_string(), tp.partitions))
                .collect(),
            generation: m.generation_id,
            rack_id: m.rack_id.map(|r| r.to_string()),
        })
    }

    pub fn encode(&self) -> Bytes {
        let m = ConsumerProtocolSubscription::default()
            .with_topics(self.topics.iter().map(|t| str_bytes(t)).collect())
            .with_user_data(self.user_data.clone())
            .with_owned_partitions(
                self.owned_partitions
                    .iter()
                    .map(|(t, ps)| {
                        OwnedPartitions::default()
                            .with_topic(TopicName(str_bytes(t)))
                            .with_partitions(ps.clone())
                    })
                    .collect(),
            )
            .with_generation_id(self.generation)
            .with_rack_id(self.rack_id.as_deref().map(str_bytes));
        encode_at("subscription", &m)
    }
}

impl Assignment {
    pub fn decode(bytes: &[u8]) -> Result<Assignment, ConsumerProtocolError> {
        let what = "assignment";
        if bytes.is_empty() {
            // What a member the leader left out (or a group that rebalanced) gets.
            return Ok(Assignment::default());
        }
        let mut b = bytes;
        let version = read_version(what, &mut b)?;
        let m = ConsumerProtocolAssignment::decode(&mut b, version).map_err(|e| {
            ConsumerProtocolError {
                what,
                reason: e.to_string(),
            }
        })?;
        Ok(Assignment {
            partitions: m
                .assigned_partitions
                .into_iter()
                .map(|tp| (tp.topic.0.to_string(), tp.partitions))
                .collect(),
            user_data: m.user_data,
        })
    }

    pub fn encode(&self) -> Bytes {
        let m = ConsumerProtocolAssignment::default()
            .with_assigned_partitions(
                self.partitions
                    .iter()
                    .map(|(t, ps)| {
                        AssignedPartitions::default()
                            .with_topic(TopicName(str_bytes(t)))
                            .with_partitions(ps.clone())
                    })
                    .collect(),
            )
            .with_user_data(self.user_data.clone());
        encode_at("assignment", &m)
    }

    /// Every `(topic, partition)` assigned, sorted.
    pub fn topic_partitions(&self) -> Vec<(String, i32)> {
        let mut all: Vec<(String, i32)> = self
            .partitions
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |&p| (t.clone(), p)))
            .collect();
        all.sort();
        all
    }
}

/// A member as an assignor sees it.
#[derive(Debug, Clone)]
pub struct AssignorMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub subscription: Subscription,
}

/// Kafka's `RangeAssignor`: per topic, the members subscribed to it in order (static
/// members by instance id first, then the others by member id) take consecutive
/// ranges of its partitions, the first `count % members` one partition more. Partition
/// p of co-partitioned topics lands on the same member. `partitions` gives a topic's
/// partition count (`None`: unknown, nothing assigned).
pub fn range_assign(
    members: &[AssignorMember],
    partitions: impl Fn(&str) -> Option<u32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.clone(), Assignment::default()))
        .collect();
    let mut order: Vec<&AssignorMember> = members.iter().collect();
    order.sort_by(|a, b| {
        let key = |m: &AssignorMember| {
            (
                m.group_instance_id.is_none(),
                m.group_instance_id
                    .clone()
                    .unwrap_or_else(|| m.member_id.clone()),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut topics: Vec<&str> = members
        .iter()
        .flat_map(|m| m.subscription.topics.iter().map(String::as_str))
        .collect();
    topics.sort_unstable();
    topics.dedup();
    for topic in topics {
        let Some(count) = partitions(topic).and_then(|n| i32::try_from(n).ok()) else {
            continue;
        };
        let subscribed: Vec<&AssignorMember> = order
            .iter()
            .copied()
            .filter(|m| m.subscription.topics.iter().any(|t| t == topic))
            .collect();
        let Ok(n) = i32::try_from(subscribed.len()) else {
            continue;
        };
        if n == 0 {
            continue;
        }
        let (each, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in (0..).zip(&subscribed) {
            let take = each + i32::from(i < extra);
            if take > 0
                && let Some(a) = out.get_mut(&m.member_id)
            {
                a.partitions
                    .push((topic.to_string(), (next..next + take).collect()));
            }
            next += take;
        }
    }
    out
}

/// The range assignment a leader sends in SyncGroup for the members of its JoinGroup
/// answer: `(member id, encoded assignment)`. A member whose metadata is not a consumer
/// subscription is given nothing (and a log line).
pub fn range_assignments(
    members: &[JoinedMember],
    partitions: impl Fn(&str) -> Option<u32>,
) -> Vec<(String, Bytes)> {
    let parsed: Vec<AssignorMember> = members
        .iter()
        .map(|m| AssignorMember {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            subscription: Subscription::decode(&m.metadata).unwrap_or_else(|e| {
                tracing::warn!(member = %m.member_id, error = %e, "member left out of the assignment");
                Subscription::default()
            }),
        })
        .collect();
    range_assign(&parsed, partitions)
        .into_iter()
        .map(|(id, a)| (id, a.encode()))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn member(id: &str, instance: Option<&str>, topics: &[&str]) -> AssignorMember {
        AssignorMember {
            member_id: id.to_string(),
            group_instance_id: instance.map(str::to_string),
            subscription: Subscription::new(topics.iter().copied()),
        }
    }

    fn parts(out: &BTreeMap<String, Assignment>, id: &str) -> Vec<(String, i32)> {
        out[id].topic_partitions()
    }

    fn tp(t: &str, ps: &[i32]) -> Vec<(String, i32)> {
        ps.iter().map(|&p| (t.to_string(), p)).collect()
    }

    #[test]
    fn range_splits_each_topic_in_consecutive_ranges_the_first_members_taking_more() {
        let members = [
            member("b", None, &["t"]),
            member("a", None, &["t"]),
            member("c", None, &["t"]),
        ];
        let out = range_assign(&members, |_| Some(7));
        assert_eq!(parts(&out, "a"), tp("t", &[0, 1, 2]));
        assert_eq!(parts(&out, "b"), tp("t", &[3, 4]));
        assert_eq!(parts(&out, "c"), tp("t", &[5, 6]));
    }

    #[test]
    fn range_puts_partition_p_of_co_partitioned_topics_on_one_member() {
        let members = [
            member("a", None, &["x", "y"]),
            member("b", None, &["x", "y"]),
        ];
        let out = range_assign(&members, |_| Some(4));
        let a = parts(&out, "a");
        assert_eq!(a, [tp("x", &[0, 1]), tp("y", &[0, 1])].concat());
        assert_eq!(
            parts(&out, "b"),
            [tp("x", &[2, 3]), tp("y", &[2, 3])].concat()
        );
    }

    #[test]
    fn range_gives_topics_only_to_their_subscribers_and_static_members_first() {
        let members = [
            member("a", None, &["x"]),
            member("z", Some("i1"), &["x", "y"]),
            member("m", None, &["y"]),
        ];
        let out = range_assign(&members, |t| (t != "unknown").then_some(3));
        assert_eq!(
            parts(&out, "z"),
            [tp("x", &[0, 1]), tp("y", &[0, 1])].concat()
        );
        assert_eq!(parts(&out, "a"), tp("x", &[2]));
        assert_eq!(parts(&out, "m"), tp("y", &[2]));
        // More members than partitions: the last get nothing.
        let out = range_assign(&members, |_| Some(1));
        assert_eq!(parts(&out, "a"), vec![]);
        assert_eq!(parts(&out, "z"), [tp("x", &[0]), tp("y", &[0])].concat());
    }

    #[test]
    fn subscription_and_assignment_round_trip_through_bytes() {
        let s = Subscription {
            topics: vec!["a".into(), "b".into()],
            user_data: Some(Bytes::from_static(b"u")),
            owned_partitions: vec![("a".into(), vec![0, 2])],
            generation: 4,
            rack_id: Some("r1".into()),
        };
        assert_eq!(Subscription::decode(&s.encode()).unwrap(), s);
        let a = Assignment {
            partitions: vec![("a".into(), vec![1, 3])],
            user_data: None,
        };
        assert_eq!(Assignment::decode(&a.encode()).unwrap(), a);
        assert_eq!(Assignment::decode(&[]).unwrap(), Assignment::default());
    }

    #[test]
    fn a_version_0_subscription_as_old_clients_send_it_decodes() {
        // version 0, topics ["t"], user data null.
        let b = [0u8, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff];
        let s = Subscription::decode(&b).unwrap();
        assert_eq!(s.topics, vec!["t"]);
        assert_eq!(s.generation, -1);
    }

    #[test]
    fn a_newer_version_reads_as_the_newest_known_and_garbage_is_an_error() {
        let mut b = Subscription::new(["t"]).encode().to_vec();
        b[1] = 9;
        b.extend_from_slice(b"future fields");
        assert_eq!(Subscription::decode(&b).unwrap().topics, vec!["t"]);
        assert!(Subscription::decode(&[0]).is_err());
        assert!(Subscription::decode(&[0xff, 0xff, 0]).is_err());
        // A topic count far beyond the bytes present is refused, not allocated.
        assert!(Subscription::decode(&[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_err());
        assert!(Assignment::decode(&[0, 3, 0, 0, 0, 9]).is_err());
    }

    #[test]
    fn range_assignments_encode_what_the_members_decode() {
        let joined: Vec<JoinedMember> = ["m1", "m2"]
            .iter()
            .map(|id| JoinedMember {
                member_id: id.to_string(),
                group_instance_id: None,
                metadata: Subscription::new(["t"]).encode(),
            })
            .chain([JoinedMember {
                member_id: "junk".into(),
                group_instance_id: None,
                metadata: Bytes::from_static(b"\x00"),
            }])
            .collect();
        let out = range_assignments(&joined, |_| Some(3));
        let get = |id: &str| {
            Assignment::decode(&out.iter().find(|(m, _)| m == id).unwrap().1)
                .unwrap()
                .topic_partitions()
        };
        assert_eq!(get("m1"), tp("t", &[0, 1]));
        assert_eq!(get("m2"), tp("t", &[2]));
        assert_eq!(get("junk"), vec![]);
    }
}
