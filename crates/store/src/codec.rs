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

use bytes::Bytes;

use crate::error::StoreError;
use std::sync::Arc;

use crate::encoded::EncodedRecords;
use crate::record::{Header, Names, Record, RecordRef, StoredRecord};

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

/// The encoded size of one record.
pub(crate) fn record_len(r: &RecordRef<'_>) -> usize {
    MIN_RECORD_LEN
        + r.key.as_ref().map_or(0, |k| k.len())
        + r.value.len()
        + r.headers
            .iter()
            .map(|h| 8 + h.key.len() + h.value.len())
            .sum::<usize>()
}

fn len_u32(n: usize) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::BatchTooLarge {
        size: n,
        limit: MAX_BATCH_BYTES,
    })
}

/// What [`encode_unsealed`] learned about the records; [`seal`] needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unsealed {
    records_crc: u32,
    pub record_count: u32,
    pub max_timestamp: i64,
}

/// Encodes `records` into `buf` (cleared first) behind a header whose `base_offset` and
/// `crc` are still blank. Splitting encode from [`seal`] lets appenders encode and
/// checksum outside the partition lock; only the 24 header bytes are hashed under it.
pub(crate) fn encode_unsealed<'a>(
    buf: &mut Vec<u8>,
    records: impl Iterator<Item = RecordRef<'a>> + Clone,
) -> Result<Unsealed, StoreError> {
    let (mut total, mut count) = (BATCH_HEADER_LEN, 0usize);
    for r in records.clone() {
        total += record_len(&r);
        count += 1;
    }
    if total > MAX_BATCH_BYTES {
        return Err(StoreError::BatchTooLarge {
            size: total,
            limit: MAX_BATCH_BYTES,
        });
    }
    let record_count = u32::try_from(count).map_err(|_| StoreError::BatchTooLarge {
        size: total,
        limit: MAX_BATCH_BYTES,
    })?;
    buf.clear();
    buf.reserve(total);
    buf.extend_from_slice(&[0u8; BATCH_HEADER_LEN]);
    let mut max_timestamp = i64::MIN;
    for r in records {
        max_timestamp = max_timestamp.max(r.timestamp);
        buf.extend_from_slice(&r.timestamp.to_le_bytes());
        match r.key {
            Some(k) => {
                buf.extend_from_slice(&len_u32(k.len())?.to_le_bytes());
                buf.extend_from_slice(k);
            }
            None => buf.extend_from_slice(&NO_KEY.to_le_bytes()),
        }
        buf.extend_from_slice(&len_u32(r.value.len())?.to_le_bytes());
        buf.extend_from_slice(r.value);
        buf.extend_from_slice(&len_u32(r.headers.len())?.to_le_bytes());
        for h in r.headers {
            buf.extend_from_slice(&len_u32(h.key.len())?.to_le_bytes());
            buf.extend_from_slice(h.key.as_bytes());
            buf.extend_from_slice(&len_u32(h.value.len())?.to_le_bytes());
            buf.extend_from_slice(&h.value);
        }
    }
    finish_header(buf, record_count, max_timestamp)
}

/// Fills in the header fields of a batch whose records follow its (blank) header in
/// `buf`, all but the base offset and the CRC, and checksums the records.
pub(crate) fn finish_header(
    buf: &mut [u8],
    record_count: u32,
    max_timestamp: i64,
) -> Result<Unsealed, StoreError> {
    let length = len_u32(buf.len() - 4)?;
    buf[0..4].copy_from_slice(&length.to_le_bytes());
    buf[8] = MAGIC;
    buf[20..24].copy_from_slice(&record_count.to_le_bytes());
    buf[24..32].copy_from_slice(&max_timestamp.to_le_bytes());
    Ok(Unsealed {
        records_crc: crc32c::crc32c(&buf[BATCH_HEADER_LEN..]),
        record_count,
        max_timestamp,
    })
}

/// Stamps the base offset and the CRC into a batch made by [`encode_unsealed`].
pub(crate) fn seal(buf: &mut [u8], base_offset: u64, info: &Unsealed) {
    buf[12..20].copy_from_slice(&base_offset.to_le_bytes());
    let crc = crc32c::crc32c_append(info.records_crc, &buf[8..BATCH_HEADER_LEN]);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Encodes one complete batch; a convenience for tests and fixtures.
pub fn encode_batch(
    buf: &mut Vec<u8>,
    base_offset: u64,
    records: &[Record],
) -> Result<(), StoreError> {
    let info = encode_unsealed(buf, records.iter().map(Record::as_ref))?;
    seal(buf, base_offset, &info);
    Ok(())
}

/// A cursor over the records of one batch held in a shared buffer: keys and values come
/// out as `Bytes::slice`s of that buffer, so decoding copies nothing but header names.
pub(crate) struct Cursor<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
    /// Header names met so far in this batch: a name repeated on every record is
    /// decoded and allocated once.
    names: Names,
}

impl Cursor<'_> {
    fn name(&mut self, at: usize, n: usize) -> Result<Arc<str>, String> {
        self.names
            .get_utf8(&self.buf[at..at + n])
            .map_err(|_| "header name is not UTF-8".to_string())
    }

    fn take(&mut self, n: usize) -> Result<usize, String> {
        let at = self.pos;
        match at.checked_add(n) {
            Some(e) if e <= self.end => {
                self.pos = e;
                Ok(at)
            }
            _ => Err(format!("field of {n} bytes runs past the end of the batch")),
        }
    }
    fn u32(&mut self) -> Result<u32, String> {
        let at = self.take(4)?;
        Ok(u32_at(self.buf, at))
    }
    fn len(&mut self) -> Result<usize, String> {
        usize::try_from(self.u32()?).map_err(|_| "length does not fit in memory".to_string())
    }
    fn i64(&mut self) -> Result<i64, String> {
        let at = self.take(8)?;
        Ok(i64_at(self.buf, at))
    }
    fn bytes(&mut self, n: usize) -> Result<Bytes, String> {
        let at = self.take(n)?;
        Ok(self.buf.slice(at..at + n))
    }

    fn record(&mut self) -> Result<Record, String> {
        let timestamp = self.i64()?;
        let key_len = self.u32()?;
        let key = if key_len == NO_KEY {
            None
        } else {
            let n = usize::try_from(key_len).map_err(|_| "key length does not fit".to_string())?;
            Some(self.bytes(n)?)
        };
        let value_len = self.len()?;
        let value = self.bytes(value_len)?;
        let header_count = self.len()?;
        // Each header takes at least 8 bytes; check before reserving.
        if header_count > (self.end - self.pos) / 8 {
            return Err(format!(
                "header count {header_count} cannot fit in the batch"
            ));
        }
        let mut headers = Vec::with_capacity(header_count);
        for _ in 0..header_count {
            let n = self.len()?;
            let at = self.take(n)?;
            let name = self.name(at, n)?;
            let v = self.len()?;
            headers.push(Header {
                key: name,
                value: self.bytes(v)?,
            });
        }
        Ok(Record {
            key,
            value,
            headers,
            timestamp,
        })
    }

    /// Advances past one record without building it.
    pub(crate) fn skip_record(&mut self) -> Result<(), String> {
        self.take(8)?;
        let key_len = self.u32()?;
        if key_len != NO_KEY {
            let n = usize::try_from(key_len).map_err(|_| "key length does not fit".to_string())?;
            self.take(n)?;
        }
        let v = self.len()?;
        self.take(v)?;
        let header_count = self.u32()?;
        for _ in 0..header_count {
            let n = self.len()?;
            self.take(n)?;
            let v = self.len()?;
            self.take(v)?;
        }
        Ok(())
    }
}

impl<'a> Cursor<'a> {
    /// A cursor over all of `buf`.
    pub(crate) fn over(buf: &'a Bytes) -> Cursor<'a> {
        Cursor {
            buf,
            pos: 0,
            end: buf.len(),
            names: Names::default(),
        }
    }

    /// Decodes the one record `raw` holds, with `names` shared by its caller's records.
    pub(crate) fn decode_one(raw: &[u8], names: &mut Names) -> Result<Record, String> {
        let buf = Bytes::copy_from_slice(raw);
        let mut c = Cursor::over(&buf);
        c.names = std::mem::take(names);
        let record = c.record();
        *names = c.names;
        record
    }
}

/// Where a read's records go. A reader hands in its own collection, so each record is
/// built once, where it is used (a broker's consumer builds its records directly).
pub trait RecordSink {
    /// Records taken so far by this read.
    fn taken(&self) -> usize;
    fn take(&mut self, offset: u64, record: Record);

    /// Whether the sink keeps the rest of the batch a read stopped in (see `rest`).
    fn keeps_rest(&self) -> bool {
        false
    }

    /// A record of the batch the read stopped in, past the limits, in offset order. A
    /// reader that keeps them serves its next read from them instead of reading,
    /// checking and skipping into that batch again (a poll that ends mid-batch did
    /// that for every poll, about doubling a copier's reads). Returns whether it takes
    /// more (a batch may hold millions of small records).
    fn rest(&mut self, _offset: u64, _record: Record) -> bool {
        false
    }

    /// Whether the sink takes records as stored (`take_encoded`) rather than decoded.
    /// Such a read hands out whole stored batches from the read position on: it may
    /// pass `max_records` and `max_bytes` by the rest of the batch it stops in.
    fn takes_encoded(&self) -> bool {
        false
    }

    /// `records`, the records of one stored batch from the read position on. Their
    /// count is in `taken` afterwards.
    fn take_encoded(&mut self, _records: EncodedRecords) {}
}

impl RecordSink for Vec<StoredRecord> {
    fn taken(&self) -> usize {
        self.len()
    }

    fn take(&mut self, offset: u64, record: Record) {
        self.push(StoredRecord { offset, record });
    }
}

/// Limits for [`decode_batch_into`]; `bytes_used` accumulates across batches.
pub(crate) struct ReadLimits {
    pub from: u64,
    /// Records at or past this offset are not returned (not yet durable).
    pub until: u64,
    pub max_records: usize,
    pub max_bytes: usize,
    pub bytes_used: usize,
}

/// Decodes the records of one CRC-checked batch (`buf[start..start + total_len]`) into
/// `out`, skipping offsets below `limits.from`. Returns `true` when a limit was reached.
/// The first record is always taken even if it is larger than `max_bytes`, so a reader
/// can make progress past a big record (as Kafka's fetch does).
pub(crate) fn decode_batch_into(
    buf: &Bytes,
    start: usize,
    header: &BatchHeader,
    limits: &mut ReadLimits,
    out: &mut (impl RecordSink + ?Sized),
) -> Result<bool, String> {
    let mut c = Cursor {
        buf,
        pos: start + BATCH_HEADER_LEN,
        end: start + header.total_len,
        names: Names::default(),
    };
    if out.takes_encoded() {
        return take_encoded(&mut c, header, limits, out);
    }
    for i in 0..header.record_count {
        let offset = header.base_offset + u64::from(i);
        if offset >= limits.until {
            return Ok(true);
        }
        if offset < limits.from {
            c.skip_record()?;
            continue;
        }
        let before = c.pos;
        let record = c.record()?;
        let size = c.pos - before;
        if out.taken() > 0 && limits.bytes_used + size > limits.max_bytes {
            if out.keeps_rest() && out.rest(offset, record) {
                rest_of_batch(&mut c, header, i + 1, limits.until, out)?;
            }
            return Ok(true);
        }
        limits.bytes_used += size;
        out.take(offset, record);
        if out.taken() >= limits.max_records {
            if out.keeps_rest() {
                rest_of_batch(&mut c, header, i + 1, limits.until, out)?;
            }
            return Ok(true);
        }
    }
    Ok(false)
}

/// [`decode_batch_into`] for a sink that takes records as stored: the batch's records
/// from `limits.from` on (below `limits.until`) as one run, walked (which checks their
/// layout) but not decoded. A batch is taken whole or not at all, and at least one is.
fn take_encoded(
    c: &mut Cursor<'_>,
    header: &BatchHeader,
    limits: &mut ReadLimits,
    out: &mut (impl RecordSink + ?Sized),
) -> Result<bool, String> {
    let mut first = None;
    let mut begin = c.pos;
    let mut count = 0u32;
    let mut reached_until = false;
    for i in 0..header.record_count {
        let offset = header.base_offset + u64::from(i);
        if offset >= limits.until {
            reached_until = true;
            break;
        }
        if offset < limits.from {
            c.skip_record()?;
            begin = c.pos;
            continue;
        }
        first.get_or_insert(offset);
        c.skip_record()?;
        count += 1;
    }
    if let Some(first) = first {
        let size = c.pos - begin;
        if out.taken() > 0 && limits.bytes_used + size > limits.max_bytes {
            return Ok(true);
        }
        limits.bytes_used += size;
        out.take_encoded(EncodedRecords::new(first, count, c.buf.slice(begin..c.pos)));
    }
    Ok(reached_until || out.taken() >= limits.max_records || limits.bytes_used >= limits.max_bytes)
}

/// Hands the records of a batch from number `first` on (below `until`) to the sink's
/// `rest`, while it takes them.
fn rest_of_batch(
    c: &mut Cursor<'_>,
    header: &BatchHeader,
    first: u32,
    until: u64,
    out: &mut (impl RecordSink + ?Sized),
) -> Result<(), String> {
    for i in first..header.record_count {
        let offset = header.base_offset + u64::from(i);
        if offset >= until {
            break;
        }
        let record = c.record()?;
        if !out.rest(offset, record) {
            break;
        }
    }
    Ok(())
}

/// Fully validates the body of a batch: every record parses and they exactly fill it.
/// Used by recovery, where a CRC match alone on a hand-made batch is not enough.
pub(crate) fn validate_records(batch: &[u8], header: &BatchHeader) -> Result<(), String> {
    let buf = Bytes::copy_from_slice(batch);
    let mut c = Cursor {
        buf: &buf,
        pos: BATCH_HEADER_LEN,
        end: batch.len(),
        names: Names::default(),
    };
    for _ in 0..header.record_count {
        c.skip_record()?;
    }
    if c.pos != c.end {
        return Err(format!(
            "{} stray bytes after the last record",
            c.end - c.pos
        ));
    }
    Ok(())
}

/// Decodes a whole buffer of back-to-back batches. For tests and tools; the read path uses
/// `decode_batch_into` directly.
pub fn decode_batches(buf: &Bytes) -> Result<Vec<StoredRecord>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let head: &[u8; BATCH_HEADER_LEN] = buf
            .get(pos..pos + BATCH_HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| format!("truncated batch header at byte {pos}"))?;
        let h = parse_header(head)?;
        let batch = buf
            .get(pos..pos + h.total_len)
            .ok_or_else(|| format!("truncated batch at byte {pos}"))?;
        if !crc_matches(batch, &h) {
            return Err(format!("crc mismatch at byte {pos}"));
        }
        validate_records(batch, &h)?;
        let mut limits = ReadLimits {
            from: 0,
            until: u64::MAX,
            max_records: usize::MAX,
            max_bytes: usize::MAX,
            bytes_used: 0,
        };
        decode_batch_into(buf, pos, &h, &mut limits, &mut out)?;
        pos += h.total_len;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
pub(crate) mod tests {
    use super::*;
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
