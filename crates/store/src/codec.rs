//! Batch and record encoding. The format (also in `docs/format.md`), little-endian:
//!
//! ```text
//! Batch
//! | off | size | field         | type | meaning                                            |
//! |   0 |    4 | length        | u32  | bytes after this field: 28 + records; <= 64 MiB   |
//! |   4 |    4 | crc           | u32  | CRC32C of the records, then of bytes [8, 32)       |
//! |   8 |    1 | magic         | u8   | 2 (1: CRC32C of bytes [8, 4 + length) in order)    |
//! |   9 |    1 | attributes    | u8   | 0 (reserved for compression)                       |
//! |  10 |    2 | reserved      | u16  | 0                                                  |
//! |  12 |    8 | base_offset   | u64  | offset of the first record                         |
//! |  20 |    4 | record_count  | u32  | >= 1                                               |
//! |  24 |    8 | max_timestamp | i64  | largest record timestamp in the batch              |
//! |  32 |  ... | records       |      | record_count records exactly filling the batch     |
//!
//! Record
//! |   0 |    8 | timestamp     | i64  | ms since the Unix epoch                            |
//! |   8 |    4 | key_len       | u32  | 0xFFFF_FFFF = no key                               |
//! |  12 |    k | key           |      |                                                    |
//! |     |    4 | value_len     | u32  |                                                    |
//! |     |    v | value         |      |                                                    |
//! |     |    4 | header_count  | u32  | then per header:                                   |
//! |     |    4 |   name_len    | u32  |                                                    |
//! |     |    n |   name        | UTF-8|                                                    |
//! |     |    4 |   value_len   | u32  |                                                    |
//! |     |    v |   value       |      |                                                    |
//! ```
//!
//! Decoders never trust a length: each one is checked against the bytes that remain, and
//! nothing is allocated from a length before that check.
//!
//! Parts: `codec.rs` (here) holds the format — the table above, its constants, the batch
//! header parsed and its CRC checked — so it reads against `docs/format.md` in one
//! place; `encode` writes batches, `decode` reads them back.

mod decode;
mod encode;

pub(crate) use decode::{Cursor, ReadLimits, decode_batch_into, validate_records};
pub use decode::{RecordSink, decode_batches};
pub use encode::encode_batch;
pub(crate) use encode::{Unsealed, encode_unsealed, finish_header, seal};

pub(crate) const BATCH_HEADER_LEN: usize = 32;
/// Bytes of the batch header that `length` counts (everything after the length field).
const HEADER_AFTER_LEN: usize = BATCH_HEADER_LEN - 4;
/// The format written. Version 2 checksums the records first and the header after them,
/// so an appender checksums the records outside the partition lock and only extends
/// that CRC over the 24 header bytes once the base offset is known (version 1 covered
/// the same bytes header-first, which needed a slow CRC combine under the lock).
pub(crate) const MAGIC: u8 = 2;
/// The first format, still read.
const MAGIC_V1: u8 = 1;

/// Whether `b` is a batch format this version reads.
pub(crate) fn known_magic(b: u8) -> bool {
    b == MAGIC || b == MAGIC_V1
}
/// The smallest record: timestamp, key_len, value_len, header_count.
pub(crate) const MIN_RECORD_LEN: usize = 20;
/// A batch larger than this is refused on append and treated as corrupt on read, so a
/// flipped length can never make a reader allocate gigabytes.
pub const MAX_BATCH_BYTES: usize = 64 << 20;
pub(crate) const NO_KEY: u32 = u32::MAX;

/// The fixed-size front of a batch, parsed and checked for internal consistency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    /// Total bytes of the batch on disk, including the length field.
    pub total_len: usize,
    pub crc: u32,
    pub base_offset: u64,
    pub record_count: u32,
    pub max_timestamp: i64,
}

impl BatchHeader {
    /// Offset after this batch's last record.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}

/// Parses the 32-byte batch header. Checks that can be made without the body: length
/// range, magic, and that `record_count` could fit in `length`.
pub(crate) fn parse_header(b: &[u8; BATCH_HEADER_LEN]) -> Result<BatchHeader, String> {
    let length = u32_at(b, 0);
    let length =
        usize::try_from(length).map_err(|_| "length does not fit in memory".to_string())?;
    if length < HEADER_AFTER_LEN + MIN_RECORD_LEN {
        return Err(format!("batch length {length} is too small"));
    }
    if length + 4 > MAX_BATCH_BYTES {
        return Err(format!("batch length {length} is over the 64 MiB limit"));
    }
    if !known_magic(b[8]) {
        return Err(format!("unknown batch magic {}", b[8]));
    }
    let record_count = u32_at(b, 20);
    let body = length - HEADER_AFTER_LEN;
    let count = usize::try_from(record_count).map_err(|_| "record count overflows".to_string())?;
    if count == 0 || count > body / MIN_RECORD_LEN {
        return Err(format!(
            "record count {record_count} cannot fit in {body} bytes"
        ));
    }
    let base_offset = u64_at(b, 12);
    if base_offset.checked_add(u64::from(record_count)).is_none() {
        return Err("base offset overflows".to_string());
    }
    Ok(BatchHeader {
        total_len: length + 4,
        crc: u32_at(b, 4),
        base_offset,
        record_count,
        max_timestamp: i64_at(b, 24),
    })
}

/// Checks a whole batch (`batch.len() == header.total_len`) against its CRC.
pub(crate) fn crc_matches(batch: &[u8], header: &BatchHeader) -> bool {
    batch.len() == header.total_len && batch_crc(batch) == header.crc
}

/// The CRC a whole batch should carry, by its format version.
fn batch_crc(batch: &[u8]) -> u32 {
    if batch[8] == MAGIC_V1 {
        crc32c::crc32c(&batch[8..])
    } else {
        crc32c::crc32c_append(
            crc32c::crc32c(&batch[BATCH_HEADER_LEN..]),
            &batch[8..BATCH_HEADER_LEN],
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
pub(crate) mod tests {
    use super::*;
    use crate::record::{Header, Record, StoredRecord};
    use bytes::Bytes;
    use proptest::prelude::*;

    /// Any record: for the codec's and `encoded`'s properties.
    pub(crate) fn arb_record() -> impl Strategy<Value = Record> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec(
                ("[a-z]{0,3}", proptest::collection::vec(any::<u8>(), 0..10)),
                0..4,
            ),
            any::<i64>(),
        )
            .prop_map(|(k, v, hs, ts)| Record {
                key: k.map(Bytes::from),
                value: Bytes::from(v),
                headers: hs.into_iter().map(|(n, v)| Header::new(n, v)).collect(),
                timestamp: ts,
            })
    }

    proptest! {
        #[test]
        fn codec_round_trips_any_batch(base in 0u64..u64::MAX / 2, records in proptest::collection::vec(arb_record(), 1..20)) {
            let mut buf = Vec::new();
            encode_batch(&mut buf, base, &records).unwrap();
            let decoded = decode_batches(&Bytes::from(buf)).unwrap();
            let expected: Vec<StoredRecord> = records
                .into_iter()
                .enumerate()
                .map(|(i, record)| StoredRecord { offset: base + i as u64, record })
                .collect();
            prop_assert_eq!(decoded, expected);
        }

        #[test]
        fn codec_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_batches(&Bytes::from(bytes));
        }

        #[test]
        fn codec_rejects_any_single_flipped_bit(records in proptest::collection::vec(arb_record(), 1..5), bit in any::<proptest::sample::Index>()) {
            let mut buf = Vec::new();
            encode_batch(&mut buf, 7, &records).unwrap();
            let i = bit.index(buf.len() * 8);
            buf[i / 8] ^= 1 << (i % 8);
            prop_assert!(decode_batches(&Bytes::from(buf)).is_err());
        }
    }

    /// A data directory written by the first format (CRC over the header, then the
    /// records) still reads; the same batch with a v2 CRC but magic 1 does not.
    #[test]
    fn codec_reads_version_1_batches() {
        let records = vec![
            Record::new(None, "v1", 3),
            Record::new(Some("k".into()), "x", 4),
        ];
        let mut buf = Vec::new();
        encode_batch(&mut buf, 5, &records).unwrap();
        buf[8] = MAGIC_V1;
        let stale = buf.clone();
        let crc = crc32c::crc32c(&buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        let out = decode_batches(&Bytes::from(buf)).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].offset, 6);
        assert_eq!(out[1].record, records[1]);
        assert!(decode_batches(&Bytes::from(stale)).is_err());
    }

    #[test]
    fn codec_keeps_empty_key_distinct_from_no_key_and_duplicate_headers_in_order() {
        let r = Record {
            key: Some(Bytes::new()),
            value: Bytes::from_static(b"v"),
            headers: vec![
                Header::new("a", "1"),
                Header::new("a", "2"),
                Header::new("b", ""),
            ],
            timestamp: -5,
        };
        let mut buf = Vec::new();
        encode_batch(&mut buf, 0, &[r.clone(), Record::default()]).unwrap();
        let out = decode_batches(&Bytes::from(buf)).unwrap();
        assert_eq!(out[0].record, r);
        assert_eq!(out[1].record.key, None);
    }
}
