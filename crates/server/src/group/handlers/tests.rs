//! The group APIs through their bytes: each request is encoded and decoded at the
//! version under test (as dispatch receives it), handled, and the response encoded and
//! decoded again (as a client reads it).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::*;
use crate::group::Coordinator;
use crate::group::consumer_protocol::{Assignment, Subscription, range_assignments};
use crate::group::tests::{Sim, bounded, setup};

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// `m` after a trip through its bytes at `version`.
fn wire<M: Encodable + Decodable>(m: &M, version: i16) -> M {
    let mut b = BytesMut::new();
    m.encode(&mut b, version).unwrap();
    let mut b: Bytes = b.freeze();
    let out = M::decode(&mut b, version).unwrap();
    assert!(b.is_empty(), "bytes left over at v{version}");
    out
}

fn client() -> ClientInfo {
    ClientInfo::new(Some("rdkafka"), "127.0.0.1".parse().unwrap())
}

fn join_request(group: &str, member: &str, topics: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(30_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Subscription::new(topics.iter().copied()).encode()),
        ])
}

async fn join(c: &Coordinator, version: i16, req: JoinGroupRequest) -> JoinGroupResponse {
    let answer = bounded(join_group(c, &client(), version, wire(&req, version))).await;
    wire(&answer, version)
}

#[tokio::test(start_paused = true)]
async fn a_kafka_client_and_a_member_in_this_process_share_a_group() {
    let (c, _dir) = setup(Duration::from_secs(3));
    let v = 5;
    // The Kafka client's first join asks for a member id; it joins with it while the
    // in-process member joins through the coordinator's API.
    let first = join(&c, v, join_request("g", "", &["t"])).await;
    assert_eq!(first.error_code, 79);
    let wire_id = first.member_id.to_string();
    assert!(wire_id.starts_with("rdkafka-"));
    let mut local = Sim::new(&c, "g", &["t"]);
    let (remote, local_join) = tokio::join!(
        join(&c, v, join_request("g", &wire_id, &["t"])),
        local.join()
    );
    let local_join = local_join.unwrap();
    assert_eq!(remote.error_code, 0);
    assert_eq!(remote.generation_id, local_join.generation);
    // Whoever leads assigns with the range assignor over the store's partitions.
    let assignments = if remote.leader == remote.member_id {
        let members: Vec<_> = remote
            .members
            .iter()
            .map(|m| crate::group::JoinedMember {
                member_id: m.member_id.to_string(),
                group_instance_id: None,
                metadata: m.metadata.clone(),
            })
            .collect();
        range_assignments(&members, |_| Some(4))
    } else {
        Vec::new()
    };
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(remote.generation_id)
        .with_member_id(remote.member_id.clone())
        .with_assignments(
            assignments
                .into_iter()
                .map(|(id, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(&id))
                        .with_assignment(a)
                })
                .collect(),
        );
    let (remote_sync, local_parts) = tokio::join!(
        async { wire(&bounded(sync_group(&c, 3, wire(&sync, 3))).await, 3) },
        local.sync()
    );
    assert_eq!(remote_sync.error_code, 0);
    let remote_parts = Assignment::decode(&remote_sync.assignment)
        .unwrap()
        .topic_partitions();
    let mut all = [remote_parts.clone(), local_parts.unwrap()].concat();
    all.sort();
    assert_eq!(
        all,
        (0..4).map(|p| ("t".to_string(), p)).collect::<Vec<_>>()
    );
    assert_eq!(remote_parts.len(), 2);
    // DescribeGroups shows the Kafka client as it connected.
    let d = describe_groups(
        &c,
        5,
        DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
    );
    let d = wire(&d, 5);
    let g = &d.groups[0];
    assert_eq!(
        (g.group_state.as_str(), g.protocol_data.as_str()),
        ("Stable", "range")
    );
    let remote_member = g
        .members
        .iter()
        .find(|m| m.member_id.as_str() == wire_id)
        .unwrap();
    assert_eq!(remote_member.client_id.as_str(), "rdkafka");
    assert_eq!(remote_member.client_host.as_str(), "/127.0.0.1");
}

#[tokio::test(start_paused = true)]
async fn join_group_answers_fit_every_version() {
    let (c, _dir) = setup(Duration::ZERO);
    for v in 0..=9 {
        let group = format!("g{v}");
        let first = join(&c, v, join_request(&group, "", &["t"])).await;
        if v >= 4 {
            assert_eq!(first.error_code, 79, "v{v}");
            assert_eq!(first.protocol_name.is_none(), v >= 7, "v{v}");
            let again = join(
                &c,
                v,
                join_request(&group, first.member_id.as_str(), &["t"]),
            )
            .await;
            assert_eq!((again.error_code, again.generation_id), (0, 1), "v{v}");
            assert_eq!(again.members.len(), 1);
        } else {
            assert_eq!((first.error_code, first.generation_id), (0, 1), "v{v}");
            assert_eq!(
                first.protocol_name.as_ref().map(|p| p.as_str()),
                Some("range")
            );
        }
    }
    let bad = join(&c, 5, join_request("", "", &["t"])).await;
    assert_eq!(bad.error_code, 24);
    let short = join(
        &c,
        5,
        join_request("g", "", &["t"]).with_session_timeout_ms(-1),
    )
    .await;
    assert_eq!(short.error_code, 26);
}

#[tokio::test(start_paused = true)]
async fn heartbeat_leave_and_sync_answer_kafka_codes_in_each_version() {
    let (c, _dir) = setup(Duration::ZERO);
    let mut m = Sim::new(&c, "g", &["t"]);
    m.join_and_sync().await.unwrap();
    for v in 0..=4 {
        let hb = HeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s(&m.id))
            .with_generation_id(m.generation);
        assert_eq!(wire(&heartbeat(&c, wire(&hb, v)).await, v).error_code, 0);
        let stale = hb.with_generation_id(m.generation + 7);
        assert_eq!(
            wire(&heartbeat(&c, wire(&stale, v)).await, v).error_code,
            22
        );
    }
    for v in 0..=5 {
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(m.generation)
            .with_member_id(s(&m.id));
        let r = wire(&sync_group(&c, v, wire(&sync, v)).await, v);
        assert_eq!(r.error_code, 0, "v{v}");
        assert_eq!(
            Assignment::decode(&r.assignment)
                .unwrap()
                .topic_partitions()
                .len(),
            4
        );
        assert_eq!(r.protocol_name.is_some(), v >= 5);
    }
    let old = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s("stranger"));
    assert_eq!(
        wire(&leave_group(&c, 0, wire(&old, 0)).await, 0).error_code,
        25
    );
    let many = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s("stranger")),
            MemberIdentity::default().with_member_id(s(&m.id)),
        ]);
    let r = wire(&leave_group(&c, 5, wire(&many, 5)).await, 5);
    assert_eq!(r.error_code, 0);
    let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![25, 0]);
}

fn commit_request(group: &str, generation: i32, member: &str) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(17)
                        .with_committed_metadata(Some(s("meta"))),
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(99)
                        .with_committed_offset(1),
                ]),
        ])
}

fn partition_codes(r: &OffsetCommitResponse) -> Vec<i16> {
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn offsets_commit_and_fetch_in_each_version() {
    let (c, _dir) = setup(Duration::ZERO);
    for v in 2..=9 {
        let r = wire(
            &offset_commit(&c, v, wire(&commit_request("simple", -1, ""), v)).await,
            v,
        );
        assert_eq!(partition_codes(&r), vec![0, 3], "v{v}");
    }
    // A member of a generation of a group that has none in memory: it rejoins.
    let r = wire(
        &offset_commit(&c, 8, wire(&commit_request("simple", 3, "ghost"), 8)).await,
        8,
    );
    assert_eq!(partition_codes(&r), vec![22, 22]);
    let topics = Some(vec![
        OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0, 1]),
    ]);
    for v in 1..=7 {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s("simple")))
            .with_topics(topics.clone());
        let r = wire(&offset_fetch(&c, v, wire(&req, v)), v);
        let p: Vec<(i64, String)> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.committed_offset, p.metadata.as_ref().unwrap().to_string()))
            .collect();
        assert_eq!(p, vec![(17, "meta".into()), (-1, String::new())], "v{v}");
    }
    // v2+: no topics means every committed offset of the group.
    let all = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("simple")))
        .with_topics(None);
    let r = wire(&offset_fetch(&c, 7, wire(&all, 7)), 7);
    assert_eq!(r.topics.len(), 1);
    assert_eq!(r.topics[0].partitions.len(), 1);
    for v in 8..=9 {
        let req = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("simple")))
                .with_topics(None),
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("other")))
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0]),
                ])),
        ]);
        let r = wire(&offset_fetch(&c, v, wire(&req, v)), v);
        assert_eq!(r.groups.len(), 2);
        assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 17);
        assert_eq!(r.groups[1].topics[0].partitions[0].committed_offset, -1);
    }
}

#[tokio::test(start_paused = true)]
async fn groups_are_listed_described_and_deleted_in_each_version() {
    let (c, _dir) = setup(Duration::ZERO);
    let mut m = Sim::new(&c, "live", &["t"]);
    m.join_and_sync().await.unwrap();
    let r = offset_commit(&c, 8, commit_request("idle", -1, "")).await;
    assert_eq!(partition_codes(&r), vec![0, 3]);
    for v in 0..=5 {
        let r = wire(
            &list_groups(&c, v, wire(&ListGroupsRequest::default(), v)),
            v,
        );
        let names: Vec<&str> = r.groups.iter().map(|g| g.group_id.0.as_str()).collect();
        assert_eq!(names, vec!["idle", "live"], "v{v}");
    }
    let stable = ListGroupsRequest::default().with_states_filter(vec![s("stable")]);
    let r = wire(&list_groups(&c, 4, wire(&stable, 4)), 4);
    assert_eq!(r.groups.len(), 1);
    assert_eq!(r.groups[0].group_state.as_str(), "Stable");
    let classic = ListGroupsRequest::default().with_types_filter(vec![s("Classic")]);
    assert_eq!(
        wire(&list_groups(&c, 5, wire(&classic, 5)), 5).groups.len(),
        2
    );
    let consumer = ListGroupsRequest::default().with_types_filter(vec![s("consumer")]);
    assert_eq!(
        wire(&list_groups(&c, 5, wire(&consumer, 5)), 5)
            .groups
            .len(),
        0
    );
    for v in 0..=6 {
        let req = DescribeGroupsRequest::default()
            .with_groups(vec![
                GroupId(s("live")),
                GroupId(s("idle")),
                GroupId(s("none")),
            ])
            .with_include_authorized_operations(v >= 3);
        let r = wire(&describe_groups(&c, v, wire(&req, v)), v);
        let states: Vec<&str> = r.groups.iter().map(|g| g.group_state.as_str()).collect();
        assert_eq!(states, vec!["Stable", "Empty", "Dead"], "v{v}");
        assert_eq!(r.groups[2].error_code, if v >= 6 { 69 } else { 0 });
        assert_eq!(r.groups[0].members.len(), 1);
    }
    let del = DeleteGroupsRequest::default().with_groups_names(vec![
        GroupId(s("live")),
        GroupId(s("idle")),
        GroupId(s("none")),
    ]);
    for v in 0..=2 {
        let r = wire(&delete_groups(&c, wire(&del, v)).await, v);
        let codes: Vec<i16> = r.results.iter().map(|r| r.error_code).collect();
        let expected = if v == 0 {
            vec![68, 0, 69]
        } else {
            vec![68, 69, 69]
        };
        assert_eq!(codes, expected, "v{v}");
    }
    let od = OffsetDeleteRequest::default()
        .with_group_id(GroupId(s("live")))
        .with_topics(vec![
            OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0),
                ]),
        ]);
    let r = wire(&offset_delete(&c, wire(&od, 0)).await, 0);
    assert_eq!(
        (r.error_code, r.topics[0].partitions[0].error_code),
        (0, 86)
    );
    let gone = od.with_group_id(GroupId(s("none")));
    assert_eq!(
        wire(&offset_delete(&c, wire(&gone, 0)).await, 0).error_code,
        69
    );
}

#[test]
fn served_versions_are_ones_kafka_protocol_reads() {
    for &(key, min, max) in SERVED {
        let valid = key.valid_versions();
        assert!(valid.min <= min && max <= valid.max, "{key:?}");
    }
}
