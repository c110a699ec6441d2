//! Records moved as the store encodes them, for stages that forward records without
//! looking inside (the copier and the merger): a read hands out the stored bytes of a
//! run of records ([`EncodedRecords`]), and an append takes a batch built from such
//! records with one header added to each ([`EncodedBatch`]). Neither side builds a
//! record object per record: a copied record is two `memcpy`s and a header.
//!
//! The bytes come from a batch whose CRC and record layout the read checked, but every
//! view below still parses with checked lengths: a bug elsewhere must not become a
//! panic or a batch the store cannot read back.

use bytes::Bytes;

use crate::codec::{self, BATCH_HEADER_LEN, Cursor, MAX_BATCH_BYTES, MIN_RECORD_LEN, NO_KEY};
use crate::error::StoreError;
use crate::record::{Names, Record};

/// `count` records from `first_offset` on, back to back in the store's record layout
/// (see `codec`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedRecords {
    first_offset: u64,
    count: u32,
    bytes: Bytes,
}

impl EncodedRecords {
    pub(crate) fn new(first_offset: u64, count: u32, bytes: Bytes) -> Self {
        EncodedRecords {
            first_offset,
            count,
            bytes,
        }
    }

    pub fn first_offset(&self) -> u64 {
        self.first_offset
    }

    /// The offset after the last record.
    pub fn next_offset(&self) -> u64 {
        self.first_offset + u64::from(self.count)
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the records.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    pub fn iter(&self) -> EncodedIter<'_> {
        EncodedIter {
            bytes: &self.bytes,
            pos: 0,
            offset: self.first_offset,
            left: self.count,
        }
    }

    /// Keeps only the records below offset `end` (a `--batch` run's snapshot).
    pub fn truncate(&mut self, end: u64) {
        if end >= self.next_offset() {
            return;
        }
        let keep = end.saturating_sub(self.first_offset);
        let mut cut = 0;
        let mut kept = 0u32;
        for r in self.iter() {
            if u64::from(kept) >= keep {
                break;
            }
            cut += r.raw.len();
            kept += 1;
        }
        self.count = kept;
        self.bytes.truncate(cut);
    }
}

/// Walks an [`EncodedRecords`]. Ends early (short of its count) on bytes that do not
/// parse, which a checked read never hands out. It does not walk with the codec's
/// `Cursor` (as the read's check does): walking with it here as well, a 2 M-record
/// 100 B copier ran 22 % more instructions (cachegrind: 3.96 G against 3.24 G), the
/// cursor's `Result<_, String>` steps costing more than these `Option` ones.
pub struct EncodedIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    offset: u64,
    left: u32,
}

impl<'a> Iterator for EncodedIter<'a> {
    type Item = EncodedRecord<'a>;

    fn next(&mut self) -> Option<EncodedRecord<'a>> {
        if self.left == 0 {
            return None;
        }
        let rest = self.bytes.get(self.pos..)?;
        let r = EncodedRecord::parse(rest, self.offset)?;
        self.pos += r.raw.len();
        self.offset += 1;
        self.left -= 1;
        Some(r)
    }
}

/// One stored record, borrowed from its encoded bytes.
#[derive(Clone, Copy, Debug)]
pub struct EncodedRecord<'a> {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    /// The whole record.
    raw: &'a [u8],
    /// Where its header count starts in `raw`.
    headers_at: usize,
    header_count: u32,
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> EncodedRecord<'a> {
    /// Where the fields of the record at the start of `b` lie (the layout `codec`
    /// documents).
    fn parse(b: &'a [u8], offset: u64) -> Option<Self> {
        let timestamp = i64::from_le_bytes(b.get(0..8)?.try_into().ok()?);
        let key_len = le_u32(b, 8)?;
        let mut at: usize = 12;
        let key = if key_len == NO_KEY {
            None
        } else {
            let n = usize::try_from(key_len).ok()?;
            let k = b.get(at..at.checked_add(n)?)?;
            at += n;
            Some(k)
        };
        let n = usize::try_from(le_u32(b, at)?).ok()?;
        at += 4;
        let value = b.get(at..at.checked_add(n)?)?;
        at += n;
        let headers_at = at;
        let header_count = le_u32(b, at)?;
        at += 4;
        for _ in 0..header_count {
            for _ in 0..2 {
                let n = usize::try_from(le_u32(b, at)?).ok()?;
                at = at.checked_add(4 + n)?;
            }
        }
        Some(EncodedRecord {
            offset,
            timestamp,
            key,
            value,
            raw: b.get(..at)?,
            headers_at,
            header_count,
        })
    }

    /// Bytes of the encoded record.
    pub fn size(&self) -> usize {
        self.raw.len()
    }

    /// Bytes of its key, value and header names and values (what Kafka's size limits
    /// count), without the encoding's length fields.
    pub fn content_size(&self) -> usize {
        self.raw
            .len()
            .saturating_sub(MIN_RECORD_LEN + 8 * self.header_count as usize)
    }

    /// Its headers in order, duplicate names included, as (name, value) bytes: for a
    /// server writing the record in another format without decoding it.
    pub fn headers(&self) -> EncodedHeaders<'a> {
        EncodedHeaders {
            bytes: self.raw.get(self.headers_at + 4..).unwrap_or_default(),
            left: self.header_count,
        }
    }

    /// The record decoded, for the rare record a forwarding stage cannot forward as it
    /// is (one it dead-letters).
    pub fn to_record(&self, names: &mut Names) -> Result<Record, String> {
        Cursor::decode_one(self.raw, names)
    }
}

/// The headers of an [`EncodedRecord`], in order: (name, value). The name is the
/// stored UTF-8 bytes. Ends early on bytes that do not parse, as [`EncodedIter`] does.
#[derive(Clone, Debug)]
pub struct EncodedHeaders<'a> {
    bytes: &'a [u8],
    left: u32,
}

impl<'a> EncodedHeaders<'a> {
    fn field(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(le_u32(self.bytes, 0)?).ok()?;
        let field = self.bytes.get(4..4usize.checked_add(n)?)?;
        self.bytes = self.bytes.get(4 + n..)?;
        Some(field)
    }
}

impl<'a> Iterator for EncodedHeaders<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let header = self.field().zip(self.field());
        if header.is_none() {
            self.left = 0;
        }
        header
    }
}

/// A batch being built for one partition from encoded records, each with one header
/// added after its own. [`Partition::append_encoded`](crate::Partition::append_encoded)
/// stamps its offset and checksum and writes it.
#[derive(Debug)]
pub struct EncodedBatch {
    /// The batch header's room, then the records.
    buf: Vec<u8>,
    count: u32,
    max_timestamp: i64,
}

impl Default for EncodedBatch {
    fn default() -> Self {
        EncodedBatch {
            buf: vec![0; BATCH_HEADER_LEN],
            count: 0,
            max_timestamp: i64::MIN,
        }
    }
}

impl EncodedBatch {
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Empties the batch, keeping its buffer for the next one.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.resize(BATCH_HEADER_LEN, 0);
        self.count = 0;
        self.max_timestamp = i64::MIN;
    }

    /// Bytes the buffer holds without growing.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Bytes of the batch so far, header included.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// The size `rec` takes with a header of this name and value length added.
    pub fn size_with_header(rec: &EncodedRecord<'_>, name: &str, value_len: usize) -> usize {
        rec.raw.len() + 8 + name.len() + value_len
    }

    /// Appends `rec` with a header `name` whose value is `value`'s parts joined. Fails
    /// only when the batch would pass the store's batch size limit.
    pub fn push_with_header(
        &mut self,
        rec: &EncodedRecord<'_>,
        name: &str,
        value: &[&[u8]],
    ) -> Result<(), StoreError> {
        let value_len: usize = value.iter().map(|p| p.len()).sum();
        let size = self.buf.len() + Self::size_with_header(rec, name, value_len);
        let too_large = || StoreError::BatchTooLarge {
            size,
            limit: MAX_BATCH_BYTES,
        };
        if size > MAX_BATCH_BYTES {
            return Err(too_large());
        }
        let count = self.count.checked_add(1).ok_or_else(too_large)?;
        let headers = rec.header_count.checked_add(1).ok_or_else(too_large)?;
        let (name_len, value_len) = (
            u32::try_from(name.len()).map_err(|_| too_large())?,
            u32::try_from(value_len).map_err(|_| too_large())?,
        );
        self.buf.reserve(size - self.buf.len());
        // Up to the header count as stored, the count plus one, the record's own
        // headers, then the new one.
        self.buf.extend_from_slice(&rec.raw[..rec.headers_at]);
        self.buf.extend_from_slice(&headers.to_le_bytes());
        self.buf.extend_from_slice(&rec.raw[rec.headers_at + 4..]);
        self.buf.extend_from_slice(&name_len.to_le_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(&value_len.to_le_bytes());
        for p in value {
            self.buf.extend_from_slice(p);
        }
        self.count = count;
        self.max_timestamp = self.max_timestamp.max(rec.timestamp);
        Ok(())
    }

    /// Fills in the header fields known before the offset and returns the buffer and
    /// what `codec::seal` needs.
    pub(crate) fn finish(&mut self) -> Result<(&mut Vec<u8>, codec::Unsealed), StoreError> {
        if self.count == 0 || self.buf.len() < BATCH_HEADER_LEN + MIN_RECORD_LEN {
            return Err(StoreError::InvalidArgument(
                "an encoded batch needs at least one record".into(),
            ));
        }
        let info = codec::finish_header(&mut self.buf, self.count, self.max_timestamp)?;
        Ok((&mut self.buf, info))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::codec::{decode_batches, encode_batch};
    use crate::record::Header;

    fn records() -> Vec<Record> {
        let mut with_headers = Record::new(Some(Bytes::from_static(b"k1")), "v1", 5);
        with_headers.headers = vec![
            Header::new("a", Bytes::from_static(b"1")),
            Header::new("a", Bytes::from_static(b"")),
        ];
        vec![
            Record::new(None, "first", 3),
            with_headers,
            Record::new(Some(Bytes::new()), Bytes::new(), -7),
        ]
    }

    /// The records of a batch encoded by the ordinary encoder, as a read hands them out.
    fn encoded(base: u64, recs: &[Record]) -> EncodedRecords {
        let mut buf = Vec::new();
        encode_batch(&mut buf, base, recs).unwrap();
        EncodedRecords::new(
            base,
            u32::try_from(recs.len()).unwrap(),
            Bytes::from(buf).slice(BATCH_HEADER_LEN..),
        )
    }

    #[test]
    fn an_encoded_run_reads_as_the_records_it_holds() {
        let recs = records();
        let run = encoded(40, &recs);
        assert_eq!(
            (run.first_offset(), run.next_offset(), run.len()),
            (40, 43, 3)
        );
        let mut names = Names::default();
        let back: Vec<(u64, Record)> = run
            .iter()
            .map(|r| (r.offset, r.to_record(&mut names).unwrap()))
            .collect();
        let want: Vec<(u64, Record)> = (40..).zip(recs.iter().cloned()).collect();
        assert_eq!(back, want);
        let sizes: Vec<usize> = run.iter().map(|r| r.content_size()).collect();
        // "first"; "k1" "v1" and headers a=1, a=""; an empty key and value.
        assert_eq!(sizes, vec![5, 2 + 2 + 2 + 1, 0]);
        let keys: Vec<Option<&[u8]>> = run.iter().map(|r| r.key).collect();
        assert_eq!(keys, vec![None, Some(&b"k1"[..]), Some(&b""[..])]);
    }

    #[test]
    fn headers_come_in_order_with_duplicate_names_and_stop_on_bad_bytes() {
        let run = encoded(0, &records());
        let headers: Vec<Vec<(&[u8], &[u8])>> = run.iter().map(|r| r.headers().collect()).collect();
        assert_eq!(
            headers,
            vec![
                vec![],
                vec![(&b"a"[..], &b"1"[..]), (&b"a"[..], &b""[..])],
                vec![]
            ]
        );
        // A header count the bytes do not hold ends the walk, without a panic.
        let rec = run.iter().nth(1).unwrap();
        let lying = EncodedHeaders {
            bytes: rec.headers().bytes,
            left: 3,
        };
        assert_eq!(lying.count(), 2);
        let cut = EncodedHeaders {
            bytes: &rec.headers().bytes[..10],
            left: 2,
        };
        assert_eq!(cut.count(), 1);
    }

    #[test]
    fn truncate_keeps_the_records_below_the_end() {
        let mut run = encoded(40, &records());
        run.truncate(100);
        assert_eq!(run.len(), 3);
        run.truncate(42);
        assert_eq!((run.len(), run.next_offset()), (2, 42));
        assert_eq!(run.iter().count(), 2);
        assert_eq!(run.size(), run.iter().map(|r| r.size()).sum::<usize>());
        run.truncate(10);
        assert!(run.is_empty());
        assert_eq!(run.iter().count(), 0);
    }

    #[test]
    fn a_built_batch_holds_each_record_with_the_header_added() {
        let recs = records();
        let run = encoded(0, &recs);
        let mut b = EncodedBatch::default();
        for r in run.iter() {
            let offset = r.offset.to_string();
            b.push_with_header(&r, "millrace.from", &[b"s@in/0#", offset.as_bytes(), b".0"])
                .unwrap();
        }
        assert_eq!(b.len(), 3);
        let (buf, info) = b.finish().unwrap();
        codec::seal(buf, 77, &info);
        let back = decode_batches(&Bytes::from(buf.clone())).unwrap();
        let want: Vec<Record> = recs
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                r.headers.push(Header::new(
                    "millrace.from",
                    Bytes::from(format!("s@in/0#{i}.0")),
                ));
                r
            })
            .collect();
        assert_eq!(
            back.iter().map(|s| s.offset).collect::<Vec<_>>(),
            [77, 78, 79]
        );
        assert_eq!(back.into_iter().map(|s| s.record).collect::<Vec<_>>(), want);
    }

    #[test]
    fn an_empty_or_oversized_batch_is_refused() {
        assert!(EncodedBatch::default().finish().is_err());
        let big = Record::new(None, vec![b'x'; MAX_BATCH_BYTES - 200], 0);
        let run = encoded(0, std::slice::from_ref(&big));
        let r = run.iter().next().unwrap();
        let mut b = EncodedBatch::default();
        assert!(b.push_with_header(&r, "h", &[&[0u8; 300][..]]).is_err());
        assert!(b.is_empty(), "a refused record leaves the batch as it was");
        b.push_with_header(&r, "h", &[b"v"]).unwrap();
        b.clear();
        assert!(b.is_empty());
        assert!(b.capacity() >= MAX_BATCH_BYTES - 200, "the buffer is kept");
        assert!(b.finish().is_err(), "a cleared batch is empty");
    }

    proptest::proptest! {
        /// Any records, read as stored from any offset on and built into a batch with a
        /// header each, read back as those records with the header last.
        #[test]
        fn any_run_is_forwarded_whole_with_its_header(
            records in proptest::collection::vec(crate::codec::tests::arb_record(), 1..20),
            from in 0usize..20,
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..30),
        ) {
            let from = from % records.len();
            let mut buf = Vec::new();
            encode_batch(&mut buf, 100, &records).unwrap();
            let bytes = Bytes::from(buf);
            let mut limits = codec::ReadLimits {
                from: 100 + from as u64,
                until: u64::MAX,
                max_records: usize::MAX,
                max_bytes: usize::MAX,
                bytes_used: 0,
            };
            let head: &[u8; BATCH_HEADER_LEN] = bytes[..BATCH_HEADER_LEN].try_into().unwrap();
            let header = codec::parse_header(head).unwrap();
            let mut runs = Runs::default();
            codec::decode_batch_into(&bytes, 0, &header, &mut limits, &mut runs).unwrap();
            proptest::prop_assert_eq!(runs.0.len(), 1);
            let run = &runs.0[0];
            proptest::prop_assert_eq!(run.len(), records.len() - from);
            let mut b = EncodedBatch::default();
            for r in run.iter() {
                b.push_with_header(&r, "h", &[&value[..value.len() / 2], &value[value.len() / 2..]])
                    .unwrap();
            }
            let (out, info) = b.finish().unwrap();
            codec::seal(out, 7, &info);
            let back = decode_batches(&Bytes::from(out.clone())).unwrap();
            let want: Vec<Record> = records[from..]
                .iter()
                .cloned()
                .map(|mut r| {
                    r.headers.push(Header::new("h", Bytes::from(value.clone())));
                    r
                })
                .collect();
            proptest::prop_assert_eq!(back.into_iter().map(|s| s.record).collect::<Vec<_>>(), want);
        }
    }

    /// A sink that takes runs, as a forwarding stage's poll does.
    #[derive(Default)]
    struct Runs(Vec<EncodedRecords>, usize);

    impl codec::RecordSink for Runs {
        fn taken(&self) -> usize {
            self.1
        }
        fn take(&mut self, _offset: u64, _record: Record) {}
        fn takes_encoded(&self) -> bool {
            true
        }
        fn take_encoded(&mut self, records: EncodedRecords) {
            self.1 += records.len();
            self.0.push(records);
        }
    }

    #[test]
    fn bytes_that_do_not_parse_end_the_walk_without_a_panic() {
        let run = encoded(0, &records());
        for cut in 0..run.size() {
            let short = EncodedRecords::new(0, 3, run.bytes.slice(..cut));
            assert!(short.iter().count() < 3, "cut at {cut}");
        }
        let lying = EncodedRecords::new(0, 3, Bytes::from(vec![0xFF; 64]));
        assert_eq!(lying.iter().count(), 0);
    }
}
