//! Steps of the SUT application: `call` and `await`, with every read checked against what
//! the peer sent.

use std::time::SystemTime;

use super::{deadline_of, matching, offset_text, Failure, Run, WAIT_BEYOND};
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
            return Err(self.mismatch(step, format!("call {}", call.text), sut::show_outcome(&call.outcome), format!("still blocked after {}; a call that blocks needs `background: true` and an `await` step", show_duration(timeout))));
        };
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
        if !sut::check_outcome(&call.outcome, &done.result) {
            return Err(self.mismatch(
                step,
                format!("call {}", call.text),
                sut::show_outcome(&call.outcome),
                done.result.to_string(),
            ));
        }
        let is_read = matches!(call.func, Func::Read { .. } | Func::ReadAll { .. });
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
        self.read_offsets
            .insert(call.fd.clone(), offset + data.len());
        Ok(())
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
                sut::show_outcome(&call.outcome),
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
        self.mark(step, done.ended, format!("the return of `{}`", call.text));
        Ok(())
    }
}
