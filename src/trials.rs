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
                    Some(what) => Record::skipped(&name, &sc.file.display().to_string(), &what),
                    None => {
                        let _progress = schedule::started(&name, estimate);
                        let (v, earlier) = run_until_conclusive(&sc, family, &cfg);
                        record_of(&v, &sc, earlier, deviation.as_ref())
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
