//! The store's batch decoder on arbitrary bytes: Ok or Err, never a panic, never more
//! bytes out than in (`fuzz/checks.rs`).
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)] // each target calls one of the checks
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::decode_batches(data));
