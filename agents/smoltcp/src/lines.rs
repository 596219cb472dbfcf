//! Command lines from stdin, as the protocol frames them: `\n`-terminated, at most 1 MiB
//! each. Shared by the agents in this repository (agents/lwip includes this file), so that
//! they all refuse an overlong line the same way.

use crate::protocol;
use serde_json::Value;
use std::os::unix::io::RawFd;

/// The longest command line an agent takes (the protocol's limit), `\n` not counted.
pub const MAX_LINE: usize = 1 << 20;

/// The part of stdin not yet executed: the start of a line.
#[derive(Default)]
pub struct Input {
    line: Vec<u8>,
    /// The current line went past MAX_LINE: drop it up to its end.
    discarding: bool,
}

impl Input {
    /// Reads what stdin has and hands every complete line to `run` (which returns false to
    /// stop: `quit`); a line past MAX_LINE is answered through `emit` and dropped. Every
    /// byte is looked at once. Returns false when the agent should exit (EOF or `quit`).
    pub fn read_stdin(
        &mut self,
        mut run: impl FnMut(&str) -> bool,
        mut emit: impl FnMut(&Value),
    ) -> bool {
        let mut buf = [0u8; 65536];
        // stdin is left blocking (it may be shared with the parent); poll said it is
        // readable, so one read() does not block.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            return false;
        }
        if n < 0 {
            return true; // EINTR and the like: try again on the next round
        }
        let mut chunk = &buf[..n as usize];
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            let (piece, rest) = (&chunk[..pos], &chunk[pos + 1..]);
            chunk = rest;
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            if !self.take_part(piece, &mut emit) {
                self.discarding = false; // the line ended here
                continue;
            }
            let line = std::mem::take(&mut self.line);
            if !run(&String::from_utf8_lossy(&line)) {
                return false;
            }
        }
        if !self.discarding {
            self.take_part(chunk, &mut emit);
        }
        true
    }

    /// Appends to the current line; past MAX_LINE, answers with an error and drops the line.
    fn take_part(&mut self, part: &[u8], emit: &mut impl FnMut(&Value)) -> bool {
        if self.line.len() + part.len() > MAX_LINE {
            self.line = Vec::new();
            self.discarding = true;
            let e = protocol::Error::new(
                "EPROTO",
                format!(
                    "a line longer than {} MiB (the protocol's limit); ignored",
                    MAX_LINE >> 20
                ),
            );
            emit(&protocol::reply_err(None, &e));
            return false;
        }
        self.line.extend_from_slice(part);
        true
    }
}

/// The longest single sleep of the agent's loop, in ms (see [`wait_for_stdin`]).
const MAX_SLEEP_MS: i32 = 20;

/// Sleeps in poll(2) until stdin or the TAP is readable or the stack's next timer is due
/// (`None` = no timer), MAX_SLEEP_MS at most. Returns whether stdin is readable.
pub fn wait_for_stdin(tap: Option<RawFd>, timeout_ms: Option<u64>) -> bool {
    let mut fds = [
        libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: tap.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // poll(2) lets a normal-priority task's timeout end up to 0.1 % late (the kernel's
    // select_estimate_accuracy(): 4 ms on a 4 s sleep), more than the 3 ms the smoltcp
    // timer profile allows a timer to fire late, and a retransmission due after a 4 s backoff
    // came 2.7 ms late. Sleeping at most MAX_SLEEP_MS at a time keeps that slack to the
    // task's 50 µs timer slack; the loop then looks again, which costs nothing.
    let timeout = timeout_ms.map_or(MAX_SLEEP_MS, |ms| ms.min(MAX_SLEEP_MS as u64) as i32);
    // A negative fd is ignored by poll(2), which covers "no TAP yet".
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
    n > 0 && fds[0].revents != 0
}
