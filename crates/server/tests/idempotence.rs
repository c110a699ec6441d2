//! Idempotent producers at the protocol level: a batch sent twice (same producer id,
//! epoch and sequence, as a retry after a lost response sends it) is appended once and
//! both answers carry its offset; a batch after a gap in the sequence is refused with
//! OUT_OF_ORDER_SEQUENCE_NUMBER and nothing is appended.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::{Bytes, BytesMut};
use common::{Raw, Server, unique};
use kafka_protocol::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A batch of `count` records from `producer` (id, epoch) starting at `sequence`.
fn batch(producer: (i64, i16), sequence: i32, count: i32) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.0,
            producer_epoch: producer.1,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: sequence + i,
            timestamp: 1_000,
            key: None,
            value: Some(Bytes::from(format!("seq-{}", sequence + i))),
            headers: IndexMap::new(),
        })
        .collect();
    let mut b = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut b,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    b.freeze()
}

/// Produces `records` to partition 0 of `topic` with acks=all: (error code, base offset).
fn produce(raw: &mut Raw, topic: &str, records: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let r: ProduceResponse = raw.call(ApiKey::Produce, 9, &req);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn a_retried_batch_is_appended_once_and_a_gap_is_refused() {
    let server = Server::start();
    let mut raw = Raw::connect(server.addr);
    let topic = unique("idem");
    let created: CreateTopicsResponse = raw.call(
        ApiKey::CreateTopics,
        5,
        &CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]),
    );
    assert_eq!(created.topics[0].error_code, 0);
    let init: InitProducerIdResponse = raw.call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default().with_transactional_id(None),
    );
    let producer = (init.producer_id.0, init.producer_epoch);
    let end = || {
        server
            .hub
            .store()
            .topic(&topic)
            .unwrap()
            .partition(0)
            .unwrap()
            .end_offset()
    };

    assert_eq!(produce(&mut raw, &topic, batch(producer, 0, 3)), (0, 0));
    assert_eq!(produce(&mut raw, &topic, batch(producer, 3, 2)), (0, 3));
    assert_eq!(end(), 5);
    // The first batch again (its answer was "lost"): the original offset, no append.
    assert_eq!(produce(&mut raw, &topic, batch(producer, 0, 3)), (0, 0));
    assert_eq!(produce(&mut raw, &topic, batch(producer, 3, 2)), (0, 3));
    assert_eq!(end(), 5, "a duplicate is not appended");
    // A gap: sequence 7 where 5 comes next.
    let (code, _) = produce(&mut raw, &topic, batch(producer, 7, 1));
    assert_eq!(code, ResponseError::OutOfOrderSequenceNumber.code());
    assert_eq!(end(), 5, "a refused batch is not appended");
    assert_eq!(produce(&mut raw, &topic, batch(producer, 5, 1)), (0, 5));
    // An older epoch after a newer one is fenced.
    assert_eq!(
        produce(&mut raw, &topic, batch((producer.0, 1), 0, 1)),
        (0, 6)
    );
    let (code, _) = produce(&mut raw, &topic, batch(producer, 6, 1));
    assert_eq!(code, ResponseError::InvalidProducerEpoch.code());
    // Records without a producer id are never checked.
    let anonymous = (-1, -1);
    assert_eq!(produce(&mut raw, &topic, batch(anonymous, -1, 1)), (0, 7));
    assert_eq!(produce(&mut raw, &topic, batch(anonymous, -1, 1)), (0, 8));
}
