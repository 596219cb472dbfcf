//! Any text into the value parsers of the script language: calls, socket options,
//! durations, TCP options. Errors point inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

use halfclose::script::{call, values};

fuzz_target!(|text: &str| {
    let chars = text.chars().count();
    if let Err(e) = call::parse_call(text) {
        assert!(e.offset <= chars, "{e:?}");
    }
    if let Err(e) = call::parse_sockopt_text(text) {
        assert!(e.offset <= chars, "{e:?}");
    }
    let _ = values::parse_duration(text);
    let _ = values::parse_option(text);
});
