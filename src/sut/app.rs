//! The kernel side of the calls that show what the application sees of a closing
//! connection: readiness (poll, epoll), the socket's error and TCP_INFO, queue sizes
//! (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD), file flags (O_NONBLOCK), and send/recv with flags,
//! with SIGPIPE observed.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use nix::errno::Errno;

use super::CallResult;
use crate::script::call::{Fcntl, GetOpt, Ioctl};
use crate::script::names::{self, TcpiField, TCPI_FIELDS};
use crate::script::{Call, Func, Outcome};

/// The epoll instance of each descriptor `epoll()` was called on, with the events it is
/// registered for. Shared by the call threads of one trial.
#[derive(Clone, Default)]
pub struct Epolls(Arc<Mutex<HashMap<RawFd, (RawFd, u32)>>>);

impl Epolls {
    /// Closes every epoll instance (the trial is over).
    pub fn close_all(&self) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (_, (ep, _)) in map.drain() {
            // SAFETY: `ep` came from epoll_create1 and is closed only here.
            unsafe { libc::close(ep) };
        }
    }

    /// The descriptor's epoll instance, registered for `events` (made, or modified, as
    /// needed: a modification re-arms an edge-triggered registration, as epoll_ctl does).
    fn instance(&self, fd: RawFd, events: u32) -> Result<RawFd, Errno> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut ev = libc::epoll_event {
            events,
            u64: fd as u64,
        };
        if let Some((ep, registered)) = map.get_mut(&fd) {
            if *registered != events {
                // SAFETY: a valid epoll fd and event.
                if unsafe { libc::epoll_ctl(*ep, libc::EPOLL_CTL_MOD, fd, &mut ev) } < 0 {
                    return Err(Errno::last());
                }
                *registered = events;
            }
            return Ok(*ep);
        }
        // SAFETY: plain epoll_create1/epoll_ctl; the new fd is closed on failure.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(Errno::last());
        }
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            let e = Errno::last();
            unsafe { libc::close(ep) };
            return Err(e);
        }
        map.insert(fd, (ep, events));
        Ok(ep)
    }
}

/// Runs one of the calls of this module; None: not one of them.
pub fn execute(func: &Func, fd: RawFd, epolls: &Epolls) -> Option<CallResult> {
    Some(match func {
        Func::Poll { events, timeout_ms } => poll(fd, *events, *timeout_ms),
        Func::Epoll { events, timeout_ms } => epoll(fd, *events, *timeout_ms, epolls),
        Func::Fcntl(op) => fcntl(fd, *op),
        Func::GetSockOpt(GetOpt::SoError) => so_error(fd),
        Func::GetSockOpt(GetOpt::TcpInfo) => tcp_info(fd),
        Func::Ioctl(req) => ioctl(fd, *req),
        Func::Send { payload, flags } => send(fd, &payload.bytes(), *flags),
        Func::Recv { max, flags } => recv(fd, *max, *flags),
        _ => return None,
    })
}

fn int_result(rc: i64) -> CallResult {
    if rc < 0 {
        CallResult::Err(Errno::last())
    } else {
        CallResult::Ret(rc)
    }
}

fn poll(fd: RawFd, events: u32, timeout_ms: i32) -> CallResult {
    let mut p = libc::pollfd {
        fd,
        events: events as i16,
        revents: 0,
    };
    // SAFETY: one pollfd, valid for the call.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    match n {
        n if n < 0 => CallResult::Err(Errno::last()),
        0 => CallResult::Ret(0),
        _ => CallResult::Ret(i64::from(p.revents as u16)),
    }
}

fn epoll(fd: RawFd, events: u32, timeout_ms: i32, epolls: &Epolls) -> CallResult {
    let ep = match epolls.instance(fd, events) {
        Ok(ep) => ep,
        Err(e) => return CallResult::Err(e),
    };
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: room for one event.
    let n = unsafe { libc::epoll_wait(ep, &mut ev, 1, timeout_ms) };
    match n {
        n if n < 0 => CallResult::Err(Errno::last()),
        0 => CallResult::Ret(0),
        _ => CallResult::Ret(i64::from(ev.events)),
    }
}

fn fcntl(fd: RawFd, op: Fcntl) -> CallResult {
    // SAFETY: fcntl on a descriptor number; a bad one answers EBADF.
    int_result(i64::from(match op {
        Fcntl::GetFl => unsafe { libc::fcntl(fd, libc::F_GETFL) },
        Fcntl::SetFl(flags) => unsafe { libc::fcntl(fd, libc::F_SETFL, flags as i32) },
    }))
}

fn so_error(fd: RawFd) -> CallResult {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `v`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut v as *mut i32 as *mut libc::c_void,
            &mut len,
        )
    };
    if rc < 0 {
        return CallResult::Err(Errno::last());
    }
    CallResult::Ret(i64::from(v))
}

fn tcp_info(fd: RawFd) -> CallResult {
    let mut raw = [0u8; 512];
    let mut len = raw.len() as libc::socklen_t;
    // SAFETY: the pointer and length describe `raw`; the kernel fills at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            raw.as_mut_ptr() as *mut libc::c_void,
            &mut len,
        )
    };
    if rc < 0 {
        return CallResult::Err(Errno::last());
    }
    CallResult::TcpInfo(decode_tcp_info(&raw[..len as usize]))
}

/// Every field this kernel's `struct tcp_info` is long enough to have.
pub fn decode_tcp_info(raw: &[u8]) -> Vec<(TcpiField, u64)> {
    TCPI_FIELDS
        .iter()
        .filter_map(|f| f.read(raw).map(|v| (*f, v)))
        .collect()
}

fn ioctl(fd: RawFd, req: Ioctl) -> CallResult {
    let code: libc::Ioctl = match req {
        Ioctl::InQ => libc::FIONREAD,
        Ioctl::OutQ => libc::TIOCOUTQ,
        Ioctl::OutQNsd => 0x894B, // SIOCOUTQNSD, linux/sockios.h
    };
    let mut v: i32 = 0;
    // SAFETY: these requests write one int.
    let rc = unsafe { libc::ioctl(fd, code, &mut v as *mut i32) };
    if rc < 0 {
        return CallResult::Err(Errno::last());
    }
    CallResult::Ret(i64::from(v))
}

/// send(2) with the script's flags. Without MSG_NOSIGNAL the kernel raises SIGPIPE at this
/// thread when the connection can no longer send; the thread blocks SIGPIPE meanwhile, so
/// the signal is held pending (a blocked signal is queued even when ignored), then takes it
/// and says so in the result.
fn send(fd: RawFd, bytes: &[u8], flags: u32) -> CallResult {
    let nosignal = flags & libc::MSG_NOSIGNAL as u32 != 0;
    let mut pipe = nix::sys::signal::SigSet::empty();
    pipe.add(nix::sys::signal::Signal::SIGPIPE);
    let old = (!nosignal).then(|| pipe.thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK));
    // SAFETY: the pointer and length describe `bytes`.
    let rc = unsafe { libc::send(fd, bytes.as_ptr() as *const _, bytes.len(), flags as i32) };
    let result = int_result(rc as i64);
    let Some(old) = old else { return result };
    let raised = take_pending_sigpipe();
    if let Ok(old) = old {
        let _ = old.thread_set_mask();
    }
    if raised {
        CallResult::Sigpipe(Box::new(result))
    } else {
        result
    }
}

/// Takes a SIGPIPE pending at this thread, if one is.
fn take_pending_sigpipe() -> bool {
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a set holding only SIGPIPE and a zero timeout: returns at once.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == libc::SIGPIPE
    }
}

fn recv(fd: RawFd, max: usize, flags: u32) -> CallResult {
    let mut buf = vec![0u8; max];
    // SAFETY: the pointer and length describe `buf`.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut _, buf.len(), flags as i32) };
    if n < 0 {
        return CallResult::Err(Errno::last());
    }
    // MSG_TRUNC reports the length the data had, which may be more than `max`.
    buf.truncate((n as usize).min(max));
    CallResult::Data(buf)
}

/// Does a result of one of this module's outcomes meet it? None: not one of them.
pub fn check(expected: &Outcome, got: &CallResult) -> Option<bool> {
    Some(match (expected, got) {
        (Outcome::AnyErrno, r) => matches!(r, CallResult::Err(_)),
        (Outcome::Mask(want), CallResult::Ret(n)) => i64::from(*want) == *n,
        (Outcome::SoError(None), CallResult::Ret(n)) => *n == 0,
        (Outcome::SoError(Some(e)), CallResult::Ret(n)) => *e as i64 == *n,
        (Outcome::TcpInfo(checks), CallResult::TcpInfo(fields)) => checks.iter().all(|c| {
            fields
                .iter()
                .find(|(f, _)| *f == c.field)
                .is_some_and(|(_, v)| c.holds(*v))
        }),
        (Outcome::Mask(_) | Outcome::SoError(_) | Outcome::TcpInfo(_), _) => false,
        _ => return None,
    })
}

/// How the script writes an expected outcome of this module's; None: not one of them.
pub fn show_expected(o: &Outcome, func: &Func) -> Option<String> {
    Some(match o {
        Outcome::AnyErrno => "-1 (any errno)".into(),
        Outcome::Mask(m) => names::show_mask(func.mask_names().unwrap_or(&[]), *m),
        Outcome::SoError(None) => "SO_ERROR 0".into(),
        Outcome::SoError(Some(e)) => format!("SO_ERROR {e:?}"),
        Outcome::TcpInfo(checks) => {
            let parts: Vec<String> = checks.iter().map(|c| c.to_string()).collect();
            format!("{{{}}}", parts.join(", "))
        }
        _ => return None,
    })
}

/// A result shown in the call's own terms: event names for poll, an errno for SO_ERROR, and
/// for TCP_INFO the fields the script names.
pub fn show_result(call: &Call, got: &CallResult) -> String {
    match (&call.func, &call.outcome, got) {
        (f, _, CallResult::Ret(n)) if f.mask_names().is_some() => {
            names::show_mask(f.mask_names().unwrap_or(&[]), *n as u32)
        }
        (Func::GetSockOpt(GetOpt::SoError), _, CallResult::Ret(0)) => "SO_ERROR 0".into(),
        (Func::GetSockOpt(GetOpt::SoError), _, CallResult::Ret(n)) => {
            format!("SO_ERROR {:?}", Errno::from_raw(*n as i32))
        }
        (_, Outcome::TcpInfo(checks), CallResult::TcpInfo(fields)) => {
            let parts: Vec<String> = checks
                .iter()
                .map(|c| match fields.iter().find(|(f, _)| *f == c.field) {
                    Some((f, v)) => format!("tcpi_{}={}", f.name, f.show(*v)),
                    None => format!("tcpi_{} (not reported)", c.field.name),
                })
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        _ => got.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::call::parse_call;

    /// The calls on a Unix stream socket pair (no network traffic at all): readiness after
    /// the other end closes, queue sizes, MSG_PEEK, and SIGPIPE without MSG_NOSIGNAL.
    /// TCP_INFO and SO_ERROR after a reset are the suites' (suites/application/).
    #[test]
    fn calls_see_the_other_end_close() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixStream;
        let (mut a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        let epolls = Epolls::default();
        let run = |text: &str| {
            let call = parse_call(text).unwrap();
            let got = execute(&call.func, fd, &epolls).unwrap();
            (check(&call.outcome, &got), got)
        };
        assert_eq!(run("poll(POLLIN, 0) = 0").0, Some(true));
        assert_eq!(run("epoll(EPOLLIN|EPOLLET, 0) = 0").0, Some(true));
        a.write_all(b"hello").unwrap();
        assert_eq!(run("poll(POLLIN|POLLRDHUP, 1000) = POLLIN").0, Some(true));
        assert_eq!(run("epoll(EPOLLIN|EPOLLET, 0) = EPOLLIN").0, Some(true));
        assert_eq!(
            run("epoll(EPOLLIN|EPOLLET, 0) = 0").0,
            Some(true),
            "one edge, one event"
        );
        assert_eq!(run("ioctl(SIOCINQ)").1, CallResult::Ret(5));
        assert_eq!(
            run("recv(100, MSG_PEEK)").1,
            CallResult::Data(b"hello".to_vec())
        );
        assert_eq!(
            run("ioctl(SIOCINQ)").1,
            CallResult::Ret(5),
            "a peek leaves it"
        );
        assert_eq!(run("fcntl(F_GETFL) = O_RDWR").0, Some(true));
        assert_eq!(
            run("fcntl(F_SETFL, O_RDWR|O_NONBLOCK)").1,
            CallResult::Ret(0)
        );
        assert_eq!(run("fcntl(F_GETFL) = O_RDWR|O_NONBLOCK").0, Some(true));
        assert_eq!(run("poll(POLLIN|POLLRDHUP, 0) = POLLRDHUP").0, Some(false));
        drop(a);
        let (ok, got) = run("poll(POLLIN|POLLRDHUP, 1000) = POLLIN|POLLRDHUP|POLLHUP");
        assert_eq!(ok, Some(true), "{got:?}");
        assert_eq!(run("getsockopt(SO_ERROR) = 0").0, Some(true));
        let (ok, got) = run("send(5) = -1 EPIPE SIGPIPE");
        assert_eq!(
            got,
            CallResult::Sigpipe(Box::new(CallResult::Err(Errno::EPIPE)))
        );
        assert_eq!(
            ok, None,
            "SIGPIPE is judged with the errno by sut::check_outcome"
        );
        assert!(!take_pending_sigpipe(), "taken, not left pending");
        assert_eq!(
            run("send(5, MSG_NOSIGNAL) = -1").1,
            CallResult::Err(Errno::EPIPE)
        );
        assert_eq!(run("send(5, MSG_NOSIGNAL) = -1").0, Some(true));
        epolls.close_all();
    }
}
