//! The encoder: records into a batch in the format at the top of `codec`, in two steps
//! (`encode_unsealed` outside the partition lock, `seal` under it).

use super::{BATCH_HEADER_LEN, MAGIC, MAX_BATCH_BYTES, MIN_RECORD_LEN, NO_KEY};
use crate::error::StoreError;
use crate::record::{Record, RecordRef};

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
