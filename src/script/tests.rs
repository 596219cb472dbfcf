//! Script parsing: good scripts lower to the steps they say; every kind of mistake in
//! fixtures/bad/ is reported at the line and column its header comment names.

use std::path::{Path, PathBuf};

use super::*;

fn parse_text(text: &str) -> Result<Scenario, ScriptError> {
    parse(text, Path::new("inline.yaml"), "test")
}

#[test]
fn passive_open_expands_to_the_handshake() {
    let sc = parse_text("name: a\nsummary: s\nsteps:\n  - call: close()\n").unwrap();
    let implicit = sc.steps.iter().filter(|s| s.implicit).count();
    assert_eq!(
        implicit, 7,
        "socket, bind, listen, SYN, SYN-ACK, ACK, accept"
    );
    assert!(matches!(
        sc.steps.last().unwrap().action,
        Action::Call { .. }
    ));
    assert_eq!(sc.families, vec![Family::V4, Family::V6]);
    assert_eq!(sc.trial_name(Family::V6), "ipv6::test::a");
}

#[test]
fn steps_keep_their_location() {
    let sc = parse_text(
        "name: a\nsummary: s\nsteps:\n  - call: close()\n  - expect: {flags: F., seq: 1}\n",
    )
    .unwrap();
    let explicit: Vec<&Step> = sc.steps.iter().filter(|s| !s.implicit).collect();
    assert_eq!(explicit[0].loc, Loc { line: 4, column: 5 });
    assert_eq!(explicit[1].loc, Loc { line: 5, column: 5 });
    let Action::Expect(e) = &explicit[1].action else {
        panic!("expect")
    };
    assert_eq!(e.seq, Some(SeqSpec::Rel(1)));
    assert_eq!(e.ack, None, "omitted fields match anything");
    assert_eq!(e.window.within, DEFAULT_WITHIN);
}

#[test]
fn background_calls_must_be_awaited() {
    let err = parse_text(
        "name: a\nsummary: s\nsteps:\n  - call: close()\n    background: true\n    name: c\n",
    )
    .unwrap_err();
    assert!(err.message.contains("never awaited"), "{err}");
    let ok = "name: a\nsummary: s\nsteps:\n  - call: close()\n    background: true\n    name: c\n  - await: c\n    within: 3s\n";
    parse_text(ok).unwrap();
}

#[test]
fn families_can_be_restricted() {
    let sc = parse_text("name: a\nsummary: s\nfamilies: [ipv6]\nsteps:\n  - wait: 1ms\n").unwrap();
    assert_eq!(sc.families, vec![Family::V6]);
}

/// Every fixture in fixtures/bad/ starts with `# error: LINE:COL TEXT`; loading it must fail
/// at exactly that place with a message containing TEXT.
#[test]
fn bad_fixtures_report_line_and_column() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "fixtures/bad needs at least five scripts");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let header = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# error: ")
            .expect("header");
        let (pos, needle) = header.split_once(' ').unwrap_or((header, ""));
        let (line, col) = pos.split_once(':').unwrap();
        let err = load(&file, "bad").expect_err(&format!("{} should not load", file.display()));
        let shown = err.to_string();
        assert_eq!(
            (err.loc.line, err.loc.column),
            (line.parse().unwrap(), col.parse().unwrap()),
            "{}: {shown}",
            file.display()
        );
        assert!(
            err.message.contains(needle.trim()),
            "{}: {shown}",
            file.display()
        );
        assert!(
            shown.starts_with(&format!("{}:{line}:{col}: ", file.display())),
            "{shown}"
        );
    }
}

/// Regression (issue 9): both used to panic (exit 101) instead of reporting a position.
#[test]
fn non_ascii_text_is_an_error_with_a_position_not_a_panic() {
    let err = parse_text(
        "name: a\nsummary: s\nsteps:\n  - send: {flags: \"F\u{2014}\", seq: 1, ack: 1}\n",
    )
    .unwrap_err();
    assert_eq!((err.loc.line, err.loc.column), (4, 19), "{err}");
    assert!(err.message.contains("bad flags"), "{err}");
    // A no-break space is a space; the call parses.
    parse_text("name: a\nsummary: s\nsteps:\n  - call: shutdown(SHUT_WR) =\u{a0}0\n").unwrap();
    // Columns count characters: `x` is the 24th character of its line (the 25th byte).
    let err =
        parse_text("name: a\nsummary: s\nsteps:\n  - call: write(\"\u{e9}\") = x\n").unwrap_err();
    assert_eq!((err.loc.line, err.loc.column), (4, 24), "{err}");
}
