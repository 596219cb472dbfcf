//! halfclose-smoltcp-agent: runs smoltcp on the TAP fd halfclose hands down
//! (HALFCLOSE_TAP_FD) and executes socket calls that arrive as JSON lines on
//! stdin, answering and reporting events on stdout. See docs/agent-protocol.md.
//!
//! One thread, one poll(2) over stdin and the TAP fd. The timeout comes from
//! smoltcp's poll_delay(), so its timers (retransmission, TIME-WAIT) fire on
//! time, and a command runs the moment its line arrives.

mod calls;
mod protocol;
mod stack;

use calls::Calls;
use serde_json::Value;
use stack::Stack;
use std::io::Write;
use std::os::unix::io::RawFd;

fn main() {
    let tap_fd = match std::env::var("HALFCLOSE_TAP_FD") {
        Ok(s) => match s.trim().parse::<RawFd>() {
            Ok(fd) => Some(fd),
            Err(_) => fatal(&format!(
                "HALFCLOSE_TAP_FD={s:?} is not a file descriptor number"
            )),
        },
        // Without a TAP the agent still speaks the protocol; `configure` then fails.
        Err(_) => None,
    };
    let mut stack =
        Stack::new(tap_fd).unwrap_or_else(|e| fatal(&format!("cannot use the TAP fd: {e}")));
    let mut calls = Calls::new();
    emit(&protocol::hello(stack::TIME_WAIT_MS));

    let mut input = Vec::new();
    loop {
        step(&mut stack, &mut calls);
        let timeout = stack.poll_delay().map(|d| d.total_micros().div_ceil(1000));
        if wait_for_stdin(stack.poll_fd(), timeout)
            && !read_commands(&mut input, &mut stack, &mut calls)
        {
            return; // EOF on stdin or `quit`
        }
    }
}

/// Lets smoltcp do all it can now, one frame or one transmit round at a time,
/// looking at every socket in between so no state change goes unreported.
fn step(stack: &mut Stack, calls: &mut Calls) {
    stack.maintain();
    calls.sweep(stack);
    while stack.ingress_one() {
        calls.sweep(stack);
    }
    while stack.egress_once() {
        calls.sweep(stack);
    }
    flush(&mut calls.out);
}

/// Sleeps in poll(2) until stdin or the TAP is readable or smoltcp's next
/// deadline (`None` = no deadline). Returns whether stdin is readable.
fn wait_for_stdin(tap: Option<RawFd>, timeout_ms: Option<u64>) -> bool {
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
    let timeout = timeout_ms.map_or(-1, |ms| ms.min(i32::MAX as u64) as i32);
    // A negative fd is ignored by poll(2), which covers "no TAP yet".
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
    n > 0 && fds[0].revents != 0
}

/// Reads what stdin has and executes every complete line in it.
/// Returns false when the agent should exit.
fn read_commands(input: &mut Vec<u8>, stack: &mut Stack, calls: &mut Calls) -> bool {
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
    input.extend_from_slice(&buf[..n as usize]);
    while let Some(pos) = input.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = input.drain(..=pos).collect();
        if !run_line(&String::from_utf8_lossy(&line), stack, calls) {
            return false;
        }
    }
    true
}

/// Executes one protocol line; false after `quit`.
fn run_line(line: &str, stack: &mut Stack, calls: &mut Calls) -> bool {
    if line.trim().is_empty() {
        return true;
    }
    match protocol::parse_line(line) {
        Err(e) => emit(&protocol::reply_err(e.id, &e.error)),
        Ok(req) => {
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
