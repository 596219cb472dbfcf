//! `halfclose coverage`: requirements → the scenarios that check them (docs/coverage.md).

use std::path::PathBuf;

use crate::{exit, suite};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Scenario files or directories.
    #[arg(value_name = "PATH", default_value = "suites")]
    pub paths: Vec<PathBuf>,
    /// Instead of the table, list every assertion that names no requirement
    /// (file:line:column); exit 1 if there is one.
    #[arg(long)]
    pub untagged: bool,
}

pub fn run(a: Args) -> i32 {
    if let Some(code) = super::missing_path(&a.paths) {
        return code;
    }
    let suite = suite::load(&a.paths);
    for e in &suite.errors {
        eprintln!("error: {e}");
    }
    if !suite.errors.is_empty() {
        return exit::BAD_INPUT;
    }
    if a.untagged {
        let missing = crate::coverage::untagged(&suite.scenarios);
        for m in &missing {
            println!("{m}");
        }
        return match missing.is_empty() {
            true => exit::OK,
            false => {
                eprintln!(
                    "halfclose coverage: {} assertion(s) name no requirement",
                    missing.len()
                );
                exit::FAILED
            }
        };
    }
    print!("{}", crate::coverage::markdown(&suite.scenarios));
    exit::OK
}
