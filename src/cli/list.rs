//! `halfclose list`: the trials a `run` with the same arguments would run, one a line (as a
//! Rust test binary's `--list` prints them, so `cargo nextest` and editors read it too).

use std::sync::{Arc, Mutex};

use super::run::{mimic_args, planned, Output};
use super::select::Selection;
use crate::runner::TrialConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub select: Selection,
    #[command(flatten)]
    pub output: Output,
}

pub fn run(a: Args) -> i32 {
    let r = match a.select.resolve() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let cfg = TrialConfig::new("target/halfclose".into(), r.stack.clone());
    let trials = planned(&r, &cfg, &Arc::new(Mutex::new(Vec::new())));
    let conclusion = crate::schedule::run(&mimic_args(&a.output, &a.select, true), trials);
    crate::exit::of_run(&Default::default(), conclusion.has_failed())
}
