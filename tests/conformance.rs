//! `cargo test` entry: every scenario under suites/ becomes a libtest-mimic trial per address
//! family (`ipv4::close::active-close`, …), the same trials `halfclose run` runs, judged with
//! the suite's Linux expectations.
//!
//! Captures go to target/halfclose/ (or $HALFCLOSE_PCAP_DIR).

use halfclose::harness;

fn main() {
    harness::kernel_main(
        &[harness::suites_dir()],
        harness::suite_expectations("linux").as_deref(),
    );
}
