//! Stands in for the gVisor agent's tests where build.rs could not build the Go agent (Go
//! or gVisor's sources absent): one test that says so, instead of tests that cannot run.
#![cfg(no_gvisor_agent)]

#[test]
fn skipped_the_go_agent_is_not_built() {
    eprintln!(
        "skipped: the gVisor agent's tests need the Go agent: {}",
        env!("HALFCLOSE_GVISOR_AGENT_MISSING")
    );
}
