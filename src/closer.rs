//! Closing what takes long to close, off the paths anyone waits on.
//!
//! Closing an AF_PACKET socket waits for an RCU grace period (`synchronize_net` in
//! `packet_release`, 6–15 ms on an idle VM), and so does closing the last perf event of a
//! tracepoint. A trial has two packet sockets and the process one tracepoint event: closed in
//! turn, at the end of a one-scenario process, that was 30–45 ms of its exit, longer than the
//! trial. So:
//!
//! - [`later`] queues a descriptor; a thread closes what has waited [`SETTLE`], each on a
//!   thread of its own, so grace periods overlap instead of adding up;
//! - [`exit`] ends the process without waiting for any grace period: it forks a child that
//!   holds the same descriptors, exits, and the child, once its parent is gone, exits too
//!   and pays the grace periods alone. The child closes its standard input, output and error
//!   first (whoever reads the process's output sees the end at once), calls only
//!   async-signal-safe functions, and lives a few grace periods at most: nothing is left.

use std::os::fd::OwnedFd;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a queued descriptor waits before it is closed: long enough that the last
/// trial's are still queued when a one-scenario process ends (and go to the child).
const SETTLE: Duration = Duration::from_millis(200);

/// How long the child waits for its parent to be gone before it exits anyway.
const PARENT_WAIT: Duration = Duration::from_secs(2);

type Queue = Mutex<Vec<(Instant, Vec<OwnedFd>)>>;

fn queue() -> &'static Queue {
    static QUEUE: OnceLock<Queue> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let _ = std::thread::Builder::new()
            .name("halfclose-closer".into())
            .spawn(close_settled);
        Mutex::new(Vec::new())
    })
}

/// Closes these descriptors soon, together, on threads of their own.
pub fn later(fds: Vec<OwnedFd>) {
    queue()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((Instant::now(), fds));
}

fn close_settled() {
    loop {
        std::thread::sleep(SETTLE / 4);
        let settled: Vec<OwnedFd> = {
            let mut q = queue().lock().unwrap_or_else(|e| e.into_inner());
            let (old, young): (Vec<_>, Vec<_>) =
                q.drain(..).partition(|(at, _)| at.elapsed() >= SETTLE);
            *q = young;
            old.into_iter().flat_map(|(_, fds)| fds).collect()
        };
        for fd in settled {
            // One thread per descriptor: their grace periods overlap.
            let _ = std::thread::Builder::new()
                .name("halfclose-close".into())
                .spawn(move || drop(fd));
        }
    }
}

/// Ends the process with `code`, leaving the slow closes to a short-lived child (see the
/// module's comment). Falls back to a plain exit when fork fails.
pub fn exit(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // Hold the queue: the closer thread must not start a close the parent would wait for.
    let _held = queue().lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: fork in a threaded process; the child only calls async-signal-safe functions
    // (close, getppid, clock_nanosleep, _exit) before it exits.
    match unsafe { libc::fork() } {
        0 => child_waits_for(parent),
        _ => std::process::exit(code),
    }
}

fn child_waits_for(parent: libc::pid_t) -> ! {
    // SAFETY: closing our copies of stdio; async-signal-safe.
    unsafe {
        libc::close(0);
        libc::close(1);
        libc::close(2);
    }
    let tick = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    let ticks = PARENT_WAIT.as_millis() as u32;
    for _ in 0..ticks {
        // SAFETY: getppid is async-signal-safe.
        if unsafe { libc::getppid() } != parent {
            break;
        }
        // SAFETY: a valid timespec; async-signal-safe.
        unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &tick, std::ptr::null_mut()) };
    }
    // SAFETY: _exit runs no handlers; the kernel closes the descriptors.
    unsafe { libc::_exit(0) }
}
