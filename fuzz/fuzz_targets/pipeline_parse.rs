//! The pipeline-file parser and planner on arbitrary text: a plan or diagnostics, never
//! a panic, rendering included (`fuzz/checks.rs`).
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)] // each target calls one of the checks
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::pipeline_parse(data));
