//! Steps that look at the SUT's socket: `state` (now, with its timer) and `leave` (when it
//! moves on).

use std::time::{Duration, Instant, SystemTime};

use super::trace::{appears_in_order, states_of, Source};
use super::{deadline_of, matching, noise, offset_text, Failure, Run};
use crate::observe::{SockInfo, TcpState};
use crate::script::values::show_duration;
use crate::script::{StateCheck, Step, TimerCheck, Window, DEFAULT_CONN};

/// The kernel handles our last frame in softirq context; a `state` step re-reads for this long
/// before calling a state wrong — never long enough to hide a transient state.
const SETTLE: Duration = Duration::from_millis(50);
/// How often `leave` looks: the resolution of the measured moment.
const LEAVE_POLL: Duration = Duration::from_millis(5);

fn show(s: Option<TcpState>) -> String {
    s.map_or("CLOSED (no socket)".to_string(), |s| s.name().to_string())
}

impl Run<'_> {
    fn look(&mut self, step: &Step, conn: &str) -> Result<Option<SockInfo>, Failure> {
        let (local, remote) = self.addrs(conn);
        let info = self.sut.connection(local, remote).map_err(|e| {
            self.fail(
                step,
                "state".into(),
                vec![("error:".into(), format!("observing the SUT: {e}"))],
            )
        })?;
        if conn == DEFAULT_CONN {
            self.trace
                .record(SystemTime::now(), info.as_ref().map(|i| i.state));
        }
        Ok(info)
    }

    pub(super) fn state(&mut self, step: &Step, check: &StateCheck) -> Result<(), Failure> {
        let until = Instant::now() + SETTLE;
        let (info, read_from, read_to) = loop {
            let from = SystemTime::now();
            let info = self.look(step, &check.conn)?;
            if info.as_ref().map(|i| i.state) == check.want || Instant::now() >= until {
                break (info, from, SystemTime::now());
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let got = info.as_ref().map(|i| i.state);
        if got != check.want {
            return Err(self.mismatch(
                step,
                format!("state {}", show(check.want)),
                show(check.want),
                show(got),
            ));
        }
        let (Some(timer), Some(info)) = (check.timer, info) else {
            return Ok(());
        };
        let (lo, hi) = self.timer_range(step, timer, &check.since, (read_from, read_to))?;
        let place = self.short_place(step);
        self.measurements.push(format!(
            "{place}: {} timer {} remaining (expected {}..{})",
            info.timer,
            show_duration(info.expires),
            show_duration(lo),
            show_duration(hi)
        ));
        if info.expires < lo || info.expires > hi {
            return Err(self.mismatch(
                step,
                format!("state {} timer", show(check.want)),
                format!(
                    "{} remaining between {} and {}",
                    info.timer,
                    show_duration(lo),
                    show_duration(hi)
                ),
                format!(
                    "{} remaining ({} timer)",
                    show_duration(info.expires),
                    info.timer
                ),
            ));
        }
        Ok(())
    }

    /// The range a timer reading must fall in: typed in the script, or from the profile: the
    /// armed length less the time since the event that armed it (the previous event, or the
    /// step `since` names), both ends, with the machine's measured stalls added.
    fn timer_range(
        &self,
        step: &Step,
        timer: TimerCheck,
        since: &Option<String>,
        (read_from, read_to): (SystemTime, SystemTime),
    ) -> Result<(Duration, Duration), Failure> {
        let armed = match timer {
            TimerCheck::Range(lo, hi) => return Ok((lo, hi)),
            TimerCheck::Armed(t) => self.profile.armed(t),
        };
        let (from, _) = self.anchor_of(step, since.as_deref())?;
        let elapsed_lo = read_from.duration_since(from).unwrap_or_default();
        let elapsed_hi =
            read_to.duration_since(from).unwrap_or_default() + noise::worst(from, read_to);
        Ok(self.profile.reading_range(armed, elapsed_lo, elapsed_hi))
    }

    /// Waits until the connection is no longer in `state`; the moment must fall in the window.
    pub(super) fn leave(
        &mut self,
        step: &Step,
        state: TcpState,
        w: &Window,
        conn: &str,
    ) -> Result<(), Failure> {
        // A timer-model window ends later by the polling that notices the change.
        let mut w = self.resolve_window(w, conn);
        if w.retransmission.is_some() || w.timer.is_some() {
            w.within += LEAVE_POLL;
        }
        let w = &w;
        let (from, from_what) = self.window_start(step, w)?;
        let deadline = deadline_of(from + w.within + noise::WAIT_BEYOND);
        let (left_at, now) = loop {
            let now = self.look(step, conn)?.map(|i| i.state);
            if now != Some(state) {
                break (SystemTime::now(), now);
            }
            if Instant::now() >= deadline {
                return Err(self.never_left(step, state, w, from, &from_what, conn));
            }
            std::thread::sleep(LEAVE_POLL);
        };
        let offset = offset_text(left_at, from);
        if let Err(why) = matching::check_time(w, left_at, from) {
            return Err(self.mismatch(
                step,
                format!("leave {}", state.name()),
                format!("{} ends {}", state.name(), matching::show_window(w)),
                format!(
                    "it ended at {offset} after {from_what} (now {}): {why}",
                    show(now)
                ),
            ));
        }
        let place = self.short_place(step);
        self.measurements.push(format!(
            "{place}: {} ended {offset} after {from_what} (window {})",
            state.name(),
            matching::show_window(w)
        ));
        self.mark(
            step,
            left_at,
            format!("the end of {} ({offset} after {from_what})", state.name()),
        );
        Ok(())
    }

    /// The window closed with the state still there. Looking a little longer tells "late, at
    /// +X" from "never", so the message carries the measured moment.
    fn never_left(
        &mut self,
        step: &Step,
        state: TcpState,
        w: &Window,
        from: SystemTime,
        from_what: &str,
        conn: &str,
    ) -> Failure {
        let grace = w
            .within
            .clamp(Duration::from_millis(200), Duration::from_secs(2));
        let until = Instant::now() + grace;
        let actual = loop {
            match self.look(step, conn) {
                Ok(now) if now.as_ref().map(|i| i.state) != Some(state) => {
                    let at = offset_text(SystemTime::now(), from);
                    break format!(
                        "still {} when the window closed; it ended at {at} after {from_what}",
                        state.name()
                    );
                }
                Ok(_) if Instant::now() < until => std::thread::sleep(LEAVE_POLL),
                Ok(_) => {
                    break format!(
                        "still {} {} after {from_what}",
                        state.name(),
                        show_duration(w.within + grace)
                    )
                }
                Err(f) => return f,
            }
        };
        self.mismatch(
            step,
            format!("leave {}", state.name()),
            format!("{} ends {}", state.name(), matching::show_window(w)),
            actual,
        )
    }
}

impl Run<'_> {
    /// `transitions: [...]`: the whole state sequence of `conn` so far. With the tracepoint the
    /// sequence must be exactly this; from samples alone (which can miss a short state) what
    /// was seen must appear in it in order, and the message says which source it checked.
    pub(super) fn transitions_so_far(
        &mut self,
        step: &Step,
        want: &[Option<TcpState>],
    ) -> Result<(), Failure> {
        self.sample();
        self.update_exact_trace();
        let got = states_of(self.trace.states());
        let ok = if self.trace.source == Source::Tracepoint {
            got == want
        } else {
            appears_in_order(&got, want)
        };
        if ok {
            return Ok(());
        }
        let show_all = |v: &[Option<TcpState>]| {
            v.iter()
                .map(|s| s.map_or("CLOSED", |s| s.name()))
                .collect::<Vec<_>>()
                .join(" → ")
        };
        Err(self.mismatch(
            step,
            "transitions".to_string(),
            show_all(want),
            format!("{}  ({})", show_all(&got), self.trace.source),
        ))
    }
}
