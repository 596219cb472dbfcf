//! halfclose: a conformance harness for TCP connection teardown.
//!
//! A scenario (YAML, see `docs/script-format.md`) is parsed by [`script`] into a typed
//! [`script::Scenario`]; the [`runner`] plays it as one trial per address family: it builds a
//! private [`topology`] (two anonymous network namespaces joined by a veth pair), drives the
//! system under test through [`sut`], plays the remote end with the raw-socket [`peer`], watches
//! socket states with [`observe`], records every frame in [`capture`], and hands a verdict to
//! [`trials`], which turns scenarios into libtest-mimic trials whose records [`report`] writes
//! as JSON and JUnit; [`cli`] is the command line.

pub mod capture;
pub mod cli;
pub mod closer;
pub mod coverage;
pub mod exit;
pub mod expectations;
pub mod harness;
pub mod html;
pub mod interrupt;
pub mod keeper;
pub mod ktap;
pub mod ladder;
pub mod observe;
pub mod peer;
pub mod preflight;
pub mod privilege;
pub mod realtime;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod script;
pub mod stack;
pub mod suite;
pub mod sut;
pub mod timers;
pub mod topology;
pub mod tracepoint;
pub mod trials;
pub mod wire;

use std::fmt;

/// The address family a trial runs over. Every scenario runs once per family unless it
/// restricts itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The prefix of trial names: `ipv4` or `ipv6`.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The library's own unit tests create namespaces too. libtest starts its worker threads
/// before any test runs, and a user namespace can only be entered while the process has one
/// thread, so an unprivileged `cargo test` enters it from an ELF constructor, before `main`.
#[cfg(test)]
mod test_privilege {
    extern "C" fn enter() {
        if let Err(e) = crate::privilege::ensure() {
            eprintln!("halfclose tests: {e}");
        }
    }

    #[used]
    #[link_section = ".init_array"]
    static ENTER: extern "C" fn() = enter;
}
