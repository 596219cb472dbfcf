//! Steps of the SUT application: `call` and `await`, with every read checked against what
//! the peer sent.

use std::time::SystemTime;

use super::{deadline_of, matching, offset_text, Failure, Run, WAIT_BEYOND};
use crate::ladder::Kind;
use crate::script::values::show_duration;
use crate::script::{Call, Func, Step, Window, DEFAULT_CONN};
use crate::sut::{self, CallResult, Completed};

impl Run<'_> {
    /// The addresses a call's `bind`/`connect` use: those of the connection named like its
    /// descriptor, else `conn`'s.
    fn call_addrs(&self, call: &Call) -> crate::sut::Addrs {
        let name = if self.conns.iter().any(|(n, _)| *n == call.fd) {
            call.fd.as_str()
        } else {
            DEFAULT_CONN
        };
        self.addrs(name)
    }

    pub(super) fn call(&mut self, step: &Step, call: &Call) -> Result<(), Failure> {
        let timeout = self.sc.setup.call_timeout;
        let addrs = self.call_addrs(call);
        let done = self
            .sut
            .call(self.topo, call, addrs, timeout)
            .map_err(|e| {
                self.fail(
                    step,
                    format!("call {}", call.text),
                    vec![("error:".into(), e)],
                )
            })?;
        let Some(done) = done else {
            // Its thread held up past the timeout would look the same as a call that blocks.
            let due = self.clock;
            self.check_stall(step, "the call", due, SystemTime::now());
            return Err(self.mismatch(step, format!("call {}", call.text), sut::show_expected(call), format!("still blocked after {}; a call that blocks needs `background: true` and an `await` step", show_duration(timeout))));
        };
        self.event(step, done.started, Kind::Call, call.text.clone());
        self.event(step, done.ended, Kind::Return, done.result.to_string());
        // Lateness first: a call made late may rightly return something else.
        let due = self.clock;
        self.check_late(step, "the call", due, done.started);
        self.check_stall(step, "the call", done.started, done.ended);
        self.check_call(step, call, &done)?;
        self.mark(
            step,
            done.started,
            format!("the call at line {}", step.loc.line),
        );
        // The next step follows the call's return.
        self.clock = done.ended;
        Ok(())
    }

    /// The result, and for reads on a connection's descriptor, the bytes themselves.
    fn check_call(&mut self, step: &Step, call: &Call, done: &Completed) -> Result<(), Failure> {
        if !sut::check_call(call, &done.result) {
            return Err(self.mismatch(
                step,
                format!("call {}", call.text),
                sut::show_expected(call),
                sut::app::show_result(call, &done.result),
            ));
        }
        self.note_written(call, &done.result);
        let is_read = matches!(
            call.func,
            Func::Read { .. } | Func::ReadAll { .. } | Func::Recv { .. }
        );
        let (CallResult::Data(data), true) = (&done.result, is_read) else {
            return Ok(());
        };
        if !self.conns.iter().any(|(n, _)| *n == call.fd) {
            return Ok(());
        }
        let offset = self.read_offsets.get(&call.fd).copied().unwrap_or(0);
        if let Err(why) = self.conn(&call.fd).check_read(offset, data) {
            return Err(self.mismatch(
                step,
                format!("call {}", call.text),
                "the bytes the peer sent",
                why,
            ));
        }
        // A peek leaves the bytes for the next read.
        let peeked =
            matches!(call.func, Func::Recv { flags, .. } if flags & libc::MSG_PEEK as u32 != 0);
        if !peeked {
            self.read_offsets
                .insert(call.fd.clone(), offset + data.len());
        }
        Ok(())
    }

    /// What a write on a connection's descriptor put in the send queue, for `receive`.
    fn note_written(&mut self, call: &Call, result: &CallResult) {
        let (Func::Write(p) | Func::Send { payload: p, .. }, CallResult::Ret(n)) =
            (&call.func, result)
        else {
            return;
        };
        if !self.conns.iter().any(|(c, _)| *c == call.fd) {
            return;
        }
        let bytes = p.bytes();
        let n = (*n as usize).min(bytes.len());
        self.written
            .entry(call.fd.clone())
            .or_default()
            .extend_from_slice(&bytes[..n]);
    }

    pub(super) fn call_background(&mut self, step: &Step, call: &Call) -> Result<(), Failure> {
        let name = step.name.clone().unwrap_or_default();
        let addrs = self.call_addrs(call);
        let started = self
            .sut
            .call_background(self.topo, &name, call, addrs)
            .map_err(|e| {
                self.fail(
                    step,
                    format!("call {}", call.text),
                    vec![("error:".into(), e)],
                )
            })?;
        self.event(step, started, Kind::Background, call.text.clone());
        let due = self.clock;
        self.check_late(step, "the background call", due, started);
        self.background.insert(name, (call.clone(), started));
        self.mark(
            step,
            started,
            format!(
                "the start of call `{}` at line {}",
                call.text, step.loc.line
            ),
        );
        Ok(())
    }

    pub(super) fn await_call(
        &mut self,
        step: &Step,
        name: &str,
        w: &Window,
    ) -> Result<(), Failure> {
        let (call, started) = self
            .background
            .remove(name)
            .expect("checked when the script was loaded");
        let (from, from_what) = match &w.since {
            Some(_) => self.window_start(step, w)?,
            None => (started, format!("the start of `{}`", call.text)),
        };
        let Some(done) = self
            .sut
            .collect(name, &call, deadline_of(from + w.within + WAIT_BEYOND))
        else {
            // A call thread held up meanwhile may have returned in time all the same.
            self.check_stall(
                step,
                &format!("the return of `{}`", call.text),
                from,
                SystemTime::now(),
            );
            let want = format!(
                "`{}` returns {} {}",
                call.text,
                sut::show_expected(&call),
                matching::show_window(w)
            );
            return Err(self.mismatch(
                step,
                format!("await {name}"),
                want,
                format!(
                    "still blocked {} after {from_what}",
                    show_duration(w.within)
                ),
            ));
        };
        let returned = format!("{}: {}", call.text, done.result);
        self.event(step, done.ended, Kind::Return, returned);
        // Its start and return are the harness's own measurements: held-up threads make
        // them late (the start is what windows after the call count from).
        let slack = self.profile.harness_slack();
        self.check_stall(
            step,
            &format!("the start of `{}`", call.text),
            started,
            started + slack,
        );
        self.check_stall(
            step,
            &format!("the return of `{}`", call.text),
            done.ended - slack,
            done.ended,
        );
        self.check_call(step, &call, &done)?;
        // The return is seen by the harness's own call thread, which wakes some time after
        // the kernel returns: a return late by less than the harness's slack may be that
        // thread's lateness, not the SUT's (an early one cannot be).
        let late_edge = from + w.within;
        if done.ended > late_edge && done.ended - slack <= late_edge {
            let place = self.short_place(step);
            self.excuse(format!(
                "{place}: `{}` was seen returning {} after its window closed, within the harness's slack ({}) of waking its call thread",
                call.text,
                show_duration(done.ended.duration_since(late_edge).unwrap_or_default()),
                show_duration(slack)
            ));
        }
        if let Err(why) = self.judge_time(step, w, done.ended, from) {
            return Err(self.mismatch(
                step,
                format!("await {name}"),
                format!("`{}` returns {}", call.text, matching::show_window(w)),
                format!(
                    "returned {} after {from_what}: {why}",
                    offset_text(done.ended, from)
                ),
            ));
        }
        // The step ends no earlier than the one before it: a call that returned while earlier
        // steps still waited (a lingering close() during the FIN's retransmissions) does not
        // make the next step due in the past, which would read as the harness being late.
        let clock = self.clock;
        self.mark(step, done.ended, format!("the return of `{}`", call.text));
        self.clock = self.clock.max(clock);
        Ok(())
    }
}
