//! The SUT connection's state over a trial, as sampled after every step.

use std::fmt;
use std::time::SystemTime;

use crate::observe::TcpState;

/// Distinct consecutive states with the time each was first seen. `None` = no socket (CLOSED).
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub states: Vec<(SystemTime, Option<TcpState>)>,
}

impl Trace {
    /// Records a sample; only changes are kept, and nothing before the socket first exists.
    pub fn record(&mut self, at: SystemTime, state: Option<TcpState>) {
        let last = self.states.last().map(|(_, s)| *s);
        if last == Some(state) || (self.states.is_empty() && state.is_none()) {
            return;
        }
        self.states.push((at, state));
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.states
            .iter()
            .map(|(_, s)| s.map_or("CLOSED", |s| s.name()))
            .collect()
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.states.is_empty() {
            return f.write_str("(the connection's socket was never seen)");
        }
        f.write_str(&self.names().join(" → "))
    }
}
