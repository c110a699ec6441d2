//! Store recovery on a data directory whose segment bytes come from the fuzzer: open
//! succeeds or fails cleanly, never panics, and a store it opened reopens without a
//! further cut (`fuzz/checks.rs`, which also says how the input is laid out).
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)] // each target calls one of the checks
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::store_recovery(data));
