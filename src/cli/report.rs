//! `halfclose report A.json B.json …`: several JSON reports (the shards of a split run, or
//! several stacks' columns) merged into one summary, and optionally one JSON and one JUnit
//! file. The exit status is the merged run's, as `run` would give it.

use std::path::PathBuf;

use crate::report::{self, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// JSON reports written by `halfclose run --json` (or by an earlier `report --json`).
    #[arg(value_name = "JSON", required = true)]
    pub reports: Vec<PathBuf>,
    /// The merged JSON report.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The merged JUnit XML report (one testsuite per run).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// One static HTML report of every run, stacks side by side (docs/reports.md).
    #[arg(long, value_name = "DIR")]
    pub html: Option<PathBuf>,
    /// `ktap`: the merged trials as KTAP on stdout (the summary goes to stderr).
    #[arg(long, value_name = "FMT", value_parser = ["ktap"])]
    pub format: Option<String>,
}

pub fn run(a: Args) -> i32 {
    let mut reports = Vec::new();
    for p in &a.reports {
        match Report::read(p) {
            Ok(r) => reports.push(r),
            Err(e) => return super::bad_input(e),
        }
    }
    // Each report's trials keep their run's stack (the file's stem where it names none).
    let html_trials: Vec<_> = a
        .reports
        .iter()
        .zip(&reports)
        .flat_map(|(p, r)| {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
            crate::html::trials_of(r, stem.as_deref().unwrap_or("unknown"))
        })
        .collect();
    let merged = match Report::merge(reports) {
        Ok(m) => m,
        Err(e) => return super::bad_input(e),
    };
    for (path, text) in [
        (&a.json, merged.to_json()),
        (&a.junit, report::junit(&merged)),
    ] {
        let Some(p) = path else { continue };
        if let Err(e) = report::write_file(p, &text) {
            return super::bad_input(format!("cannot write {}: {e}", p.display()));
        }
    }
    if let Some(dir) = &a.html {
        if let Err(e) = crate::html::write_and_tell(dir, &html_trials) {
            return super::bad_input(format!("--html: {e}"));
        }
    }
    let ktap = a.format.as_deref() == Some("ktap");
    if ktap {
        // Several stacks run the same trials: each result names its stack then.
        let stacks: std::collections::BTreeSet<&str> =
            merged.runs.iter().map(|r| r.stack.as_str()).collect();
        let named: Vec<_> = merged
            .trials_by_stack("unknown")
            .map(|(stack, t)| match stacks.len() > 1 {
                true => report::Record {
                    name: format!("{stack}::{}", t.name),
                    ..t.clone()
                },
                false => t.clone(),
            })
            .collect();
        print!("{}", crate::ktap::render(&named));
    }
    // With KTAP on stdout, the summary goes to stderr.
    let say = |line: String| match ktap {
        true => eprintln!("{line}"),
        false => println!("{line}"),
    };
    for r in &merged.runs {
        say(format!(
            "{}{}: {} trials, {:.1} s on {}",
            r.stack,
            r.shard
                .as_deref()
                .map(|s| format!(" (shard {s})"))
                .unwrap_or_default(),
            r.trials,
            r.seconds,
            r.hostname
        ));
    }
    say(merged.summary.to_string());
    for t in merged.trials.iter().filter(|t| t.outcome.fails_the_run()) {
        say(format!(
            "  {} {}: {}",
            t.outcome.word(),
            t.name,
            t.failure
                .as_deref()
                .and_then(|f| f.lines().next())
                .unwrap_or("")
        ));
    }
    crate::exit::of_run(&merged.summary, false)
}
