//! Inflating the records of a compressed Kafka batch, with a bound on what they may
//! inflate to: a produce request of a few kilobytes must not make the server allocate
//! gigabytes (a "decompression bomb"). The codecs are the ones kafka-protocol
//! compresses with; only the reading side is here, because theirs has no bound.
//!
//! Snappy comes in two framings: the one Kafka's Java client writes (snappy-java's
//! "xerial" stream: a 16-byte header, then blocks each behind a 4-byte big-endian
//! length) and raw snappy (librdkafka). Both are read.

use std::io::Read;

use bytes::Bytes;
use kafka_protocol::records::Compression;

/// Inflates `compressed` (the records part of a batch) to at most `limit` bytes.
pub fn inflate(compressed: &Bytes, codec: Compression, limit: usize) -> Result<Bytes, String> {
    match codec {
        Compression::None => Ok(compressed.clone()),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(&compressed[..]), limit),
        Compression::Lz4 => {
            let d = lz4::Decoder::new(&compressed[..]).map_err(|e| format!("lz4: {e}"))?;
            read_bounded(d, limit)
        }
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::new(&compressed[..])
                .map_err(|e| format!("zstd: {e}"))?;
            read_bounded(d, limit)
        }
        Compression::Snappy => snappy(compressed, limit),
    }
}

/// Reads a decoder to its end, failing as soon as it yields more than `limit` bytes.
fn read_bounded(r: impl Read, limit: usize) -> Result<Bytes, String> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    r.take(cap)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot decompress the records: {e}"))?;
    if out.len() > limit {
        return Err(too_big(limit));
    }
    Ok(Bytes::from(out))
}

fn too_big(limit: usize) -> String {
    format!("the records inflate to more than {limit} bytes")
}

/// snappy-java's stream header: magic, then version 1 and compatible version 1.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

fn snappy(compressed: &Bytes, limit: usize) -> Result<Bytes, String> {
    let Some(mut rest) = compressed.strip_prefix(&XERIAL_HEADER[..8]) else {
        return snappy_block(compressed, limit, Vec::new()).map(Bytes::from);
    };
    // Versions follow the magic; any version's blocks are framed the same way.
    rest = rest
        .get(8..)
        .ok_or("snappy: the stream header is cut short")?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, body) = rest
            .split_first_chunk::<4>()
            .ok_or("snappy: a block length is cut short")?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|e| e.to_string())?;
        let block = body.get(..len).ok_or("snappy: a block is cut short")?;
        out = snappy_block(block, limit, out)?;
        rest = &body[len..];
    }
    Ok(Bytes::from(out))
}

/// Appends one raw snappy block to `out`, whose total must stay within `limit`.
fn snappy_block(block: &[u8], limit: usize, mut out: Vec<u8>) -> Result<Vec<u8>, String> {
    let len = snap::raw::decompress_len(block).map_err(|e| format!("snappy: {e}"))?;
    let start = out.len();
    if start.saturating_add(len) > limit {
        return Err(too_big(limit));
    }
    out.resize(start + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| format!("snappy: {e}"))?;
    out.truncate(start + n);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    #[test]
    fn every_codec_inflates_what_it_compressed() {
        let data: Vec<u8> = (0..50_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let zstd = Bytes::from(zstd::encode_all(&data[..], 3).unwrap());
        let mut lz4 = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        lz4.write_all(&data).unwrap();
        let lz4 = Bytes::from(lz4.finish().0);
        let raw = Bytes::from(snap::raw::Encoder::new().compress_vec(&data).unwrap());
        let mut xerial = XERIAL_HEADER.to_vec();
        for chunk in data.chunks(32 * 1024) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            xerial.extend_from_slice(&u32::try_from(block.len()).unwrap().to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        for (codec, bytes) in [
            (Compression::Gzip, gzip(&data)),
            (Compression::Zstd, zstd),
            (Compression::Lz4, lz4),
            (Compression::Snappy, raw),
            (Compression::Snappy, Bytes::from(xerial)),
        ] {
            assert_eq!(
                inflate(&bytes, codec, data.len()).unwrap(),
                data,
                "{codec:?}"
            );
            let e = inflate(&bytes, codec, data.len() - 1).unwrap_err();
            assert!(e.contains("more than"), "{codec:?}: {e}");
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_garbage_is_an_error() {
        // 64 MiB of zeros in about 64 KiB of gzip: read no further than the limit.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = Bytes::from(e.finish().unwrap());
        assert!(inflate(&bomb, Compression::Gzip, 4 << 20).is_err());
        // A raw snappy block that claims 4 GiB is refused before anything is allocated.
        let claim = Bytes::from_static(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00]);
        assert!(inflate(&claim, Compression::Snappy, 1 << 20).is_err());
        for codec in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Lz4,
            Compression::Snappy,
        ] {
            let garbage = Bytes::from_static(b"\x82SNAPPY\x00not really anything");
            assert!(inflate(&garbage, codec, 1 << 20).is_err(), "{codec:?}");
        }
    }
}
