//! `halfclose run`: the trials, their captures and reports.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, ColorSetting, FormatSetting};

use super::select::{Filters, Resolved, Selection};
use crate::report::{self, Record, Report, RunMeta};
use crate::runner::TrialConfig;
use crate::schedule::Planned;
use crate::trials::{self, Records};
use crate::{exit, preflight};

/// Trials at once, retries, output: what `run` shares with a Rust test binary's options.
#[derive(Debug, Clone, clap::Args)]
pub struct Output {
    /// Output as a Rust test binary's (pretty, terse or json), or KTAP for kselftest and
    /// netdev CI (`ktap`: the KTAP document alone on stdout, failures as diagnostic lines).
    #[arg(long, value_name = "FMT", value_parser = ["pretty", "terse", "json", "ktap"])]
    pub format: Option<String>,
    /// Trials run at once (default 32: most of a trial is waiting).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub test_threads: Option<u64>,
    /// One character per trial.
    #[arg(short, long)]
    pub quiet: bool,
    /// Coloured output: auto, always or never.
    #[arg(long, value_name = "WHEN", value_parser = ["auto", "always", "never"])]
    pub color: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub select: Selection,
    #[command(flatten)]
    pub output: Output,
    /// Captures: DIR/<family>/<group>/<name>.pcapng (default target/halfclose, and
    /// target/halfclose/<stack> for an agent's stack).
    #[arg(long, value_name = "DIR")]
    pub pcap_dir: Option<PathBuf>,
    /// The JSON report (docs/report.schema.json); parent directories are made.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The JUnit XML report; parent directories are made.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// The static HTML report (an index, the matrix, a ladder diagram per trial), offline;
    /// docs/reports.md.
    #[arg(long, value_name = "DIR")]
    pub html: Option<PathBuf>,
    /// Reruns of a trial whose runs were inconclusive (the harness was late).
    #[arg(long, value_name = "N", default_value_t = crate::runner::DEFAULT_TRIES - 1,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retries: u32,
    /// A run in which every trial was skipped is not an error.
    #[arg(long)]
    pub allow_all_skipped: bool,
    /// List the trials instead of running them (as `halfclose list`).
    #[arg(long)]
    pub list: bool,
}

/// libtest-mimic's arguments for a selection: the filtering is ours (`Filters`), the output
/// options theirs.
pub fn mimic_args(out: &Output, sel: &Selection, list: bool) -> Arguments {
    Arguments {
        list,
        ignored: sel.ignored,
        include_ignored: sel.include_ignored,
        quiet: out.quiet,
        test_threads: out.test_threads.map(|n| n as usize),
        format: out.format.as_deref().map(|f| match f {
            "terse" | "ktap" => FormatSetting::Terse,
            "json" => FormatSetting::Json,
            _ => FormatSetting::Pretty,
        }),
        color: out.color.as_deref().map(|c| match c {
            "always" => ColorSetting::Always,
            "never" => ColorSetting::Never,
            _ => ColorSetting::Auto,
        }),
        // KTAP: libtest's own lines go nowhere, stdout is the KTAP document alone.
        logfile: (out.format.as_deref() == Some("ktap") && !list).then(|| "/dev/null".into()),
        ..Arguments::default()
    }
}

/// The trials a selection leaves, with libtest's filtering done here (several filters,
/// `--skip`, `--shard`), so `run`, `list` and the interrupted run's report agree.
pub fn selected(planned: Vec<Planned>, filters: &Filters) -> Vec<Planned> {
    planned
        .into_iter()
        .filter(|p| filters.selects(p.trial.name()))
        .collect()
}

pub fn run(a: Args) -> i32 {
    if a.list {
        return super::list::run(super::list::Args {
            select: a.select,
            output: a.output,
        });
    }
    // Before any thread starts: SIGINT/SIGTERM then write what is known (see on_signal).
    let interrupted: Arc<Mutex<Option<Interrupted>>> = Arc::default();
    let plan = interrupted.clone();
    if let Err(e) = crate::interrupt::watch(move |sig| on_signal(sig, &plan)) {
        return super::bad_input(format!("cannot watch for signals: {e}"));
    }
    let r = match a.select.resolve() {
        Ok(r) => r,
        Err(code) => return code,
    };
    // Another stack's captures go beside the kernel's, not over them.
    let pcap_dir = match &a.pcap_dir {
        Some(dir) => dir.clone(),
        None if r.stack.is_local_kernel() => PathBuf::from("target/halfclose"),
        None => PathBuf::from("target/halfclose").join(r.stack.short_name()),
    };
    if let Err(e) = preflight::writable_dir(&pcap_dir) {
        return super::bad_input(format!("captures go to {}, but {e}", pcap_dir.display()));
    }
    for (flag, path) in [("--json", &a.json), ("--junit", &a.junit)] {
        let Some(path) = path else { continue };
        if let Err(e) = preflight::writable_file(path) {
            return super::bad_input(format!("{flag} {}: {e}", path.display()));
        }
    }
    if let Some(Err(e)) = a.html.as_deref().map(preflight::writable_dir) {
        return super::bad_input(format!(
            "--html {}: {e}",
            a.html.as_ref().unwrap().display()
        ));
    }
    let (meta, started) = RunMeta::start(&r.stack, a.select.shard.map(|s| s.to_string()));
    let cfg = TrialConfig {
        tries: a.retries + 1,
        ..TrialConfig::new(pcap_dir, r.stack.clone())
    };
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let mut args = mimic_args(&a.output, &a.select, false);
    // Over a real interface every trial's SUT has the same MAC and addresses on one link.
    if cfg.stack.peer_iface.is_some() {
        args.test_threads = Some(1);
    }
    let planned = planned(&r, &cfg, &records);
    *interrupted.lock().unwrap_or_else(|e| e.into_inner()) = Some(Interrupted {
        selected: to_run(&args, &planned, &r.scenarios),
        records: records.clone(),
        outputs: Outputs {
            json: a.json.clone(),
            junit: a.junit.clone(),
            meta: meta.clone(),
            started,
        },
    });
    let conclusion = crate::schedule::run(&args, planned);
    let recs = records.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let outputs = Outputs {
        json: a.json,
        junit: a.junit,
        meta,
        started,
    };
    let report = match outputs.write(recs) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if a.output.format.as_deref() == Some("ktap") {
        print!("{}", crate::ktap::render(&report.trials));
    }
    if let Some(dir) = &a.html {
        let trials = crate::html::trials_of(&report, cfg.stack.short_name());
        if let Err(e) = crate::html::write_and_tell(dir, &trials) {
            return super::bad_input(format!("--html: {e}"));
        }
    }
    if let (Some(why), false) = (all_skipped(&report.trials), a.allow_all_skipped) {
        return super::bad_input(format!("{why}; --allow-all-skipped accepts that"));
    }
    conclude(&report.summary, conclusion.has_failed())
}

/// The selection's trials, ready for libtest-mimic.
pub fn planned(r: &Resolved, cfg: &TrialConfig, records: &Records) -> Vec<Planned> {
    let all = trials::trials(&r.scenarios, &[], cfg, records, &r.expected);
    selected(all, &r.filters)
}

/// The exit status of a finished run, with a summary when anything was rerun or left
/// inconclusive or the records say more than libtest-mimic's line (deviations, stale).
pub fn conclude(summary: &report::Summary, harness_failed: bool) -> i32 {
    if summary.reruns > 0
        || summary.inconclusive > 0
        || summary.known_deviations > 0
        || summary.stale_expectations > 0
    {
        eprintln!("halfclose: {summary}");
    }
    exit::of_run(summary, harness_failed)
}

/// When trials ran and every one of them was skipped: what to say (a broken agent's hello
/// must not pass as green).
pub fn all_skipped(recs: &[Record]) -> Option<String> {
    let first = recs.first()?;
    if recs.iter().any(|r| r.outcome != report::Outcome::Skipped) {
        return None;
    }
    Some(format!(
        "every trial was skipped, nothing was tested ({} trials; {}: the SUT lacks {})",
        recs.len(),
        first.name,
        first.skipped.as_deref().unwrap_or("")
    ))
}

/// Where the reports go, and the run they describe.
#[derive(Clone)]
struct Outputs {
    json: Option<PathBuf>,
    junit: Option<PathBuf>,
    meta: RunMeta,
    started: std::time::SystemTime,
}

impl Outputs {
    fn write(&self, recs: Vec<Record>) -> Result<Report, i32> {
        let report = Report::new(self.meta.clone().finish(self.started), recs);
        for (path, text) in [
            (&self.json, report.to_json()),
            (&self.junit, report::junit(&report)),
        ] {
            let Some(p) = path else { continue };
            report::write_file(p, &text).map_err(|e| {
                eprintln!("halfclose: cannot write {}: {e}", p.display());
                exit::BAD_INPUT
            })?;
        }
        Ok(report)
    }
}

/// What a signal handler needs to write the reports of a run cut short.
struct Interrupted {
    /// The trials this run would run: name and file.
    selected: Vec<(String, String)>,
    records: Records,
    outputs: Outputs,
}

/// The trials libtest-mimic will run of these (`ignore:` applied), with their files.
fn to_run(
    args: &Arguments,
    trials: &[Planned],
    scenarios: &[crate::script::Scenario],
) -> Vec<(String, String)> {
    let files: std::collections::HashMap<String, String> = scenarios
        .iter()
        .flat_map(|sc| {
            let file = sc.file.display().to_string();
            sc.families
                .iter()
                .map(move |f| (sc.trial_name(*f), file.clone()))
        })
        .collect();
    trials
        .iter()
        .map(|p| &p.trial)
        .filter(|t| !args.is_filtered_out(t) && !args.is_ignored(t))
        .map(|t| {
            let file = files.get(t.name()).cloned().unwrap_or_default();
            (t.name().to_string(), file)
        })
        .collect()
}

/// SIGINT/SIGTERM: the reports, with every trial that had not finished marked "not run".
fn on_signal(sig: nix::sys::signal::Signal, plan: &Mutex<Option<Interrupted>>) {
    let Some(plan) = plan.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        eprintln!("\nhalfclose: {sig} before any trial started; no reports written");
        return;
    };
    let mut recs = plan
        .records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let finished = recs.len();
    let why = format!("the run was interrupted by {sig} before this trial finished");
    for (name, file) in &plan.selected {
        if !recs.iter().any(|r| r.name == *name) {
            recs.push(Record::not_run(name, file, &why));
        }
    }
    let not_run = recs.len() - finished;
    let o = &plan.outputs;
    let written = (o.json.is_some() || o.junit.is_some()) && o.write(recs).is_ok();
    eprintln!(
        "\nhalfclose: interrupted by {sig}: {finished} trial(s) finished, {not_run} not run{}",
        if written { "; reports written" } else { "" }
    );
}
