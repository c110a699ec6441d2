//! The sparse offset index of a segment: one entry per ~64 KiB of batches, kept in
//! memory for every segment and written to `<base>.index` when a segment is sealed, so
//! opening a store does not rescan sealed segments. Format in `docs/format.md`.

use crate::codec::BatchHeader;

/// One index entry: where a batch starts, plus the largest timestamp before it so
/// `offset_for_timestamp` can skip what cannot match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub offset: u64,
    pub position: u64,
    pub max_ts_before: i64,
}

/// The in-memory index of one segment, plus the segment facts that recovery and
/// retention need without reading the segment.
#[derive(Clone, Debug)]
pub(crate) struct SegmentIndex {
    pub entries: Vec<IndexEntry>,
    pub base_offset: u64,
    /// Offset after the last record indexed so far.
    pub next_offset: u64,
    /// Bytes of the segment covered.
    pub len: u64,
    pub max_timestamp: i64,
    /// Position of the last entry's batch, to space entries out.
    last_entry_pos: Option<u64>,
    interval: u64,
}

const MAGIC: &[u8; 4] = b"MRIX";
const VERSION: u32 = 1;
const HEAD: usize = 44;
const ENTRY: usize = 24;

impl SegmentIndex {
    pub fn new(base_offset: u64, interval: u64) -> Self {
        SegmentIndex {
            entries: Vec::new(),
            base_offset,
            next_offset: base_offset,
            len: 0,
            max_timestamp: i64::MIN,
            last_entry_pos: None,
            interval,
        }
    }

    /// Records a batch appended at `position` (which must be `self.len`).
    pub fn add(&mut self, position: u64, h: &BatchHeader) {
        let due = match self.last_entry_pos {
            None => true,
            Some(p) => position >= p + self.interval,
        };
        if due {
            self.entries.push(IndexEntry {
                offset: h.base_offset,
                position,
                max_ts_before: self.max_timestamp,
            });
            self.last_entry_pos = Some(position);
        }
        self.next_offset = h.next_offset();
        self.len = position + h.total_len as u64;
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
    }

    /// The position of the last indexed batch at or before `offset` (0 if none).
    pub fn position_for(&self, offset: u64) -> u64 {
        let i = self.entries.partition_point(|e| e.offset <= offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].position
        }
    }

    /// An offset from which scanning finds the first record with a timestamp >= `ts`:
    /// that of the last entry before which every timestamp is below `ts`.
    pub fn offset_for_timestamp(&self, ts: i64) -> u64 {
        let i = self.entries.partition_point(|e| e.max_ts_before < ts);
        if i == 0 {
            self.base_offset
        } else {
            self.entries[i - 1].offset
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEAD + ENTRY * self.entries.len() + 4);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&self.base_offset.to_le_bytes());
        b.extend_from_slice(&self.next_offset.to_le_bytes());
        b.extend_from_slice(&self.len.to_le_bytes());
        b.extend_from_slice(&self.max_timestamp.to_le_bytes());
        let n = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        b.extend_from_slice(&n.to_le_bytes());
        for e in self.entries.iter().take(n as usize) {
            b.extend_from_slice(&e.offset.to_le_bytes());
            b.extend_from_slice(&e.position.to_le_bytes());
            b.extend_from_slice(&e.max_ts_before.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes an index file; `None` if it is not a whole, matching index (the caller then
    /// rescans the segment). Never trusts `entry_count`: the byte length must agree.
    pub fn decode(b: &[u8], base_offset: u64, interval: u64) -> Option<Self> {
        let body_len = b.len().checked_sub(4)?;
        let (body, crc) = b.split_at(body_len);
        if body.len() < HEAD || crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?))
        };
        if &body[0..4] != MAGIC || u32::from_le_bytes(body[4..8].try_into().ok()?) != VERSION {
            return None;
        }
        if u64_at(8)? != base_offset {
            return None;
        }
        let count = usize::try_from(u32::from_le_bytes(body[40..44].try_into().ok()?)).ok()?;
        if body.len() != HEAD.checked_add(count.checked_mul(ENTRY)?)? {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let at = HEAD + i * ENTRY;
            entries.push(IndexEntry {
                offset: u64_at(at)?,
                position: u64_at(at + 8)?,
                max_ts_before: i64::from_le_bytes(body[at + 16..at + 24].try_into().ok()?),
            });
        }
        let len = u64_at(24)?;
        // Entries must be ordered and inside the segment, or a read could seek nowhere.
        let ordered = entries
            .windows(2)
            .all(|w| w[0].offset < w[1].offset && w[0].position < w[1].position);
        if !ordered || entries.iter().any(|e| e.position >= len) {
            return None;
        }
        Some(SegmentIndex {
            last_entry_pos: entries.last().map(|e| e.position),
            entries,
            base_offset,
            next_offset: u64_at(16)?,
            len,
            max_timestamp: i64::from_le_bytes(body[32..40].try_into().ok()?),
            interval,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn header(base: u64, count: u32, len: usize, ts: i64) -> BatchHeader {
        BatchHeader {
            total_len: len,
            crc: 0,
            base_offset: base,
            record_count: count,
            max_timestamp: ts,
        }
    }

    #[test]
    fn index_file_round_trips_and_rejects_any_damage() {
        let mut ix = SegmentIndex::new(100, 1000);
        let mut pos = 0;
        for i in 0..50u64 {
            ix.add(pos, &header(100 + i * 3, 3, 300, i as i64 * 10));
            pos += 300;
        }
        let bytes = ix.encode();
        let back = SegmentIndex::decode(&bytes, 100, 1000).unwrap();
        assert_eq!(back.entries, ix.entries);
        assert_eq!(
            (back.next_offset, back.len, back.max_timestamp),
            (250, 15_000, 490)
        );
        assert!(SegmentIndex::decode(&bytes, 101, 1000).is_none());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(SegmentIndex::decode(&b, 100, 1000).is_none(), "flip at {i}");
            assert!(
                SegmentIndex::decode(&bytes[..i], 100, 1000).is_none(),
                "cut at {i}"
            );
        }
    }

    #[test]
    fn index_lookup_finds_the_entry_at_or_before_an_offset() {
        let mut ix = SegmentIndex::new(0, 1000);
        for i in 0..10u64 {
            ix.add(i * 600, &header(i * 10, 10, 600, 0));
        }
        // Entries every other batch (600 < 1000 interval).
        assert_eq!(ix.position_for(0), 0);
        assert_eq!(ix.position_for(19), 0);
        assert_eq!(ix.position_for(25), 1200);
        assert_eq!(ix.position_for(1_000), 4800);
    }
}
