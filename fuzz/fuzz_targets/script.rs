//! Any bytes as a scenario script: the loader answers with scenarios or an error that names
//! a position inside the text, and never panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// The lines of a text as YAML counts them (ending at "\r\n", "\r" or "\n").
fn lines(text: &str) -> Vec<&str> {
    text.split("\r\n")
        .flat_map(|l| l.split(['\r', '\n']))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // A script is UTF-8 (`script::read_script` refuses anything else, with a position).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = halfclose::script::parse_all(text, Path::new("fuzz.yaml"), "fuzz") {
        let lines = lines(text);
        let (line, column) = (e.loc.line as usize, e.loc.column as usize);
        assert!(line >= 1 && column >= 1, "no position: {e}");
        assert!(line <= lines.len() + 1, "line {line} past the text: {e}");
        let width = lines.get(line - 1).map_or(0, |l| l.chars().count());
        assert!(column <= width + 2, "column {column} past line {line}: {e}");
        let _ = e.to_string();
    }
});
