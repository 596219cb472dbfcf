//! The suite as a `cargo test` target, for this repository and for stack authors.
//!
//! A test target with `harness = false` whose `main` calls [`kernel_main`] (this repository's
//! tests/conformance.rs) or [`agent_main`] (a stack author's) gets every scenario of halfclose's
//! suite as a libtest-mimic trial: `cargo test` and `cargo nextest` list, filter and run them,
//! with a pcapng per trial.
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
//! fn main() {
//!     halfclose::harness::agent_main(
//!         &[env!("CARGO_BIN_EXE_my-agent")],
//!         Some(std::path::Path::new("tests/halfclose-expectations.yaml")),
//!     );
//! }
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::expectations::Expectations;
use crate::runner::{Stack, TrialConfig};
use crate::{cli, privilege, report, schedule, suite};

/// The suite against the local kernel, with the suite's own Linux expectations.
pub fn kernel_main() -> ! {
    enter();
    let suites = suites_dir();
    let expected = suites.join("expectations/linux.yaml");
    run(
        Stack::Kernel,
        &suites,
        expected.is_file().then_some(expected.as_path()),
    )
}

/// The suite against the stack behind `agent` (a command and its arguments, speaking
/// docs/agent-protocol.md), with the stack author's expectations file, if any.
pub fn agent_main(agent: &[&str], expectations: Option<&Path>) -> ! {
    enter();
    let cmd = agent.join(" ");
    let stack = cli::resolve_stack(None, Some(&cmd)).unwrap_or_else(|e| exit_bad(&e));
    run(stack, &suites_dir(), expectations)
}

/// First, while the process has one thread: not root → enter a user namespace.
fn enter() {
    if let Err(e) = privilege::ensure() {
        exit_bad(&e.to_string());
    }
}

fn exit_bad(msg: &str) -> ! {
    eprintln!("halfclose: {msg}");
    std::process::exit(cli::EXIT_BAD_INPUT)
}

/// halfclose's suites/: relative when run from this package's root (cargo does), so messages
/// stay short; else the copy that ships with the crate.
fn suites_dir() -> PathBuf {
    if Path::new("suites/expectations").is_dir() && Path::new("src/harness.rs").is_file() {
        PathBuf::from("suites")
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites")
    }
}

fn run(stack: Stack, suites: &Path, expectations: Option<&Path>) -> ! {
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
    let mut loaded = suite::load(&[suites.to_path_buf()]);
    let errors = expected.check(stack.short_name(), &loaded.scenarios);
    if !errors.is_empty() {
        let shown: Vec<String> = errors.iter().map(|e| format!("error: {e}")).collect();
        exit_bad(&format!(
            "{}\nthe expectations do not fit this run",
            shown.join("\n")
        ));
    }
    // HALFCLOSE_FAST=1 leaves out the scenarios tagged `slow` (the 60 s TIME_WAIT expiry).
    if std::env::var_os("HALFCLOSE_FAST").is_some_and(|v| v == "1") {
        loaded.without_slow();
    }
    let records = Arc::new(Mutex::new(Vec::new()));
    let cfg = TrialConfig::new(pcap_dir, stack);
    let trials = report::trials(&loaded.scenarios, &loaded.errors, &cfg, &records, &expected);
    let conclusion = schedule::run(&args, trials);
    // HALFCLOSE_ALLOW_ALL_SKIPPED=1: a run in which every trial was skipped is no error.
    if std::env::var_os("HALFCLOSE_ALLOW_ALL_SKIPPED").is_none_or(|v| v != "1") {
        if let Some(why) = cli::all_skipped(&records) {
            exit_bad(&format!(
                "{why}; HALFCLOSE_ALLOW_ALL_SKIPPED=1 accepts that"
            ));
        }
    }
    std::process::exit(cli::exit_code(&conclusion, &records))
}
