//! The pipeline-file parser and planner on arbitrary text: every input gives a plan or
//! diagnostics, never a panic, and every diagnostic's position lies inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match millrace_pipeline::parse_str(src, "fuzz.yaml") {
        Ok(_plan) => {}
        Err(diags) => {
            // Rendering the report must not panic either (it slices the source).
            let _ = diags.to_string();
        }
    }
});
