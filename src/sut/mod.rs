//! The system under test, as the runner drives it: the application's socket calls and the
//! view of its connections, behind [`SutDriver`]. One file per driver: [`kernel`] makes the
//! calls with real system calls in the SUT's network namespace, [`agent`] sends them to a
//! stack behind an agent process (docs/agent-protocol.md). What they share lives here: call
//! results, the per-trial descriptor table, and the pool of threads that make the calls.
//!
//! Calls run on a pool of threads made while the trial set up, each call on a thread of its
//! own so the script keeps its own clock: a foreground call must return within the call
//! timeout, a background call (close with SO_LINGER, connect) is checked later by an `await`
//! step.

pub mod agent;
pub mod kernel;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;

use crate::observe::SockInfo;
use crate::script::{Call, Func, Outcome};
use crate::topology::Topology;

pub mod app;
pub use agent::AgentSut;
pub use kernel::KernelSut;

/// What a call returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallResult {
    Ret(i64),
    Data(Vec<u8>),
    Err(Errno),
    /// No result at all: the SUT went away (an agent that exited, or broke the protocol).
    Lost(String),
    /// getsockopt(TCP_INFO): the fields the stack reported.
    TcpInfo(Vec<(crate::script::names::TcpiField, u64)>),
    /// The call returned this and raised SIGPIPE.
    Sigpipe(Box<CallResult>),
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
            CallResult::TcpInfo(fields) => write!(f, "a tcp_info of {} fields", fields.len()),
            CallResult::Sigpipe(r) => write!(f, "{r} and SIGPIPE"),
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

/// A look at a connection for the trace: when it was asked, and the state (None: CLOSED).
pub type Sample = (SystemTime, Option<crate::observe::TcpState>);

/// The addresses a call uses: `bind` takes the first, `connect` the second.
pub type Addrs = (SocketAddr, SocketAddr);

/// The system under test as the runner drives it: the application's socket calls, and the
/// view of its connections. [`KernelSut`] drives the local kernel; [`AgentSut`] a stack
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

    /// At most how long the SUT's own threads waited for a CPU around `[from, to]`, where
    /// the driver can measure it (an agent process); the kernel's own lateness is measured by
    /// the runner (softirq waits), so zero by default.
    fn run_delay(&self, _from: std::time::SystemTime, _to: std::time::SystemTime) -> Duration {
        Duration::ZERO
    }

    /// The connection with this 4-tuple now (orphans and TIME_WAIT included); None: CLOSED.
    fn connection(&self, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<SockInfo>>;

    /// A look at the connection for the state trace, taken between steps: the looks that
    /// have come back, oldest first, each with when it was asked. The kernel's is this one,
    /// at once; a driver whose look is a round trip to another process only starts it, so
    /// the next step is not held up by the answer (seen: 10-480 ms on a loaded machine).
    fn sample(&mut self, local: SocketAddr, remote: SocketAddr) -> Vec<Sample> {
        let asked = SystemTime::now();
        match self.connection(local, remote) {
            Ok(info) => vec![(asked, info.map(|i| i.state))],
            Err(_) => Vec::new(),
        }
    }

    /// The looks [`SutDriver::sample`] started and that have not come back yet, waited for:
    /// before a look whose answer must follow them in the trace.
    fn finish_samples(&mut self) -> Vec<Sample> {
        Vec::new()
    }

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

/// Does a result meet what the script expects (its SIGPIPE too)?
pub fn check_call(call: &Call, got: &CallResult) -> bool {
    match got {
        CallResult::Sigpipe(inner) => call.sigpipe && check_outcome(&call.outcome, inner),
        _ => !call.sigpipe && check_outcome(&call.outcome, got),
    }
}

/// Does a result meet what the script expects?
pub fn check_outcome(expected: &Outcome, got: &CallResult) -> bool {
    if let Some(ok) = app::check(expected, got) {
        return ok;
    }
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

/// How the script writes what a call must return, for messages.
pub fn show_expected(call: &Call) -> String {
    let o = app::show_expected(&call.outcome, &call.func)
        .unwrap_or_else(|| show_outcome(&call.outcome));
    if call.sigpipe {
        format!("{o} and SIGPIPE")
    } else {
        o
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
        other => app::show_expected(other, &Func::Close).unwrap_or_default(),
    }
}
