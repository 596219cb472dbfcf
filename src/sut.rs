//! The SUT driver for the Linux kernel: the application side of the scenario.
//!
//! Calls run on a pool of threads that joined the SUT netns while the trial set up (a socket
//! belongs to the netns it was made in; after that any thread may use it), each call on a
//! thread of its own so the script keeps its own clock: a foreground call must return within
//! the call timeout, a background call (close with SO_LINGER, connect) is checked later by an
//! `await` step.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;

use crate::observe::{Observer, SockInfo};
use crate::script::call::{How, SockOpt};
use crate::script::{Call, Func, Outcome};
use crate::topology::Topology;

/// What a call returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallResult {
    Ret(i64),
    Data(Vec<u8>),
    Err(Errno),
    /// No result at all: the SUT went away (an agent that exited, or broke the protocol).
    Lost(String),
}

impl std::fmt::Display for CallResult {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            CallResult::Ret(n) => write!(f, "{n}"),
            CallResult::Data(d) if d.len() <= 64 => {
                write!(f, "{} bytes {:?}", d.len(), String::from_utf8_lossy(d))
            }
            CallResult::Data(d) => write!(f, "{} bytes", d.len()),
            CallResult::Err(e) => write!(f, "-1 {e:?} ({})", e.desc()),
            CallResult::Lost(why) => write!(f, "no result: {why}"),
        }
    }
}

/// A finished call: when it started and ended, and its result.
#[derive(Clone, Debug)]
pub struct Completed {
    pub started: SystemTime,
    pub ended: SystemTime,
    pub result: CallResult,
}

/// Kernel-side blocking calls give up after this, so no thread outlives a trial for long even
/// when a script's call never completes.
const SOCKET_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The addresses a call uses: `bind` takes the first, `connect` the second.
pub type Addrs = (SocketAddr, SocketAddr);

pub struct KernelSut {
    table: CallTable,
    observer: Observer,
    pool: CallPool,
}

/// The system under test as the runner drives it: the application's socket calls, and the
/// view of its connections. `KernelSut` drives the local kernel; `agent::AgentSut` a stack
/// behind an agent process (docs/agent-protocol.md).
pub trait SutDriver {
    /// Starts a call on its own thread; the receiver gets it once it completes.
    fn start(
        &mut self,
        topo: &Topology,
        call: &Call,
        addrs: Addrs,
    ) -> Result<Receiver<Completed>, String>;

    /// The driver's names for descriptors and its background calls.
    fn table(&mut self) -> &mut CallTable;

    /// Closes whatever the script left open; the trial is over.
    fn close_all(&mut self);

    /// The connection with this 4-tuple now (orphans and TIME_WAIT included); None: CLOSED.
    fn connection(&self, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<SockInfo>>;

    /// Starts a call. Returns when it completes, or None after `timeout` (it goes on running).
    fn call(
        &mut self,
        topo: &Topology,
        call: &Call,
        addrs: Addrs,
        timeout: Duration,
    ) -> Result<Option<Completed>, String> {
        let rx = self.start(topo, call, addrs)?;
        Ok(self.table().wait(call, rx, timeout))
    }

    /// Starts a call in the background, to be collected with [`SutDriver::collect`].
    fn call_background(
        &mut self,
        topo: &Topology,
        name: &str,
        call: &Call,
        addrs: Addrs,
    ) -> Result<SystemTime, String> {
        let started = SystemTime::now();
        let rx = self.start(topo, call, addrs)?;
        self.table().park(name, rx);
        Ok(started)
    }

    /// Waits for a background call until `deadline`.
    fn collect(&mut self, name: &str, call: &Call, deadline: Instant) -> Option<Completed> {
        self.table().collect(name, call, deadline)
    }
}

/// What every driver keeps per trial: the script's names for descriptors, and the background
/// calls still running.
#[derive(Default)]
pub struct CallTable {
    /// Script names of descriptors; None once the script closed it.
    fds: HashMap<String, Option<i64>>,
    background: HashMap<String, Receiver<Completed>>,
}

impl CallTable {
    /// The descriptor a call acts on (-1 for `socket`, or a name never opened).
    pub fn fd(&self, call: &Call) -> i64 {
        match call.func {
            Func::Socket => -1,
            _ => self.fds.get(&call.fd).copied().flatten().unwrap_or(-1),
        }
    }

    /// Waits for a started call up to `timeout`; None: still running.
    pub fn wait(
        &mut self,
        call: &Call,
        rx: Receiver<Completed>,
        timeout: Duration,
    ) -> Option<Completed> {
        let done = rx.recv_timeout(timeout).ok()?;
        self.record(call, &done.result);
        Some(done)
    }

    /// Keeps a started call for a later `collect`.
    pub fn park(&mut self, name: &str, rx: Receiver<Completed>) {
        self.background.insert(name.to_string(), rx);
    }

    /// Waits for a background call until `deadline`.
    pub fn collect(&mut self, name: &str, call: &Call, deadline: Instant) -> Option<Completed> {
        let rx = self.background.get(name)?;
        let done = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()?;
        self.background.remove(name);
        self.record(call, &done.result);
        Some(done)
    }

    /// Keeps the descriptor table in step with what the call did.
    fn record(&mut self, call: &Call, result: &CallResult) {
        match (&call.func, result, &call.outcome) {
            (Func::Socket | Func::Accept | Func::Dup, CallResult::Ret(fd), outcome) => {
                let name = match outcome {
                    Outcome::NewFd(n) => n.clone(),
                    _ => format!("_fd{fd}"),
                };
                self.fds.insert(name, Some(*fd));
            }
            (Func::Close, CallResult::Ret(0), _) => {
                self.fds.insert(call.fd.clone(), None);
            }
            _ => {}
        }
    }

    /// The descriptors still open, forgotten.
    pub fn take_open(&mut self) -> Vec<i64> {
        self.fds.values_mut().filter_map(Option::take).collect()
    }
}

/// A call for a pool thread to make.
type Job = Box<dyn FnOnce() + Send>;

/// The threads that make the SUT application's calls, made while the trial sets up. A thread
/// made on a step's time would wait for the process's memory-map lock (its stack is mapped),
/// which a starved thread of another trial may hold: seen 15 ms late under load. Each call
/// takes an idle thread; a call that blocks keeps its thread, and a new one is made only when
/// none is idle. Dropping the pool ends the idle threads (a busy one ends with its call).
pub struct CallPool {
    jobs: mpsc::Sender<Job>,
    queue: Arc<Mutex<Receiver<Job>>>,
    idle: Arc<AtomicUsize>,
}

/// Threads a trial's pool starts with: a foreground call and one in the background.
const POOL_THREADS: usize = 2;

impl CallPool {
    /// Threads inside the SUT's namespace when `topo` is given (so socket() can run there).
    pub fn new(topo: Option<&Topology>) -> Result<CallPool, String> {
        let (jobs, rx) = mpsc::channel();
        let pool = CallPool {
            jobs,
            queue: Arc::new(Mutex::new(rx)),
            idle: Arc::new(AtomicUsize::new(0)),
        };
        for _ in 0..POOL_THREADS {
            pool.grow(topo)?;
        }
        Ok(pool)
    }

    fn grow(&self, topo: Option<&Topology>) -> Result<(), String> {
        let (queue, idle) = (self.queue.clone(), self.idle.clone());
        let body = move || {
            // Real-time while it waits too (where allowed): a call is due the moment the
            // runner hands it over, and a worker woken at normal priority waits behind the
            // machine's load (seen: tens of ms under two CPU hogs).
            let _rt = crate::realtime::Realtime::enter();
            loop {
                let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                match job {
                    Ok(job) => {
                        job();
                        idle.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => return,
                }
            }
        };
        match topo {
            Some(t) => t
                .spawn_in_sut("halfclose-call", body)
                .map(drop)
                .map_err(|e| format!("cannot start a call thread: {e}"))?,
            None => std::thread::Builder::new()
                .name("halfclose-call".into())
                .spawn(body)
                .map(drop)
                .map_err(|e| format!("cannot start a call thread: {e}"))?,
        }
        self.idle.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Runs `f` on an idle thread; the receiver gets the completed call.
    pub fn call(
        &self,
        topo: Option<&Topology>,
        f: impl FnOnce() -> CallResult + Send + 'static,
    ) -> Result<Receiver<Completed>, String> {
        if self.idle.load(Ordering::SeqCst) == 0 {
            self.grow(topo)?;
        }
        self.idle.fetch_sub(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            // Woken by the SUT's kernel, returned at once: the call's time is the kernel's.
            let _rt = crate::realtime::Realtime::enter();
            let started = SystemTime::now();
            let result = f();
            let _ = tx.send(Completed {
                started,
                ended: SystemTime::now(),
                result,
            });
        });
        self.jobs
            .send(job)
            .map_err(|_| "the call threads are gone".to_string())?;
        Ok(rx)
    }
}

impl KernelSut {
    /// `observer` must have been made in the SUT namespace.
    pub fn new(observer: Observer, topo: &Topology) -> Result<KernelSut, String> {
        Ok(KernelSut {
            table: CallTable::default(),
            observer,
            pool: CallPool::new(Some(topo))?,
        })
    }
}

impl SutDriver for KernelSut {
    fn start(
        &mut self,
        topo: &Topology,
        call: &Call,
        (sut, peer): Addrs,
    ) -> Result<Receiver<Completed>, String> {
        let fd = self.table.fd(call) as RawFd;
        let func = call.func.clone();
        // The pool's threads are in the SUT netns, where socket() must run.
        if func == Func::Socket {
            return self.pool.call(Some(topo), move || new_socket(sut.ip()));
        }
        self.pool
            .call(Some(topo), move || execute(&func, fd, sut, peer))
    }

    fn table(&mut self) -> &mut CallTable {
        &mut self.table
    }

    /// Closes every descriptor the script left open. The namespace goes away right after, so
    /// what the kernel sends now is not part of the trial.
    fn close_all(&mut self) {
        for fd in self.table.take_open() {
            // SAFETY: the descriptor came from socket/accept/dup and was not closed since.
            unsafe { libc::close(fd as RawFd) };
        }
    }

    fn connection(&self, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<SockInfo>> {
        self.observer.connection(local, remote)
    }
}

impl Drop for KernelSut {
    fn drop(&mut self) {
        self.close_all();
    }
}

fn ret(rc: isize) -> CallResult {
    if rc < 0 {
        CallResult::Err(Errno::last())
    } else {
        CallResult::Ret(rc as i64)
    }
}

fn new_socket(ip: IpAddr) -> CallResult {
    let domain = if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return CallResult::Err(Errno::last());
    }
    let tv = libc::timeval {
        tv_sec: SOCKET_IO_TIMEOUT.as_secs() as i64,
        tv_usec: 0,
    };
    for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        setsockopt_raw(fd, libc::SOL_SOCKET, opt, &tv);
    }
    CallResult::Ret(fd as i64)
}

fn setsockopt_raw<T>(fd: RawFd, level: i32, name: i32, value: &T) -> isize {
    // SAFETY: the pointer and length describe `value`.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as u32,
        ) as isize
    }
}

/// Runs one socket call on the calling thread.
fn execute(func: &Func, fd: RawFd, sut: SocketAddr, peer: SocketAddr) -> CallResult {
    // SAFETY (all blocks below): plain system calls on a descriptor number; a stale or -1
    // descriptor makes the kernel answer EBADF, which is a result the script may expect.
    match func {
        Func::Socket => new_socket(sut.ip()),
        Func::Bind => with_sockaddr(sut, |sa, len| {
            ret(unsafe { libc::bind(fd, sa, len) } as isize)
        }),
        Func::Connect => with_sockaddr(peer, |sa, len| {
            ret(unsafe { libc::connect(fd, sa, len) } as isize)
        }),
        Func::Listen { backlog } => ret(unsafe { libc::listen(fd, *backlog) } as isize),
        Func::Accept => ret(unsafe {
            libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        } as isize),
        Func::Write(p) => {
            let bytes = p.bytes();
            ret(unsafe {
                libc::send(
                    fd,
                    bytes.as_ptr() as *const _,
                    bytes.len(),
                    libc::MSG_NOSIGNAL,
                )
            })
        }
        Func::Read { max } => {
            let mut buf = vec![0u8; *max];
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut _, buf.len(), 0) };
            if n < 0 {
                return CallResult::Err(Errno::last());
            }
            buf.truncate(n as usize);
            CallResult::Data(buf)
        }
        Func::ReadAll { n } => read_all(fd, *n),
        Func::Shutdown(how) => {
            let how = match how {
                How::Rd => libc::SHUT_RD,
                How::Wr => libc::SHUT_WR,
                How::RdWr => libc::SHUT_RDWR,
            };
            ret(unsafe { libc::shutdown(fd, how) } as isize)
        }
        Func::Close => ret(unsafe { libc::close(fd) } as isize),
        Func::Dup => ret(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) } as isize),
        Func::SetSockOpt(opt) => ret(set_option(fd, opt)),
    }
}

/// recv() until `n` bytes or EOF; an error after some data still returns the data.
fn read_all(fd: RawFd, n: usize) -> CallResult {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let r = unsafe { libc::recv(fd, buf[got..].as_mut_ptr() as *mut _, n - got, 0) };
        match r {
            0 => break,
            r if r < 0 && got == 0 => return CallResult::Err(Errno::last()),
            r if r < 0 => break,
            r => got += r as usize,
        }
    }
    buf.truncate(got);
    CallResult::Data(buf)
}

fn set_option(fd: RawFd, opt: &SockOpt) -> isize {
    let int = |level, name, v: i32| setsockopt_raw(fd, level, name, &v);
    match *opt {
        SockOpt::Linger { on, secs } => {
            let l = libc::linger {
                l_onoff: on as i32,
                l_linger: secs,
            };
            setsockopt_raw(fd, libc::SOL_SOCKET, libc::SO_LINGER, &l)
        }
        SockOpt::Linger2(v) => int(libc::IPPROTO_TCP, libc::TCP_LINGER2, v),
        SockOpt::RcvBuf(v) => int(libc::SOL_SOCKET, libc::SO_RCVBUF, v),
        SockOpt::SndBuf(v) => int(libc::SOL_SOCKET, libc::SO_SNDBUF, v),
        SockOpt::NoDelay(v) => int(libc::IPPROTO_TCP, libc::TCP_NODELAY, v as i32),
        SockOpt::KeepAlive(v) => int(libc::SOL_SOCKET, libc::SO_KEEPALIVE, v as i32),
        SockOpt::ReuseAddr(v) => int(libc::SOL_SOCKET, libc::SO_REUSEADDR, v as i32),
    }
}

fn with_sockaddr<R>(
    addr: SocketAddr,
    f: impl FnOnce(*const libc::sockaddr, libc::socklen_t) -> R,
) -> R {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            f(
                &sin as *const _ as *const libc::sockaddr,
                std::mem::size_of_val(&sin) as u32,
            )
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            f(
                &sin6 as *const _ as *const libc::sockaddr,
                std::mem::size_of_val(&sin6) as u32,
            )
        }
    }
}

/// Does a result meet what the script expects?
pub fn check_outcome(expected: &Outcome, got: &CallResult) -> bool {
    match (expected, got) {
        (Outcome::Success | Outcome::NewFd(_), CallResult::Ret(n)) => *n >= 0,
        (Outcome::Success, CallResult::Data(_)) => true,
        (Outcome::Ret(want), CallResult::Ret(n)) => want == n,
        (Outcome::Ret(want), CallResult::Data(d)) => *want == d.len() as i64,
        (Outcome::Data(want), CallResult::Data(d)) => want == d,
        (Outcome::Errno(want), CallResult::Err(e)) => want == e,
        _ => false,
    }
}

/// How the script writes an expected outcome, for messages.
pub fn show_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Success => "success".into(),
        Outcome::Ret(n) => n.to_string(),
        Outcome::Data(d) => format!("{:?}", String::from_utf8_lossy(d)),
        Outcome::Errno(e) => format!("-1 {e:?}"),
        Outcome::NewFd(n) => format!("a new descriptor `{n}`"),
    }
}
