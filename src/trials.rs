//! Turning scenarios into libtest-mimic trials, each leaving a [`Record`] of what it came to.
//!
//! `cargo test` (tests/conformance.rs, through `harness`) and `halfclose run` both go through
//! [`trials`], so they list and run the same trials with the same names, output and outcomes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libtest_mimic::{Completion, Failed, Trial};

use crate::expectations::{Deviation, Expectations};
use crate::report::{Outcome, Record};
use crate::runner::{self, TrialConfig, Verdict};
use crate::schedule::{self, Planned};
use crate::scorecard;
use crate::script::{Scenario, ScriptError};

/// Results shared between trials running on libtest-mimic's worker threads.
pub type Records = Arc<Mutex<Vec<Record>>>;

/// One trial per scenario and family, plus one failing trial per script that did not load
/// (so `cargo test` shows the error rather than silently running less).
pub fn trials(
    scenarios: &[Scenario],
    errors: &[ScriptError],
    cfg: &TrialConfig,
    records: &Records,
    expected: &Expectations,
) -> Vec<Planned> {
    let mut out = Vec::new();
    for sc in scenarios {
        let sc = Arc::new(sc.clone());
        for &family in &sc.families {
            let (sc, cfg, records) = (sc.clone(), cfg.clone(), records.clone());
            let name = sc.trial_name(family);
            let estimate = schedule::estimate(&sc, cfg.stack.profile());
            let deviation = expected
                .lookup(&name)
                .map(|d| (d.clone(), expected.file.clone()));
            let ignored = sc.ignore.is_some();
            let trial = Trial::ignorable_test(name.clone(), move || {
                let record = match cfg.stack.missing(&sc, family) {
                    Some(what) => Record {
                        linux_setting: cfg.stack.lacks_settings_of(&sc),
                        requirements: scorecard::untestable(&sc),
                        ..Record::skipped(&name, &sc.file.display().to_string(), &what)
                    },
                    None => {
                        let _progress = schedule::started(&name, estimate);
                        let d = run_alternatives(&sc, family, &cfg);
                        let mut r = record_of(&d.verdict, &sc, d.earlier, deviation.as_ref());
                        r.seconds = d.seconds;
                        r.requirements =
                            scorecard::of(&d.judged, &d.departed, &d.verdict, r.outcome);
                        r.alternative = d.shown.map(|i| sc.alternatives[i].name.clone());
                        if let Some(f) = &mut r.failure {
                            f.push_str(&d.also_tried);
                        }
                        r
                    }
                };
                let done = completion(&record);
                records.lock().expect("records lock").push(record);
                done
            });
            out.push(Planned {
                trial: trial.with_ignored_flag(ignored),
                estimate,
            });
        }
    }
    for e in errors {
        let text = e.to_string();
        let name = format!("script-error::{}", e.file.display());
        out.push(Planned {
            trial: Trial::test(name, move || Err(Failed::from(text))),
            estimate: Duration::ZERO,
        });
    }
    out
}

/// What libtest-mimic shows for a record: a known deviation passes, a skipped trial is
/// ignored with the capability, everything that is not a pass fails with its text.
fn completion(r: &Record) -> Result<Completion, Failed> {
    match r.outcome {
        Outcome::Passed | Outcome::KnownDeviation => Ok(Completion::Completed),
        Outcome::Skipped => Ok(Completion::ignored_with(format!(
            "skipped: the SUT lacks {}",
            r.skipped.as_deref().unwrap_or("")
        ))),
        Outcome::Inconclusive | Outcome::StaleExpectation | Outcome::Failed => {
            Err(Failed::from(r.failure.clone().unwrap_or_default()))
        }
    }
}

/// Runs a trial until a run is conclusive, `cfg.tries` times at most. Returns the last run
/// and why each earlier one was inconclusive.
fn run_until_conclusive(
    sc: &Scenario,
    family: crate::Family,
    cfg: &TrialConfig,
) -> (Verdict, Vec<String>) {
    let mut earlier = Vec::new();
    loop {
        // Dropped before the next turn is asked for: a rerun waits for every turn to end.
        let turn = match earlier.is_empty() {
            true => schedule::GATE.shared(),
            false => schedule::GATE.alone(),
        };
        let v = runner::run_trial(sc, family, cfg);
        drop(turn);
        match v.excuse_text() {
            Some(why) if (earlier.len() as u32 + 1) < cfg.tries => earlier.push(why),
            _ => return (v, earlier),
        }
    }
}

/// How a trial was decided: the run that decides it, and which alternative that was.
struct Decided {
    verdict: Verdict,
    /// Every run's time, each alternative's included.
    seconds: f64,
    earlier: Vec<String>,
    /// The steps the deciding run was judged by (the first alternative's when none passed).
    judged: Scenario,
    /// The alternative that passed.
    shown: Option<usize>,
    /// When no alternative passed: what each later one did, for the failure text.
    also_tried: String,
    /// When a `linux` alternative passed: the requirements the RFC's run failed on. When
    /// none passed: those the other alternatives' runs failed on.
    departed: Vec<String>,
}

/// Runs the trial, once per alternative until one passes when the scenario has several for
/// it (RFC first). A run that is inconclusive decides the trial as inconclusive: whether the
/// stack shows that alternative is unknown, so no later one is tried in its place. When
/// none passes, the first (the RFC's) is the failure, and the others' failures follow it.
fn run_alternatives(sc: &Scenario, family: crate::Family, cfg: &TrialConfig) -> Decided {
    if sc.alternatives.is_empty() {
        let (verdict, earlier) = run_until_conclusive(sc, family, cfg);
        return Decided {
            seconds: verdict.elapsed.as_secs_f64(),
            verdict,
            earlier,
            judged: sc.clone(),
            shown: None,
            also_tried: String::new(),
            departed: Vec::new(),
        };
    }
    let mut failed: Vec<Decided> = Vec::new();
    for i in 0..sc.alternatives.len() {
        let variant = sc.with_alternative(i);
        let (verdict, mut earlier) = run_until_conclusive(&variant, family, cfg);
        for f in &failed {
            earlier.extend(f.earlier.iter().cloned());
        }
        let departed = match (
            verdict.passed(),
            sc.alternatives[i].conforms(),
            failed.first(),
        ) {
            (true, false, Some(rfc)) => scorecard::failed_at(&rfc.judged, &rfc.verdict),
            _ => Vec::new(),
        };
        let seconds = verdict.elapsed.as_secs_f64()
            + failed
                .iter()
                .map(|f| f.verdict.elapsed.as_secs_f64())
                .sum::<f64>();
        let decided = Decided {
            seconds,
            shown: verdict.passed().then_some(i),
            verdict,
            earlier,
            judged: variant,
            also_tried: String::new(),
            departed,
        };
        if decided.verdict.passed() || decided.verdict.inconclusive() {
            return decided;
        }
        failed.push(decided);
    }
    let mut also = String::new();
    for f in &failed[1..] {
        let alt = &sc.alternatives[f.judged.running_alternative.as_ref().map_or(0, |a| a.0)];
        let heading = f
            .verdict
            .failure
            .as_ref()
            .map_or("", |x| x.heading.as_str());
        let capture = f.verdict.pcap.as_ref().map(|p| p.display().to_string());
        also.push_str(&format!(
            "\n  nor does it show alternative `{}` ({}): {heading}\n  {:<9} {}",
            alt.name,
            alt.says,
            "capture:",
            capture.unwrap_or_else(|| "(not written)".into())
        ));
    }
    // Every alternative's failing assertion departs, not only the RFC's.
    let others: Vec<String> = failed[1..]
        .iter()
        .flat_map(|f| scorecard::failed_at(&f.judged, &f.verdict))
        .collect();
    let seconds = failed.iter().map(|f| f.verdict.elapsed.as_secs_f64()).sum();
    let mut first = failed.swap_remove(0);
    first.seconds = seconds;
    first.also_tried = also;
    first.departed = others;
    first
}

/// The record of a trial's last run, with the stack's expectations applied.
fn record_of(
    v: &Verdict,
    sc: &Scenario,
    earlier: Vec<String>,
    deviation: Option<&(Deviation, PathBuf)>,
) -> Record {
    let failure = v.failure_text();
    let (outcome, text) = match (v.excuse_text(), failure, deviation) {
        (Some(why), failure, _) => (
            Outcome::Inconclusive,
            Some(format!(
                "INCONCLUSIVE after {} run(s), each decided by the harness's own lateness; the last: {why}{}",
                earlier.len() + 1,
                failure.map(|f| format!("\n{f}")).unwrap_or_default()
            )),
        ),
        (None, None, None) => (Outcome::Passed, None),
        (None, Some(f), None) => (Outcome::Failed, Some(f)),
        (None, Some(f), Some(_)) => (Outcome::KnownDeviation, Some(f)),
        (None, None, Some((d, file))) => (
            Outcome::StaleExpectation,
            Some(format!(
                "stale expectation: this trial is listed as a known deviation in {}:{} ({}), but it passes now; remove the entry",
                file.display(),
                d.line,
                d.reason
            )),
        ),
    };
    Record {
        seconds: v.elapsed.as_secs_f64(),
        failure: text,
        deviation: deviation.map(|(d, _)| d.reason.clone()),
        inconclusive: v.excuse_text(),
        states: v.trace.names().iter().map(|s| s.to_string()).collect(),
        states_source: v.trace.source.to_string(),
        pcap: v.pcap.as_ref().map(|p| p.display().to_string()),
        measurements: v.measurements.clone(),
        tries: earlier.len() as u32 + 1,
        reruns: earlier,
        allowances: v.allowances.clone(),
        allowance_ms: v.allowance_max.as_secs_f64() * 1e3,
        ..Record::blank(&v.trial, &sc.file.display().to_string(), outcome)
    }
}
