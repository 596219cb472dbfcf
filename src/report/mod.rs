//! What a run found, as one typed record per trial, and the reports CI reads: JSON
//! ([`Report`], whose shape docs/report.schema.json describes) and JUnit XML ([`junit`]).
//!
//! Every report says the same thing of a trial because every one is made from its
//! [`Outcome`]: the console, the JSON, the JUnit file, `halfclose matrix` and the exit status.

mod junit;
mod meta;

use std::path::Path;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use junit::junit;
pub use meta::{AgentMeta, RunMeta};

/// The `format` of the JSON report; bumped when a field changes meaning.
pub const FORMAT: u32 = 2;

/// What one trial came to. Each has one meaning everywhere (see docs/report.schema.json).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The SUT did what the script says.
    Passed,
    /// The SUT failed the script as its stack's expectations file says it does (with the
    /// reason): no failure of the run. JUnit: passed, the reason in a property.
    KnownDeviation,
    /// Listed as a known deviation, but the trial passes now: the list is out of date. A
    /// failure, so the list never hides a fix.
    StaleExpectation,
    /// Not run: the SUT lacks a capability the scenario needs.
    Skipped,
    /// Every run may have been decided by the harness's own lateness: neither pass nor fail.
    Inconclusive,
    /// The SUT did not do what the script says (or the trial was never finished).
    Failed,
}

impl Outcome {
    /// Whether the outcome fails the run (exit status 1).
    pub fn fails_the_run(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::StaleExpectation)
    }

    /// The word the reports use (`known_deviation`, …).
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::KnownDeviation => "known_deviation",
            Outcome::StaleExpectation => "stale_expectation",
            Outcome::Skipped => "skipped",
            Outcome::Inconclusive => "inconclusive",
            Outcome::Failed => "failed",
        }
    }
}

/// One finished trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub file: String,
    pub outcome: Outcome,
    pub seconds: f64,
    /// Failed: what the SUT did wrong. Known deviation: the failure the deviation expects.
    /// Stale expectation: which entry is stale. Inconclusive: the last run's lateness and
    /// what it would have said.
    pub failure: Option<String>,
    /// The reason the stack's expectations give, for a listed trial.
    pub deviation: Option<String>,
    /// The capability the SUT lacks, when the trial was skipped.
    pub skipped: Option<String>,
    /// Why the last run was inconclusive, when every run was.
    pub inconclusive: Option<String>,
    pub states: Vec<String>,
    /// Where the state trace came from: the tracepoint or samples (and why).
    pub states_source: String,
    pub pcap: Option<String>,
    /// Timer readings and measured moments.
    pub measurements: Vec<String>,
    /// Runs made: 1, or more when earlier runs were inconclusive.
    pub tries: u32,
    /// Why each earlier run was inconclusive.
    pub reruns: Vec<String>,
    /// Machine allowances (CPU steal) used in the judged run's windows.
    pub allowances: Vec<String>,
    /// The largest of them, in milliseconds.
    pub allowance_ms: f64,
    /// The alternative the SUT showed (`rfc`, `rfc-…`, `linux`), when the scenario names
    /// alternatives for this trial and one of them passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternative: Option<String>,
    /// Each requirement the trial's assertions check → what the trial found: `met`,
    /// `departs`, `departs-as-linux`, or `not-testable` (skipped).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requirements: BTreeMap<String, String>,
    /// Skipped because the trial sets a Linux setting (a sysctl) the stack does not have:
    /// a trial of Linux's own, not a capability the stack lacks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub linux_setting: bool,
}

impl Record {
    /// A record with nothing in it yet but the trial's name, file and outcome.
    pub fn blank(name: &str, file: &str, outcome: Outcome) -> Record {
        Record {
            name: name.to_string(),
            file: file.to_string(),
            outcome,
            seconds: 0.0,
            failure: None,
            deviation: None,
            skipped: None,
            inconclusive: None,
            states: Vec::new(),
            states_source: String::new(),
            pcap: None,
            measurements: Vec::new(),
            tries: 0,
            reruns: Vec::new(),
            allowances: Vec::new(),
            allowance_ms: 0.0,
            alternative: None,
            requirements: BTreeMap::new(),
            linux_setting: false,
        }
    }

    /// A trial not run: the SUT lacks a capability the scenario needs.
    pub fn skipped(name: &str, file: &str, what: &str) -> Record {
        Record {
            skipped: Some(what.to_string()),
            ..Record::blank(name, file, Outcome::Skipped)
        }
    }

    /// A trial that did not run to its end because the run was interrupted: a failure, so an
    /// interrupted run never reads as a green one.
    pub fn not_run(name: &str, file: &str, why: &str) -> Record {
        Record {
            failure: Some(format!("not run: {why}")),
            ..Record::blank(name, file, Outcome::Failed)
        }
    }
}

/// Counts over a run's records, one per outcome (they add up to `trials`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub trials: usize,
    pub passed: usize,
    pub known_deviations: usize,
    pub stale_expectations: usize,
    pub skipped: usize,
    /// Of the skipped, those that set a Linux setting the stack lacks (trials of Linux's).
    #[serde(default)]
    pub skipped_linux_settings: usize,
    pub inconclusive: usize,
    pub failed: usize,
    /// Extra runs made because earlier runs were inconclusive.
    pub reruns: usize,
    /// Trials with at least one inconclusive run (rerun or left inconclusive).
    pub trials_with_inconclusive_runs: usize,
}

impl Summary {
    pub fn of(records: &[Record]) -> Summary {
        let mut s = Summary {
            trials: records.len(),
            ..Summary::default()
        };
        for r in records {
            *match r.outcome {
                Outcome::Passed => &mut s.passed,
                Outcome::KnownDeviation => &mut s.known_deviations,
                Outcome::StaleExpectation => &mut s.stale_expectations,
                Outcome::Skipped => &mut s.skipped,
                Outcome::Inconclusive => &mut s.inconclusive,
                Outcome::Failed => &mut s.failed,
            } += 1;
            s.skipped_linux_settings += usize::from(r.linux_setting);
            s.reruns += r.reruns.len();
            if !r.reruns.is_empty() || r.outcome == Outcome::Inconclusive {
                s.trials_with_inconclusive_runs += 1;
            }
        }
        s
    }

    /// Failed trials and stale expectations: what makes the exit status 1.
    pub fn failures(&self) -> usize {
        self.failed + self.stale_expectations
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} trials: {} passed, {} known deviations, {} stale expectations, {} failed, {} inconclusive, {} skipped{}; {} rerun(s) of {} trial(s) whose runs were inconclusive",
            self.trials,
            self.passed,
            self.known_deviations,
            self.stale_expectations,
            self.failed,
            self.inconclusive,
            self.skipped,
            match self.skipped_linux_settings {
                0 => String::new(),
                n => format!(" ({n} of them set Linux settings, {} lack a capability)", self.skipped - n),
            },
            self.reruns,
            self.trials_with_inconclusive_runs
        )
    }
}

/// The JSON report: the runs it comes from (one, or several once merged), the counts and
/// every trial, sorted by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: u32,
    pub runs: Vec<RunMeta>,
    pub summary: Summary,
    pub trials: Vec<Record>,
}

/// The largest JSON report `Report::read` takes (a whole suite's is well under 10 MiB).
pub const MAX_REPORT_BYTES: u64 = 256 << 20;

impl Report {
    pub fn new(mut run: RunMeta, mut trials: Vec<Record>) -> Report {
        trials.sort_by(|a, b| a.name.cmp(&b.name));
        run.trials = trials.len();
        Report {
            format: FORMAT,
            runs: vec![run],
            summary: Summary::of(&trials),
            trials,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// Each trial with the stack of the run it came from: the runs' `trials` counts divide
    /// the list in run order (`fallback` for trials no run counts).
    pub fn trials_by_stack<'a>(
        &'a self,
        fallback: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Record)> + 'a {
        let stacks = self
            .runs
            .iter()
            .flat_map(|run| std::iter::repeat_n(run.stack.as_str(), run.trials));
        stacks.chain(std::iter::repeat(fallback)).zip(&self.trials)
    }

    /// A report read back: the file's name in the error when it is not one.
    pub fn read(path: &Path) -> Result<Report, String> {
        let bytes = crate::preflight::read_capped(path, MAX_REPORT_BYTES).map_err(|e| match e {
            Some(e) => format!("{}: {e}", path.display()),
            None => format!(
                "{}: more than the {} MiB a report may have",
                path.display(),
                MAX_REPORT_BYTES >> 20
            ),
        })?;
        let report: Report = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a halfclose JSON report: {e}", path.display()))?;
        if report.format != FORMAT {
            return Err(format!(
                "{}: report format {}, this halfclose reads format {FORMAT}",
                path.display(),
                report.format
            ));
        }
        Ok(report)
    }

    /// Several reports as one (the shards of a split run, or several stacks' columns): every
    /// run and trial, the counts over all. A trial that two reports of the same stack both
    /// ran is an error: the shards overlapped, and a count would be wrong.
    pub fn merge(reports: Vec<Report>) -> Result<Report, String> {
        let mut seen = std::collections::HashSet::new();
        let mut merged = Report {
            format: FORMAT,
            runs: Vec::new(),
            summary: Summary::default(),
            trials: Vec::new(),
        };
        for r in reports {
            for (stack, t) in r.trials_by_stack("") {
                if !seen.insert((stack.to_string(), t.name.clone())) {
                    return Err(format!(
                        "{stack}: the trial `{}` is in two of the reports (shards overlap?)",
                        t.name
                    ));
                }
            }
            // A report with several runs already (merged before) keeps its division.
            let mut runs = r.runs;
            if let [only] = runs.as_mut_slice() {
                only.trials = r.trials.len();
            }
            merged.runs.extend(runs);
            merged.trials.extend(r.trials);
        }
        merged.summary = Summary::of(&merged.trials);
        Ok(merged)
    }
}

pub fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}

#[cfg(test)]
pub(crate) mod tests;
