//! `halfclose check`: scripts validated, nothing sent.

use std::path::PathBuf;

use crate::expectations::Expectations;
use crate::script::{Scenario, ScriptError};
use crate::{exit, suite};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Script files or directories. Errors name file:line:column.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
}

pub fn run(a: Args) -> i32 {
    if let Some(code) = super::missing_path(&a.paths) {
        return code;
    }
    let mut suite = suite::load(&a.paths);
    if suite.errors.is_empty() {
        suite.errors = expectations_errors(&a.paths, &suite.scenarios);
    }
    for e in &suite.errors {
        eprintln!("error: {e}");
    }
    let trials: usize = suite.scenarios.iter().map(|s| s.families.len()).sum();
    let files: std::collections::BTreeSet<_> = suite.scenarios.iter().map(|s| &s.file).collect();
    println!(
        "{} file(s) ok: {} scenario(s) with matrix cases, {trials} trials; {} file(s) with errors",
        files.len(),
        suite.scenarios.len(),
        suite.errors.len()
    );
    if suite.errors.is_empty() {
        exit::OK
    } else {
        exit::BAD_INPUT
    }
}

/// The expectations files of every suite named whole (`suites` → suites/expectations/*.yaml),
/// each checked against the suite for its own stack: an entry naming no trial is an error.
fn expectations_errors(paths: &[PathBuf], scenarios: &[Scenario]) -> Vec<ScriptError> {
    let mut errors = Vec::new();
    for root in paths
        .iter()
        .filter(|p| suite::root_of(p).as_deref() == Some(p.as_path()))
    {
        let Ok(entries) = std::fs::read_dir(root.join("expectations")) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for f in files {
            match Expectations::load(&f) {
                Ok(e) => errors.extend(e.check(&e.stack.clone(), scenarios, paths)),
                Err(e) => errors.push(e),
            }
        }
    }
    errors
}
