//! Steps that look at the SUT's socket: `state` (now, with its timer) and `leave` (when it
//! moves on).

use std::time::{Duration, Instant, SystemTime};

use super::trace::{appears_in_order, states_of, Source};
use super::{matching, offset_text, show_precise, Failure, Run, WAIT_BEYOND};
use crate::observe::{SockInfo, TcpState};
use crate::script::values::show_duration;
use crate::script::{StateCheck, Step, TimerCheck, Window, DEFAULT_CONN};

/// The kernel handles our last frame in softirq context; a `state` step re-reads for this long
/// before calling a state wrong — never long enough to hide a transient state.
const SETTLE: Duration = Duration::from_millis(50);
/// How often `leave` looks at most: the resolution of the measured moment (narrow windows are
/// looked at more often).
const LEAVE_POLL: Duration = Duration::from_millis(5);

fn show(s: Option<TcpState>) -> String {
    s.map_or("CLOSED (no socket)".to_string(), |s| s.name().to_string())
}

impl Run<'_> {
    fn look(&mut self, step: &Step, conn: &str) -> Result<Option<SockInfo>, Failure> {
        self.finish_samples();
        let (local, remote) = self.addrs(conn);
        let asked = SystemTime::now();
        let info = self.sut.connection(local, remote).map_err(|e| {
            self.fail(
                step,
                "state".into(),
                vec![("error:".into(), format!("observing the SUT: {e}"))],
            )
        })?;
        if conn == DEFAULT_CONN {
            self.trace.record(asked, info.as_ref().map(|i| i.state));
        }
        Ok(info)
    }

    /// When the latest look at `conn` saw it in `state` (known for `conn` only).
    fn last_seen(&self, conn: &str, state: TcpState) -> Option<SystemTime> {
        (conn == DEFAULT_CONN)
            .then(|| self.trace.seen_last(state))
            .flatten()
    }

    pub(super) fn state(&mut self, step: &Step, check: &StateCheck) -> Result<(), Failure> {
        let until = Instant::now() + SETTLE;
        let due = self.clock;
        self.check_late(step, "the state check", due, SystemTime::now());
        // The trace's looks first, so this one's span is its own round trip.
        self.finish_samples();
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
            // The look saw the state at some moment between asking and the answer: an answer
            // slower than the slack (an agent held up, say) leaves that moment too vague to
            // say the SUT was in the wrong state when the script says.
            self.excuse_slow_look(step, "the state check's answer", (read_from, read_to));
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
        let reading = format!(
            "{} timer {} remaining",
            info.timer,
            show_duration(info.expires)
        );
        self.event(step, read_to, crate::ladder::Kind::Timer, reading);
        let place = self.short_place(step);
        self.notes.measurements.push(format!(
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

    /// A look at the SUT saw it at some moment between asking and the answer; an answer
    /// slower than the harness's slack leaves that moment too vague to judge by: the run is
    /// inconclusive.
    fn excuse_slow_look(
        &mut self,
        step: &Step,
        what: &str,
        (asked, answered): (SystemTime, SystemTime),
    ) {
        let took = answered.duration_since(asked).unwrap_or_default();
        if took > self.profile.harness_slack() {
            let place = self.short_place(step);
            self.excuse(format!(
                "{place}: {what} took {} (the harness's slack is {})",
                show_precise(took),
                show_duration(self.profile.harness_slack())
            ));
        }
    }

    /// The range a timer reading must fall in: typed in the script, or from the profile: the
    /// armed length less the time since the event that armed it (the previous event, or the
    /// step `since` names), both ends, with the machine's measured stalls added.
    fn timer_range(
        &mut self,
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
        // The kernel read the timer somewhere between the request and the reply: a reply the
        // harness took long to get makes that moment too vague to judge a reading by.
        self.excuse_slow_look(step, "reading the timer", (read_from, read_to));
        let elapsed_lo = read_from.duration_since(from).unwrap_or_default();
        let elapsed_hi = read_to.duration_since(from).unwrap_or_default();
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
        let w = &self.resolve_window(w, conn);
        let (from, from_what) = self.window_start(step, w)?;
        let until = from + w.within + WAIT_BEYOND;
        // Looks much closer together than the window is wide, so the span they leave can fit
        // in it (smoltcp's TIME_WAIT window is 5 ms wide).
        let width = w.within.saturating_sub(w.after.unwrap_or_default());
        let poll = (width / 8).clamp(Duration::from_micros(200), LEAVE_POLL);
        // The state was there when a look that saw it was asked for, and gone by the time
        // the look that missed it was answered: its end lies between, however late the
        // harness looked.
        self.finish_samples();
        let mut seen = self.last_seen(conn, state);
        let (gone_by, now) = loop {
            let asked = SystemTime::now();
            let now = self.look(step, conn)?.map(|i| i.state);
            if now != Some(state) {
                break (SystemTime::now(), now);
            }
            seen = Some(asked);
            if asked >= until {
                return Err(self.never_left(step, state, w, from, &from_what, conn));
            }
            std::thread::sleep(poll);
        };
        let Some(seen) = seen else {
            return Err(self.mismatch(
                step,
                format!("leave {}", state.name()),
                format!("{} ends {}", state.name(), matching::show_window(w)),
                format!("it was never seen (now {})", show(now)),
            ));
        };
        let span = format!(
            "between {} and {} after {from_what}",
            offset_text(seen, from),
            offset_text(gone_by, from)
        );
        match self.judge_span(step, w, (seen, gone_by), from) {
            matching::Span::Inside => {}
            matching::Span::Outside(why) => {
                return Err(self.mismatch(
                    step,
                    format!("leave {}", state.name()),
                    format!("{} ends {}", state.name(), matching::show_window(w)),
                    format!("it ended {span} (now {}): {why}", show(now)),
                ))
            }
            matching::Span::Across => {
                let place = self.short_place(step);
                self.excuse(format!(
                    "{place}: {} ended {span}, across an edge of the window {}: the harness looked too late to tell",
                    state.name(),
                    matching::show_window(w)
                ));
            }
        }
        let place = self.short_place(step);
        self.notes.measurements.push(format!(
            "{place}: {} ended {span} (window {})",
            state.name(),
            matching::show_window(w)
        ));
        self.mark(
            step,
            gone_by,
            format!("the end of {} ({span})", state.name()),
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
        self.finish_samples();
        self.sample();
        self.finish_samples();
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
