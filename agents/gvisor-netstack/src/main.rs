//! halfclose-gvisor-agent: the launcher cargo builds beside halfclose (as it does the smoltcp
//! agent), so `--stack gvisor` finds it the same way. It replaces itself (exec, same pid, fds
//! and environment, HALFCLOSE_TAP_FD included) with the Go agent build.rs compiled from go/,
//! which runs gVisor's netstack. Built without Go, it says what to install and exits 2.

use std::os::unix::process::CommandExt;

fn main() {
    let Some(go_agent) = option_env!("HALFCLOSE_GVISOR_AGENT_GO") else {
        eprintln!(
            "halfclose-gvisor-agent: built without the Go agent: {}; then rebuild (cargo build --workspace)",
            option_env!("HALFCLOSE_GVISOR_AGENT_MISSING").unwrap_or("Go or gVisor's sources were missing")
        );
        std::process::exit(2);
    };
    run_ahead_of_the_load();
    let err = std::process::Command::new(go_agent)
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!("halfclose-gvisor-agent: cannot run {go_agent}: {err}");
    std::process::exit(2);
}

/// gVisor's timers (retransmission, delayed ACK, TIME_WAIT) fire on Go runtime threads; on a
/// loaded machine those threads wake late and the stack's timing becomes the host scheduler's:
/// measured at nice 19 beside `stress-ng --cpu 2`, a third retransmission left 2.3 ms past its
/// window. At real-time priority (where permitted: root) they wake when due. Set before exec,
/// the policy passes to every thread the Go runtime creates. The agent sleeps in the kernel
/// nearly all the time, and a FIFO thread that does spin is bounded by the kernel's RT
/// throttling. Elsewhere this is a no-op.
fn run_ahead_of_the_load() {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: plain syscalls on the calling (only) thread with valid arguments.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &param);
    }
}
