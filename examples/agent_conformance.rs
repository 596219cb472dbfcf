//! What a stack author's `tests/conformance.rs` looks like (with `harness = false` in their
//! Cargo.toml): the whole halfclose suite (and any scenario directories of their own, listed
//! beside it) against their stack, through its agent, as libtest-mimic trials.
//!
//! Here the agent is this repository's smoltcp agent:
//!
//! ```sh
//! cargo build --release --workspace
//! cargo run --release --example agent_conformance -- --list
//! cargo run --release --example agent_conformance -- closing-states
//! ```

fn main() {
    let agent = std::env::var("HALFCLOSE_AGENT")
        .unwrap_or_else(|_| "target/release/halfclose-smoltcp-agent".to_string());
    use halfclose::harness;
    harness::agent_main(
        &[agent.as_str()],
        // A stack's own crate would add its directory: `"tests/scenarios".into()`.
        &[harness::suites_dir()],
        harness::suite_expectations("smoltcp").as_deref(),
    );
}
