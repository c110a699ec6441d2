//! Kafka's murmur2 and the Java client's keyed partitioner, so a key lands in the same
//! partition whether millrace, a Java client or librdkafka (`murmur2_random`) wrote it.

/// `org.apache.kafka.common.utils.Utils.murmur2`: 32-bit MurmurHash2 with Kafka's seed,
/// returned as Java's signed int.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java computes `seed ^ length` on ints; a key longer than 4 GiB cannot exist in a
    // Kafka record, so wrapping the length to 32 bits is what Java does too.
    let len32 = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut h: u32 = SEED ^ len32;

    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    // Java's switch falls through from case 3 to case 1.
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    i32::from_ne_bytes(h.to_ne_bytes())
}

/// The Java client's partition for a keyed record: `toPositive(murmur2(key)) % n`.
/// `partitions` of 0 is treated as 1 (there is no partition to pick otherwise).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    let positive = u32::from_ne_bytes(murmur2(key).to_ne_bytes()) & 0x7fff_ffff;
    positive % partitions.max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    /// The vectors of Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka_utils_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "murmur2({:?})",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn partition_for_key_masks_the_sign_bit_like_the_java_client() {
        // murmur2("foobar") is negative; the Java client masks, it does not negate.
        let expected = ((-790_332_482_i32) & 0x7fff_ffff) as u32 % 50;
        assert_eq!(partition_for_key(b"foobar", 50), expected);
        for n in 1..20 {
            assert!(partition_for_key(b"some-key", n) < n);
        }
    }
}
