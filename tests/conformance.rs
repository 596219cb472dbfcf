//! `cargo test` entry: every scenario under suites/ becomes a libtest-mimic trial per address
//! family (`ipv4::close::active-close`, …), the same trials `halfclose run` runs.
//!
//! Captures go to target/halfclose/ (or $HALFCLOSE_PCAP_DIR).

fn main() {
    halfclose::harness::kernel_main();
}
