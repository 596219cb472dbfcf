//! Agent processes that leave nothing behind, however they or halfclose end.
//!
//! An agent may fork (a stack's worker threads are sometimes processes), and whatever it
//! starts inherits the trial's TAP fd, which keeps the trial's network namespace alive. So
//! the agent does not run as halfclose's child but as the child of a *keeper*, a small forked
//! copy of halfclose that never execs:
//!
//! ```text
//!   halfclose ── keeper ── agent (pid 1 of its own pid namespace, its own process group)
//!      │  ctl pipe  │           └── whatever the agent starts
//!      └────────────┘
//! ```
//!
//! - The agent is the first process of a new pid namespace where the kernel allows one (root,
//!   or halfclose's own user namespace): when it ends, the kernel kills everything else in the
//!   namespace, whatever process group or session it moved to. It also leads its own process
//!   group, which the keeper kills too (where no pid namespace could be made, that is all).
//! - The agent has PR_SET_PDEATHSIG = SIGKILL: it dies with the keeper.
//! - The keeper holds the read end of a pipe whose only write end is halfclose's. When it
//!   reads EOF (halfclose stopped the agent, or died, even by SIGKILL) it kills the agent's
//!   group and the agent, waits for it — by then the kernel has emptied the pid namespace — and
//!   exits with the agent's status (a signal death is re-raised), so halfclose's `wait` on
//!   the keeper is a wait for the agent and everything it started.
//! - The keeper leads its own process group too, so a terminal's ^C reaches halfclose only,
//!   which then writes its reports before the agents go.
//!
//! Everything between fork and exec is async-signal-safe: raw system calls on numbers.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The fd number the TAP device has in the agent process.
pub const TAP_FD: RawFd = 3;

/// How long a stopped agent (and all it started) may take to be gone before the keeper is
/// killed outright.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running agent behind its keeper.
pub struct Agent {
    /// The keeper; its exit status is the agent's.
    keeper: Arc<Mutex<Child>>,
    /// halfclose's end of the ctl pipe: closing it stops the agent.
    ctl: Option<OwnedFd>,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
}

impl Agent {
    /// Starts `cmd` behind a keeper, with piped stdin and stdout, `stderr` as given, and the
    /// TAP device (if any) as fd [`TAP_FD`], announced in HALFCLOSE_TAP_FD.
    pub fn spawn(cmd: &[String], tap: Option<BorrowedFd<'_>>, stderr: Stdio) -> io::Result<Agent> {
        let (program, args) = cmd
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an empty command"))?;
        let (ctl_read, ctl_write) = ctl_pipe()?;
        let mut c = Command::new(program);
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0);
        if tap.is_some() {
            c.env("HALFCLOSE_TAP_FD", TAP_FD.to_string())
                .env("HALFCLOSE_TAP_NAME", crate::topology::TAP_IFNAME);
        } else {
            c.env_remove("HALFCLOSE_TAP_FD");
        }
        let tap = tap.map(|t| t.as_raw_fd());
        let (r, w) = (ctl_read.as_raw_fd(), ctl_write.as_raw_fd());
        // SAFETY: the closure (run in the forked child) makes only async-signal-safe calls.
        unsafe {
            c.pre_exec(move || in_keeper(tap, r, w));
        }
        let mut keeper = c.spawn()?;
        drop(ctl_read);
        Ok(Agent {
            stdin: keeper.stdin.take(),
            stdout: keeper.stdout.take(),
            keeper: Arc::new(Mutex::new(keeper)),
            ctl: Some(ctl_write),
        })
    }

    /// A handle for learning the agent's exit status from another thread.
    pub fn status_handle(&self) -> Arc<Mutex<Child>> {
        self.keeper.clone()
    }

    /// The agent's pid in halfclose's pid namespace (the keeper's only child), once forked.
    pub fn agent_pid(&self) -> Option<u32> {
        let keeper = self.keeper.lock().unwrap_or_else(|e| e.into_inner()).id();
        std::fs::read_to_string(format!("/proc/{keeper}/task/{keeper}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Stops the agent and everything it started, and waits until they are gone.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.stdin.take();
        // EOF for the keeper: it kills the agent's group and namespace and exits.
        self.ctl.take();
        if let Some(status) = exit_status(&self.keeper, STOP_TIMEOUT) {
            return Some(status);
        }
        let mut k = self.keeper.lock().unwrap_or_else(|e| e.into_inner());
        tracing::warn!("agent keeper {} did not exit: killing it", k.id());
        let _ = k.kill();
        k.wait().ok()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The agent's exit status, once it has exited, waiting up to `limit` for that.
pub fn exit_status(keeper: &Mutex<Child>, limit: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        let polled = keeper.lock().unwrap_or_else(|e| e.into_inner()).try_wait();
        match polled {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

/// Both ends close-on-exec; the read end numbered above the TAP's slot, so placing the TAP
/// there never closes it.
fn ctl_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors that nothing else owns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created, owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor, owned here.
    let high = unsafe { libc::fcntl(r.as_raw_fd(), libc::F_DUPFD_CLOEXEC, TAP_FD + 1) };
    if high < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    Ok((unsafe { OwnedFd::from_raw_fd(high) }, w))
}

/// The forked child, before exec: becomes the keeper, forks the agent, and returns (so that
/// std execs the command) only in the agent.
fn in_keeper(tap: Option<RawFd>, ctl: RawFd, ctl_write: RawFd) -> io::Result<()> {
    // SAFETY: raw system calls on descriptor numbers and pids; nothing allocates.
    unsafe {
        // Only halfclose may hold the write end, or EOF would never come.
        libc::close(ctl_write);
        if let Some(tap) = tap {
            // dup2 clears close-on-exec on the new number, but does nothing at all when the
            // TAP already has that number (then it would be closed at exec).
            let rc = if tap == TAP_FD {
                libc::fcntl(TAP_FD, libc::F_SETFD, 0)
            } else {
                libc::dup2(tap, TAP_FD)
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // fork, into a new pid namespace where allowed (raw clone: no atfork handlers here).
        let mut agent = libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWPID | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        );
        if agent < 0 {
            agent = libc::syscall(
                libc::SYS_clone,
                libc::SIGCHLD as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            );
        }
        if agent < 0 {
            return Err(io::Error::last_os_error());
        }
        if agent == 0 {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The agent is the SUT: its timers fire when its process runs. The kernel stack's
            // fire in softirqs, ahead of any task; where allowed (root) the agent gets the
            // same footing, real-time priority, so CPU hogs do not make it late.
            let param = libc::sched_param { sched_priority: 1 };
            libc::sched_setscheduler(0, libc::SCHED_FIFO, &param);
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
            // Had the keeper gone already, no signal would come: it goes only after EOF on
            // the ctl pipe, and that (or anything) readable means nobody wants the agent.
            let mut p = libc::pollfd {
                fd: ctl,
                events: libc::POLLIN,
                revents: 0,
            };
            if libc::poll(&mut p, 1, 0) != 0 {
                libc::_exit(1);
            }
            libc::close(ctl);
            return Ok(());
        }
        keep(agent as libc::pid_t, ctl)
    }
}

/// The keeper's life: wait for the agent to end or for EOF on `ctl`, make sure everything
/// of the agent is gone, and exit as the agent did.
unsafe fn keep(agent: libc::pid_t, ctl: RawFd) -> ! {
    // Nothing else stays open here: not the agent's pipes (their EOF must mean the agent is
    // gone), not the TAP, not std's exec-error pipe (its EOF tells the parent exec worked).
    close_all_but(ctl);
    let pidfd = libc::syscall(libc::SYS_pidfd_open, agent, 0) as RawFd;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: ctl,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Without a pidfd (old kernels), look at the agent every 50 ms.
        let timeout = if pidfd >= 0 { -1 } else { 50 };
        let n = libc::poll(fds.as_mut_ptr(), 2, timeout);
        if n < 0 && *libc::__errno_location() != libc::EINTR {
            break;
        }
        if fds[0].revents != 0 || fds[1].revents != 0 {
            break;
        }
        let mut status = 0;
        if pidfd < 0 && libc::waitpid(agent, &mut status, libc::WNOHANG) == agent {
            libc::kill(-agent, libc::SIGKILL);
            exit_as(status);
        }
    }
    libc::kill(-agent, libc::SIGKILL);
    libc::kill(agent, libc::SIGKILL);
    let mut status = 0;
    while libc::waitpid(agent, &mut status, 0) < 0 && *libc::__errno_location() == libc::EINTR {}
    // Outside a pid namespace, the rest of the agent's group outlives it: kill them too.
    libc::kill(-agent, libc::SIGKILL);
    exit_as(status)
}

unsafe fn close_all_but(keep: RawFd) {
    const CLOSE_RANGE: libc::c_long = libc::SYS_close_range;
    let ranges = [
        (0, keep as libc::c_uint - 1),
        (keep as libc::c_uint + 1, !0),
    ];
    for (first, last) in ranges {
        if first <= last && libc::syscall(CLOSE_RANGE, first, last, 0) < 0 {
            for fd in first..last.min(4096) {
                libc::close(fd as RawFd);
            }
        }
    }
}

/// Exits with the agent's wait status: its exit code, or the signal that ended it (without
/// a core dump).
unsafe fn exit_as(status: libc::c_int) -> ! {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), sig);
        libc::_exit(128 + sig);
    }
    libc::_exit(libc::WEXITSTATUS(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn the_keeper_exits_as_the_agent_did() {
        let mut a = Agent::spawn(&sh("exit 7"), None, Stdio::null()).unwrap();
        let status = exit_status(&a.status_handle(), Duration::from_secs(5)).unwrap();
        assert_eq!(status.code(), Some(7));
        // Killed from outside (inside its namespace, the agent is pid 1 and cannot be).
        let mut a2 = Agent::spawn(&sh("read x"), None, Stdio::null()).unwrap();
        let keeper = a2.status_handle().lock().unwrap().id();
        let mut agent = String::new();
        assert!(eventually(|| {
            agent = children(keeper);
            !agent.is_empty()
        }));
        // SAFETY: kill(2) on the pid of a process this test started.
        unsafe { libc::kill(agent.parse().unwrap(), libc::SIGKILL) };
        let status = exit_status(&a2.status_handle(), Duration::from_secs(5)).unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
        a.stop();
        a2.stop();
    }

    #[test]
    fn stop_takes_what_the_agent_started() {
        // The agent starts a helper in a session of its own, then waits; stop must take both.
        let mut a = Agent::spawn(
            &sh("setsid sleep 300 & echo $!; read x"),
            None,
            Stdio::null(),
        )
        .unwrap();
        let mut line = String::new();
        io::BufRead::read_line(&mut io::BufReader::new(a.stdout.take().unwrap()), &mut line)
            .unwrap();
        // The helper's pid as the agent sees it is one in its own namespace; find it from
        // here as the keeper's grandchild.
        let keeper = a.status_handle().lock().unwrap().id();
        let agent = children(keeper);
        let helper = children(agent.parse().unwrap());
        assert!(!helper.is_empty(), "a helper");
        assert!(Path::new(&format!("/proc/{helper}")).exists());
        a.stop();
        assert!(
            !Path::new(&format!("/proc/{agent}")).exists(),
            "agent {agent} still there"
        );
        assert!(
            !Path::new(&format!("/proc/{helper}")).exists(),
            "helper {helper} still there"
        );
    }

    use std::path::Path;

    /// The children of a process, as pids in this namespace, space-separated.
    fn children(pid: u32) -> String {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    fn eventually(mut cond: impl FnMut() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}
