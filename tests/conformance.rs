//! `cargo test` entry: every scenario under suites/ becomes a libtest-mimic trial per address
//! family (`ipv4::close::active-close`, …), the same trials `halfclose run` runs.
//!
//! Captures go to target/halfclose/ (or $HALFCLOSE_PCAP_DIR).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use halfclose::expectations::Expectations;
use halfclose::runner::TrialConfig;
use halfclose::{privilege, report, schedule, suite};

fn main() {
    // First, while the process has one thread: not root → enter a user namespace.
    if let Err(e) = privilege::ensure() {
        eprintln!("halfclose: {e}");
        std::process::exit(2);
    }
    let args = libtest_mimic::Arguments::from_args();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Relative paths when run from the package root (cargo does), so messages stay short.
    let suites = if PathBuf::from("suites").is_dir() {
        PathBuf::from("suites")
    } else {
        root.join("suites")
    };
    let pcap_dir = std::env::var_os("HALFCLOSE_PCAP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("halfclose"));
    let expected = suites.join("expectations/linux.yaml");
    let expected = if expected.is_file() {
        Expectations::load(&expected).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2)
        })
    } else {
        Expectations::default()
    };
    let mut loaded = suite::load(&[suites]);
    // HALFCLOSE_FAST=1 leaves out the scenarios tagged `slow` (the 60 s TIME_WAIT expiry).
    if std::env::var_os("HALFCLOSE_FAST").is_some_and(|v| v == "1") {
        loaded.without_slow();
    }
    let records = Arc::new(Mutex::new(Vec::new()));
    let trials = report::trials(
        &loaded.scenarios,
        &loaded.errors,
        &TrialConfig {
            pcap_dir,
            stack: Default::default(),
        },
        &records,
        &expected,
    );
    schedule::run(&args, trials).exit();
}
