//! Kafka's record batches (format v2) from produce requests, read straight from the
//! request's bytes into what the store appends.
//!
//! Each batch's CRC-32C is checked, its records inflated with a bound (`compression`)
//! and walked once: a record is where its key, value and headers lie in those bytes
//! (no copy of them), its headers in order with duplicate names kept, and the
//! producer's timestamp. The store then appends them as one batch
//! ([`ProducedBatch::records`]). Fetch writes batches back in `batch_writer`.
//!
//! What does not survive the store: a null value or null header value reads back as
//! empty; the codec a producer compressed with (records are served uncompressed).

use bytes::Bytes;
use integer_encoding::VarInt;
use kafka_protocol::records::Compression;
use millrace_store::{Header, Names, RecordRef};

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
    /// The records' bytes (inflated when the producer compressed them).
    bytes: Bytes,
    records: Vec<Span>,
    /// Every record's headers, back to back; a record's `headers` range is its own.
    headers: Vec<Header>,
}

/// Where one record's fields lie in its batch's bytes.
#[derive(Debug, Clone, Copy)]
struct Span {
    timestamp: i64,
    key: Option<(usize, usize)>,
    value: (usize, usize),
    headers: (usize, usize),
}

impl ProducedBatch {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records, borrowed from the request, as the store appends them.
    pub fn records(&self) -> impl Iterator<Item = RecordRef<'_>> + Clone {
        let (bytes, headers) = (&self.bytes[..], &self.headers[..]);
        let field = move |(from, to): (usize, usize)| bytes.get(from..to).unwrap_or_default();
        self.records.iter().map(move |r| RecordRef {
            key: r.key.map(field),
            value: field(r.value),
            headers: headers.get(r.headers.0..r.headers.1).unwrap_or_default(),
            timestamp: r.timestamp,
        })
    }
}

/// Where the v2 batch header keeps its fields.
const LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;
const ATTRIBUTES_AT: usize = 21;
const BASE_TIMESTAMP_AT: usize = 27;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;
const HEADER_LEN: usize = 61;

const TRANSACTIONAL: i16 = 1 << 4;
const CONTROL: i16 = 1 << 5;

/// Decodes every batch in one partition's `records` of a produce request.
pub fn decode_produced(mut buf: Bytes) -> Result<Vec<ProducedBatch>, BatchError> {
    let mut out = Vec::new();
    let mut names = Names::default();
    while !buf.is_empty() {
        let end = check_crc(&buf)?;
        let batch = buf.split_to(end);
        if let Some(b) = decode_batch(&batch, &mut names)? {
            out.push(b);
        }
    }
    Ok(out)
}

/// Checks the CRC-32C of the batch at the front of `buf` and returns its size.
fn check_crc(buf: &[u8]) -> Result<usize, BatchError> {
    let len = be::<4>(buf, LENGTH_AT)
        .map(i32::from_be_bytes)
        .ok_or_else(cut_short)?;
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
        None => return Err(cut_short()),
    }
    let stated = be::<4>(batch, CRC_AT).map(u32::from_be_bytes);
    let actual = batch.get(CRC_FROM..).map(crc32c::crc32c);
    match (stated, actual) {
        (Some(s), Some(a)) if s == a => Ok(end),
        (Some(s), Some(a)) => Err(BatchError::Corrupt(format!(
            "record batch CRC-32C is {s:#010x} but its bytes sum to {a:#010x}"
        ))),
        _ => Err(cut_short()),
    }
}

/// One whole batch whose CRC matched; `None` for a batch of no records.
fn decode_batch(batch: &Bytes, names: &mut Names) -> Result<Option<ProducedBatch>, BatchError> {
    let field = |at| be::<8>(batch, at).ok_or_else(cut_short);
    let attributes = be::<2>(batch, ATTRIBUTES_AT)
        .map(i16::from_be_bytes)
        .ok_or_else(cut_short)?;
    let base_timestamp = i64::from_be_bytes(field(BASE_TIMESTAMP_AT)?);
    let producer_id = i64::from_be_bytes(field(PRODUCER_ID_AT)?);
    let (producer_epoch, base_sequence, count) = match (
        be::<2>(batch, PRODUCER_EPOCH_AT),
        be::<4>(batch, BASE_SEQUENCE_AT),
        be::<4>(batch, RECORD_COUNT_AT),
    ) {
        (Some(e), Some(s), Some(c)) => (
            i16::from_be_bytes(e),
            i32::from_be_bytes(s),
            i32::from_be_bytes(c),
        ),
        _ => return Err(cut_short()),
    };
    let count = usize::try_from(count)
        .map_err(|_| invalid("a record batch has a negative record count"))?;
    if count == 0 {
        return Ok(None);
    }
    if attributes & CONTROL != 0 {
        return Err(invalid(
            "control batches are written by brokers, not producers",
        ));
    }
    let codec = match attributes & 0x7 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        c => {
            return Err(BatchError::Invalid(format!(
                "unknown compression codec {c}"
            )));
        }
    };
    let body = batch.slice(HEADER_LEN.min(batch.len())..);
    let bytes =
        compression::inflate(&body, codec, MAX_INFLATED_BYTES).map_err(BatchError::Invalid)?;
    // Every record takes at least 7 bytes: reserve no more than could be there.
    let most = bytes.len() / 7 + 1;
    let mut out = ProducedBatch {
        producer_id,
        producer_epoch,
        base_sequence,
        transactional: attributes & TRANSACTIONAL != 0,
        bytes,
        records: Vec::with_capacity(count.min(most)),
        headers: Vec::new(),
    };
    let mut r = Reader {
        bytes: &out.bytes,
        at: 0,
    };
    for _ in 0..count {
        let span = r.record(base_timestamp, &mut out.headers, &out.bytes, names)?;
        out.records.push(span);
    }
    if r.at != out.bytes.len() {
        return Err(invalid("a record batch holds bytes after its last record"));
    }
    Ok(Some(out))
}

/// A walk over a batch's records.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn record(
        &mut self,
        base_timestamp: i64,
        headers: &mut Vec<Header>,
        shared: &Bytes,
        names: &mut Names,
    ) -> Result<Span, BatchError> {
        let size = self
            .length()?
            .ok_or_else(|| invalid("a record has a negative size"))?;
        let end = self
            .at
            .checked_add(size)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(cut_short)?;
        self.take(1)?; // attributes: unused
        let timestamp = base_timestamp.wrapping_add(self.varlong()?);
        self.varint()?; // offset delta: the store gives offsets
        let key = self.field()?;
        let value = self.field()?.unwrap_or((self.at, self.at));
        let count = self
            .length()?
            .ok_or_else(|| invalid("a record has a negative header count"))?;
        let first = headers.len();
        for _ in 0..count {
            let (from, to) = self
                .field()?
                .ok_or_else(|| invalid("a record header has no name"))?;
            let name = names
                .get_utf8(self.bytes.get(from..to).unwrap_or_default())
                .map_err(|_| invalid("a record header name is not UTF-8"))?;
            let value = self
                .field()?
                .map_or_else(Bytes::new, |(a, b)| shared.slice(a..b));
            headers.push(Header { key: name, value });
        }
        if self.at != end {
            return Err(invalid("a record's fields do not fill its size"));
        }
        Ok(Span {
            timestamp,
            key,
            value,
            headers: (first, headers.len()),
        })
    }

    /// A length-prefixed field: where its bytes lie, or `None` for null (-1).
    fn field(&mut self) -> Result<Option<(usize, usize)>, BatchError> {
        let Some(n) = self.length()? else {
            return Ok(None);
        };
        let from = self.at;
        self.take(n)?;
        Ok(Some((from, self.at)))
    }

    /// A varint length: `None` for -1, an error below that.
    fn length(&mut self) -> Result<Option<usize>, BatchError> {
        match self.varint()? {
            -1 => Ok(None),
            n => usize::try_from(n)
                .map(Some)
                .map_err(|_| invalid("a record field has a negative length")),
        }
    }

    fn take(&mut self, n: usize) -> Result<(), BatchError> {
        self.at = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(cut_short)?;
        Ok(())
    }

    fn varint(&mut self) -> Result<i32, BatchError> {
        self.var()
    }

    fn varlong(&mut self) -> Result<i64, BatchError> {
        self.var()
    }

    /// A zigzag varint, which must fit `T` (Kafka's varint in 5 bytes, varlong in 10).
    fn var<T: VarInt>(&mut self) -> Result<T, BatchError> {
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        let (v, n) = T::decode_var(rest).ok_or_else(|| invalid("a record holds a bad varint"))?;
        self.at += n;
        Ok(v)
    }
}

/// `N` bytes at `at`, for a big-endian integer.
fn be<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn invalid(why: &str) -> BatchError {
    BatchError::Invalid(why.to_string())
}

fn cut_short() -> BatchError {
    invalid("a record batch is cut short")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Record as KRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

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
            headers: [
                (
                    StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"v")),
                ),
                (StrBytes::from_static_str("n"), None),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn encode(records: &[KRecord], compression: Compression) -> Bytes {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    fn produced(compression: Compression) -> Bytes {
        let records: Vec<KRecord> = (0..5).map(|i| krecord(i, &format!("v{i}"))).collect();
        encode(&records, compression)
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
            let records: Vec<RecordRef<'_>> = b.records().collect();
            assert_eq!(records.len(), 5);
            assert_eq!(records[1].key, None);
            assert_eq!(records[2].key, Some(&b"k2"[..]));
            assert_eq!(records[3].value, b"v3");
            assert_eq!(records[3].timestamp, 1_003);
            let headers: Vec<(&str, &[u8])> = records[4]
                .headers
                .iter()
                .map(|h| (&*h.key, &h.value[..]))
                .collect();
            assert_eq!(headers, vec![("h", &b"v"[..]), ("n", &b""[..])]);
        }
    }

    /// A batch of one record with the headers given, written field by field as a
    /// producer does (kafka-protocol's encoder keeps headers in a map, so it cannot).
    fn with_headers(headers: &[(&str, &str)]) -> Bytes {
        let varint = |b: &mut BytesMut, n: i64| b.put_slice(&n.encode_var_vec());
        let mut rec = BytesMut::new();
        rec.put_i8(0);
        varint(&mut rec, 0); // timestamp delta
        varint(&mut rec, 0); // offset delta
        varint(&mut rec, -1); // no key
        varint(&mut rec, 1);
        rec.put_slice(b"v");
        varint(&mut rec, i64::try_from(headers.len()).unwrap());
        for (k, v) in headers {
            for part in [k.as_bytes(), v.as_bytes()] {
                varint(&mut rec, i64::try_from(part.len()).unwrap());
                rec.put_slice(part);
            }
        }
        let mut b = BytesMut::new();
        b.put_i64(0);
        b.put_i32(0);
        b.put_i32(-1);
        b.put_i8(2);
        b.put_u32(0);
        b.put_i16(0);
        b.put_i32(0);
        b.put_i64(1_000);
        b.put_i64(1_000);
        b.put_i64(-1);
        b.put_i16(-1);
        b.put_i32(-1);
        b.put_i32(1);
        varint(&mut b, i64::try_from(rec.len()).unwrap());
        b.put_slice(&rec);
        let length = i32::try_from(b.len() - LENGTH_AT - 4).unwrap();
        b[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_FROM..]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn headers_of_one_name_are_all_kept_in_order() {
        let batches = decode_produced(with_headers(&[("a", "1"), ("b", "2"), ("a", "3")])).unwrap();
        let record = batches[0].records().next().unwrap();
        let headers: Vec<(&str, &[u8])> = record
            .headers
            .iter()
            .map(|h| (&*h.key, &h.value[..]))
            .collect();
        assert_eq!(
            headers,
            vec![("a", &b"1"[..]), ("b", &b"2"[..]), ("a", &b"3"[..])]
        );
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

    /// Records that claim more than the batch holds, or less, are refused with a
    /// valid CRC: the walk itself checks every length.
    #[test]
    fn records_that_do_not_fill_their_batch_are_invalid() {
        let good = produced(Compression::None);
        for (at, value) in [
            (RECORD_COUNT_AT + 3, 6u8),
            (RECORD_COUNT_AT + 3, 4),
            (HEADER_LEN, 0x7F),
        ] {
            let mut bad = good.to_vec();
            bad[at] = value;
            let crc = crc32c::crc32c(&bad[CRC_FROM..]);
            bad[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
            assert!(
                matches!(
                    decode_produced(Bytes::from(bad)),
                    Err(BatchError::Invalid(_))
                ),
                "byte {at} set to {value}"
            );
        }
    }
}
