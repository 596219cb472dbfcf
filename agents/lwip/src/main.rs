//! halfclose-lwip-agent: runs lwIP (Debian's liblwip 2.1) on the TAP fd halfclose hands down
//! (HALFCLOSE_TAP_FD) and executes socket calls that arrive as JSON lines on stdin,
//! answering and reporting events on stdout. See docs/agent-protocol.md.
//!
//! One thread, one poll(2) over stdin and the TAP fd, lwIP in its main-loop mode: the
//! timeout is lwIP's own next timer (sys_timeouts_sleeptime), so its 250 ms TCP timer runs
//! when due, and a command runs the moment its line arrives.

#[cfg(lwip)]
mod calls;
#[cfg(lwip)]
mod lwip;
// The protocol's lines and the stdin framing are the smoltcp agent's, so the two agents
// parse and refuse input alike.
#[allow(dead_code)]
#[path = "../../smoltcp/src/lines.rs"]
mod lines;
#[allow(dead_code)]
#[path = "../../smoltcp/src/protocol.rs"]
mod protocol;
#[allow(dead_code)]
#[path = "../../smoltcp/src/tapfd.rs"]
mod tapfd;

use serde_json::Value;
use std::fs::File;
use std::io::Write;
use std::os::unix::io::FromRawFd;
use std::sync::OnceLock;

/// Where protocol lines go: the original stdout. fd 1 itself is pointed at stderr, because
/// Debian's lwIP prints its assertion and diagnostic messages with printf (arch/cc.h), and
/// stdout must carry nothing but protocol lines.
static OUT: OnceLock<File> = OnceLock::new();

fn protect_stdout() {
    let out = unsafe { libc::dup(1) };
    if out < 0 || unsafe { libc::dup2(2, 1) } < 0 {
        fatal("cannot set stdout aside from lwIP's messages");
    }
    let _ = OUT.set(unsafe { File::from_raw_fd(out) });
}

const AGENT: &str = "halfclose-lwip-agent";

#[cfg(not(lwip))]
fn main() {
    fatal(concat!(
        "built without lwIP: ",
        env!("HALFCLOSE_LWIP_MISSING"),
        "; then rebuild (cargo build --workspace)"
    ));
}

/// lwIP's TCP timer re-arms itself from the moment it ran (timeouts.c: tcpip_tcp_timer()
/// calls sys_timeout(TCP_TMR_INTERVAL), i.e. sys_now() + 250 ms), so every wake-up the
/// machine's load delays stretches all later ticks, and with them every TCP timer: measured,
/// first retransmissions came up to 1.9 s past their window at a load of 30 on 2 CPUs. At
/// real-time priority (where permitted: root) the agent wakes when due; it sleeps in poll(2)
/// nearly all the time, so it takes no CPU from anyone. Elsewhere this is a no-op.
#[cfg(lwip)]
fn run_ahead_of_the_load() {
    let param = libc::sched_param { sched_priority: 1 };
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &param);
    }
}

#[cfg(lwip)]
fn main() {
    protect_stdout();
    run_ahead_of_the_load();
    let tap_fd = tapfd::from_env().unwrap_or_else(|e| fatal(&e));
    if let Some(fd) = tap_fd {
        tapfd::open(fd).unwrap_or_else(|e| fatal(&e));
    }
    lwip::init(tap_fd.unwrap_or(-1));
    let mut calls = calls::Calls::new(tap_fd);
    emit(&hello());

    let mut input = lines::Input::default();
    loop {
        let busy = step(&mut calls, tap_fd.is_some());
        if let Some(e) = lwip::tap_error() {
            fatal(&format!("the TAP device failed: {e}"));
        }
        let timeout = match busy {
            true => Some(0),
            false => lwip::sleeptime_ms(),
        };
        if lines::wait_for_stdin(tap_fd, timeout)
            && !input.read_stdin(|line| run_line(line, &mut calls), emit)
        {
            return; // EOF on stdin or `quit`
        }
    }
}

/// What the agent does, as its hello says. Every call of protocol 1; shutdown of either half
/// (tcp_shutdown); SO_LINGER 0 (tcp_abort) but not a lingering close, which would block.
#[cfg(lwip)]
fn hello() -> Value {
    serde_json::json!({"hello": {
        "protocol": protocol::PROTOCOL_VERSION,
        "agent": AGENT,
        "stack": concat!("lwip ", env!("HALFCLOSE_LWIP_VERSION")),
        "calls": ["socket","bind","listen","accept","connect","write","read","shutdown","close","setsockopt","state"],
        "shutdown": ["rd","wr","rdwr"],
        "sockopts": ["linger","nodelay","keepalive"],
        "events": ["state","readable","reset"],
        "timers": false,
        // 2 * TCP_MSL (lwip/priv/tcp_priv.h: TCP_MSL 60000 ms), counted by tcp_slowtmr.
        "time_wait_ms": 120_000,
    }})
}

/// Frames taken from the TAP before stdin gets a look: a flood cannot starve commands.
#[cfg(lwip)]
const FRAMES_PER_STEP: usize = 64;

/// Lets lwIP take what the TAP has, one frame at a time, and run its due timers, looking at
/// every connection in between so that no state change goes unreported. Returns true when
/// it stopped with frames possibly still waiting.
#[cfg(lwip)]
fn step(calls: &mut calls::Calls, tap: bool) -> bool {
    let mut frames = 0;
    while tap && frames < FRAMES_PER_STEP {
        match lwip::input_one() {
            Ok(true) => calls.sweep(),
            Ok(false) => break,
            Err(e) => fatal(&format!("the TAP device failed: {e}")),
        }
        frames += 1;
    }
    lwip::check_timeouts();
    calls.sweep();
    flush(&mut calls.out);
    frames == FRAMES_PER_STEP
}

/// Executes one protocol line; false after `quit`.
#[cfg(lwip)]
fn run_line(line: &str, calls: &mut calls::Calls) -> bool {
    if line.trim().is_empty() {
        return true;
    }
    match protocol::parse_line(line) {
        Err(e) => emit(&protocol::reply_err(e.id, &e.error)),
        Ok(req) => {
            let quit = req.cmd == protocol::Command::Quit;
            calls.execute(req.id, req.cmd);
            calls.sweep();
            flush(&mut calls.out);
            if quit {
                return false;
            }
        }
    }
    true
}

fn flush(lines: &mut Vec<Value>) {
    for line in lines.drain(..) {
        emit(&line);
    }
}

/// Writes one protocol line. stdout carries nothing else; if halfclose has gone away there
/// is nobody to serve, so exit quietly.
fn emit(line: &Value) {
    let Some(mut out) = OUT.get() else {
        return;
    };
    // One write(2) per line.
    if out.write_all(format!("{line}\n").as_bytes()).is_err() {
        std::process::exit(0);
    }
}

fn fatal(message: &str) -> ! {
    eprintln!("{AGENT}: {message}");
    std::process::exit(2);
}
