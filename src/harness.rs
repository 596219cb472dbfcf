//! The suite as a `cargo test` target, for this repository and for stack authors.
//!
//! A test target with `harness = false` whose `main` calls [`kernel_main`] (this repository's
//! tests/conformance.rs) or [`agent_main`] (a stack author's) gets every scenario of the
//! scenario directories it names as a libtest-mimic trial: `cargo test` and `cargo nextest`
//! list, filter and run them, with a pcapng per trial. [`suites_dir`] is halfclose's own
//! suite; a stack's crate passes it beside its own directory to run both.
//!
//! ```toml
//! # the stack's Cargo.toml
//! [dev-dependencies]
//! halfclose = "0.1"
//! [[test]]
//! name = "conformance"
//! harness = false
//! ```
//!
//! ```text
//! // the stack's tests/conformance.rs
//! use std::path::Path;
//! fn main() {
//!     halfclose::harness::agent_main(
//!         &[env!("CARGO_BIN_EXE_my-agent")],
//!         &[halfclose::harness::suites_dir(), "tests/scenarios".into()],
//!         Some(Path::new("tests/halfclose-expectations.yaml")),
//!     );
//! }
//! ```
//!
//! Under `cargo nextest` each trial is its own process, started with `--exact NAME`: such a
//! process loads only the file the name points to (see [`only_file`]), not the whole suite.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::expectations::Expectations;
use crate::runner::{Stack, TrialConfig};
use crate::trials::{self, Records};
use crate::{exit, privilege, schedule, suite};

/// The scenarios of `dirs` against the local kernel, with an expectations file (halfclose's
/// own: `suites/expectations/linux.yaml`, see [`suite_expectations`]).
pub fn kernel_main(dirs: &[PathBuf], expectations: Option<&Path>) -> ! {
    enter();
    run(Stack::kernel(), dirs, expectations)
}

/// The scenarios of `dirs` against the stack behind `agent` (a command and its arguments,
/// speaking docs/agent-protocol.md), with the stack author's expectations file, if any.
pub fn agent_main(agent: &[&str], dirs: &[PathBuf], expectations: Option<&Path>) -> ! {
    enter();
    let cmd = agent.iter().map(|s| s.to_string()).collect();
    let stack = crate::cli::select::resolve_stack(None, Some(cmd)).unwrap_or_else(|e| exit_bad(&e));
    run(stack, dirs, expectations)
}

/// First, while the process has one thread: not root → enter a user namespace.
fn enter() {
    if let Err(e) = privilege::ensure() {
        exit_bad(&e.to_string());
    }
}

fn exit_bad(msg: &str) -> ! {
    eprintln!("halfclose: {msg}");
    std::process::exit(exit::BAD_INPUT)
}

/// halfclose's suites/: relative when run from this package's root (cargo does), so messages
/// stay short; else the copy that ships with the crate.
pub fn suites_dir() -> PathBuf {
    if Path::new("suites/expectations").is_dir() && Path::new("src/harness.rs").is_file() {
        PathBuf::from("suites")
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites")
    }
}

/// The expectations file of halfclose's suite for a stack (`linux`, `smoltcp`), if any.
pub fn suite_expectations(stack: &str) -> Option<PathBuf> {
    let f = suites_dir()
        .join("expectations")
        .join(format!("{stack}.yaml"));
    f.is_file().then_some(f)
}

/// With `--exact ipv4::close::active-close` (how nextest runs one test), the one scenario
/// file that can hold it: `<dir>/close/active-close.yaml`, when that file exists. A matrix
/// case's name (`…::name[x=1]`) points to its file the same way.
pub fn only_file(args: &libtest_mimic::Arguments, dirs: &[PathBuf]) -> Option<PathBuf> {
    if !args.exact || args.list {
        return None;
    }
    let name = args.filter.as_deref()?;
    let mut parts: Vec<&str> = name.split("::").collect();
    let file = parts.pop()?;
    let file = file.split('[').next()?;
    let groups = parts.get(1..)?;
    dirs.iter()
        .map(|d| {
            let mut p = d.clone();
            p.extend(groups);
            p.join(format!("{file}.yaml"))
        })
        .find(|p| p.is_file())
}

/// The scenarios this process needs: the one file of a `--exact` trial when it holds that
/// trial (a name it does not hold would run nothing and pass: then everything is loaded).
fn load(args: &libtest_mimic::Arguments, dirs: &[PathBuf]) -> (Option<PathBuf>, suite::Suite) {
    if let Some(file) = only_file(args, dirs) {
        let one = suite::load(std::slice::from_ref(&file));
        let name = args.filter.as_deref().unwrap_or_default();
        let holds = one
            .scenarios
            .iter()
            .any(|sc| sc.families.iter().any(|f| sc.trial_name(*f) == name));
        if holds && one.errors.is_empty() {
            return (Some(file), one);
        }
    }
    (None, suite::load(dirs))
}

fn run(stack: Stack, dirs: &[PathBuf], expectations: Option<&Path>) -> ! {
    let args = libtest_mimic::Arguments::from_args();
    let expected = match expectations {
        Some(p) => Expectations::load(p).unwrap_or_else(|e| exit_bad(&e.to_string())),
        None => Expectations::default(),
    };
    let pcap_dir = std::env::var_os("HALFCLOSE_PCAP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target").join("halfclose"));
    if !args.list {
        if let Err(e) = crate::preflight::writable_dir(&pcap_dir) {
            exit_bad(&format!("captures go to {}, but {e}", pcap_dir.display()));
        }
    }
    let (one, mut loaded) = load(&args, dirs);
    // The expectations are checked against the whole suite once, in the run that loads it
    // (a one-trial process would re-read every file to check entries it does not use).
    if one.is_none() {
        let errors = expected.check(stack.short_name(), &loaded.scenarios, dirs);
        if !errors.is_empty() {
            let shown: Vec<String> = errors.iter().map(|e| format!("error: {e}")).collect();
            exit_bad(&format!(
                "{}\nthe expectations do not fit this run",
                shown.join("\n")
            ));
        }
    }
    // HALFCLOSE_FAST=1 leaves out the scenarios tagged `slow` (the 60 s TIME_WAIT expiry).
    if std::env::var_os("HALFCLOSE_FAST").is_some_and(|v| v == "1") {
        loaded.without_slow();
    }
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let cfg = TrialConfig::new(pcap_dir, stack);
    let trials = trials::trials(&loaded.scenarios, &loaded.errors, &cfg, &records, &expected);
    let conclusion = schedule::run(&args, trials);
    let recs = records.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // HALFCLOSE_ALLOW_ALL_SKIPPED=1: a run in which every trial was skipped is no error.
    if std::env::var_os("HALFCLOSE_ALLOW_ALL_SKIPPED").is_none_or(|v| v != "1") {
        if let Some(why) = crate::cli::run::all_skipped(&recs) {
            exit_bad(&format!(
                "{why}; HALFCLOSE_ALLOW_ALL_SKIPPED=1 accepts that"
            ));
        }
    }
    let summary = crate::report::Summary::of(&recs);
    crate::closer::exit(crate::cli::run::conclude(&summary, conclusion.has_failed()))
}
