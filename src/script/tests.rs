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
fn a_listed_family_runs_by_default() {
    let sc = parse_text(
        "name: a\nsummary: s\nfamilies: [ipv4-mapped, ipv6]\nsteps:\n  - call: close()\n",
    )
    .unwrap();
    assert_eq!(sc.families, vec![Family::V4Mapped, Family::V6]);
    assert_eq!(sc.trial_name(Family::V4Mapped), "ipv4-mapped::test::a");
    let e = parse_text("name: a\nsummary: s\nfamilies: [ipv4, ipv5]\nsteps:\n  - call: close()\n")
        .unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.contains("inline.yaml:3:18") && shown.contains("expected ipv4, ipv6 or ipv4-mapped"),
        "{shown}"
    );
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

/// Matrix names and values name trials and capture files: no `/`, no endless names.
#[test]
fn matrix_values_and_names_make_safe_trial_names() {
    for (matrix, says) in [
        ("  v: [../../etc]", "matrix value `../../etc` of `v`"),
        ("  v: [\"a,b\"]", "matrix value `a,b`"),
        ("  V: [a]", "matrix parameter `V`"),
        ("  v: [\"\"]", "matrix value ``"),
    ] {
        let err = parse_all(
            &format!("name: a\nsummary: s\nmatrix:\n{matrix}\nsteps:\n  - call: close()\n"),
            Path::new("inline.yaml"),
            "test",
        )
        .unwrap_err();
        assert_eq!((err.loc.line, err.loc.column), (4, 3), "{err}");
        assert!(err.message.contains(says), "{err}");
    }
    let (name, value) = ("x".repeat(80), "x".repeat(64));
    let err = parse_all(
        &format!("name: {name}\nsummary: s\nmatrix:\n  a: [{value}]\n  b: [{value}]\nsteps:\n  - call: close()\n"),
        Path::new("inline.yaml"),
        "test",
    )
    .unwrap_err();
    assert_eq!((err.loc.line, err.loc.column), (1, 7), "{err}");
    assert!(err.message.contains("more than the 200"), "{err}");
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

fn peer_with(peer: &str) -> Result<PeerConfig, ScriptError> {
    parse_text(&format!(
        "name: a\nsummary: s\nsetup:\n  peer: {peer}\nsteps:\n  - call: close()\n"
    ))
    .map(|sc| sc.setup.peer)
}

/// The documented `wscale: off` (YAML 1.1 would read it as `false`); YAML 1.1's other
/// boolean words stay words too, and a boolean key wants true or false.
#[test]
fn wscale_off_as_documented() {
    assert_eq!(peer_with("{wscale: off}").unwrap().wscale, None);
    assert_eq!(peer_with("{wscale: none}").unwrap().wscale, None);
    assert_eq!(peer_with("{wscale: 3}").unwrap().wscale, Some(3));
    assert_eq!(
        peer_with(
            "{isn: 1000000, win: 65535, mss: 1460, wscale: 7, sack: false, timestamps: true}"
        )
        .unwrap(),
        PeerConfig {
            timestamps: true,
            ..PeerConfig::default()
        }
    );
    let err = peer_with("{wscale: on}").unwrap_err();
    assert!(err.message.contains("or off"), "{err}");
    let err = peer_with("{sack: yes}").unwrap_err();
    assert_eq!((err.loc.line, err.loc.column), (4, 16), "{err}");
    assert!(err.message.contains("expected true or false"), "{err}");
    // A matrix value `off` is the word, in the trial name and where it is substituted.
    let all = parse_all(
        "name: a\nsummary: s\nmatrix:\n  w: [off, 7]\nsetup:\n  peer: {wscale: ${w}}\nsteps:\n  - call: close()\n",
        Path::new("inline.yaml"),
        "test",
    )
    .unwrap();
    assert_eq!(all[0].name, "a[w=off]");
    assert_eq!(all[0].setup.peer.wscale, None);
    assert_eq!(all[1].setup.peer.wscale, Some(7));
}

fn parse_matrix(text: &str) -> Result<Vec<Scenario>, ScriptError> {
    parse_all(text, Path::new("inline.yaml"), "test")
}

/// Positions after a `${…}` are those of the file as written, not of the substituted text,
/// and the caret line is the written one.
#[test]
fn positions_after_a_substitution_are_the_written_ones() {
    let text = "name: a\nsummary: s\nmatrix:\n  x: [1000000000]\nsteps:\n  - call: close()\n  - send: {flags: ., seq: ${x}, ack: 1, win: 7777777}\n";
    let err = parse_matrix(text).unwrap_err();
    assert_eq!((err.loc.line, err.loc.column), (7, 46), "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains("seq: ${x}, ack: 1, win: 7777777}\n    | ")
            && shown.ends_with(&format!("{}^", " ".repeat(45))),
        "{shown}"
    );
    // An error inside a substituted value points at its `${`.
    let text =
        "name: a\nsummary: s\nmatrix:\n  f: [F.X]\nsteps:\n  - send: {seq: 1, flags: \"${f}\"}\n";
    let err = parse_matrix(text).unwrap_err();
    assert_eq!((err.loc.line, err.loc.column), (6, 27), "{err}");
    // A call's inner position too: `x` comes after a 7-character value written as 4.
    let text = "name: a\nsummary: s\nmatrix:\n  n: [1000000]\nsteps:\n  - call: write(${n}) = x\n";
    let err = parse_matrix(text).unwrap_err();
    assert_eq!((err.loc.line, err.loc.column), (6, 25), "{err}");
}

/// An error in one combination says which, as the script reference promises, and the
/// combinations before it were fine.
#[test]
fn errors_name_the_first_combination_that_has_one() {
    let text = "name: a\nsummary: s\nmatrix:\n  w: [1, 2, 70000, 80000]\nsteps:\n  - send: {flags: ., win: ${w}}\n";
    let err = parse_matrix(text).unwrap_err();
    assert!(
        err.message.ends_with(" (matrix combination [w=70000])"),
        "{err}"
    );
    assert_eq!((err.loc.line, err.loc.column), (6, 27), "{err}");
    // Without a matrix there is no combination to name.
    let err =
        parse_text("name: a\nsummary: s\nsteps:\n  - send: {flags: ., win: 70000}\n").unwrap_err();
    assert!(!err.message.contains("matrix combination"), "{err}");
}

/// Regression (issue 9): every combination used to be built before the first was checked
/// (2^16 took 13 s and 510 MB; 2^20 exhausted memory). Now the count is known first.
#[test]
fn a_matrix_has_at_most_ten_thousand_combinations() {
    let params: String = (0..20).map(|i| format!("  p{i}: [a, b]\n")).collect();
    let text = format!("name: a\nsummary: s\nmatrix:\n{params}steps:\n  - call: close()\n");
    let err = parse_matrix(&text).unwrap_err();
    assert_eq!((err.loc.line, err.loc.column), (4, 3), "{err}");
    assert!(
        err.message
            .starts_with("the matrix stands for 1048576 combinations (2 × 2 × ")
            && err.message.contains("at most 10000"),
        "{err}"
    );
    let params: String = (0..200).map(|i| format!("  p{i}: [a, b]\n")).collect();
    let text = format!("name: a\nsummary: s\nmatrix:\n{params}steps:\n  - call: close()\n");
    let err = parse_matrix(&text).unwrap_err();
    assert!(err.message.contains("more than 10^38"), "{err}");
    // Exactly at the cap is allowed (10 × 10 × 10 × 10).
    let digits = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]";
    let text = format!(
        "name: a\nsummary: s\nfamilies: [ipv4]\nmatrix:\n  a: {digits}\n  b: {digits}\n  c: {digits}\n  d: {digits}\nsteps:\n  - wait: 1ms\n"
    );
    assert_eq!(parse_matrix(&text).unwrap().len(), 10_000);
    // Within the count, but a large file parsed 10,000 times is too much text.
    let padding = format!("# {}\n", "x".repeat(100)).repeat(70);
    let err = parse_matrix(&format!("{text}{padding}")).unwrap_err();
    assert!(err.message.contains("more than the 64 MiB"), "{err}");
    // One combination, but a long value used a thousand times: 100 MB of text, refused at
    // the reference that would pass 64 MiB.
    let uses = "  - send: {flags: ., data: \"${text}\"}\n".repeat(1000);
    let text = format!(
        "name: a\nsummary: s\nmatrix:\n  v: {{long: {{text: {}}}}}\nsteps:\n{uses}",
        "x".repeat(100_000)
    );
    let err = parse_matrix(&text).unwrap_err();
    assert!(err.message.contains("would be more than 64 MiB"), "{err}");
    assert_eq!(err.loc.column, 29, "{err}");
}

fn setup_error(setup: &str, steps: &str) -> ScriptError {
    parse_text(&format!(
        "name: a\nsummary: s\nsetup:\n{setup}\nsteps:\n{steps}\n"
    ))
    .unwrap_err()
}

/// Regression (issue 9): `check` accepted these and `run` then failed on them; each is
/// refused at its own line and column, with what would work.
#[test]
fn the_loader_refuses_what_a_run_cannot_carry_out() {
    let close = "  - call: close()";
    let cases: Vec<(&str, &str, (u32, u32), &str)> = vec![
        ("  call_timeout: 0", close, (4, 17), "at least 1ms"),
        ("  call_timeout: 500us", close, (4, 17), "at least 1ms"),
        ("  sut_port: 0", close, (4, 13), "port 0 is no port"),
        ("  peer_port: 0", close, (4, 14), "port 0 is no port"),
        ("  connections:\n    c2: {peer_port: 40001, sut_port: 0}", close, (5, 38), "port 0"),
        ("  connections:\n    C2: {peer_port: 40001}", close, (5, 9), "connection name `C2`"),
        ("  sysctls:\n    net.core.rmem_max: 1000", close, (5, 24), "not per network namespace"),
        ("  sysctls:\n    net.ipv4.conf.eth0.rp_filter: 1", close, (5, 35), "`eth0`"),
        ("  sysctls:\n    net.ipv4.tcp_fin_timeout: \"3\\n4\"", close, (5, 31), "one line"),
        ("  sysctls:\n    net.ipv4.tcp_available_congestion_control: reno", close, (5, 48), "read-only"),
        ("  open: passive", "  - send: {flags: P., seq: 1, ack: 1, len: 1441}", (6, 5), "over ipv6: at most 1440"),
        (
            "  peer: {timestamps: true}",
            "  - send: {flags: P., seq: 1, ack: 1, len: 1449}",
            (6, 5),
            "over ipv4: at most 1448 bytes with 12 bytes of TCP options",
        ),
        (
            "  open: passive",
            "  - send: {flags: P., seq: 1, ack: 1, data: \"é\", options: [mss 1460, wscale 7, sackOK, ts, nop, sack 1:2 3:4 5:6]}",
            (6, 97),
            "more than the 40",
        ),
        ("  open: passive", "  - transfer: {bytes: 10000, segment: 2000}", (6, 5), "`segment` (2000 bytes)"),
        ("  open: passive", "  - transfer: {bytes: 10000, segment: 0}", (6, 39), "at least 1"),
    ];
    for (setup, steps, (line, column), says) in cases {
        let err = setup_error(setup, steps);
        assert_eq!(
            (err.loc.line, err.loc.column),
            (line, column),
            "{setup} / {steps}: {err}"
        );
        assert!(err.message.contains(says), "{setup} / {steps}: {err}");
    }
    // At the limits, everything loads.
    parse_text("name: a\nsummary: s\nfamilies: [ipv4]\nsetup:\n  call_timeout: 1ms\n  sut_port: 65535\nsteps:\n  - send: {flags: P., seq: 1, ack: 1, len: 1460}\n").unwrap();
    parse_text("name: a\nsummary: s\nsteps:\n  - send: {flags: P., seq: 1, ack: 1, len: 1440}\n  - send: {flags: ., options: [mss 1460, wscale 7, sackOK, ts, nop, sack 1:2]}\n").unwrap();
}

/// The ```yaml blocks of a Markdown file, with the line each starts on.
fn yaml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```yaml") => current = Some((i + 2, String::new())),
            (Some(_), "```") => out.extend(current.take()),
            (Some((_, text)), l) => {
                text.push_str(l);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

/// A block is a whole scenario when it has the top-level keys a scenario needs.
fn is_whole_scenario(block: &str) -> bool {
    ["name:", "summary:", "steps:"]
        .iter()
        .all(|k| block.lines().any(|l| l.starts_with(k)))
}

/// Every example in the docs that is a whole scenario loads (the Matrices example once
/// failed its own check), and so does the expectations example: docs cannot drift.
#[test]
fn the_docs_examples_load() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut scenarios = 0;
    let mut expectations = 0;
    for doc in ["docs/script-format.md", "README.md"] {
        let markdown = std::fs::read_to_string(root.join(doc)).unwrap();
        for (line, block) in yaml_blocks(&markdown) {
            let place = format!("{doc}:{line}");
            if is_whole_scenario(&block) {
                let all = parse_all(&block, Path::new(&place), "docs")
                    .unwrap_or_else(|e| panic!("the example at {place} does not load: {e}"));
                assert!(!all.is_empty(), "{place}");
                scenarios += 1;
            } else if block.starts_with("stack:") {
                let file = std::env::temp_dir().join(format!(
                    "halfclose-doc-expectations-{}.yaml",
                    std::process::id()
                ));
                std::fs::write(&file, &block).unwrap();
                let loaded = crate::expectations::Expectations::load(&file);
                let _ = std::fs::remove_file(&file);
                loaded.unwrap_or_else(|e| panic!("the example at {place} does not load: {e}"));
                expectations += 1;
            }
        }
    }
    assert!(
        scenarios >= 3,
        "the docs' scenario examples were not found ({scenarios})"
    );
    assert_eq!(expectations, 1, "the expectations example");
}

/// YAML ends a line at a lone CR too; positions and the caret line count lines its way
/// (found by the property tests: an error on a CR-separated line pointed past the text).
#[test]
fn lines_end_where_yaml_ends_them() {
    for eol in ["\n", "\r\n", "\r"] {
        let text = ["name: a", "summary: s", "steps:", "  - quiet: 2", ""].join(eol);
        let err = parse_text(&text).unwrap_err();
        assert_eq!((err.loc.line, err.loc.column), (4, 12), "{eol:?}: {err}");
        assert_eq!(err.source_line.as_deref(), Some("  - quiet: 2"), "{eol:?}");
    }
    let text = "name: a\rsummary: s\rmatrix:\r  x: [1000000000]\rsteps:\r  - send: {flags: ., seq: ${x}, win: 7777777}\r";
    let err = parse_all(text, Path::new("inline.yaml"), "test").unwrap_err();
    assert_eq!((err.loc.line, err.loc.column), (6, 38), "{err}");
}

/// A name is at most 100 characters: it names directories and capture files.
#[test]
fn names_are_bounded() {
    let err = parse_text(&format!(
        "name: a\ngroup: {}\nsummary: s\nsteps:\n  - call: close()\n",
        "g".repeat(101)
    ))
    .unwrap_err();
    assert_eq!((err.loc.line, err.loc.column), (2, 8), "{err}");
    assert!(err.message.contains("at most 100"), "{err}");
}

/// A position inside a call is exact when the call is written as it reads, and the start of
/// the scalar when it is folded over lines or escaped (found by the property tests: a folded
/// call pointed past the end of its line).
#[test]
fn positions_inside_folded_or_escaped_calls_fall_back_to_the_scalar() {
    let err =
        parse_text("name: a\nsummary: s\nsteps:\n  - call: write(5)\n      = x\n").unwrap_err();
    assert_eq!((err.loc.line, err.loc.column), (4, 11), "{err}");
    let err = parse_text("name: a\nsummary: s\nsteps:\n  - call: \"write(\\\"ab\\\") = x\"\n")
        .unwrap_err();
    assert_eq!((err.loc.line, err.loc.column), (4, 11), "{err}");
    let err = parse_text("name: a\nsummary: s\nsteps:\n  - call: \"write(5) = x\"\n").unwrap_err();
    assert_eq!((err.loc.line, err.loc.column), (4, 23), "{err}");
    let err = parse_text(
        "name: a\nsummary: s\nsetup:\n  sockopts: [S\n    PU.5]\nsteps:\n  - call: close()\n",
    )
    .unwrap_err();
    assert_eq!((err.loc.line, err.loc.column), (4, 14), "{err}");
}

#[test]
fn a_result_on_an_await_line_is_pointed_at_in_characters() {
    // Found by the property tests: the `=` was placed by its byte offset.
    let text = "name: a\nsummary: s\nsteps:\n  - call: close()\n    background: true\n    name: c\n  - await: —+éU=\n";
    let e = parse_text(text).unwrap_err();
    assert_eq!((e.loc.line, e.loc.column), (7, 16), "{e}");
}

/// `req:` on the scenario is every assertion's default, a step's own replaces it, and steps
/// that assert nothing (send, wait) carry none that count; the handshake is `setup`.
#[test]
fn requirements_default_to_the_scenarios_and_a_step_names_its_own() {
    let sc = parse_text(
        "name: a\nsummary: s\nreq: \"RFC 9293 §3.10.4 CLOSE in ESTABLISHED\"\nsteps:\n  - call: close()\n  - expect: {flags: F., seq: 1, ack: 1}\n  - send: {flags: ., seq: 1, ack: 2}\n  - state: FIN_WAIT_2\n    req: [\"RFC 9293 §3.10.7.4 ACK in FIN-WAIT-1\", linux]\n",
    )
    .unwrap();
    let written: Vec<&Step> = sc.steps.iter().filter(|s| !s.implicit).collect();
    assert_eq!(written[0].reqs, ["RFC 9293 §3.10.4 CLOSE in ESTABLISHED"]);
    assert_eq!(
        written[3].reqs,
        ["RFC 9293 §3.10.7.4 ACK in FIN-WAIT-1", "linux"]
    );
    assert!(!written[2].asserts(), "a send asserts nothing");
    assert!(sc
        .steps
        .iter()
        .filter(|s| s.implicit)
        .all(|s| s.reqs == ["setup"]));
}

/// Alternatives are kept only for the matrix cases whose steps differ between them, RFC
/// first; a case where every alternative has the same steps runs as a plain trial.
#[test]
fn alternatives_are_kept_where_the_steps_differ() {
    let text = "name: a\nsummary: s\nreq: setup\nalternatives:\n  linux: {says: l}\n  rfc: {says: r}\nmatrix:\n  x:\n    same: {}\n    differ: {}\nsteps:\n  - call: close()\n  - expect: {flags: F., seq: 1, ack: 1}\n    when: {x: differ}\n    alt: rfc\n  - quiet: 10ms\n    when: {x: differ}\n    alt: linux\n";
    let all = parse_all(text, Path::new("inline.yaml"), "test").unwrap();
    let same = all.iter().find(|s| s.name.contains("x=same")).unwrap();
    assert!(same.alternatives.is_empty());
    let differ = all.iter().find(|s| s.name.contains("x=differ")).unwrap();
    let names: Vec<&str> = differ
        .alternatives
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["rfc", "linux"]);
    assert!(differ.alternatives[0].conforms() && !differ.alternatives[1].conforms());
    assert!(matches!(
        differ.alternatives[0].steps.last().unwrap().action,
        Action::Expect(_)
    ));
    assert!(matches!(
        differ.alternatives[1].steps.last().unwrap().action,
        Action::Quiet(_)
    ));
    let run = differ.with_alternative(1);
    assert_eq!(run.running_alternative, Some((1, "linux".to_string())));
    assert!(matches!(run.steps.last().unwrap().action, Action::Quiet(_)));
}

/// The alternatives of a scenario held to fewer checks than another by simply leaving out a
/// check of the SUT's state or calls: missing segments are caught by the strict matching (any
/// segment no step expects fails the trial), but a missing `state`, `call` or timer check is
/// not, and such an alternative would pass a stack that shows neither behaviour.
fn alternatives_that_only_leave_checks_out(sc: &Scenario) -> Vec<String> {
    let mut bad = Vec::new();
    for a in &sc.alternatives {
        let own: Vec<Loc> = a
            .steps
            .iter()
            .filter(|s| s.asserts())
            .map(|s| s.loc)
            .collect();
        for b in sc.alternatives.iter().filter(|b| b.name != a.name) {
            let theirs: Vec<&Step> = b.steps.iter().filter(|s| s.asserts()).collect();
            let subset = own.iter().all(|l| theirs.iter().any(|s| s.loc == *l));
            let dropped_check = theirs.iter().any(|s| {
                !own.contains(&s.loc) && !matches!(s.action, Action::Expect(_) | Action::Quiet(_))
            });
            if subset && dropped_check {
                bad.push(format!("{} `{}` ⊂ `{}`", sc.name, a.name, b.name));
            }
        }
    }
    bad
}

#[test]
fn no_alternative_of_the_suite_passes_by_leaving_out_a_state_or_call_check() {
    let suite = crate::suite::load(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("suites")]);
    assert!(suite.errors.is_empty());
    let bad: Vec<String> = suite
        .scenarios
        .iter()
        .flat_map(alternatives_that_only_leave_checks_out)
        .collect();
    assert!(
        bad.is_empty(),
        "alternatives that only leave checks out:\n{}",
        bad.join("\n")
    );
    // The check can fail: a `linux` alternative with no steps of its own in a case.
    let text = "name: a\nsummary: s\nreq: setup\nalternatives:\n  rfc: {says: r}\n  linux: {says: l}\nsteps:\n  - call: close()\n  - expect: {flags: F., seq: 1, ack: 1}\n  - state: FIN_WAIT_1\n    alt: rfc\n";
    let sc = parse_text(text).unwrap();
    assert_eq!(
        alternatives_that_only_leave_checks_out(&sc),
        ["a `linux` ⊂ `rfc`"]
    );
}
