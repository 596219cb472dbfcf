//! KTAP (the kernel's Test Anything Protocol, Documentation/dev-tools/ktap.rst) for
//! kselftest and netdev CI: `halfclose run --format ktap`.
//!
//! ```text
//! KTAP version 1
//! 1..3
//! ok 1 ipv4::close::active-close
//! # step 3 (suites/close/x.yaml:10:5): expect F. seq 1 ack 1 len 0
//! #   expected: F. seq 1 ack 1 len 0
//! not ok 2 ipv4::close::x
//! ok 3 ipv6::close::x # SKIP the SUT lacks the call dup
//! # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0
//! ```
//!
//! One flat list, one result line per trial in name order. A failure's text comes as
//! diagnostic lines right before its result line, as the spec recommends. A known deviation
//! is `ok … # XFAIL reason` (expected to fail, and it did); a skipped trial `ok … # SKIP`
//! with the capability it lacks; an inconclusive one `not ok … # ERROR` with why (the
//! harness, not the SUT, decided it). A `#` in a name, which a description may not hold,
//! is written `%23`.

use std::fmt::Write as _;

use crate::html::Verdict;
use crate::report::Record;

/// The KTAP document of a run's records.
pub fn render(records: &[Record]) -> String {
    let mut recs: Vec<&Record> = records.iter().collect();
    recs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = format!("KTAP version 1\n1..{}\n", recs.len());
    let mut totals = [0usize; 5];
    for (i, r) in recs.iter().enumerate() {
        let n = i + 1;
        let name = description(&r.name);
        let v = Verdict::of(r);
        totals[v as usize] += 1;
        match v {
            Verdict::Passed => {
                let _ = writeln!(out, "ok {n} {name}");
            }
            Verdict::Deviation => {
                let why = one_line(r.deviation.as_deref().unwrap_or(""));
                let _ = writeln!(out, "ok {n} {name} # XFAIL known deviation: {why}");
            }
            Verdict::Skipped => {
                let why = one_line(r.skipped.as_deref().unwrap_or(""));
                let _ = writeln!(out, "ok {n} {name} # SKIP the SUT lacks {why}");
            }
            Verdict::Failed => {
                diagnostics(&mut out, r.failure.as_deref().unwrap_or("failed"));
                let _ = writeln!(out, "not ok {n} {name}");
            }
            Verdict::Inconclusive => {
                if let Some(f) = &r.failure {
                    diagnostics(&mut out, f);
                }
                let why = one_line(r.inconclusive.as_deref().unwrap_or(""));
                let _ = writeln!(out, "not ok {n} {name} # ERROR {why}");
            }
        }
    }
    let count = |v: Verdict| totals[v as usize];
    let _ = writeln!(
        out,
        "# Totals: pass:{} fail:{} xfail:{} xpass:0 skip:{} error:{}",
        count(Verdict::Passed),
        count(Verdict::Failed),
        count(Verdict::Deviation),
        count(Verdict::Skipped),
        count(Verdict::Inconclusive)
    );
    out
}

/// A test description: one line, no `#`.
fn description(name: &str) -> String {
    one_line(name).replace('#', "%23")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn diagnostics(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "# {}", line.trim_end());
    }
}

/// A result line read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResult {
    pub ok: bool,
    pub number: usize,
    pub description: String,
    /// SKIP, XFAIL, TODO, TIMEOUT or ERROR, when given.
    pub directive: Option<String>,
    /// The text after the `#` (and the directive).
    pub diagnostic: String,
    /// The diagnostic lines right before the result line.
    pub log: Vec<String>,
    pub subtests: Vec<TestResult>,
}

const DIRECTIVES: [&str; 5] = ["SKIP", "TODO", "XFAIL", "TIMEOUT", "ERROR"];

/// Parses a KTAP document by the spec: a version line, a plan, result lines numbered from 1
/// at each level, subtests indented two spaces each and ending before their parent's result
/// line. Unknown lines are allowed. Err: the first line (1-based) that breaks a rule.
pub fn parse(text: &str) -> Result<Vec<TestResult>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut at = 0;
    let results = parse_level(&lines, &mut at, 0)?;
    if let Some((i, l)) = lines
        .iter()
        .enumerate()
        .skip(at)
        .find(|(_, l)| !l.trim().is_empty())
    {
        return Err(format!("line {}: `{l}` after the last result", i + 1));
    }
    Ok(results)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_version(s: &str) -> bool {
    matches!(s, "KTAP version 1" | "TAP version 13" | "TAP version 14")
}

fn parse_level(lines: &[&str], at: &mut usize, indent: usize) -> Result<Vec<TestResult>, String> {
    let pad = " ".repeat(indent);
    let first = lines.get(*at).ok_or("no version line")?;
    if first.strip_prefix(&pad).map(is_version) != Some(true) {
        return Err(format!(
            "line {}: expected `KTAP version 1`, found `{first}`",
            *at + 1
        ));
    }
    *at += 1;
    let mut plan = None;
    if let Some(p) = lines
        .get(*at)
        .and_then(|l| l.strip_prefix(&pad))
        .and_then(|l| l.strip_prefix("1.."))
    {
        let n: usize = p
            .split(" #")
            .next()
            .unwrap_or("")
            .trim()
            .parse()
            .map_err(|_| format!("line {}: a plan is `1..N`", *at + 1))?;
        plan = Some(n);
        *at += 1;
    }
    let mut results = Vec::new();
    let mut log = Vec::new();
    let mut pending_subtests = Vec::new();
    while let Some(line) = lines.get(*at) {
        let here = indent_of(line);
        let body = line.trim_start_matches(' ');
        if here > indent && is_version(body) {
            if here != indent + 2 {
                return Err(format!(
                    "line {}: a subtest is indented two spaces more than its parent",
                    *at + 1
                ));
            }
            pending_subtests = parse_level(lines, at, here)?;
            continue;
        }
        if here < indent
            && (body.starts_with('#') || body.starts_with("ok ") || body.starts_with("not ok "))
        {
            break; // the parent's diagnostics and result line
        }
        *at += 1;
        if here != indent {
            continue; // an unknown line (or one of another level's diagnostics)
        }
        if let Some(d) = body.strip_prefix('#') {
            log.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            continue;
        }
        let (ok, rest) = match body {
            b if b.starts_with("ok ") => (true, &b[3..]),
            b if b.starts_with("not ok ") => (false, &b[7..]),
            _ => continue, // unknown lines are allowed
        };
        let result = result_line(ok, rest, *at, results.len() + 1)?;
        results.push(TestResult {
            log: std::mem::take(&mut log),
            subtests: std::mem::take(&mut pending_subtests),
            ..result
        });
    }
    if !pending_subtests.is_empty() {
        return Err("subtests with no result line of their parent".into());
    }
    if let Some(n) = plan.filter(|n| *n != results.len()) {
        return Err(format!(
            "the plan says 1..{n}, but {} results follow",
            results.len()
        ));
    }
    Ok(results)
}

fn result_line(ok: bool, rest: &str, line_no: usize, want: usize) -> Result<TestResult, String> {
    let (head, tail) = match rest.split_once('#') {
        Some((h, t)) => (h, Some(t.trim())),
        None => (rest, None),
    };
    let head = head.trim_end();
    let (number, description) = head.split_once(' ').unwrap_or((head, ""));
    let number: usize = number
        .parse()
        .map_err(|_| format!("line {line_no}: `{number}` is not a test number"))?;
    if number != want {
        return Err(format!(
            "line {line_no}: test {number} where {want} comes next"
        ));
    }
    let (directive, diagnostic) = match tail {
        None => (None, String::new()),
        Some(t) => {
            let word = t.split_whitespace().next().unwrap_or("");
            if DIRECTIVES.contains(&word) {
                (Some(word.to_string()), t[word.len()..].trim().to_string())
            } else {
                (None, t.to_string())
            }
        }
    };
    Ok(TestResult {
        ok,
        number,
        description: description.to_string(),
        directive,
        diagnostic,
        log: Vec::new(),
        subtests: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Outcome;

    fn record(name: &str) -> Record {
        let mut r = Record::not_run(name, "f.yaml", "");
        r.failure = None;
        r.outcome = Outcome::Passed;
        r.tries = 1;
        r
    }

    fn run() -> Vec<Record> {
        let mut failed = record("ipv4::close::b#1");
        failed.outcome = Outcome::Failed;
        failed.failure = Some(
            "step 3 (b.yaml:10:5): expect F.\n  expected: F. seq 1\n  actual:   R. seq 1".into(),
        );
        let mut skipped = record("ipv6::close::c");
        skipped.skipped = Some("the call dup".into());
        skipped.outcome = Outcome::Skipped;
        let mut deviation = record("ipv4::abort::d");
        deviation.deviation = Some("sends FIN\nnot RST".into());
        deviation.outcome = Outcome::KnownDeviation;
        let mut inconclusive = record("ipv4::loss::e");
        inconclusive.outcome = Outcome::Inconclusive;
        inconclusive.inconclusive = Some("inconclusive (it would have passed): step 1 late".into());
        vec![
            record("ipv4::close::a"),
            failed,
            skipped,
            deviation,
            inconclusive,
        ]
    }

    /// The output parses back by the spec, with every verdict where it belongs.
    #[test]
    fn a_run_reads_back_as_ktap() {
        let text = render(&run());
        let results = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let got: Vec<(bool, &str, Option<&str>)> = results
            .iter()
            .map(|r| (r.ok, r.description.as_str(), r.directive.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (true, "ipv4::abort::d", Some("XFAIL")),
                (true, "ipv4::close::a", None),
                (false, "ipv4::close::b%231", None),
                (false, "ipv4::loss::e", Some("ERROR")),
                (true, "ipv6::close::c", Some("SKIP")),
            ],
            "{text}"
        );
        assert_eq!(results[0].diagnostic, "known deviation: sends FIN not RST");
        assert_eq!(
            results[2].log,
            [
                "step 3 (b.yaml:10:5): expect F.",
                "  expected: F. seq 1",
                "  actual:   R. seq 1"
            ]
        );
        assert_eq!(results[4].diagnostic, "the SUT lacks the call dup");
        assert!(
            text.ends_with("# Totals: pass:1 fail:1 xfail:1 xpass:0 skip:1 error:1\n"),
            "{text}"
        );
        assert_eq!(parse(&render(&[])).unwrap(), []);
    }

    #[test]
    fn the_parser_follows_the_spec() {
        let nested = "KTAP version 1\n1..1\n  KTAP version 1\n  1..2\n  # hello\n  ok 1 test_1\n  not ok 2 test_2 # TIMEOUT 30 seconds\n# example failed\nnot ok 1 example\n";
        let r = parse(nested).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].log, ["example failed"]);
        assert_eq!(r[0].subtests.len(), 2);
        assert_eq!(r[0].subtests[0].log, ["hello"]);
        assert_eq!(r[0].subtests[1].directive.as_deref(), Some("TIMEOUT"));
        assert_eq!(r[0].subtests[1].diagnostic, "30 seconds");
        // Unknown lines are allowed; an "ok 5 check # rcode=0" keeps its diagnostic.
        let r = parse("TAP version 13\n1..1\nrandom kernel noise\nok 1 check # rcode=0\n").unwrap();
        assert_eq!(
            (r[0].directive.clone(), r[0].diagnostic.as_str()),
            (None, "rcode=0")
        );
        for (bad, why) in [
            ("1..1\nok 1 a\n", "expected `KTAP version 1`"),
            ("KTAP version 1\n1..2\nok 1 a\n", "the plan says 1..2"),
            (
                "KTAP version 1\n1..2\nok 1 a\nok 3 b\n",
                "test 3 where 2 comes next",
            ),
            ("KTAP version 1\n1..x\n", "a plan is"),
            (
                "KTAP version 1\n1..1\n   KTAP version 1\nok 1 a\n",
                "two spaces",
            ),
            ("KTAP version 1\n1..1\nok one a\n", "not a test number"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
