//! Every API the server implements, at every version ApiVersions advertises for it: the
//! request is decoded, answered, and the answer decodes in that version — a response
//! field that a version lacks but the handler set would fail here (kafka-protocol
//! refuses to encode it), as would a version advertised but not handled.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::{Bytes, BytesMut};
use common::{Raw, Server, unique};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn batch(value: &str) -> Bytes {
    let r = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_000,
        key: None,
        value: Some(Bytes::from(value.to_string())),
        headers: IndexMap::new(),
    };
    let mut b = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut b,
        [&r],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    b.freeze()
}

/// The advertised version range of `key`.
fn range(raw: &mut Raw, key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let r: ApiVersionsResponse = raw.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let v = r
        .api_keys
        .iter()
        .find(|k| k.api_key == key as i16)
        .unwrap_or_else(|| panic!("{key:?} is not advertised"));
    v.min_version..=v.max_version
}

/// Calls `key` at every advertised version with the request `make` builds for it.
fn each<R, P>(raw: &mut Raw, key: ApiKey, make: impl Fn(i16) -> R, check: impl Fn(i16, &P))
where
    R: Encodable + HeaderVersion,
    P: Decodable + HeaderVersion,
{
    for v in range(raw, key) {
        let p: P = raw.call(key, v, &make(v));
        check(v, &p);
    }
}

#[test]
fn every_advertised_version_of_every_api_answers_in_its_shape() {
    let server = Server::start();
    let mut raw = Raw::connect(server.addr);
    let topic = unique("versions");

    each(
        &mut raw,
        ApiKey::CreateTopics,
        |v| {
            CreateTopicsRequest::default().with_topics(vec![
                CreatableTopic::default()
                    .with_name(name(&format!("{topic}-{v}")))
                    .with_num_partitions(2)
                    .with_replication_factor(1),
            ])
        },
        |v, r: &CreateTopicsResponse| assert_eq!(r.topics[0].error_code, 0, "v{v}"),
    );
    let topic = format!("{topic}-2");
    each(
        &mut raw,
        ApiKey::Metadata,
        |_| {
            let t = MetadataRequestTopic::default().with_name(Some(name(&topic)));
            MetadataRequest::default()
                .with_topics(Some(vec![t]))
                .with_allow_auto_topic_creation(true)
        },
        |v, r: &MetadataResponse| {
            assert_eq!(r.topics[0].error_code, 0, "v{v}");
            assert_eq!(r.topics[0].partitions.len(), 2, "v{v}");
        },
    );
    each(
        &mut raw,
        ApiKey::Produce,
        |v| {
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(name(&topic))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(1)
                                .with_records(Some(batch(&format!("v{v}")))),
                        ]),
                ])
        },
        |v, r: &ProduceResponse| {
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0, "v{v}");
            assert_eq!(p.base_offset, i64::from(v - 3), "v{v}");
        },
    );
    each(
        &mut raw,
        ApiKey::Fetch,
        |_| {
            FetchRequest::default()
                .with_max_wait_ms(0)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(name(&topic))
                        .with_partitions(vec![
                            FetchPartition::default()
                                .with_partition(1)
                                .with_fetch_offset(2)
                                .with_partition_max_bytes(1 << 20),
                        ]),
                ])
        },
        |v, r: &FetchResponse| {
            let p = &r.responses[0].partitions[0];
            assert_eq!(p.error_code, 0, "v{v}");
            assert!(p.high_watermark >= 10, "v{v}");
            let mut records = p.records.clone().unwrap();
            let sets =
                kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records).unwrap();
            assert_eq!(sets[0].records[0].offset, 2, "v{v}");
            assert_eq!(
                sets[0].records[0].value.as_deref(),
                Some(&b"v5"[..]),
                "v{v}"
            );
        },
    );
    each(
        &mut raw,
        ApiKey::ListOffsets,
        |_| {
            ListOffsetsRequest::default().with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name(&topic))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(1)
                            .with_timestamp(-1),
                    ]),
            ])
        },
        |v, r: &ListOffsetsResponse| {
            let p = &r.topics[0].partitions[0];
            assert_eq!(p.error_code, 0, "v{v}");
            assert!(p.offset >= 10, "v{v}");
        },
    );
    each(
        &mut raw,
        ApiKey::FindCoordinator,
        |v| {
            let key = StrBytes::from_static_str("g");
            if v >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![key])
            } else {
                FindCoordinatorRequest::default().with_key(key)
            }
        },
        |v, r: &FindCoordinatorResponse| {
            let port = if v >= 4 {
                r.coordinators[0].port
            } else {
                r.port
            };
            assert_eq!(port, i32::from(server.addr.port()), "v{v}");
        },
    );
    each(
        &mut raw,
        ApiKey::InitProducerId,
        |_| InitProducerIdRequest::default().with_transactional_id(None),
        |v, r: &InitProducerIdResponse| {
            assert_eq!(r.error_code, 0, "v{v}");
            assert!(r.producer_id.0 > 0, "v{v}");
        },
    );
    each(
        &mut raw,
        ApiKey::DescribeConfigs,
        |_| {
            DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(topic.clone())),
            ])
        },
        |v, r: &DescribeConfigsResponse| {
            assert_eq!(r.results[0].error_code, 0, "v{v}");
            assert!(
                r.results[0]
                    .configs
                    .iter()
                    .any(|c| &*c.name == "durability")
            );
        },
    );
    each(
        &mut raw,
        ApiKey::AlterConfigs,
        |_| {
            AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(topic.clone()))
                    .with_configs(vec![
                        alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("retention.ms"))
                            .with_value(Some(StrBytes::from_static_str("3600000"))),
                    ]),
            ])
        },
        |v, r: &AlterConfigsResponse| assert_eq!(r.responses[0].error_code, 0, "v{v}"),
    );
    each(
        &mut raw,
        ApiKey::IncrementalAlterConfigs,
        |_| {
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(topic.clone()))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("cleanup.policy"))
                            .with_config_operation(2)
                            .with_value(Some(StrBytes::from_static_str("compact"))),
                    ]),
            ])
        },
        |v, r: &IncrementalAlterConfigsResponse| assert_eq!(r.responses[0].error_code, 0, "v{v}"),
    );
    assert_eq!(
        server.hub.store().topic(&topic).unwrap().extra_config()["cleanup.policy"],
        "compact"
    );
    each(
        &mut raw,
        ApiKey::CreatePartitions,
        |v| {
            CreatePartitionsRequest::default().with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(name(&topic))
                    .with_count(i32::from(v) + 3),
            ])
        },
        |v, r: &CreatePartitionsResponse| assert_eq!(r.results[0].error_code, 0, "v{v}"),
    );
    each(
        &mut raw,
        ApiKey::DescribeCluster,
        |_| DescribeClusterRequest::default(),
        |v, r: &DescribeClusterResponse| {
            assert_eq!(r.error_code, 0, "v{v}");
            assert_eq!(r.brokers.len(), 1, "v{v}");
        },
    );
    each(
        &mut raw,
        ApiKey::DeleteRecords,
        |_| {
            DeleteRecordsRequest::default().with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(name(&topic))
                    .with_partitions(vec![
                        DeleteRecordsPartition::default()
                            .with_partition_index(1)
                            .with_offset(1),
                    ]),
            ])
        },
        |v, r: &DeleteRecordsResponse| {
            let p = &r.topics[0].partitions[0];
            assert_eq!((p.error_code, p.low_watermark), (0, 1), "v{v}");
        },
    );
    each(
        &mut raw,
        ApiKey::DeleteTopics,
        |v| {
            let n = format!("{}-{v}", topic.trim_end_matches("-2"));
            if v >= 6 {
                DeleteTopicsRequest::default()
                    .with_topics(vec![DeleteTopicState::default().with_name(Some(name(&n)))])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![name(&n)])
            }
        },
        |v, r: &DeleteTopicsResponse| {
            // Topics v2..=7 were created above; v1 names one that never was.
            let want = if v >= 2 { 0 } else { 3 };
            assert_eq!(r.responses[0].error_code, want, "v{v}");
        },
    );
}
