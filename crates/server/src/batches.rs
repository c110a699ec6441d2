//! Kafka's record batches (format v2) to and from the store's records, with
//! kafka-protocol's `records` codec.
//!
//! Produce: each batch's CRC-32C is checked, its records inflated with a bound
//! (`compression`), and kept as the store keeps a record: key, value, headers and the
//! producer's timestamp. Fetch: what the store holds is written back as one
//! uncompressed batch per partition, starting at the offset asked for (which may be in
//! the middle of a batch the producer sent).
//!
//! What does not survive the store: a null value or null header value reads back as
//! empty; a record's headers with the same name twice read back as one (kafka-protocol
//! keeps headers in a map); the codec a producer compressed with (records are served
//! uncompressed).

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, Record as KRecord,
    RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use millrace_store::{Header, Names, Record, StoredRecord};

use crate::compression;

/// The most a batch's records may inflate to: the store's own batch limit.
pub const MAX_INFLATED_BYTES: usize = millrace_store::codec::MAX_BATCH_BYTES;

/// Why a produced batch was refused, as Kafka's error codes tell it.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchError {
    /// The CRC does not match (`CORRUPT_MESSAGE`).
    Corrupt(String),
    /// Anything else that is not a valid v2 batch (`INVALID_RECORD`).
    Invalid(String),
}

/// One produced batch: who produced it (for idempotence) and its records.
#[derive(Debug)]
pub struct ProducedBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
    pub records: Vec<Record>,
}

/// Where the v2 batch header keeps what is checked before kafka-protocol decodes it.
const LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;

/// Decodes every batch in one partition's `records` of a produce request.
pub fn decode_produced(mut buf: Bytes) -> Result<Vec<ProducedBatch>, BatchError> {
    let mut out = Vec::new();
    let mut names = Names::default();
    while buf.has_remaining() {
        check_crc(&buf)?;
        let set = RecordBatchDecoder::decode_with_custom_compression(
            &mut buf,
            Some(|b: &mut Bytes, c: Compression| {
                compression::inflate(b, c, MAX_INFLATED_BYTES).map_err(anyhow::Error::msg)
            }),
        )
        .map_err(|e| BatchError::Invalid(e.to_string()))?;
        let Some(first) = set.records.first() else {
            continue;
        };
        if first.control {
            return Err(BatchError::Invalid(
                "control batches are written by brokers, not producers".into(),
            ));
        }
        let mut batch = ProducedBatch {
            producer_id: first.producer_id,
            producer_epoch: first.producer_epoch,
            base_sequence: first.sequence,
            transactional: first.transactional,
            records: Vec::with_capacity(set.records.len()),
        };
        for r in set.records {
            batch.records.push(to_store(r, &mut names));
        }
        out.push(batch);
    }
    Ok(out)
}

/// Checks the CRC-32C of the batch at the front of `buf` (the decoder checks it too,
/// but only as an error message; this tells a corrupt batch from a malformed one).
fn check_crc(buf: &[u8]) -> Result<(), BatchError> {
    let invalid = |why: &str| BatchError::Invalid(why.to_string());
    let len = buf
        .get(LENGTH_AT..LENGTH_AT + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(i32::from_be_bytes)
        .ok_or_else(|| invalid("a record batch is cut short"))?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(LENGTH_AT + 4))
        .ok_or_else(|| invalid("a record batch has a negative length"))?;
    let batch = buf
        .get(..end)
        .ok_or_else(|| invalid("a record batch is longer than the request holds"))?;
    match batch.get(MAGIC_AT) {
        Some(2) => {}
        Some(m) => {
            return Err(BatchError::Invalid(format!(
                "record batch format v{m}: only v2 is accepted"
            )));
        }
        None => return Err(invalid("a record batch is cut short")),
    }
    let stated = batch
        .get(CRC_AT..CRC_AT + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes);
    let actual = batch.get(CRC_FROM..).map(crc32c::crc32c);
    match (stated, actual) {
        (Some(s), Some(a)) if s == a => Ok(()),
        (Some(s), Some(a)) => Err(BatchError::Corrupt(format!(
            "record batch CRC-32C is {s:#010x} but its bytes sum to {a:#010x}"
        ))),
        _ => Err(invalid("a record batch is cut short")),
    }
}

fn to_store(r: KRecord, names: &mut Names) -> Record {
    Record {
        key: r.key,
        value: r.value.unwrap_or_default(),
        headers: r
            .headers
            .into_iter()
            .map(|(k, v)| Header {
                key: names.get(&k),
                value: v.unwrap_or_default(),
            })
            .collect(),
        timestamp: r.timestamp,
    }
}

/// Encodes records read from one partition as a v2 batch (none: empty bytes). They
/// must be in offset order without gaps, as a read returns them.
pub fn encode_fetched(records: &[StoredRecord]) -> Result<Bytes, String> {
    let Some(first) = records.first() else {
        return Ok(Bytes::new());
    };
    let base = first.offset;
    let krecords: Vec<KRecord> = records
        .iter()
        .map(|s| {
            let delta = s.offset.wrapping_sub(base);
            KRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                timestamp_type: TimestampType::Creation,
                offset: i64::try_from(s.offset).unwrap_or(i64::MAX),
                // The encoder keeps records in one batch while offset minus sequence
                // stays the same; this makes the batch's base sequence -1 (none).
                sequence: i32::try_from(delta).unwrap_or(i32::MAX).wrapping_sub(1),
                timestamp: s.record.timestamp,
                key: s.record.key.clone(),
                value: Some(s.record.value.clone()),
                headers: s
                    .record
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            StrBytes::from_string(h.key.to_string()),
                            Some(h.value.clone()),
                        )
                    })
                    .collect::<IndexMap<_, _>>(),
            }
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &krecords,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(out.freeze())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn krecord(offset: i64, value: &str) -> KRecord {
        KRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 7,
            producer_epoch: 1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: i32::try_from(offset).unwrap() + 10,
            timestamp: 1_000 + offset,
            key: (offset % 2 == 0).then(|| Bytes::from(format!("k{offset}"))),
            value: Some(Bytes::from(value.to_string())),
            headers: [(
                StrBytes::from_static_str("h"),
                Some(Bytes::from_static(b"v")),
            )]
            .into_iter()
            .collect(),
        }
    }

    fn produced(compression: Compression) -> Bytes {
        let records: Vec<KRecord> = (0..5).map(|i| krecord(i, &format!("v{i}"))).collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn a_produced_batch_keeps_its_producer_and_records_in_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batches = decode_produced(produced(c)).unwrap();
            assert_eq!(batches.len(), 1);
            let b = &batches[0];
            assert_eq!(
                (b.producer_id, b.producer_epoch, b.base_sequence),
                (7, 1, 10)
            );
            assert_eq!(b.records.len(), 5);
            assert_eq!(b.records[2].key.as_deref(), Some(&b"k2"[..]));
            assert_eq!(b.records[3].value, Bytes::from_static(b"v3"));
            assert_eq!(b.records[3].timestamp, 1_003);
            assert_eq!(&*b.records[4].headers[0].key, "h");
        }
    }

    #[test]
    fn a_flipped_byte_is_corrupt_and_a_cut_batch_invalid() {
        let good = produced(Compression::None);
        let mut bad = good.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            decode_produced(Bytes::from(bad)),
            Err(BatchError::Corrupt(_))
        ));
        for cut in [1, 20, 60, good.len() - 1] {
            assert!(matches!(
                decode_produced(good.slice(..cut)),
                Err(BatchError::Invalid(_))
            ));
        }
    }

    #[test]
    fn fetched_records_encode_as_one_batch_from_any_offset() {
        let stored: Vec<StoredRecord> = (40..45)
            .map(|o| StoredRecord {
                offset: o,
                record: Record::new(None, format!("v{o}"), 5_000 + i64::try_from(o).unwrap()),
            })
            .collect();
        let mut bytes = encode_fetched(&stored).unwrap();
        let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
        assert_eq!(sets.len(), 1, "one batch");
        let offsets: Vec<i64> = sets[0].records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![40, 41, 42, 43, 44]);
        assert_eq!(sets[0].records[1].value.as_deref(), Some(&b"v41"[..]));
        assert_eq!(sets[0].records[1].timestamp, 5_041);
        assert_eq!(sets[0].records[0].sequence, -1);
        assert!(encode_fetched(&[]).unwrap().is_empty());
    }
}
