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
    /// Runs made: 1, or more when earlier runs were inconclusive.
    pub tries: u32,
    /// Why each earlier run was inconclusive.
    pub reruns: Vec<String>,
    /// Why the last run was inconclusive, when every run was.
    pub inconclusive: Option<String>,
    /// Machine allowances (CPU steal) used in the judged run's windows.
    pub allowances: Vec<String>,
    /// The largest of them, in milliseconds.
    pub allowance_ms: f64,
}

impl Record {
    /// A record with nothing in it yet but the trial's name and file.
    fn blank(name: &str, file: &str) -> Record {
        Record {
            name: name.to_string(),
            file: file.to_string(),
            passed: false,
            seconds: 0.0,
            failure: None,
            states: Vec::new(),
            states_source: String::new(),
            pcap: None,
            deviation: None,
            measurements: Vec::new(),
            skipped: None,
            tries: 0,
            reruns: Vec::new(),
            inconclusive: None,
            allowances: Vec::new(),
            allowance_ms: 0.0,
        }
    }

    /// A trial not run: the SUT lacks a capability the scenario needs.
    fn skipped(name: &str, sc: &Scenario, what: &str) -> Record {
        Record {
            passed: true,
            skipped: Some(what.to_string()),
            ..Record::blank(name, &sc.file.display().to_string())
        }
    }

    /// A trial that did not run to its end because the run was interrupted: a failure, so an
    /// interrupted run never reads as a green one.
    pub fn not_run(name: &str, file: &str, why: &str) -> Record {
        Record {
            failure: Some(format!("not run: {why}")),
            ..Record::blank(name, file)
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
            tries: 1,
            reruns: Vec::new(),
            inconclusive: v.excuse_text(),
            allowances: v.allowances.clone(),
            allowance_ms: v.allowance_max.as_secs_f64() * 1e3,
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
        let v = runner::run_trial(sc, family, cfg);
        match v.excuse_text() {
            Some(why) if (earlier.len() as u32 + 1) < cfg.tries => earlier.push(why),
            _ => return (v, earlier),
        }
    }
}

/// Counts over a run's records, for the summary line and the reports.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub trials: usize,
    pub passed: usize,
    pub failed: usize,
    pub inconclusive: usize,
    pub skipped: usize,
    /// Extra runs made because earlier runs were inconclusive.
    pub reruns: usize,
    /// Trials with at least one inconclusive run (rerun or left inconclusive).
    pub with_inconclusive_runs: usize,
}

impl Summary {
    pub fn of(records: &[Record]) -> Summary {
        let mut s = Summary {
            trials: records.len(),
            ..Summary::default()
        };
        for r in records {
            if r.skipped.is_some() {
                s.skipped += 1;
            } else if r.inconclusive.is_some() {
                s.inconclusive += 1;
            } else if r.passed {
                s.passed += 1;
            } else {
                s.failed += 1;
            }
            s.reruns += r.reruns.len();
            if !r.reruns.is_empty() || r.inconclusive.is_some() {
                s.with_inconclusive_runs += 1;
            }
        }
        s
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} trials: {} passed, {} failed, {} inconclusive, {} skipped; {} rerun(s) of {} trial(s) whose runs were inconclusive",
            self.trials,
            self.passed,
            self.failed,
            self.inconclusive,
            self.skipped,
            self.reruns,
            self.with_inconclusive_runs
        )
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
                let (v, earlier) = run_until_conclusive(&sc, family, &cfg);
                let mut record = Record::of(&v, &sc);
                record.tries = earlier.len() as u32 + 1;
                record.reruns = earlier;
                let verdict = match &record.inconclusive {
                    Some(why) => Err(format!(
                        "INCONCLUSIVE after {} run(s), each decided by the harness's own lateness; the last: {why}{}",
                        record.tries,
                        v.failure_text().map(|f| format!("\n{f}")).unwrap_or_default()
                    )),
                    None => judge(v.failure_text(), deviation.as_ref()),
                };
                record.passed = verdict.is_ok();
                if record.failure.is_none() {
                    // A stale expectation fails with no failure of the SUT's: say why.
                    record.failure = verdict.as_ref().err().cloned();
                }
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
                "name": r.name, "file": r.file, "verdict": verdict_word(r), "passed": r.passed, "seconds": r.seconds,
                "failure": r.failure, "states": r.states, "states_source": r.states_source, "pcap": r.pcap, "deviation": r.deviation, "measurements": r.measurements, "skipped": r.skipped,
                "tries": r.tries, "reruns": r.reruns, "inconclusive": r.inconclusive, "allowances": r.allowances, "allowance_ms": r.allowance_ms,
            })
        })
        .collect();
    let s = Summary::of(records);
    serde_json::json!({
        "trials": items, "passed": s.passed, "failed": s.failed, "inconclusive": s.inconclusive,
        "skipped": s.skipped, "reruns": s.reruns, "trials_with_inconclusive_runs": s.with_inconclusive_runs,
    })
    .to_string()
}

/// passed, failed, inconclusive or skipped.
fn verdict_word(r: &Record) -> &'static str {
    match (&r.skipped, &r.inconclusive, r.passed) {
        (Some(_), _, _) => "skipped",
        (None, Some(_), _) => "inconclusive",
        (None, None, true) => "passed",
        (None, None, false) => "failed",
    }
}

/// A JUnit XML report (one testsuite, one testcase per trial) for CI systems.
pub fn junit(records: &[Record]) -> String {
    let s = Summary::of(records);
    let total: f64 = records.iter().map(|r| r.seconds).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuite name=\"halfclose\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{total:.3}\">",
        records.len(),
        s.failed,
        s.inconclusive,
        s.skipped
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
        if let Some(why) = &r.inconclusive {
            // Neither a pass nor a failure of the SUT: an error of the run, in JUnit's terms.
            let _ = writeln!(
                x,
                ">\n    <error type=\"inconclusive\" message=\"{}\">{}</error>\n  </testcase>",
                esc(why),
                esc(r.failure.as_deref().unwrap_or(why))
            );
            continue;
        }
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
            tries: 1,
            reruns: Vec::new(),
            inconclusive: None,
            allowances: Vec::new(),
            allowance_ms: 0.0,
        }
    }

    #[test]
    fn inconclusive_trials_are_neither_passed_nor_failed_anywhere() {
        let mut inc = record("ipv4::loss::c", Some("step 2: expect F."), None);
        inc.inconclusive = Some(
            "inconclusive (it would have failed): step 1: the peer's segment was 177.000ms late"
                .into(),
        );
        inc.tries = 3;
        inc.reruns = vec!["x".into(), "y".into()];
        let mut rerun = record("ipv4::loss::d", None, None);
        rerun.reruns = vec!["z".into()];
        rerun.tries = 2;
        let recs = [
            record("ipv4::loss::a", None, None),
            record("ipv4::loss::b", Some("step 3: expect F."), None),
            inc,
            rerun,
            record("ipv4::loss::e", None, Some("the call dup")),
        ];
        let s = Summary::of(&recs);
        assert_eq!(
            s,
            Summary {
                trials: 5,
                passed: 2,
                failed: 1,
                inconclusive: 1,
                skipped: 1,
                reruns: 3,
                with_inconclusive_runs: 2,
            }
        );
        let x = junit(&recs);
        assert!(
            x.contains("failures=\"1\" errors=\"1\" skipped=\"1\""),
            "{x}"
        );
        assert!(
            x.contains(
                "<error type=\"inconclusive\" message=\"inconclusive (it would have failed)"
            ),
            "{x}"
        );
        let j: serde_json::Value = serde_json::from_str(&json(&recs)).unwrap();
        assert_eq!(j["inconclusive"], 1);
        assert_eq!(j["reruns"], 3);
        assert_eq!(j["trials"][2]["verdict"], "inconclusive");
        assert_eq!(j["trials"][2]["tries"], 3);
        assert_eq!(j["trials"][4]["verdict"], "skipped");
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
