//! Any bytes as a scenario script: the loader answers with scenarios or an error that names
//! a position, and never panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A script is UTF-8 (`script::read_script` refuses anything else, with a position).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = halfclose::script::parse_all(text, Path::new("fuzz.yaml"), "fuzz") {
        assert!(e.loc.line >= 1 && e.loc.column >= 1, "no position: {e}");
        let _ = e.to_string();
    }
});
