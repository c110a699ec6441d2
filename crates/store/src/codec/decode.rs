//! The decoder: batches read back into records (`Cursor`, `decode_batch_into`, the
//! `RecordSink` a read hands its records to), and the validating walk over a batch's
//! records. Every length is checked against the bytes that remain before it is used.

use std::sync::Arc;

use bytes::Bytes;

use super::{BATCH_HEADER_LEN, BatchHeader, NO_KEY, crc_matches, i64_at, parse_header, u32_at};
use crate::encoded::EncodedRecords;
use crate::record::{Header, Names, Record, StoredRecord};

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
