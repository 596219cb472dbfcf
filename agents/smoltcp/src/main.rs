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
    let mut stack = Stack::new(tap_fd).unwrap_or_else(|e| fatal(&e));
    let mut calls = Calls::new();
    emit(&protocol::hello(stack::TIME_WAIT_MS));

    let mut input = Input::default();
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
        if wait_for_stdin(stack.poll_fd(), timeout)
            && !read_commands(&mut input, &mut stack, &mut calls)
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
    calls.sweep(stack);
    let mut frames = 0;
    while frames < FRAMES_PER_STEP && stack.ingress_one() {
        calls.sweep(stack);
        frames += 1;
    }
    while stack.egress_once() {
        calls.sweep(stack);
    }
    flush(&mut calls.out);
    frames == FRAMES_PER_STEP
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

/// The longest command line the agent takes (the protocol's limit), `\n` not counted.
const MAX_LINE: usize = 1 << 20;

/// The part of stdin not yet executed: the start of a line.
#[derive(Default)]
struct Input {
    line: Vec<u8>,
    /// The current line went past MAX_LINE: drop it up to its end.
    discarding: bool,
}

/// Reads what stdin has and executes every complete line in it; every byte is looked at
/// once. Returns false when the agent should exit.
fn read_commands(input: &mut Input, stack: &mut Stack, calls: &mut Calls) -> bool {
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
        if std::mem::take(&mut input.discarding) {
            continue;
        }
        if !take_part(input, piece) {
            input.discarding = false; // the line ended here
            continue;
        }
        let line = std::mem::take(&mut input.line);
        if !run_line(&String::from_utf8_lossy(&line), stack, calls) {
            return false;
        }
    }
    if !input.discarding {
        take_part(input, chunk);
    }
    true
}

/// Appends to the current line; past MAX_LINE, answers with an error and drops the line.
fn take_part(input: &mut Input, part: &[u8]) -> bool {
    if input.line.len() + part.len() > MAX_LINE {
        input.line = Vec::new();
        input.discarding = true;
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
    input.line.extend_from_slice(part);
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
