//! halfclose-smoltcp-agent: runs smoltcp on the TAP fd halfclose hands down
//! (HALFCLOSE_TAP_FD) and executes socket calls that arrive as JSON lines on
//! stdin, answering and reporting events on stdout. See docs/agent-protocol.md.
//!
//! One thread, one poll(2) over stdin and the TAP fd. The timeout comes from
//! smoltcp's poll_delay(), so its timers (retransmission, TIME-WAIT) fire on
//! time, and a command runs the moment its line arrives.

mod calls;
mod inner;
mod lines;
mod protocol;
mod segs;
mod stack;
mod tapfd;
mod timer;

use calls::Calls;
use serde_json::Value;
use stack::Stack;
use std::io::Write;

fn main() {
    let tap_fd = tapfd::from_env().unwrap_or_else(|e| fatal(&e));
    let mut stack = Stack::new(tap_fd).unwrap_or_else(|e| fatal(&e));
    let mut calls = Calls::new();
    emit(&protocol::hello(stack::TIME_WAIT_MS));

    let mut input = lines::Input::default();
    loop {
        let busy = step(&mut stack, &mut calls);
        if let Some(e) = stack.device_error() {
            fatal(&format!("the TAP device failed: {e}"));
        }
        // Frames still waiting: look at stdin, then go on with them at once.
        let timeout = match busy {
            true => Some(0),
            false => stack.poll_delay().map(|d| d.total_micros().div_ceil(1000)),
        };
        // A parked poll() that times out must be answered on time, not at the next frame.
        let poll_due = calls.next_deadline_ns().map(|ns| {
            let left = ns.saturating_sub(stack::realtime_ns() as u128);
            left.div_ceil(1_000_000) as u64
        });
        let timeout = match (timeout, poll_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if lines::wait_for_stdin(stack.poll_fd(), timeout)
            && !input.read_stdin(|line| run_line(line, &mut stack, &mut calls), emit)
        {
            return; // EOF on stdin or `quit`
        }
    }
}

/// Frames taken from the TAP before stdin gets a look: a flood cannot starve commands.
const FRAMES_PER_STEP: usize = 64;

/// Lets smoltcp do what it can now, one frame or one transmit round at a time,
/// looking at every socket in between so no state change goes unreported.
/// Returns true when it stopped with frames possibly still waiting.
fn step(stack: &mut Stack, calls: &mut Calls) -> bool {
    stack.maintain();
    calls.sweep(stack, false);
    let mut frames = 0;
    while frames < FRAMES_PER_STEP && stack.ingress_one() {
        calls.sweep(stack, false);
        frames += 1;
    }
    // A timer that gives a connection up acts in a transmit round; the sweep after
    // it must run even when the round sent nothing.
    loop {
        let sent = stack.egress_once();
        calls.sweep(stack, true);
        if !sent {
            break;
        }
    }
    flush(&mut calls.out);
    frames == FRAMES_PER_STEP
}

/// Executes one protocol line; false after `quit`.
fn run_line(line: &str, stack: &mut Stack, calls: &mut Calls) -> bool {
    if line.trim().is_empty() {
        return true;
    }
    match protocol::parse_line_ext(line) {
        Err(e) => emit(&protocol::reply_err(e.id, &e.error)),
        Ok(protocol::Parsed::Ext { id, cmd }) => {
            calls.execute_ext(stack, id, cmd);
            step(stack, calls);
        }
        Ok(protocol::Parsed::Base(req)) => {
            let quit = req.cmd == protocol::Command::Quit;
            calls.execute(stack, req.id, req.cmd);
            if quit {
                flush(&mut calls.out);
                return false;
            }
            // Send what the command queued right away, and report its effects.
            step(stack, calls);
        }
    }
    true
}

fn flush(lines: &mut Vec<Value>) {
    for line in lines.drain(..) {
        emit(&line);
    }
}

/// Writes one protocol line. stdout carries nothing else; if halfclose has gone
/// away there is nobody to serve, so exit quietly.
fn emit(line: &Value) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
        std::process::exit(0);
    }
}

fn fatal(message: &str) -> ! {
    eprintln!("halfclose-smoltcp-agent: {message}");
    std::process::exit(2);
}
