//! Kafka record batches (format v2) written straight from the store's bytes, for Fetch.
//!
//! A read hands out the records of each stored batch from the read position on as one
//! run of stored bytes ([`EncodedRecords`]); each run becomes one uncompressed Kafka
//! batch, written field by field into one buffer: no record object, no allocation per
//! record. Headers are copied in order, duplicate names included.
//!
//! The batch header says what a broker says of records it did not keep producer state
//! for: no partition leader epoch, producer id, epoch or base sequence; timestamps are
//! the producers' (create time).

use bytes::{BufMut, BytesMut};
use integer_encoding::VarInt;
use kafka_protocol::records::{NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID};
use millrace_store::{EncodedRecord, EncodedRecords, Record, RecordSink};

/// Kafka's record batch format version.
const MAGIC: i8 = 2;

/// Where a v2 batch header keeps the fields filled in once its records are written.
const LENGTH_AT: usize = 8;
const CRC_AT: usize = 17;
/// The CRC-32C covers everything from the attributes on.
const CRC_FROM: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;
/// The header's size: the records start here.
const HEADER_LEN: usize = 61;

/// Why stored records could not be written as a Kafka batch (the store handed out
/// bytes that do not parse, or a field too large for Kafka's format).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the stored records from offset {offset} as a Kafka batch: {reason}")]
pub struct WriteError {
    pub offset: u64,
    pub reason: String,
}

/// A read's sink that writes each stored run it takes as a Kafka batch into `out`.
pub struct FetchSink<'a> {
    out: &'a mut BytesMut,
    taken: usize,
    failed: Option<WriteError>,
}

impl<'a> FetchSink<'a> {
    pub fn new(out: &'a mut BytesMut) -> Self {
        FetchSink {
            out,
            taken: 0,
            failed: None,
        }
    }

    /// The outcome: every run taken written, or the first that could not be.
    pub fn finish(self) -> Result<(), WriteError> {
        self.failed.map_or(Ok(()), Err)
    }
}

impl RecordSink for FetchSink<'_> {
    fn taken(&self) -> usize {
        self.taken
    }

    /// Not called: this sink takes records as stored (`takes_encoded`).
    fn take(&mut self, _offset: u64, _record: Record) {}

    fn takes_encoded(&self) -> bool {
        true
    }

    fn take_encoded(&mut self, records: EncodedRecords) {
        self.taken += records.len();
        if self.failed.is_some() {
            return;
        }
        let start = self.out.len();
        if let Err(reason) = write_batch(self.out, &records) {
            // Nothing half-written goes out; the read's result is an error anyway.
            self.out.truncate(start);
            self.failed = Some(WriteError {
                offset: records.first_offset(),
                reason,
            });
        }
    }
}

/// Writes `records` as one Kafka v2 batch at the end of `out`.
pub fn write_batch(out: &mut BytesMut, records: &EncodedRecords) -> Result<(), String> {
    let Some(first) = records.iter().next() else {
        return Ok(());
    };
    let base_offset = first.offset;
    let base_timestamp = first.timestamp;
    let count = i32::try_from(records.len()).map_err(|_| "too many records".to_string())?;
    let start = out.len();
    out.reserve(HEADER_LEN + records.size() + records.len() * 8);
    out.put_i64(to_i64(base_offset)?);
    out.put_i32(0); // length
    out.put_i32(NO_PARTITION_LEADER_EPOCH);
    out.put_i8(MAGIC);
    out.put_u32(0); // crc
    out.put_i16(0); // attributes: uncompressed, create time, neither transactional nor control
    out.put_i32(count - 1); // last offset delta
    out.put_i64(base_timestamp);
    out.put_i64(0); // max timestamp
    out.put_i64(NO_PRODUCER_ID);
    out.put_i16(NO_PRODUCER_EPOCH);
    out.put_i32(-1); // base sequence
    out.put_i32(count);
    let mut written = 0usize;
    let mut max_timestamp = i64::MIN;
    for r in records.iter() {
        let delta = r
            .offset
            .checked_sub(base_offset)
            .and_then(|d| i32::try_from(d).ok())
            .ok_or_else(|| format!("offset {} after {base_offset}", r.offset))?;
        write_record(out, &r, delta, base_timestamp)?;
        max_timestamp = max_timestamp.max(r.timestamp);
        written += 1;
    }
    if written != records.len() {
        return Err(format!("{} of {} records parse", written, records.len()));
    }
    let batch = &mut out[start..];
    let length =
        i32::try_from(batch.len() - LENGTH_AT - 4).map_err(|_| "a batch over 2 GiB".to_string())?;
    batch[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// One record: its length, then attributes, timestamp and offset deltas, key, value and
/// headers, every length and delta a zigzag varint.
fn write_record(
    out: &mut BytesMut,
    r: &EncodedRecord<'_>,
    offset_delta: i32,
    base_timestamp: i64,
) -> Result<(), String> {
    let timestamp_delta = r.timestamp.wrapping_sub(base_timestamp);
    let key_len = match r.key {
        None => -1,
        Some(k) => len(k)?,
    };
    let value_len = len(r.value)?;
    let mut header_count = 0i32;
    let mut headers_size = 0usize;
    for (name, value) in r.headers() {
        header_count += 1;
        headers_size +=
            varint_size(len(name)?) + name.len() + varint_size(len(value)?) + value.len();
    }
    let size = 1
        + varlong_size(timestamp_delta)
        + varint_size(offset_delta)
        + varint_size(key_len)
        + r.key.map_or(0, <[u8]>::len)
        + varint_size(value_len)
        + r.value.len()
        + varint_size(header_count)
        + headers_size;
    varint(out, len_of(size)?);
    out.put_i8(0); // attributes: unused
    varint(out, timestamp_delta);
    varint(out, offset_delta);
    varint(out, key_len);
    if let Some(k) = r.key {
        out.put_slice(k);
    }
    varint(out, value_len);
    out.put_slice(r.value);
    varint(out, header_count);
    for (name, value) in r.headers() {
        varint(out, len(name)?);
        out.put_slice(name);
        varint(out, len(value)?);
        out.put_slice(value);
    }
    Ok(())
}

/// A zigzag varint (Kafka's varint and varlong alike).
fn varint(out: &mut BytesMut, v: impl VarInt) {
    let mut b = [0u8; 10];
    let n = v.encode_var(&mut b);
    out.put_slice(&b[..n]);
}

fn varint_size(v: i32) -> usize {
    v.required_space()
}

fn varlong_size(v: i64) -> usize {
    v.required_space()
}

fn len(b: &[u8]) -> Result<i32, String> {
    len_of(b.len())
}

fn len_of(n: usize) -> Result<i32, String> {
    i32::try_from(n).map_err(|_| format!("a field of {n} bytes"))
}

fn to_i64(offset: u64) -> Result<i64, String> {
    i64::try_from(offset).map_err(|_| format!("offset {offset}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::records::RecordBatchDecoder;
    use millrace_store::{Header, Store, StoreOptions, TopicConfig};

    use crate::batches::decode_produced;

    /// Keys none, empty and some; every third record with two headers of one name.
    fn record(i: u64) -> Record {
        let key = match i % 3 {
            0 => None,
            1 => Some(Bytes::new()),
            _ => Some(Bytes::from(format!("k{i}"))),
        };
        let mut r = Record::new(key, format!("v{i}"), 5_000 - i64::try_from(i).unwrap() * 7);
        if i.is_multiple_of(3) {
            r.headers = vec![
                Header::new("a", Bytes::from(format!("{i}"))),
                Header::new("b", Bytes::new()),
                Header::new("a", Bytes::from_static(b"again")),
            ];
        }
        r
    }

    /// A store with a topic `t` of one partition.
    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store.create_topic("t", 1, TopicConfig::default()).unwrap();
        (dir, store)
    }

    #[test]
    fn stored_records_read_back_as_kafka_batches_from_any_offset() {
        let (_dir, store) = store();
        let topic = store.topic("t").unwrap();
        let p = topic.partition(0).unwrap();
        let records: Vec<Record> = (0..10).map(record).collect();
        // Three stored batches: each read from its start or middle is one Kafka batch.
        for part in [&records[0..4], &records[4..5], &records[5..10]] {
            p.append(part).unwrap();
        }
        for (from, batches) in [(0, 3), (2, 3), (4, 2), (7, 1)] {
            let mut out = BytesMut::new();
            let mut sink = FetchSink::new(&mut out);
            p.read_into(from, usize::MAX, usize::MAX, &mut sink)
                .unwrap();
            assert_eq!(sink.taken(), 10 - usize::try_from(from).unwrap());
            sink.finish().unwrap();
            let want = &records[usize::try_from(from).unwrap()..];

            // Kafka's reading of them (CRCs checked): offsets, keys, values, times.
            let mut bytes = out.clone().freeze();
            let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
            assert_eq!(sets.len(), batches, "from {from}");
            let got: Vec<_> = sets
                .iter()
                .flat_map(|s| s.records.iter())
                .map(|r| (r.offset, r.key.clone(), r.value.clone(), r.timestamp))
                .collect();
            let expected: Vec<_> = (from..)
                .zip(want)
                .map(|(o, r)| {
                    let o = i64::try_from(o).unwrap();
                    (o, r.key.clone(), Some(r.value.clone()), r.timestamp)
                })
                .collect();
            assert_eq!(got, expected, "from {from}");
            assert!(
                sets.iter()
                    .flat_map(|s| s.records.iter())
                    .all(|r| r.producer_id == NO_PRODUCER_ID && !r.transactional)
            );

            // Every header, in order, duplicates kept (read as a produced batch is).
            let headers: Vec<Vec<(String, Bytes)>> = decode_produced(out.freeze())
                .unwrap()
                .iter()
                .flat_map(|b| {
                    b.records()
                        .map(|r| {
                            r.headers
                                .iter()
                                .map(|h| (h.key.to_string(), h.value.clone()))
                                .collect()
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            let expected: Vec<Vec<(String, Bytes)>> = want
                .iter()
                .map(|r| {
                    r.headers
                        .iter()
                        .map(|h| (h.key.to_string(), h.value.clone()))
                        .collect()
                })
                .collect();
            assert_eq!(headers, expected, "from {from}");
        }
    }

    #[test]
    fn a_read_past_the_end_writes_nothing() {
        let (_dir, store) = store();
        let topic = store.topic("t").unwrap();
        let p = topic.partition(0).unwrap();
        p.append(&[record(1)]).unwrap();
        let mut out = BytesMut::new();
        let mut sink = FetchSink::new(&mut out);
        p.read_into(1, usize::MAX, usize::MAX, &mut sink).unwrap();
        assert_eq!(sink.taken(), 0);
        sink.finish().unwrap();
        assert!(out.is_empty());
    }
}
