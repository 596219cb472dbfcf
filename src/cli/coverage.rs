//! `halfclose coverage`: requirements → the scenarios that check them (docs/coverage.md).

use std::path::PathBuf;

use crate::{exit, suite};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Scenario files or directories.
    #[arg(value_name = "PATH", default_value = "suites")]
    pub paths: Vec<PathBuf>,
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
    print!("{}", crate::coverage::markdown(&suite.scenarios));
    exit::OK
}
