//! The RFC scorecard: what each trial found for each requirement its assertions name, and,
//! over a stack's trials, whether the stack conforms, departs as Linux does, departs
//! otherwise, or could not be tested. `halfclose matrix` opens with it (docs/conformance.md).
//!
//! A trial's finding for a requirement comes from the steps it ran: every assertion that
//! passed meets its requirements; the assertion that failed departs from its own; where a
//! `linux` alternative passed, the stack departs, as Linux does, from the requirements of the
//! assertion its RFC alternative failed at; a skipped
//! trial leaves every requirement it names not testable (with the capability missing).

use std::collections::BTreeMap;

use crate::report::{Outcome, Record};
use crate::requirements::{self, Level, REQUIREMENTS};
use crate::runner::Verdict;
use crate::script::Scenario;

pub const MET: &str = "met";
pub const DEPARTS: &str = "departs";
pub const DEPARTS_AS_LINUX: &str = "departs-as-linux";
pub const NOT_TESTABLE: &str = "not-testable";

/// The requirements of the step a failed run failed at (none if it failed elsewhere).
pub fn failed_at(sc: &Scenario, v: &Verdict) -> Vec<String> {
    v.failed_step
        .and_then(|i| sc.steps.get(i))
        .map(|s| s.reqs.clone())
        .unwrap_or_default()
}

/// The requirements of the asserting steps in `steps`.
fn reqs_of<'a>(steps: impl IntoIterator<Item = &'a crate::script::Step>) -> Vec<String> {
    steps
        .into_iter()
        .filter(|s| s.asserts())
        .flat_map(|s| s.reqs.iter().cloned())
        .collect()
}

/// A skipped trial: every requirement any of its alternatives names is not testable here.
pub fn untestable(sc: &Scenario) -> BTreeMap<String, String> {
    let mut all = reqs_of(&sc.steps);
    for a in &sc.alternatives {
        all.extend(reqs_of(&a.steps));
    }
    all.into_iter()
        .map(|r| (r, NOT_TESTABLE.to_string()))
        .collect()
}

/// What a run trial found for each requirement. `judged` holds the steps the deciding run
/// was judged by; `departed` is, when a `linux` alternative passed, the requirements the
/// RFC alternative's run failed on, and when none passed, those the others failed on.
pub fn of(
    judged: &Scenario,
    departed: &[String],
    v: &Verdict,
    outcome: Outcome,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut mark = |reqs: Vec<String>, what: &str| {
        for r in reqs {
            out.insert(r, what.to_string());
        }
    };
    match outcome {
        Outcome::Inconclusive | Outcome::Skipped => {}
        Outcome::Passed | Outcome::StaleExpectation => {
            mark(reqs_of(&judged.steps), MET);
            // `setup` and `linux` are not requirements one departs from as Linux does.
            let departed = departed.iter().filter(|r| counted(r)).cloned();
            mark(departed.collect(), DEPARTS_AS_LINUX);
        }
        Outcome::Failed | Outcome::KnownDeviation => {
            let harness = v.failure.as_ref().is_some_and(|f| f.harness);
            match v.failed_step {
                Some(i) => {
                    mark(reqs_of(&judged.steps[..i]), MET);
                    mark(judged.steps[i].reqs.clone(), DEPARTS);
                }
                // The closing quiet period: something was sent after the last step, which
                // the last assertion's requirements are about.
                None if !harness => {
                    let steps = &judged.steps;
                    mark(reqs_of(steps), MET);
                    let last = steps.iter().rev().find(|s| s.asserts());
                    mark(last.map(|s| s.reqs.clone()).unwrap_or_default(), DEPARTS);
                }
                None => {}
            }
            // What the later alternatives failed at (the judged run is the first's).
            mark(departed.to_vec(), DEPARTS);
        }
    }
    out
}

/// One stack's standing on one requirement, over all its trials.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    /// No trial of this stack names it.
    Untested,
    /// Every trial naming it was skipped: the capabilities missing.
    NotTestable(Vec<String>),
    Conforms,
    /// A passing `linux` alternative: the trials.
    DepartsAsLinux(Vec<String>),
    /// A failed assertion: the trials (with their captures).
    DepartsOtherwise(Vec<(String, Option<String>)>),
}

/// The standing of every requirement on one stack, from its trial records.
pub fn standings(records: &[Record]) -> BTreeMap<String, Standing> {
    let mut out: BTreeMap<String, Standing> = BTreeMap::new();
    for r in records {
        for (req, found) in &r.requirements {
            let now = match found.as_str() {
                MET => Standing::Conforms,
                DEPARTS_AS_LINUX => Standing::DepartsAsLinux(vec![r.name.clone()]),
                DEPARTS => Standing::DepartsOtherwise(vec![(r.name.clone(), r.pcap.clone())]),
                _ => Standing::NotTestable(r.skipped.iter().cloned().collect()),
            };
            let slot = out.entry(req.clone()).or_insert(Standing::Untested);
            *slot = merge(std::mem::replace(slot, Standing::Untested), now);
        }
    }
    out
}

/// The worse of two standings (departing otherwise is worst); like ones pool their evidence.
fn merge(a: Standing, b: Standing) -> Standing {
    use Standing::*;
    match (a, b) {
        (NotTestable(mut x), NotTestable(y)) => {
            for w in y {
                if !x.contains(&w) {
                    x.push(w);
                }
            }
            NotTestable(x)
        }
        (DepartsAsLinux(mut x), DepartsAsLinux(y)) => {
            x.extend(y);
            DepartsAsLinux(x)
        }
        (DepartsOtherwise(mut x), DepartsOtherwise(y)) => {
            x.extend(y);
            DepartsOtherwise(x)
        }
        (a, b) => a.max(b),
    }
}

/// A requirement's standing: its own, or, for one met through others, the worst of theirs.
pub fn standing_of(
    r: &requirements::Requirement,
    standings: &BTreeMap<String, Standing>,
) -> Standing {
    r.checked_as()
        .into_iter()
        .filter_map(|id| standings.get(id).cloned())
        .fold(Standing::Untested, merge)
}

/// The counts at the top of the scorecard, for one stack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub musts_met: usize,
    pub musts_tested: usize,
    pub shoulds_met: usize,
    pub shoulds_tested: usize,
    pub mays_taken: usize,
    pub mays_tested: usize,
    pub processing_met: usize,
    pub processing_tested: usize,
    pub as_linux: usize,
    pub not_testable: usize,
}

pub fn tally(standings: &BTreeMap<String, Standing>) -> Tally {
    let mut t = Tally::default();
    for r in REQUIREMENTS.iter().filter(|r| r.same_as.is_none()) {
        let s = &standing_of(r, standings);
        if *s == Standing::Untested {
            continue;
        }
        let tested = matches!(
            s,
            Standing::Conforms | Standing::DepartsAsLinux(_) | Standing::DepartsOtherwise(_)
        );
        let met = *s == Standing::Conforms;
        let (m, n) = match r.level {
            Level::Must => (&mut t.musts_met, &mut t.musts_tested),
            Level::Should => (&mut t.shoulds_met, &mut t.shoulds_tested),
            Level::May => (&mut t.mays_taken, &mut t.mays_tested),
            Level::Processing => (&mut t.processing_met, &mut t.processing_tested),
            Level::Linux | Level::Setup => continue,
        };
        *m += usize::from(met);
        *n += usize::from(tested);
        t.as_linux += usize::from(matches!(s, Standing::DepartsAsLinux(_)));
        t.not_testable += usize::from(matches!(s, Standing::NotTestable(_)));
    }
    t
}

/// The scorecard as Markdown: the tally per stack, then every requirement × stack.
/// `columns` are (stack, its records).
pub fn markdown(columns: &[(String, Vec<Record>)]) -> String {
    let all: Vec<(String, BTreeMap<String, Standing>)> = columns
        .iter()
        .map(|(s, r)| (s.clone(), standings(r)))
        .collect();
    let mut out = String::from(
        "## Scorecard\n\nPer stack, over the requirements its trials' assertions name \
         (`req:` in the scenarios; ids as `halfclose coverage` lists them). \"Tested\" counts \
         requirements a trial checked; a MAY is \"taken\" when the stack does what it allows. \
         Departing as Linux does means the trial passed through its `linux` alternative.\n\n\
         | stack | MUSTs met / tested | SHOULDs met / tested | MAYs taken / tested | processing rules met / tested | departs as Linux does | not testable |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (stack, st) in &all {
        let t = tally(st);
        out.push_str(&format!(
            "| {stack} | {} / {} | {} / {} | {} / {} | {} / {} | {} | {} |\n",
            t.musts_met,
            t.musts_tested,
            t.shoulds_met,
            t.shoulds_tested,
            t.mays_taken,
            t.mays_tested,
            t.processing_met,
            t.processing_tested,
            t.as_linux,
            t.not_testable
        ));
    }
    out.push_str("\n### Per requirement\n\n| requirement | level |");
    for (stack, _) in &all {
        out.push_str(&format!(" {stack} |"));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(all.len()));
    out.push('\n');
    // A row restating another (RFC 9293 §3.10.7.4 restating RFC 5961) is shown once, as
    // the one it restates.
    let rows = REQUIREMENTS
        .iter()
        .filter(|r| !matches!(r.level, Level::Setup) && r.same_as.is_none());
    for r in rows {
        out.push_str(&format!("| {} | {} |", r.id, r.level.word()));
        for (_, st) in &all {
            let standing = &standing_of(r, st);
            let cell = match r.level {
                Level::Linux => show_linux_choice(standing),
                _ => show(standing),
            };
            out.push_str(&format!(" {} |", cell.replace('|', "\\|")));
        }
        out.push('\n');
    }
    out
}

fn show(s: &Standing) -> String {
    const SHOWN: usize = 3;
    let more = |n: usize| match n > SHOWN {
        true => format!(" and {} more", n - SHOWN),
        false => String::new(),
    };
    match s {
        Standing::Untested => "—".into(),
        Standing::NotTestable(why) => format!("not testable (needs {})", why.join("; ")),
        Standing::Conforms => "conforms".into(),
        Standing::DepartsAsLinux(t) => format!(
            "departs as Linux does: {}{}",
            t.iter()
                .take(SHOWN)
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            more(t.len())
        ),
        Standing::DepartsOtherwise(t) => format!(
            "**departs**: {}{}",
            t.iter()
                .take(SHOWN)
                .map(|(n, pcap)| match pcap {
                    Some(p) => format!("`{n}` (capture `{p}`)"),
                    None => format!("`{n}`"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            more(t.len())
        ),
    }
}

/// The `linux` row: assertions of Linux's own choices, where no RFC decides. A stack that
/// differs there departs from nothing; the row shows where it does.
fn show_linux_choice(s: &Standing) -> String {
    match s {
        Standing::DepartsOtherwise(t) => format!("differs from Linux in {} trial(s)", t.len()),
        Standing::Conforms | Standing::DepartsAsLinux(_) => "as Linux".into(),
        other => show(other),
    }
}

/// Whether a requirement id is one the scorecard counts (not setup, not Linux practice).
pub fn counted(id: &str) -> bool {
    requirements::find(id).is_some_and(|r| !matches!(r.level, Level::Setup | Level::Linux))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, outcome: Outcome, reqs: &[(&str, &str)]) -> Record {
        let mut r = Record::blank(name, "f.yaml", outcome);
        r.requirements = reqs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        r.pcap = Some(format!("{name}.pcapng"));
        r
    }

    #[test]
    fn one_departing_trial_outweighs_conforming_ones_and_keeps_its_capture() {
        let recs = [
            rec("ipv4::a", Outcome::Passed, &[("RFC 9293 MUST-13", MET)]),
            rec("ipv4::b", Outcome::Failed, &[("RFC 9293 MUST-13", DEPARTS)]),
            rec("ipv4::c", Outcome::Passed, &[("RFC 9293 MUST-13", MET)]),
        ];
        let st = standings(&recs);
        assert_eq!(
            st["RFC 9293 MUST-13"],
            Standing::DepartsOtherwise(vec![("ipv4::b".into(), Some("ipv4::b.pcapng".into()))])
        );
        let t = tally(&st);
        assert_eq!((t.musts_met, t.musts_tested), (0, 1));
    }

    #[test]
    fn linux_departures_and_skips_are_their_own_standing() {
        let mut skipped = rec(
            "ipv4::s",
            Outcome::Skipped,
            &[("RFC 9293 SHLD-3", NOT_TESTABLE)],
        );
        skipped.skipped = Some("the call dup".into());
        let recs = [
            rec(
                "ipv4::l",
                Outcome::Passed,
                &[("RFC 5961 §3.2 c", DEPARTS_AS_LINUX)],
            ),
            rec(
                "ipv4::m",
                Outcome::Passed,
                &[("RFC 5961 §3.2 c", MET), ("RFC 9293 MAY-2", MET)],
            ),
            skipped,
        ];
        let st = standings(&recs);
        assert_eq!(
            st["RFC 5961 §3.2 c"],
            Standing::DepartsAsLinux(vec!["ipv4::l".into()])
        );
        assert_eq!(
            st["RFC 9293 SHLD-3"],
            Standing::NotTestable(vec!["the call dup".into()])
        );
        let t = tally(&st);
        // RFC 5961 §3.2 a, the SHOULD to adopt §3.2's checks, is checked through §3.2 c.
        assert_eq!((t.musts_met, t.musts_tested, t.as_linux), (0, 1, 2));
        assert_eq!((t.mays_taken, t.mays_tested), (1, 1));
        assert_eq!((t.shoulds_met, t.shoulds_tested, t.not_testable), (0, 1, 1));
        let md = markdown(&[("smoltcp".into(), recs.to_vec())]);
        assert!(md.contains("| smoltcp | 0 / 1 | 0 / 1 | 1 / 1 |"), "{md}");
        assert!(
            md.contains("| RFC 5961 §3.2 a | SHOULD | departs as Linux does: `ipv4::l` |"),
            "{md}"
        );
        assert!(
            md.contains("| RFC 5961 §3.2 c | MUST | departs as Linux does: `ipv4::l` |"),
            "{md}"
        );
        assert!(md.contains("not testable (needs the call dup)"), "{md}");
    }

    #[test]
    fn setup_and_linux_practice_are_not_counted() {
        assert!(!counted("setup"));
        assert!(!counted("linux"));
        assert!(counted("RFC 9293 MUST-13"));
    }
}
