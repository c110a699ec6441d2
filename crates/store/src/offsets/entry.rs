//! One entry of the committed-offsets journal: its bytes, written and read.
//!
//! Journal format version 2. Every entry is framed and checked on its own:
//!
//! | offset | size | field    | type | meaning |
//! |-------:|-----:|----------|------|---------|
//! | 0      | 4    | `length` | u32  | bytes after this field; `<= 64 KiB` |
//! | 4      | 4    | `crc`    | u32  | CRC32C of bytes `[8, 4 + length)` |
//! | 8      | 1    | `kind`   | u8   | below |
//! | 9      | ...  | body     |      | by kind |
//!
//! Strings are `len u16, UTF-8 bytes`; integers little-endian.
//!
//! | kind | name             | body |
//! |-----:|------------------|------|
//! | 1    | commit           | `group, topic, partition u32, next_offset u64` |
//! | 2    | topic deleted    | `topic` (forget its offsets in every group) |
//! | 3    | commit+metadata  | `group, topic, partition u32, next_offset u64, metadata` |
//! | 4    | offset deleted   | `group, topic, partition u32` |
//! | 5    | group deleted    | `group` (forget all its offsets) |
//!
//! A commit without metadata is written as kind 1, so journals that never see metadata
//! or deletions keep the version 1 bytes. An entry whose CRC holds but whose kind is not
//! in this table was written by a newer version: it is reported as such, never cut as
//! a torn tail.

use crate::error::StoreError;

const KIND_COMMIT: u8 = 1;
const KIND_DELETE_TOPIC: u8 = 2;
const KIND_COMMIT_WITH_METADATA: u8 = 3;
const KIND_DELETE_OFFSET: u8 = 4;
const KIND_DELETE_GROUP: u8 = 5;

/// The largest entry, framing excluded from nothing: `length` counts from `crc` on.
pub(super) const MAX_ENTRY: usize = 64 * 1024;

/// One journal entry, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry {
    /// `group` will next consume `next` of `topic`/`partition`; `metadata` is the
    /// client's string (Kafka's `committed_metadata`), empty when it gave none.
    Commit {
        group: String,
        topic: String,
        partition: u32,
        next: u64,
        metadata: String,
    },
    DeleteTopic(String),
    DeleteOffset {
        group: String,
        topic: String,
        partition: u32,
    },
    DeleteGroup(String),
}

/// Why the bytes at a position are not an entry.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DecodeError {
    /// Torn, garbage or failing its CRC: a tail that recovery may cut.
    Bad(String),
    /// Whole and checked, but of a kind this version does not know.
    UnknownKind(u8),
}

fn put_str(b: &mut Vec<u8>, s: &str) -> Result<(), StoreError> {
    let n = u16::try_from(s.len()).map_err(|_| {
        StoreError::InvalidArgument(format!("name longer than 65535 bytes: {s:.40}…"))
    })?;
    b.extend_from_slice(&n.to_le_bytes());
    b.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Appends one framed commit entry to `b` (kind 1, or 3 with metadata).
pub(super) fn encode_commit(
    b: &mut Vec<u8>,
    group: &str,
    topic: &str,
    partition: u32,
    next: u64,
    metadata: &str,
) -> Result<(), StoreError> {
    let start = begin(b);
    b.push(if metadata.is_empty() {
        KIND_COMMIT
    } else {
        KIND_COMMIT_WITH_METADATA
    });
    put_str(b, group)?;
    put_str(b, topic)?;
    b.extend_from_slice(&partition.to_le_bytes());
    b.extend_from_slice(&next.to_le_bytes());
    if !metadata.is_empty() {
        put_str(b, metadata)?;
    }
    finish(b, start)
}

/// Appends one framed topic-deleted entry to `b`.
pub(super) fn encode_delete_topic(b: &mut Vec<u8>, topic: &str) -> Result<(), StoreError> {
    let start = begin(b);
    b.push(KIND_DELETE_TOPIC);
    put_str(b, topic)?;
    finish(b, start)
}

/// Appends one framed offset-deleted entry to `b`.
pub(super) fn encode_delete_offset(
    b: &mut Vec<u8>,
    group: &str,
    topic: &str,
    partition: u32,
) -> Result<(), StoreError> {
    let start = begin(b);
    b.push(KIND_DELETE_OFFSET);
    put_str(b, group)?;
    put_str(b, topic)?;
    b.extend_from_slice(&partition.to_le_bytes());
    finish(b, start)
}

/// Appends one framed group-deleted entry to `b`.
pub(super) fn encode_delete_group(b: &mut Vec<u8>, group: &str) -> Result<(), StoreError> {
    let start = begin(b);
    b.push(KIND_DELETE_GROUP);
    put_str(b, group)?;
    finish(b, start)
}

/// Reserves the length and CRC fields of an entry that starts at the end of `b`.
fn begin(b: &mut Vec<u8>) -> usize {
    let start = b.len();
    b.extend_from_slice(&[0u8; 8]);
    start
}

/// Fills in the length and CRC of the entry that starts at `start` and runs to the end.
/// An entry over the limit is taken back out of `b` and refused.
fn finish(b: &mut Vec<u8>, start: usize) -> Result<(), StoreError> {
    let Some(len) = u32::try_from(b.len() - start - 4)
        .ok()
        .filter(|&n| n as usize <= MAX_ENTRY)
    else {
        b.truncate(start);
        return Err(StoreError::InvalidArgument("offset entry too large".into()));
    };
    b[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&b[start + 8..]);
    b[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// A bounds-checked reader over one entry's body.
struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.0.len() {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<String> {
        let n = usize::from(u16::from_le_bytes(self.take(2)?.try_into().ok()?));
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }

    /// The body of a known `kind`; `None` if its fields do not fill the body exactly.
    fn entry(mut self, kind: u8) -> Option<Entry> {
        let entry = match kind {
            KIND_COMMIT | KIND_COMMIT_WITH_METADATA => Entry::Commit {
                group: self.str()?,
                topic: self.str()?,
                partition: self.u32()?,
                next: self.u64()?,
                metadata: if kind == KIND_COMMIT {
                    String::new()
                } else {
                    self.str()?
                },
            },
            KIND_DELETE_TOPIC => Entry::DeleteTopic(self.str()?),
            KIND_DELETE_OFFSET => Entry::DeleteOffset {
                group: self.str()?,
                topic: self.str()?,
                partition: self.u32()?,
            },
            KIND_DELETE_GROUP => Entry::DeleteGroup(self.str()?),
            _ => return None,
        };
        self.0.is_empty().then_some(entry)
    }
}

fn known(kind: u8) -> bool {
    (KIND_COMMIT..=KIND_DELETE_GROUP).contains(&kind)
}

/// Decodes the entry at the start of `b`: the entry and its size in bytes.
pub(super) fn decode(b: &[u8]) -> Result<(Entry, usize), DecodeError> {
    let bad = |s: &str| DecodeError::Bad(s.to_string());
    let head = b.get(..8).ok_or_else(|| bad("torn entry header"))?;
    let len = usize::try_from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]))
        .map_err(|_| bad("bad length"))?;
    if !(5..=MAX_ENTRY).contains(&len) {
        return Err(DecodeError::Bad(format!("entry length {len} out of range")));
    }
    let whole = b
        .get(..4 + len)
        .ok_or_else(|| bad("entry runs past the end of the file (torn write)"))?;
    if crc32c::crc32c(&whole[8..]) != u32::from_le_bytes([head[4], head[5], head[6], head[7]]) {
        return Err(bad("entry checksum (crc32c) mismatch"));
    }
    let mut body = Body(&whole[8..]);
    let kind = body.u8().ok_or_else(|| bad("malformed entry"))?;
    if !known(kind) {
        return Err(DecodeError::UnknownKind(kind));
    }
    let entry = body.entry(kind).ok_or_else(|| bad("malformed entry"))?;
    Ok((entry, 4 + len))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(e: &Entry) -> Vec<u8> {
        let mut b = Vec::new();
        match e {
            Entry::Commit {
                group,
                topic,
                partition,
                next,
                metadata,
            } => encode_commit(&mut b, group, topic, *partition, *next, metadata),
            Entry::DeleteTopic(t) => encode_delete_topic(&mut b, t),
            Entry::DeleteOffset {
                group,
                topic,
                partition,
            } => encode_delete_offset(&mut b, group, topic, *partition),
            Entry::DeleteGroup(g) => encode_delete_group(&mut b, g),
        }
        .unwrap();
        b
    }

    fn entries() -> impl Strategy<Value = Entry> {
        let name = "[a-z.-]{1,12}";
        prop_oneof![
            (name, name, any::<u32>(), any::<u64>(), ".{0,40}").prop_map(
                |(group, topic, partition, next, metadata)| Entry::Commit {
                    group,
                    topic,
                    partition,
                    next,
                    metadata
                }
            ),
            name.prop_map(Entry::DeleteTopic),
            (name, name, any::<u32>()).prop_map(|(group, topic, partition)| {
                Entry::DeleteOffset {
                    group,
                    topic,
                    partition,
                }
            }),
            name.prop_map(Entry::DeleteGroup),
        ]
    }

    proptest! {
        #[test]
        fn entries_round_trip(e in entries()) {
            let b = encode(&e);
            prop_assert_eq!(decode(&b), Ok((e, b.len())));
        }

        #[test]
        fn decode_never_panics_on_garbage(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&b);
        }

        #[test]
        fn every_cut_of_an_entry_is_bad(e in entries(), cut in any::<prop::sample::Index>()) {
            let b = encode(&e);
            let at = cut.index(b.len());
            prop_assert!(matches!(decode(&b[..at]), Err(DecodeError::Bad(_))));
        }
    }

    #[test]
    fn a_commit_without_metadata_keeps_the_version_1_bytes() {
        let b = encode(&Entry::Commit {
            group: "g".into(),
            topic: "t".into(),
            partition: 2,
            next: 7,
            metadata: String::new(),
        });
        assert_eq!(b[8], KIND_COMMIT);
        assert_eq!(b.len(), 8 + 1 + 3 + 3 + 4 + 8);
    }

    #[test]
    fn a_checked_entry_of_an_unknown_kind_is_reported_as_such() {
        let mut b = encode(&Entry::DeleteGroup("g".into()));
        b[8] = 9;
        let crc = crc32c::crc32c(&b[8..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&b), Err(DecodeError::UnknownKind(9)));
    }

    #[test]
    fn an_entry_over_the_limit_is_refused_and_leaves_the_buffer_as_it_was() {
        let mut b = vec![1, 2, 3];
        let huge = "m".repeat(65_000);
        assert!(encode_commit(&mut b, &"g".repeat(1000), "t", 0, 1, &huge).is_err());
        assert_eq!(b, vec![1, 2, 3]);
    }
}
