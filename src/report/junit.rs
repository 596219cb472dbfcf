//! The JUnit XML report, written by quick-junit in the shape CI systems read (Jenkins,
//! GitLab, GitHub's test reporters): a `<testsuites>` root with counts and time, one
//! `<testsuite>` per run with timestamp, hostname and the run's facts as properties, one
//! `<testcase>` per trial.
//!
//! Outcomes map onto JUnit's four states so that counting elements, as those tools do, gives
//! the run's verdict: a known deviation is a passed test case (the reason in a `deviation`
//! property and in system-out), a stale expectation a `<failure>`, an inconclusive trial an
//! `<error>` (the run, not the SUT, went wrong), a skipped one `<skipped>` with the capability.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use super::{Outcome, Record, Report, RunMeta};

/// The report as JUnit XML.
pub fn junit(report: &Report) -> String {
    let mut out = quick_junit::Report::new("halfclose");
    if let Some(first) = report.runs.first() {
        if let Some(t) = timestamp(&first.started) {
            out.set_timestamp(t);
        }
    }
    out.set_time(secs(report.runs.iter().map(|r| r.seconds).sum()));
    // One suite per run (a merged report has several): each run's trials are consecutive,
    // `RunMeta::trials` of them. A report without runs still lists its trials.
    let mut rest = &report.trials[..];
    for (i, run) in report.runs.iter().enumerate() {
        let n = if i + 1 == report.runs.len() {
            rest.len()
        } else {
            run.trials.min(rest.len())
        };
        let (mine, later) = rest.split_at(n);
        rest = later;
        out.add_test_suite(suite(Some(run), mine.iter().map(case).collect()));
    }
    if report.runs.is_empty() {
        out.add_test_suite(suite(None, rest.iter().map(case).collect()));
    }
    out.to_string().expect("quick-junit writes any report")
}

fn suite(run: Option<&RunMeta>, cases: Vec<TestCase>) -> TestSuite {
    let name = run.map_or_else(
        || "halfclose".to_string(),
        |r| match &r.shard {
            Some(s) => format!("halfclose.{} (shard {s})", r.stack),
            None => format!("halfclose.{}", r.stack),
        },
    );
    let mut s = TestSuite::new(name);
    if let Some(r) = run {
        if let Some(t) = timestamp(&r.started) {
            s.set_timestamp(t);
        }
        s.set_time(secs(r.seconds));
        s.extra
            .insert("hostname".into(), r.hostname.as_str().into());
        let mut props = vec![
            Property::new("halfclose", &r.halfclose),
            Property::new("stack", &r.stack),
            Property::new("kernel", &r.kernel),
            Property::new("privilege", &r.privilege),
        ];
        if let Some(a) = &r.agent {
            props.push(Property::new("agent", a.command.join(" ")));
            props.push(Property::new("agent.stack", &a.stack));
        }
        props.extend(r.sysctls.iter().map(|(k, v)| Property::new(k, v)));
        s.add_properties(props);
    }
    s.add_test_cases(cases);
    s
}

fn case(r: &Record) -> TestCase {
    let status = match r.outcome {
        Outcome::Passed | Outcome::KnownDeviation => TestCaseStatus::success(),
        Outcome::Skipped => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(format!(
                "the SUT lacks {}",
                r.skipped.as_deref().unwrap_or("a capability")
            ));
            s
        }
        Outcome::Failed | Outcome::StaleExpectation | Outcome::Inconclusive => {
            let kind = match r.outcome {
                Outcome::Inconclusive => NonSuccessKind::Error,
                _ => NonSuccessKind::Failure,
            };
            let text = r.failure.as_deref().unwrap_or("");
            let mut s = TestCaseStatus::non_success(kind);
            s.set_type(r.outcome.word());
            s.set_message(text.lines().next().unwrap_or(r.outcome.word()));
            s.set_description(text);
            s
        }
    };
    // `ipv4::close::active-close` → class `ipv4::close`, name `active-close`.
    let (class, name) = r.name.rsplit_once("::").unwrap_or(("halfclose", &r.name));
    let mut c = TestCase::new(name, status);
    c.set_classname(class);
    c.set_time(secs(r.seconds));
    let mut props = vec![Property::new("outcome", r.outcome.word())];
    if let Some(reason) = &r.deviation {
        props.push(Property::new("deviation", reason));
    }
    if let Some(what) = &r.skipped {
        props.push(Property::new("lacks", what));
    }
    if r.linux_setting {
        props.push(Property::new("linux_setting", "true"));
    }
    if let Some(alt) = &r.alternative {
        props.push(Property::new("alternative", alt));
    }
    for (req, found) in &r.requirements {
        props.push(Property::new(format!("req: {req}"), found));
    }
    if let Some(p) = &r.pcap {
        props.push(Property::new("pcap", p));
    }
    props.push(Property::new("file", &r.file));
    c.add_properties(props);
    if r.outcome == Outcome::KnownDeviation {
        c.set_system_out(format!(
            "known deviation: {}\nthe failure it expects:\n{}",
            r.deviation.as_deref().unwrap_or(""),
            r.failure.as_deref().unwrap_or("")
        ));
    } else if let Some(p) = &r.pcap {
        c.set_system_out(format!("capture: {p}"));
    }
    c
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

fn timestamp(rfc3339: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(rfc3339).ok()
}
