use super::*;

fn record(name: &str, outcome: Outcome) -> Record {
    let mut r = Record::blank(name, "f.yaml", outcome);
    r.seconds = 0.5;
    r.tries = 1;
    match outcome {
        Outcome::Failed => r.failure = Some("step 3: expect F.\n  expected F.".into()),
        Outcome::KnownDeviation => {
            r.failure = Some("step 2: expect R.".into());
            r.deviation = Some("smoltcp sends FIN, not RST".into());
        }
        Outcome::StaleExpectation => {
            r.failure = Some("stale expectation: … passes now; remove the entry".into());
            r.deviation = Some("fixed upstream".into());
        }
        Outcome::Skipped => r.skipped = Some("the call dup".into()),
        Outcome::Inconclusive => {
            r.inconclusive = Some("the peer's segment was 177.000ms late".into());
            r.failure = Some("INCONCLUSIVE after 3 run(s)".into());
            r.tries = 3;
            r.reruns = vec!["x".into(), "y".into()];
        }
        Outcome::Passed => r.pcap = Some("target/halfclose/ipv4/close/a.pcapng".into()),
    }
    r
}

/// One record of each outcome.
fn sample() -> Report {
    let recs = [
        ("ipv4::close::a", Outcome::Passed),
        ("ipv4::close::b", Outcome::Failed),
        ("ipv4::close::c", Outcome::KnownDeviation),
        ("ipv4::close::d", Outcome::StaleExpectation),
        ("ipv4::close::e", Outcome::Skipped),
        ("ipv4::close::f", Outcome::Inconclusive),
    ]
    .map(|(n, o)| record(n, o));
    let (meta, t) = RunMeta::start(&crate::runner::Stack::kernel(), Some("1/2".into()));
    Report::new(meta.finish(t), recs.to_vec())
}

#[test]
fn every_outcome_is_counted_once() {
    let r = sample();
    assert_eq!(
        r.summary,
        Summary {
            trials: 6,
            passed: 1,
            known_deviations: 1,
            stale_expectations: 1,
            skipped: 1,
            skipped_linux_settings: 0,
            inconclusive: 1,
            failed: 1,
            reruns: 2,
            trials_with_inconclusive_runs: 1,
        }
    );
    assert_eq!(r.summary.failures(), 2);
}

/// What a CI system reads: counts of `<failure>`, `<error>`, `<skipped>` elements, parsed back
/// with quick-junit's reader (as GitLab and Jenkins count them).
#[test]
fn junit_counts_known_deviations_as_passed_and_stale_ones_as_failures() {
    let x = junit(&sample());
    assert!(x.starts_with("<?xml"), "{x}");
    assert!(x.contains("<testsuites "), "{x}");
    let parsed = quick_junit::Report::deserialize_from_str(&x).expect("valid JUnit");
    assert_eq!((parsed.tests, parsed.failures, parsed.errors), (6, 2, 1));
    let suite = &parsed.test_suites[0];
    assert!(suite.timestamp.is_some(), "{x}");
    assert!(suite.extra.contains_key("hostname"), "{x}");
    assert_eq!(suite.skipped, 1);
    let by_name = |n: &str| {
        suite
            .test_cases
            .iter()
            .find(|c| c.name.as_str() == n)
            .unwrap_or_else(|| panic!("no case {n} in {x}"))
    };
    let dev = by_name("c");
    assert!(
        matches!(dev.status, quick_junit::TestCaseStatus::Success { .. }),
        "{x}"
    );
    assert!(dev.properties.iter().any(
        |p| p.name.as_str() == "deviation" && p.value.as_str() == "smoltcp sends FIN, not RST"
    ));
    assert!(dev
        .system_out
        .as_ref()
        .is_some_and(|o| o.as_str().contains("smoltcp sends FIN")));
    assert!(matches!(
        by_name("d").status,
        quick_junit::TestCaseStatus::NonSuccess {
            kind: quick_junit::NonSuccessKind::Failure,
            ..
        }
    ));
    assert!(matches!(
        by_name("f").status,
        quick_junit::TestCaseStatus::NonSuccess {
            kind: quick_junit::NonSuccessKind::Error,
            ..
        }
    ));
    assert_eq!(
        by_name("a").classname.as_ref().unwrap().as_str(),
        "ipv4::close"
    );
}

fn schema() -> jsonschema::Validator {
    let text = include_str!("../../docs/report.schema.json");
    jsonschema::validator_for(&serde_json::from_str(text).unwrap()).expect("the schema compiles")
}

pub(crate) fn schema_errors(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    schema().iter_errors(&v).map(|e| e.to_string()).collect()
}

#[test]
fn the_json_fits_the_shipped_schema_and_reads_back() {
    let r = sample();
    let json = r.to_json();
    assert_eq!(schema_errors(&json), Vec::<String>::new());
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    // The schema can say no: an unknown outcome, a missing count, a deviation without reason.
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["trials"][0]["outcome"] = "pass".into();
    assert!(!schema().is_valid(&v));
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["summary"].as_object_mut().unwrap().remove("failed");
    assert!(!schema().is_valid(&v));
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["trials"][2]["deviation"] = serde_json::Value::Null;
    assert!(!schema().is_valid(&v));
}

#[test]
fn merged_shards_keep_each_run_and_refuse_overlap() {
    let mut a = sample();
    a.trials.truncate(3);
    a.runs[0].trials = 3;
    let mut b = sample();
    b.trials.drain(..3);
    b.runs[0].trials = 3;
    let m = Report::merge(vec![a.clone(), b]).unwrap();
    assert_eq!(m.summary, sample().summary);
    assert_eq!(m.runs.len(), 2);
    assert_eq!(schema_errors(&m.to_json()), Vec::<String>::new());
    let x = junit(&m);
    let parsed = quick_junit::Report::deserialize_from_str(&x).unwrap();
    assert_eq!(parsed.test_suites.len(), 2);
    assert_eq!(parsed.test_suites[0].tests + parsed.test_suites[1].tests, 6);
    let err = Report::merge(vec![a.clone(), a]).unwrap_err();
    assert!(err.contains("ipv4::close::a"), "{err}");
}

/// Two stacks' columns merged, then merged again with a third report: the same trial name
/// on two stacks is no overlap, and each trial keeps its run's stack.
#[test]
fn a_merge_of_several_stacks_merges_again() {
    let linux = sample();
    let mut smoltcp = sample();
    smoltcp.runs[0].stack = "smoltcp".into();
    let two = Report::merge(vec![linux.clone(), smoltcp]).unwrap();
    let stacks: Vec<&str> = two.trials_by_stack("?").map(|(s, _)| s).collect();
    assert_eq!(
        stacks.iter().filter(|s| **s == "smoltcp").count(),
        linux.trials.len()
    );
    assert!(!stacks.contains(&"?"));
    let mut gvisor = sample();
    gvisor.runs[0].stack = "gvisor".into();
    let three = Report::merge(vec![two, gvisor]).unwrap();
    assert_eq!(three.runs.len(), 3);
    assert_eq!(three.trials.len(), 3 * linux.trials.len());
    // The same stack twice is still an overlap.
    assert!(Report::merge(vec![three, linux]).is_err());
}
