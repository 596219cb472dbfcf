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

    /// The trace with times relative to the first state: `ESTABLISHED +0.000s → FIN_WAIT_1 +0.004s`.
    pub fn timeline(&self) -> String {
        let Some((t0, _)) = self.states.first() else {
            return self.to_string();
        };
        let parts: Vec<String> = self
            .states
            .iter()
            .map(|(at, s)| {
                let dt = at.duration_since(*t0).unwrap_or_default();
                format!(
                    "{} +{:.3}s",
                    s.map_or("CLOSED", |s| s.name()),
                    dt.as_secs_f64()
                )
            })
            .collect();
        parts.join(" → ")
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
