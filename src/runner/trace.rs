//! The SUT connection's states over a trial: every transition with its time.
//!
//! Two sources. sock_diag is sampled after every step (and while `leave` waits); it sees the
//! timewait mini-socket but misses states shorter than a step. The state tracepoint
//! (`crate::tracepoint`), when it can be opened, sees every change of the full socket with
//! its kernel timestamp, but not the mini-socket: entering TIME_WAIT shows as the full socket
//! going to CLOSE. The exact trace is the tracepoint's, with each such hand-over replaced by
//! the states sock_diag saw of the mini-socket. The samples must all appear in it, in order;
//! if they do not (events lost, another process's connection to the same address), the
//! sampled trace is used and the report says why.

use std::fmt;
use std::time::SystemTime;

use crate::observe::TcpState;
use crate::tracepoint::{Change, KernelState};

/// One state and when it began. `None` = no socket (CLOSED).
pub type Entry = (SystemTime, Option<TcpState>);

/// Where a trace came from, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// Sampled with sock_diag after every step; the reason the tracepoint was not used.
    #[default]
    Sampled,
    SampledBecause(String),
    /// Every transition from the sock:inet_sock_set_state tracepoint (and sock_diag for the
    /// timewait mini-socket).
    Tracepoint,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            // sock_diag for the kernel, the agent's `state` replies for an agent.
            Source::Sampled => f.write_str("sampled after every step"),
            Source::SampledBecause(why) => write!(f, "sampled after every step ({why})"),
            Source::Tracepoint => {
                f.write_str("every transition, from the sock:inet_sock_set_state tracepoint")
            }
        }
    }
}

impl Source {
    /// One word for the failure text.
    pub fn short(&self) -> &'static str {
        match self {
            Source::Tracepoint => "tracepoint",
            _ => "sampled",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// What sock_diag showed, changes only.
    sampled: Vec<Entry>,
    /// The tracepoint's trace merged with the samples, when the two agree.
    exact: Option<Vec<Entry>>,
    pub source: Source,
    /// The latest look: when it was asked for, and what it saw.
    last_look: Option<(SystemTime, Option<TcpState>)>,
}

impl Trace {
    /// Records a sample; only changes are kept, and nothing before the socket first exists.
    /// `at` is when the look was asked for: the state was there at some moment after it.
    pub fn record(&mut self, at: SystemTime, state: Option<TcpState>) {
        push_change(&mut self.sampled, at, state);
        self.last_look = Some((at, state));
    }

    /// When `state` was last seen, if the latest look saw it.
    pub fn seen_last(&self, state: TcpState) -> Option<SystemTime> {
        self.last_look
            .filter(|(_, s)| *s == Some(state))
            .map(|(at, _)| at)
    }

    /// The trace the report shows: the exact one when there is one, else the samples.
    pub fn states(&self) -> &[Entry] {
        self.exact.as_deref().unwrap_or(&self.sampled)
    }

    /// Takes the tracepoint's changes of the connection (already narrowed to its 4-tuple)
    /// and, if the samples agree with them, makes the exact trace the one reported.
    pub fn use_changes(&mut self, changes: &[Change], lost: u64) {
        self.exact = None;
        if lost > 0 {
            self.source = Source::SampledBecause(format!("the tracepoint lost {lost} event(s)"));
            return;
        }
        let exact = merge(changes, &self.sampled);
        if !appears_in_order(&states_of(&self.sampled), &states_of(&exact)) {
            self.source = Source::SampledBecause(
                "the tracepoint's events disagree with sock_diag; another connection to the same address?"
                    .into(),
            );
            return;
        }
        self.exact = Some(exact);
        self.source = Source::Tracepoint;
    }

    /// The trace with times relative to the first state: `ESTABLISHED +0.000s → FIN_WAIT_1 +0.004s`.
    pub fn timeline(&self) -> String {
        let Some((t0, _)) = self.states().first() else {
            return self.to_string();
        };
        let parts: Vec<String> = self
            .states()
            .iter()
            .map(|(at, s)| {
                let dt = at.duration_since(*t0).unwrap_or_default();
                format!("{} +{:.6}s", name(*s), dt.as_secs_f64())
            })
            .collect();
        parts.join(" → ")
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.states().iter().map(|(_, s)| name(*s)).collect()
    }
}

fn name(s: Option<TcpState>) -> &'static str {
    s.map_or("CLOSED", |s| s.name())
}

fn push_change(v: &mut Vec<Entry>, at: SystemTime, state: Option<TcpState>) {
    let last = v.last().map(|(_, s)| *s);
    if last == Some(state) || (v.is_empty() && state.is_none()) {
        return;
    }
    v.push((at, state));
}

/// The full socket going to CLOSE from these states hands the connection to a timewait
/// mini-socket (TIME_WAIT, or an orphan's FIN_WAIT_2) rather than ending it.
fn hands_over(c: &Change) -> bool {
    use TcpState::*;
    c.new == KernelState::Close && matches!(c.old, KernelState::Tcp(FinWait1 | FinWait2 | Closing))
}

/// The tracepoint's transitions, with each hand-over to a mini-socket replaced by what
/// sock_diag saw between it and the next transition (the mini-socket's state, from the moment
/// of the hand-over, and its end).
fn merge(changes: &[Change], sampled: &[Entry]) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        let next = changes.get(i + 1).map(|n| n.at);
        if !hands_over(c) {
            let state = match c.new {
                KernelState::Tcp(s) => Some(s),
                KernelState::Close => None,
                KernelState::Listen => continue,
            };
            push_change(&mut out, c.at, state);
            continue;
        }
        let after: Vec<&Entry> = sampled
            .iter()
            .filter(|(t, _)| *t >= c.at && next.is_none_or(|n| *t < n))
            .collect();
        match after.first() {
            // The mini-socket's state began at the hand-over, not when it was first sampled.
            Some((_, first)) => push_change(&mut out, c.at, *first),
            None => push_change(&mut out, c.at, None),
        }
        for (t, s) in after.iter().skip(1) {
            push_change(&mut out, *t, *s);
        }
    }
    out
}

/// The states of a trace, without their times.
pub fn states_of(entries: &[Entry]) -> Vec<Option<TcpState>> {
    entries.iter().map(|(_, s)| *s).collect()
}

/// Whether every state of `seen` shows up in `all`, in order (others may come between):
/// what samples, which can miss a short state, must satisfy against a complete trace.
pub fn appears_in_order(seen: &[Option<TcpState>], all: &[Option<TcpState>]) -> bool {
    let mut it = all.iter();
    seen.iter().all(|s| it.any(|a| a == s))
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.states().is_empty() {
            return f.write_str("(the connection's socket was never seen)");
        }
        f.write_str(&self.names().join(" → "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use TcpState::*;

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn change(ms: u64, old: KernelState, new: KernelState) -> Change {
        Change {
            at: t(ms),
            old,
            new,
            sport: 8080,
            dport: 40000,
        }
    }

    fn tcp(s: TcpState) -> KernelState {
        KernelState::Tcp(s)
    }

    #[test]
    fn a_simultaneous_close_shows_closing_though_no_sample_saw_it() {
        let changes = [
            change(1, KernelState::Listen, tcp(SynRecv)),
            change(2, tcp(SynRecv), tcp(Established)),
            change(10, tcp(Established), tcp(FinWait1)),
            change(11, tcp(FinWait1), tcp(Closing)),
            change(12, tcp(Closing), KernelState::Close),
        ];
        let sampled = vec![
            (t(3), Some(Established)),
            (t(10), Some(FinWait1)),
            (t(20), Some(TimeWait)),
        ];
        let mut tr = Trace::default();
        for (at, s) in &sampled {
            tr.record(*at, *s);
        }
        tr.use_changes(&changes, 0);
        assert_eq!(tr.source, Source::Tracepoint);
        assert_eq!(
            tr.names(),
            [
                "SYN_RECV",
                "ESTABLISHED",
                "FIN_WAIT_1",
                "CLOSING",
                "TIME_WAIT"
            ]
        );
        // TIME_WAIT began at the hand-over, 8 ms before it was sampled.
        assert_eq!(tr.states()[4].0, t(12));
    }

    #[test]
    fn the_mini_socket_ends_as_sampled() {
        let changes = [
            change(1, tcp(Established), tcp(FinWait1)),
            change(2, tcp(FinWait1), tcp(FinWait2)),
            change(3, tcp(FinWait2), KernelState::Close),
        ];
        let sampled = vec![
            (t(1), Some(FinWait1)),
            (t(4), Some(FinWait2)),
            (t(3004), None),
        ];
        let mut tr = Trace::default();
        for (at, s) in &sampled {
            tr.record(*at, *s);
        }
        tr.use_changes(&changes, 0);
        assert_eq!(tr.names(), ["FIN_WAIT_1", "FIN_WAIT_2", "CLOSED"]);
        assert_eq!(tr.states()[2].0, t(3004));
    }

    #[test]
    fn disagreeing_sources_fall_back_to_the_samples() {
        let changes = [change(1, tcp(Established), tcp(CloseWait))];
        let mut tr = Trace::default();
        tr.record(t(1), Some(FinWait1));
        tr.use_changes(&changes, 0);
        assert!(matches!(tr.source, Source::SampledBecause(_)));
        assert_eq!(tr.names(), ["FIN_WAIT_1"]);
        tr.use_changes(&changes, 3);
        assert!(matches!(tr.source, Source::SampledBecause(w) if w.contains("lost 3")));
    }
}
