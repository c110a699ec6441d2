//! The bytes of the shared journal (also in `docs/format.md`), little-endian: a file
//! header, then entries back to back.
//!
//! ```text
//! File header (20 bytes)
//! | off | size | field   | type   | meaning                                        |
//! |   0 |    4 | magic   | "MRJL" |                                                |
//! |   4 |    4 | version | u32    | 1                                              |
//! |   8 |    8 | file id | u64    | the file's number, as in its name              |
//! |  16 |    4 | crc     | u32    | CRC32C of bytes [0, 16)                        |
//!
//! Entry
//! | off | size | field     | type | meaning                                          |
//! |   0 |    4 | length    | u32  | bytes after this field: 17 + the batch's bytes   |
//! |   4 |    4 | crc       | u32  | CRC32C of bytes [8, 21), then of the batch's crc |
//! |   8 |    1 | kind      | u8   | 1: a batch appended to a partition               |
//! |   9 |    8 | topic id  | u64  | the topic's id (`topic.json`)                    |
//! |  17 |    4 | partition | u32  |                                                  |
//! |  21 |  ... | batch     |      | the batch as the segment holds it (its own       |
//! |     |      |           |      | length and crc32c, `codec`), exactly filling it  |
//! ```
//!
//! The entry's CRC covers its head and, through the batch's crc field, the batch: the
//! batch's own crc covers every byte of it but its length, which must equal the
//! entry's length less 17. So an entry is checked whole without hashing its records
//! twice. An entry whose kind is not 1 (written by a newer version) fails recovery
//! with a clear error; it is never cut as a torn tail.

use crate::codec::{self, BATCH_HEADER_LEN, BatchHeader, u32_at, u64_at};

pub(crate) const FILE_MAGIC: &[u8; 4] = b"MRJL";
pub(crate) const FILE_VERSION: u32 = 1;
pub(crate) const FILE_HEADER_LEN: usize = 20;
/// The entry's bytes before its batch.
pub(crate) const ENTRY_HEAD_LEN: usize = 21;
const KIND_BATCH: u8 = 1;

/// The file header of journal file `id`.
pub(crate) fn file_header(id: u64) -> [u8; FILE_HEADER_LEN] {
    let mut b = [0u8; FILE_HEADER_LEN];
    b[0..4].copy_from_slice(FILE_MAGIC);
    b[4..8].copy_from_slice(&FILE_VERSION.to_le_bytes());
    b[8..16].copy_from_slice(&id.to_le_bytes());
    let crc = crc32c::crc32c(&b[..16]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Checks a file header; `Err` says why it is not the header of file `id`.
pub(crate) fn check_file_header(b: &[u8], id: u64) -> Result<(), String> {
    let Some(head) = b.get(..FILE_HEADER_LEN) else {
        return Err(format!("{} bytes, too few for a journal header", b.len()));
    };
    if &head[0..4] != FILE_MAGIC {
        return Err("not a journal file (bad magic)".into());
    }
    if crc32c::crc32c(&head[..16]) != u32_at(head, 16) {
        return Err("journal header checksum (crc32c) mismatch".into());
    }
    let version = u32_at(head, 4);
    if version != FILE_VERSION {
        return Err(format!(
            "journal format version {version}, which this version of millrace does not know \
             (written by a newer version?)"
        ));
    }
    if u64_at(head, 8) != id {
        return Err(format!(
            "the header names journal file {}, not {id}",
            u64_at(head, 8)
        ));
    }
    Ok(())
}

/// Appends the entry for a sealed `batch` of `topic_id`/`partition` to `out`.
pub(crate) fn encode_batch(out: &mut Vec<u8>, topic_id: u64, partition: u32, batch: &[u8]) {
    // A sealed batch is at most 64 MiB (`codec::MAX_BATCH_BYTES`), so this fits.
    let length = u32::try_from(ENTRY_HEAD_LEN - 4 + batch.len()).unwrap_or(u32::MAX);
    let mut head = [0u8; ENTRY_HEAD_LEN];
    head[0..4].copy_from_slice(&length.to_le_bytes());
    head[8] = KIND_BATCH;
    head[9..17].copy_from_slice(&topic_id.to_le_bytes());
    head[17..21].copy_from_slice(&partition.to_le_bytes());
    let crc = entry_crc(&head, batch.get(4..8).unwrap_or(&[]));
    head[4..8].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(batch);
}

fn entry_crc(head: &[u8; ENTRY_HEAD_LEN], batch_crc: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&head[8..ENTRY_HEAD_LEN]), batch_crc)
}

/// An entry's head, parsed and checked as far as it can be without its batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryHead {
    /// Bytes of the whole entry, its length field included.
    pub total_len: usize,
    pub topic_id: u64,
    pub partition: u32,
    /// The batch's header.
    pub batch: BatchHeader,
}

/// Why the bytes at a position are not an entry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Torn, garbage or failing a checksum: a tail that recovery may cut.
    Bad(String),
    /// Whole and checked, but of a kind this version does not know.
    UnknownKind(u8),
}

/// Parses the head of the entry that `b` starts with (`b` holds at least its first
/// `ENTRY_HEAD_LEN + BATCH_HEADER_LEN` bytes). The batch's records are checked by
/// [`check`].
pub(crate) fn parse_head(b: &[u8]) -> Result<EntryHead, DecodeError> {
    let bad = |r: String| Err(DecodeError::Bad(r));
    let Some(head) = b.get(..ENTRY_HEAD_LEN + BATCH_HEADER_LEN) else {
        return bad(format!("{} stray bytes, too few for an entry", b.len()));
    };
    let length = usize::try_from(u32_at(head, 0)).unwrap_or(usize::MAX);
    let batch_head: &[u8; BATCH_HEADER_LEN] = head[ENTRY_HEAD_LEN..]
        .try_into()
        .map_err(|_| DecodeError::Bad("short batch header".into()))?;
    let batch = match codec::parse_header(batch_head) {
        Ok(h) => h,
        Err(reason) => return bad(format!("entry's batch: {reason}")),
    };
    if length != ENTRY_HEAD_LEN - 4 + batch.total_len {
        return bad(format!(
            "entry length {length} does not match its batch of {} bytes",
            batch.total_len
        ));
    }
    let crc = u32_at(head, 4);
    let mut fixed = [0u8; ENTRY_HEAD_LEN];
    fixed.copy_from_slice(&head[..ENTRY_HEAD_LEN]);
    if entry_crc(&fixed, &head[ENTRY_HEAD_LEN + 4..ENTRY_HEAD_LEN + 8]) != crc {
        return bad("entry checksum (crc32c) mismatch".into());
    }
    if head[8] != KIND_BATCH {
        return Err(DecodeError::UnknownKind(head[8]));
    }
    Ok(EntryHead {
        total_len: ENTRY_HEAD_LEN + batch.total_len,
        topic_id: u64_at(head, 9),
        partition: u32_at(head, 17),
        batch,
    })
}

/// Checks a whole entry (`entry.len() == head.total_len`): the batch's crc and the
/// framing of its records. Returns the batch's bytes.
pub(crate) fn check<'a>(entry: &'a [u8], head: &EntryHead) -> Result<&'a [u8], String> {
    let batch = entry
        .get(ENTRY_HEAD_LEN..head.total_len)
        .filter(|_| entry.len() == head.total_len)
        .ok_or_else(|| "entry runs past the bytes read".to_string())?;
    if !codec::crc_matches(batch, &head.batch) {
        return Err("entry's batch checksum (crc32c) mismatch".into());
    }
    codec::validate_records(batch, &head.batch)?;
    Ok(batch)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn entry(topic_id: u64, partition: u32, base: u64) -> Vec<u8> {
        let mut batch = Vec::new();
        codec::encode_batch(
            &mut batch,
            base,
            &[
                Record::new(None, "a", 1),
                Record::new(Some("k".into()), "bb", 2),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        encode_batch(&mut out, topic_id, partition, &batch);
        out
    }

    #[test]
    fn an_entry_round_trips() {
        let e = entry(0xfeed, 7, 40);
        let head = parse_head(&e).unwrap();
        assert_eq!(head.total_len, e.len());
        assert_eq!((head.topic_id, head.partition), (0xfeed, 7));
        assert_eq!(head.batch.base_offset, 40);
        assert_eq!(head.batch.record_count, 2);
        let batch = check(&e, &head).unwrap();
        assert_eq!(batch, &e[ENTRY_HEAD_LEN..]);
    }

    #[test]
    fn every_flipped_byte_is_caught_and_a_new_kind_is_named() {
        let e = entry(3, 1, 0);
        for i in 0..e.len() {
            let mut b = e.clone();
            b[i] ^= 0x21;
            let caught = match parse_head(&b) {
                Err(_) => true,
                Ok(h) => check(&b, &h).is_err(),
            };
            assert!(caught, "flipped byte {i} was accepted");
        }
        // A kind this version does not know, with a CRC that holds.
        let mut b = e.clone();
        b[8] = 9;
        let mut head = [0u8; ENTRY_HEAD_LEN];
        head.copy_from_slice(&b[..ENTRY_HEAD_LEN]);
        let crc = entry_crc(&head, &b[ENTRY_HEAD_LEN + 4..ENTRY_HEAD_LEN + 8]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(parse_head(&b), Err(DecodeError::UnknownKind(9)));
    }

    #[test]
    fn short_bytes_are_a_torn_entry_not_a_panic() {
        let e = entry(3, 1, 0);
        for n in 0..e.len() {
            match parse_head(&e[..n]) {
                Err(DecodeError::Bad(_)) => {}
                Ok(h) => assert!(check(&e[..n], &h).is_err(), "{n} bytes accepted"),
                Err(other) => panic!("{n} bytes: {other:?}"),
            }
        }
    }

    #[test]
    fn a_file_header_names_its_file() {
        let h = file_header(12);
        assert_eq!(check_file_header(&h, 12), Ok(()));
        assert!(check_file_header(&h, 13).is_err());
        assert!(check_file_header(&h[..10], 12).is_err());
        let mut bad = h;
        bad[5] ^= 1;
        assert!(check_file_header(&bad, 12).is_err());
    }
}
