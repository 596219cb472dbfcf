//! Turning scenarios into libtest-mimic trials, and trial results into JSON and JUnit for CI.
//!
//! `cargo test` (tests/conformance.rs) and `halfclose run` both go through [`trials`], so they
//! list and run the same trials with the same names and output.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libtest_mimic::{Completion, Failed, Trial};

use crate::expectations::Expectations;
use crate::runner::{self, TrialConfig, Verdict};
use crate::schedule::{self, Planned};
use crate::script::{Scenario, ScriptError};

/// One finished trial, kept for the JSON and JUnit reports.
#[derive(Clone, Debug)]
pub struct Record {
    pub name: String,
    pub file: String,
    pub passed: bool,
    pub seconds: f64,
    pub failure: Option<String>,
    pub states: Vec<String>,
    /// Where the state trace came from: the tracepoint or samples (and why).
    pub states_source: String,
    pub pcap: Option<String>,
    /// The reason from the stack's expectations, when the trial is a known deviation.
    pub deviation: Option<String>,
    pub measurements: Vec<String>,
    /// The capability the SUT lacks, when the trial was skipped.
    pub skipped: Option<String>,
}

impl Record {
    /// A trial not run: the SUT lacks a capability the scenario needs.
    fn skipped(name: &str, sc: &Scenario, what: &str) -> Record {
        Record {
            name: name.to_string(),
            file: sc.file.display().to_string(),
            passed: true,
            seconds: 0.0,
            failure: None,
            states: Vec::new(),
            states_source: String::new(),
            pcap: None,
            deviation: None,
            measurements: Vec::new(),
            skipped: Some(what.to_string()),
        }
    }

    /// A trial that did not run to its end because the run was interrupted: a failure, so an
    /// interrupted run never reads as a green one.
    pub fn not_run(name: &str, file: &str, why: &str) -> Record {
        Record {
            name: name.to_string(),
            file: file.to_string(),
            passed: false,
            seconds: 0.0,
            failure: Some(format!("not run: {why}")),
            states: Vec::new(),
            states_source: String::new(),
            pcap: None,
            deviation: None,
            measurements: Vec::new(),
            skipped: None,
        }
    }

    fn of(v: &Verdict, sc: &Scenario) -> Record {
        Record {
            name: v.trial.clone(),
            file: sc.file.display().to_string(),
            passed: v.passed(),
            seconds: v.elapsed.as_secs_f64(),
            failure: v.failure_text(),
            states: v.trace.names().iter().map(|s| s.to_string()).collect(),
            states_source: v.trace.source.to_string(),
            pcap: v.pcap.as_ref().map(|p| p.display().to_string()),
            deviation: None,
            measurements: v.measurements.clone(),
            skipped: None,
        }
    }
}

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
            let ignored = sc.ignore.is_some();
            let (sc, cfg, records) = (sc.clone(), cfg.clone(), records.clone());
            let name = sc.trial_name(family);
            let estimate = schedule::estimate(&sc, cfg.stack.profile());
            let missing = cfg.stack.missing(&sc);
            let deviation = expected
                .lookup(&name)
                .map(|d| (d.clone(), expected.file.clone()));
            let trial = Trial::ignorable_test(name.clone(), move || {
                if let Some(what) = missing {
                    records
                        .lock()
                        .expect("records lock")
                        .push(Record::skipped(&name, &sc, &what));
                    return Ok(Completion::ignored_with(format!(
                        "skipped: the SUT lacks {what}"
                    )));
                }
                let _progress = schedule::started(&name, estimate);
                let v = runner::run_trial(&sc, family, &cfg);
                let mut record = Record::of(&v, &sc);
                let verdict = judge(v.failure_text(), deviation.as_ref());
                record.passed = verdict.is_ok();
                record.deviation = deviation.map(|(d, _)| d.reason);
                records.lock().expect("records lock").push(record);
                verdict
                    .map(|()| Completion::Completed)
                    .map_err(Failed::from)
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

/// The verdict with the stack's expectations applied: a known deviation must fail, and one
/// that passes is a stale entry.
fn judge(
    failure: Option<String>,
    deviation: Option<&(crate::expectations::Deviation, std::path::PathBuf)>,
) -> Result<(), String> {
    match (failure, deviation) {
        (None, None) => Ok(()),
        (Some(text), None) => Err(text),
        (Some(_), Some(_)) => Ok(()),
        (None, Some((d, file))) => Err(format!(
            "stale expectation: this trial is listed as a known deviation in {}:{} ({}), but it passes now; remove the entry",
            file.display(),
            d.line,
            d.reason
        )),
    }
}

/// `{"trials":[…],"passed":N,"failed":N}` with each trial's verdict, states and capture.
pub fn json(records: &[Record]) -> String {
    let items: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name, "file": r.file, "passed": r.passed, "seconds": r.seconds,
                "failure": r.failure, "states": r.states, "states_source": r.states_source, "pcap": r.pcap, "deviation": r.deviation, "measurements": r.measurements, "skipped": r.skipped,
            })
        })
        .collect();
    let passed = records.iter().filter(|r| r.passed).count();
    serde_json::json!({ "trials": items, "passed": passed, "failed": records.len() - passed })
        .to_string()
}

/// A JUnit XML report (one testsuite, one testcase per trial) for CI systems.
pub fn junit(records: &[Record]) -> String {
    let failed = records.iter().filter(|r| !r.passed).count();
    let total: f64 = records.iter().map(|r| r.seconds).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuite name=\"halfclose\" tests=\"{}\" failures=\"{failed}\" time=\"{total:.3}\">",
        records.len()
    );
    for r in records {
        let (class, name) = r.name.rsplit_once("::").unwrap_or(("halfclose", &r.name));
        let _ = write!(
            x,
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            esc(class),
            esc(name),
            r.seconds
        );
        match (&r.failure, &r.skipped) {
            (None, Some(what)) => {
                let _ = writeln!(
                    x,
                    ">\n    <skipped message=\"the SUT lacks {}\"/>\n  </testcase>",
                    esc(what)
                );
            }
            (None, None) => x.push_str("/>\n"),
            (Some(f), _) => {
                let first = f.lines().next().unwrap_or("");
                let _ = writeln!(
                    x,
                    ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>",
                    esc(first),
                    esc(f)
                );
            }
        }
    }
    x.push_str("</testsuite>\n");
    x
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, failure: Option<&str>, skipped: Option<&str>) -> Record {
        Record {
            name: name.into(),
            file: "f.yaml".into(),
            passed: failure.is_none(),
            seconds: 0.5,
            failure: failure.map(String::from),
            states: Vec::new(),
            states_source: String::new(),
            pcap: None,
            deviation: None,
            measurements: Vec::new(),
            skipped: skipped.map(String::from),
        }
    }

    #[test]
    fn junit_tells_passed_failed_and_skipped_apart() {
        let x = junit(&[
            record("ipv4::close::a", None, None),
            record("ipv4::close::b", Some("step 3: expect F."), None),
            record("ipv4::close::c", None, Some("the call dup")),
        ]);
        assert!(x.contains("name=\"a\" time=\"0.500\"/>"), "{x}");
        assert!(x.contains("<failure message=\"step 3: expect F.\">"), "{x}");
        assert!(
            x.contains("<skipped message=\"the SUT lacks the call dup\"/>"),
            "{x}"
        );
        assert!(x.contains("failures=\"1\""), "{x}");
    }
}
