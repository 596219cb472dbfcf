//! Property tests: arbitrary Unicode text fed to every parser of the script language, alone
//! and inside scripts, and random edits of the suite's own scripts. Nothing may panic, and
//! every error must name a position in the file.
//!
//! `HALFCLOSE_PROPTEST_CASES=N` sets the cases per property (default 256, to keep
//! `cargo test` quick); a long run: `HALFCLOSE_PROPTEST_CASES=200000 cargo test --release --lib
//! prop_tests`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::raw::{RawState, WscaleSpec};
use super::values::{Dur, FlagsSpec};
use super::*;

fn config() -> Config {
    let cases = std::env::var("HALFCLOSE_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        // A failure prints its minimal input; no regression files inside src/.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Characters that matter to the parsers, Unicode spaces and multi-byte characters, control
/// characters, and anything at all.
fn a_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(
            "SFRPUEWA.?-+0123456789 ,()=\"\\:{}[]$#&*!|>'%@`~\n\t\r_abcdefmsuxyz"
                .chars()
                .collect::<Vec<_>>()
        ),
        2 => prop::sample::select(vec![
            '\u{a0}', '\u{2003}', '\u{3000}', '\u{feff}', '\u{2028}', '\u{85}', '\u{0}',
            '\u{7f}', '\u{9f}', '\u{301}', 'é', 'µ', '—', 'ß', '😀', '\u{fffd}', '\u{10ffff}',
        ]),
        1 => any::<char>(),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(a_char(), 0..max).prop_map(|v| v.into_iter().collect())
}

/// Calls and their pieces: names, constants and punctuation in any order.
fn call_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "write",
            "read",
            "read_all",
            "shutdown",
            "setsockopt",
            "close",
            "dup",
            "socket",
            "accept",
            "listen",
            "SHUT_WR",
            "SO_LINGER",
            "TCP_LINGER2",
            "EPIPE",
            "conn",
            "fd2",
            "(",
            ")",
            ",",
            " = ",
            "-1",
            "\"",
            "\\",
            "16777217",
            "99999999999999999999",
        ])
        .prop_map(String::from),
        text(4),
    ];
    prop::collection::vec(piece, 0..10).prop_map(|v| v.concat())
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// `text` as a YAML double-quoted scalar (JSON's escapes are YAML's).
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// An error must name a place in the file: a line of it (or the one after the last) and a
/// column on that line (or just past its end), and show it so.
fn assert_positioned(e: &ScriptError, text: &str, what: &str) {
    let lines: Vec<&str> = yaml_lines(text).into_iter().map(|(_, l)| l).collect();
    assert!(
        e.loc.line >= 1 && e.loc.column >= 1,
        "{what}: no position: {e}\n--- text:\n{text}"
    );
    let line = lines.get(e.loc.line as usize - 1).copied().unwrap_or("");
    assert!(
        e.loc.line as usize <= lines.len() + 1 && e.loc.column as usize <= chars(line) + 2,
        "{what}: position {}:{} outside the text: {e}\n--- text:\n{text}",
        e.loc.line,
        e.loc.column
    );
    assert!(
        e.to_string().starts_with(&format!(
            "{}:{}:{}: ",
            e.file.display(),
            e.loc.line,
            e.loc.column
        )),
        "{what}: {e}"
    );
}

/// A one-line value in a script: the template's `@` replaced, and the lines an error about
/// it may be reported on.
struct Slot {
    template: &'static str,
    lines: &'static [u32],
}

const HEAD: &str = "name: a\nsummary: s\n";

const SLOTS: &[Slot] = &[
    Slot {
        template: "steps:\n  - send: {flags: @, seq: 1, ack: 1}\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - send: {flags: ., seq: @, ack: 1}\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - expect: {flags: ., ack: @, len: 0}\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - send: {flags: ., options: [@]}\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - expect: {flags: ., options: [mss 1460, @]}\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - send: {flags: P., data: @}\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - send: {flags: ., conn: @}\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - call: @\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - call: close()\n    background: true\n    name: c\n  - await: @\n",
        lines: &[7],
    },
    Slot {
        template: "steps:\n  - state: @\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - state: {is: TIME_WAIT, timer: @}\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - leave: {state: TIME_WAIT, timer: @}\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - transitions: [ESTABLISHED, @]\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - quiet: @\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - expect: {flags: F., within: @}\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - expect: {flags: F., since: @}\n",
        lines: &[4],
    },
    Slot {
        template: "steps:\n  - wait: 1ms\n    name: @\n",
        lines: &[4, 5],
    },
    Slot {
        template: "setup:\n  sockopts: [@]\nsteps:\n  - call: close()\n",
        lines: &[4],
    },
    Slot {
        template: "setup:\n  open: @\nsteps:\n  - call: close()\n",
        lines: &[4],
    },
    Slot {
        template: "setup:\n  peer: {wscale: @}\nsteps:\n  - call: close()\n",
        lines: &[4],
    },
    Slot {
        template:
            "setup:\n  sysctls:\n    net.ipv4.tcp_fin_timeout: @\nsteps:\n  - call: close()\n",
        lines: &[5],
    },
    Slot {
        template: "setup:\n  sysctls:\n    @: 1\nsteps:\n  - call: close()\n",
        lines: &[5],
    },
    Slot {
        template: "setup:\n  final_quiet: @\nsteps:\n  - call: close()\n",
        lines: &[4],
    },
    Slot {
        template: "families: [@]\nsteps:\n  - call: close()\n",
        lines: &[3],
    },
    Slot {
        template: "group: @\nsteps:\n  - call: close()\n",
        lines: &[3],
    },
    Slot {
        template: "matrix:\n  v: [@]\nsteps:\n  - send: {flags: ., seq: \"${v}\"}\n",
        lines: &[4, 6],
    },
    Slot {
        template: "matrix:\n  v: [a, b]\nsteps:\n  - call: close()\n    when: {v: @}\n",
        lines: &[6, 7],
    },
    Slot {
        template: "matrix:\n  v: {x: {seq: @}}\nsteps:\n  - send: {flags: ., seq: ${seq}}\n",
        lines: &[4, 6],
    },
];

/// Every script of the suite, as text, for the mutation test.
fn suite_texts() -> Vec<(PathBuf, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && p.file_name().is_some_and(|n| n != "expectations") {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    assert!(out.len() > 10, "the suite's scripts");
    out
}

/// `text` with `edits` applied: each deletes some characters at a position (a fraction of
/// the text) and inserts others.
fn mutate(text: &str, edits: &[(f64, usize, String)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for (at, delete, insert) in edits {
        let at = ((chars.len() as f64) * at) as usize;
        let end = (at + delete).min(chars.len());
        chars.splice(at..end, insert.chars());
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(config())]

    /// Each value parser alone, on any text: an answer, never a panic; positions within
    /// the text.
    #[test]
    fn value_parsers_take_any_text(s in text(40), c in call_like()) {
        let _ = values::parse_duration(&s);
        let _ = values::parse_option(&s);
        let _ = parse_armed(&s);
        let _ = parse_range(&s);
        let _ = s.parse::<TcpState>();
        let _ = s.parse::<TcpFlags>();
        let _ = limits::not_settable(&s);
        let _ = limits::bad_sysctl_value(&s);
        for t in [&s, &c] {
            if let Err(e) = call::parse_call(t) {
                prop_assert!(e.offset <= chars(t), "{t:?}: {e:?}");
            }
            if let Err(e) = call::parse_sockopt_text(t) {
                prop_assert!(e.offset <= chars(t), "{t:?}: {e:?}");
            }
        }
        let vars = BTreeMap::from([("v".to_string(), s.clone())]);
        match matrix::substitute(&c, &vars, 1 << 20) {
            Ok((expanded, map)) => {
                prop_assert_eq!(map.written_offset(0), 0);
                prop_assert_eq!(map.written_offset(expanded.len()), c.len());
            }
            Err((at, _)) => prop_assert!(c.is_char_boundary(at), "{c:?}: {at}"),
        }
        let blank = matrix::blank_variables(&s);
        prop_assert_eq!(chars(&blank), chars(&s));
        prop_assert_eq!(blank.matches('\n').count(), s.matches('\n').count());
        let scalar = format!("{}\n", quoted(&s));
        let _ = from_yaml::<FlagsSpec>(&scalar);
        let _ = from_yaml::<SeqSpec>(&scalar);
        let _ = from_yaml::<Dur>(&scalar);
        let _ = from_yaml::<WscaleSpec>(&scalar);
        let _ = from_yaml::<RawState>(&scalar);
        let _ = from_yaml::<matrix::Matrix>(&format!("v: [{}]\n", quoted(&s)));
        let _ = from_yaml::<matrix::When>(&format!("v: {}\n", quoted(&s)));
    }

    /// Any text as a value in a script, quoted: it loads, or the error is on the value's
    /// line; unquoted, anything may break, but the error still names a position.
    #[test]
    fn a_bad_value_is_reported_at_its_line(slot in 0..SLOTS.len(), s in text(30), c in call_like()) {
        let slot = &SLOTS[slot];
        for value in [&s, &c] {
            let script = format!("{HEAD}{}", slot.template.replace('@', &quoted(value)));
            if let Err(e) = parse_all(&script, Path::new("inline.yaml"), "test") {
                assert_positioned(&e, &script, "quoted");
                prop_assert!(
                    slot.lines.contains(&e.loc.line),
                    "{e}\n--- script:\n{script}"
                );
            }
            let script = format!("{HEAD}{}", slot.template.replace('@', value));
            if let Err(e) = parse_all(&script, Path::new("inline.yaml"), "test") {
                assert_positioned(&e, &script, "plain");
            }
        }
    }

    /// Any text at all as a whole script.
    #[test]
    fn any_text_as_a_script(s in text(200)) {
        if let Err(e) = parse_all(&s, Path::new("inline.yaml"), "test") {
            assert_positioned(&e, &s, "whole");
        }
    }

    /// The suite's own scripts with random edits: a bounded fuzz of inputs that get past
    /// the YAML layer and into every check.
    #[test]
    fn edited_suite_scripts(
        file in any::<prop::sample::Index>(),
        edits in prop::collection::vec((0.0..1.0f64, 0..8usize, text(6)), 1..4),
    ) {
        thread_local! {
            static TEXTS: Vec<(PathBuf, String)> = suite_texts();
        }
        TEXTS.with(|texts| {
            let (path, original) = &texts[file.index(texts.len())];
            let edited = mutate(original, &edits);
            if let Err(e) = parse_all(&edited, path, "test") {
                assert_positioned(&e, &edited, "edited");
            }
        });
    }
}
