//! Kafka's keyed partitioner: where a record with a key and no partition lands, as the
//! Java client (and librdkafka's `murmur2_random`, which the Kafka backend sets)
//! chooses. A stage that must know a keyed record's partition before producing it (a
//! sharder over partitions, a lineage tag) asks here, whatever the backend.
//!
//! The one implementation is the store's, which places keyed records itself.

/// `murmur2(key)` is Kafka's `Utils.murmur2`; `partition_for_key(key, n)` is the Java
/// client's `toPositive(murmur2(key)) % n` (`n` of 0 is treated as 1).
pub use millrace_store::murmur2::{murmur2, partition_for_key};

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest` vector, and partitions of 12 the Java client picks
    /// (kafka-python's Java-compatible murmur2, as the conformance suite's table).
    #[test]
    fn keys_land_where_the_java_client_puts_them() {
        assert_eq!(murmur2(b"21"), -973_932_308);
        for (key, want) in [(&b""[..], 9), (b"a", 4), (b"key-0", 1), (b"user:1001", 5)] {
            assert_eq!(partition_for_key(key, 12), want, "{key:?}");
        }
        assert_eq!(partition_for_key(b"x", 0), 0);
    }
}
