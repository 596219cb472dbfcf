//! The SUT driver for a stack behind an agent process (docs/agent-protocol.md): socket calls
//! as JSON lines on the agent's stdin, replies and events on its stdout.
//!
//! The agent runs its stack on the trial's TAP device, whose fd it inherits as fd 3. A reader
//! thread routes each reply to the call waiting for its id and keeps the state events, so
//! blocking calls (accept, connect, read) complete in the background like kernel calls do.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use serde_json::{json, Value};

use super::{Addrs, CallPool, CallResult, CallTable, Completed, SutDriver};
use crate::keeper;
use crate::observe::{SockInfo, TcpState, TimerKind};
use crate::script::call::{Fcntl, GetOpt, How, Ioctl, SockOpt};
use crate::script::names;
use crate::script::{Action, Call, Func, Scenario};
use crate::timers::TimerProfile;
use crate::topology::{self, Topology};
use crate::Family;

/// How long the agent may take to say hello, or to answer a non-blocking command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest line an agent may write (docs/agent-protocol.md), `\n` not counted.
pub const MAX_LINE: usize = 1 << 20;

/// The commands of protocol 1, as a hello's `calls` names them.
pub const CALLS: &[&str] = &[
    "socket",
    "dup",
    "bind",
    "listen",
    "accept",
    "connect",
    "write",
    "read",
    "shutdown",
    "close",
    "setsockopt",
    "state",
    "poll",
    "ioctl",
    "getsockopt",
];
/// Optional commands beyond [`CALLS`] (docs/agent-protocol.md): an agent lists them in its
/// hello only if it has them, and halfclose sends them only then.
pub const OPTIONAL_CALLS: &[&str] = &["fcntl", "send", "recv", "epoll"];
/// The `epoll` events the protocol carries.
const AGENT_EPOLL_EVENTS: &[&str] = &[
    "EPOLLIN",
    "EPOLLOUT",
    "EPOLLERR",
    "EPOLLHUP",
    "EPOLLRDHUP",
    "EPOLLET",
];
/// The `send`/`recv` flags the protocol carries (docs/agent-protocol.md).
const AGENT_MSG_FLAGS: &[&str] = &["MSG_PEEK", "MSG_DONTWAIT", "MSG_NOSIGNAL"];
/// The `how` values of `shutdown`.
pub const SHUTDOWN: &[&str] = &["rd", "wr", "rdwr"];
/// The options of `setsockopt`.
pub const SOCKOPTS: &[&str] = &[
    "linger",
    "linger-timeout",
    "nodelay",
    "keepalive",
    "linger2",
    "rcvbuf",
    "sndbuf",
    "reuseaddr",
    "user_timeout",
    "fastopen",
    "fastopen_key",
    "sndtimeo",
    "rcvtimeo",
];
const EVENTS: &[&str] = &["state", "readable", "reset"];
/// The `ioctl` requests and `getsockopt` options of protocol 1.
pub const IOCTLS: &[&str] = &["siocinq", "siocoutq", "siocoutqnsd"];
pub const GETSOCKOPTS: &[&str] = &["so_error"];
/// Optional `getsockopt` options beyond [`GETSOCKOPTS`].
pub const OPTIONAL_GETSOCKOPTS: &[&str] = &["tcp_info"];

/// What an agent says it can do (its hello line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hello {
    pub agent: String,
    pub stack: String,
    pub calls: Vec<String>,
    pub shutdown: Vec<String>,
    pub sockopts: Vec<String>,
    pub ioctls: Vec<String>,
    pub getsockopts: Vec<String>,
    pub timers: bool,
    pub time_wait: Option<Duration>,
    /// How the agent's stack meets the peer.
    pub link: AgentLink,
    /// `configure` applies the trial's sysctls (the stack is a Linux kernel in a network
    /// namespace of its own).
    pub sysctls: bool,
    /// The stack takes AF_INET6 sockets talking IPv4 through `::ffff:` addresses, so the
    /// ipv4-mapped family's trials run.
    pub ipv4_mapped: bool,
}

/// What an agent's stack runs on (its hello's `link`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AgentLink {
    /// A TAP device whose fd it inherits.
    #[default]
    Tap,
    /// The interfaces of the network namespace it is started in: a kernel's own stack.
    Netns,
}

impl Hello {
    /// The capabilities from a hello line; the error names what is wrong with it.
    fn parse(v: &Value) -> Result<Hello, String> {
        let h = v
            .get("hello")
            .ok_or("the first line is not a hello (`{\"hello\": {…}}`)")?;
        let h = h.as_object().ok_or_else(|| {
            format!(
                "`hello` must be an object of capabilities, not {}",
                json_kind(h)
            )
        })?;
        match h.get("protocol") {
            Some(p) if p.as_u64() == Some(1) => {}
            Some(p) => {
                return Err(format!(
                    "`protocol` is {p}; this halfclose speaks protocol 1"
                ))
            }
            None => return Err("missing `protocol` (this halfclose speaks protocol 1)".into()),
        }
        let text = |k: &str, required: bool| -> Result<String, String> {
            match h.get(k) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                None if !required => Ok(String::new()),
                None => Err(format!("missing `{k}`")),
                Some(other) => Err(format!(
                    "`{k}` must be a non-empty string, not {}",
                    json_kind(other)
                )),
            }
        };
        let names = |k: &str, known: &[&str], required: bool| -> Result<Vec<String>, String> {
            let list = match h.get(k) {
                None if !required => return Ok(Vec::new()),
                None => return Err(format!("missing `{k}` (a list such as [\"socket\", …])")),
                Some(Value::Array(a)) => a,
                Some(other) => {
                    return Err(format!(
                        "`{k}` must be a list of names, not {}",
                        json_kind(other)
                    ))
                }
            };
            list.iter()
                .map(|x| match x.as_str() {
                    Some(n) if known.contains(&n) => Ok(n.to_string()),
                    Some(n) => Err(format!(
                        "`{k}` lists `{n}`, which protocol 1 does not have (known: {})",
                        known.join(", ")
                    )),
                    None => Err(format!("`{k}` must list names (strings), not {x}")),
                })
                .collect()
        };
        let flag = |k: &str| match h.get(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(format!("`{k}` must be true or false, not {other}")),
        };
        let link = match h.get("link").map(|l| (l, l.as_str())) {
            None | Some((_, Some("tap"))) => AgentLink::Tap,
            Some((_, Some("netns"))) => AgentLink::Netns,
            Some((l, _)) => return Err(format!("`link` must be \"tap\" or \"netns\", not {l}")),
        };
        let time_wait = match h.get("time_wait_ms") {
            None => None,
            Some(t) => Some(Duration::from_millis(t.as_u64().ok_or_else(|| {
                format!("`time_wait_ms` must be a number of milliseconds, not {t}")
            })?)),
        };
        names("events", EVENTS, false)?;
        Ok(Hello {
            agent: text("agent", false)?,
            stack: text("stack", true)?,
            calls: names("calls", &[CALLS, OPTIONAL_CALLS].concat(), true)?,
            shutdown: names("shutdown", SHUTDOWN, false)?,
            sockopts: names("sockopts", SOCKOPTS, false)?,
            ioctls: names("ioctls", IOCTLS, false)?,
            getsockopts: names(
                "getsockopts",
                &[GETSOCKOPTS, OPTIONAL_GETSOCKOPTS].concat(),
                false,
            )?,
            timers: flag("timers")?,
            time_wait,
            link,
            sysctls: flag("sysctls")?,
            ipv4_mapped: flag("ipv4_mapped")?,
        })
    }

    /// The timer profile of a stack the registry does not know (crate::stack): Linux's with
    /// the agent's TIME_WAIT (made once per run, by `Stack::agent`).
    pub fn profile(&self) -> &'static TimerProfile {
        let base = TimerProfile {
            name: "agent",
            time_wait: self.time_wait.unwrap_or(TimerProfile::LINUX.time_wait),
            harness_slack: crate::timers::AGENT_SLACK,
            ..TimerProfile::LINUX
        };
        Box::leak(Box::new(base))
    }

    /// Why a scenario cannot run on this agent, if it cannot: the first call or reading it
    /// needs and the agent lacks (sysctls are the registry's business: crate::stack).
    pub fn missing(&self, sc: &Scenario, family: crate::Family) -> Option<String> {
        if family == crate::Family::V4Mapped && !self.ipv4_mapped {
            return Some("ipv4-mapped (IPv4 through an AF_INET6 socket)".into());
        }
        for step in &sc.steps {
            match &step.action {
                Action::Call { call, .. } => {
                    if let Some(m) = self.missing_call(call) {
                        return Some(m);
                    }
                }
                Action::State(check) if check.timer.is_some() && !self.timers => {
                    return Some("timer readings (the agent reports no timers)".into())
                }
                _ => {}
            }
        }
        None
    }

    fn missing_call(&self, call: &Call) -> Option<String> {
        let f = &call.func;
        let has = |list: &[String], x: &str| list.iter().any(|c| c == x);
        let name = match f {
            Func::ReadAll { .. } => "read",
            other => call_name(other),
        };
        if !has(&self.calls, name) {
            return Some(format!("the call {name}"));
        }
        match f {
            // An agent's stack raises no signals; a script that says SIGPIPE is Linux's.
            Func::Send { .. } if call.sigpipe => {
                Some("SIGPIPE (a signal of the host kernel)".into())
            }
            // Flags the protocol has no name for (MSG_WAITALL, MSG_OOB, …).
            Func::Send { flags, .. } | Func::Recv { flags, .. }
                if *flags & !agent_msg_mask() != 0 =>
            {
                Some(format!(
                    "{name} with flags {}",
                    crate::script::names::show_mask(
                        crate::script::names::MSG_FLAGS,
                        *flags & !agent_msg_mask()
                    )
                ))
            }
            Func::Epoll { events, .. } if *events & !agent_epoll_mask() != 0 => Some(format!(
                "epoll with {}",
                crate::script::names::show_mask(names::EPOLL_EVENTS, *events & !agent_epoll_mask())
            )),
            Func::Fcntl(Fcntl::SetFl(flags)) if *flags & !fcntl_mask() != 0 => Some(format!(
                "fcntl F_SETFL {}",
                crate::script::names::show_mask(names::FILE_FLAGS, *flags & !fcntl_mask())
            )),
            Func::Ioctl(req) if !has(&self.ioctls, ioctl_name(*req)) => {
                Some(format!("ioctl {}", ioctl_name(*req).to_uppercase()))
            }
            Func::GetSockOpt(opt) if !has(&self.getsockopts, getsockopt_name(*opt)) => Some(
                format!("getsockopt {}", getsockopt_name(*opt).to_uppercase()),
            ),
            Func::Shutdown(how) if !has(&self.shutdown, how_name(*how)) => {
                Some(format!("shutdown({})", how_name(*how)))
            }
            // A lingering close that blocks is its own capability: an agent may abort on
            // linger {1, 0} without being able to wait.
            Func::SetSockOpt(SockOpt::Linger { on: true, secs }) if *secs > 0 => {
                (!has(&self.sockopts, "linger-timeout")).then(|| "SO_LINGER with a timeout".into())
            }
            Func::SetSockOpt(opt) => match opt_json(opt) {
                (n, _) if has(&self.sockopts, n) => None,
                (n, _) => Some(format!("setsockopt {n}")),
            },
            _ => None,
        }
    }
}

/// The MSG_ flags a `send`/`recv` command can carry.
fn agent_msg_mask() -> u32 {
    names::MSG_FLAGS
        .iter()
        .filter(|(n, _)| AGENT_MSG_FLAGS.contains(n))
        .fold(0, |m, (_, v)| m | v)
}

/// The file flags `fcntl` carries: O_NONBLOCK (O_RDWR is the access mode, which F_SETFL
/// leaves alone).
fn fcntl_mask() -> u32 {
    (libc::O_RDWR | libc::O_NONBLOCK) as u32
}

/// The epoll events an `epoll` command can carry.
fn agent_epoll_mask() -> u32 {
    names::EPOLL_EVENTS
        .iter()
        .filter(|(n, _)| AGENT_EPOLL_EVENTS.contains(n))
        .fold(0, |m, (_, v)| m | v)
}

/// The `flags` list of a `send`/`recv` command.
fn msg_flag_names(flags: u32) -> Vec<&'static str> {
    mask_names(names::MSG_FLAGS, flags & agent_msg_mask())
}

fn call_name(f: &Func) -> &'static str {
    match f {
        Func::Socket => "socket",
        Func::Bind => "bind",
        Func::Connect => "connect",
        Func::Listen { .. } => "listen",
        Func::Accept => "accept",
        Func::Write(_) => "write",
        Func::Read { .. } | Func::ReadAll { .. } => "read",
        Func::Shutdown(_) => "shutdown",
        Func::Close => "close",
        Func::Dup => "dup",
        Func::SetSockOpt(_) => "setsockopt",
        Func::Fcntl(_) => "fcntl",
        Func::Poll { .. } => "poll",
        Func::Epoll { .. } => "epoll",
        Func::GetSockOpt(_) => "getsockopt",
        Func::Ioctl(_) => "ioctl",
        Func::Send { .. } => "send",
        Func::Recv { .. } => "recv",
    }
}

fn ioctl_name(r: Ioctl) -> &'static str {
    match r {
        Ioctl::InQ => "siocinq",
        Ioctl::OutQ => "siocoutq",
        Ioctl::OutQNsd => "siocoutqnsd",
    }
}

fn getsockopt_name(o: GetOpt) -> &'static str {
    match o {
        GetOpt::SoError => "so_error",
        GetOpt::TcpInfo => "tcp_info",
    }
}

fn how_name(h: How) -> &'static str {
    match h {
        How::Rd => "rd",
        How::Wr => "wr",
        How::RdWr => "rdwr",
    }
}

/// What a JSON value is, for messages: "a string", "a number (5)", …
fn json_kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("a string ({s:?})"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// The protocol's name and JSON fields for a socket option.
fn opt_json(opt: &SockOpt) -> (&'static str, Value) {
    match *opt {
        SockOpt::Linger { on, secs } => ("linger", json!({"on": on, "secs": secs})),
        SockOpt::NoDelay(v) => ("nodelay", json!({"value": v})),
        SockOpt::KeepAlive(v) => ("keepalive", json!({"value": v})),
        SockOpt::Linger2(v) => ("linger2", json!({"value": v})),
        SockOpt::RcvBuf(v) => ("rcvbuf", json!({"value": v})),
        SockOpt::SndBuf(v) => ("sndbuf", json!({"value": v})),
        SockOpt::ReuseAddr(v) => ("reuseaddr", json!({"value": v})),
        SockOpt::UserTimeout(ms) => ("user_timeout", json!({"value": ms})),
        SockOpt::FastOpen(v) => ("fastopen", json!({"value": v})),
        SockOpt::FastOpenKey(k) => ("fastopen_key", json!({"key": to_hex(&k)})),
        SockOpt::SndTimeo(ms) => ("sndtimeo", json!({"value": ms})),
        SockOpt::RcvTimeo(ms) => ("rcvtimeo", json!({"value": ms})),
    }
}

/// A socket option as a command names it; None: not one protocol 1 has, or malformed.
pub fn opt_from_json(cmd: &Value) -> Option<SockOpt> {
    let int = || {
        cmd.get("value")?
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
    };
    let flag = || cmd.get("value")?.as_bool();
    Some(match cmd.get("opt")?.as_str()? {
        "linger" => SockOpt::Linger {
            on: cmd.get("on")?.as_bool()?,
            secs: i32::try_from(cmd.get("secs")?.as_i64()?).ok()?,
        },
        "nodelay" => SockOpt::NoDelay(flag()?),
        "keepalive" => SockOpt::KeepAlive(flag()?),
        "linger2" => SockOpt::Linger2(int()?),
        "rcvbuf" => SockOpt::RcvBuf(int()?),
        "sndbuf" => SockOpt::SndBuf(int()?),
        "reuseaddr" => SockOpt::ReuseAddr(flag()?),
        "fastopen" => SockOpt::FastOpen(int()?),
        "fastopen_key" => {
            SockOpt::FastOpenKey(from_hex(cmd.get("key")?.as_str()?)?.try_into().ok()?)
        }
        // Milliseconds, bounded as a script's are (a blocked call may not outlive its trial).
        "user_timeout" | "sndtimeo" | "rcvtimeo" => {
            let ms = u32::try_from(int()?).ok()?;
            match cmd.get("opt")?.as_str()? {
                "user_timeout" => SockOpt::UserTimeout(ms),
                _ if ms == 0 || i64::from(ms) > crate::script::call::MAX_BLOCK_MS => return None,
                "sndtimeo" => SockOpt::SndTimeo(ms),
                _ => SockOpt::RcvTimeo(ms),
            }
        }
        _ => return None,
    })
}

/// Starts the agent without a TAP device just to read its hello (for skipping scenarios and
/// naming the stack before any trial runs). The error says what was wrong: no hello, a line
/// that is not one, or a hello that does not say what protocol 1 asks.
pub fn probe(cmd: &[String]) -> Result<Hello, String> {
    let shown = cmd.join(" ");
    // Its stderr is the user's: an agent that cannot start says why there (the gVisor
    // launcher built without Go names the packages to install).
    let mut agent = keeper::Agent::spawn(cmd, None, Stdio::inherit())
        .map_err(|e| format!("cannot start the agent `{shown}`: {e}"))?;
    let mut stdout = BufReader::new(agent.stdout.take().expect("piped"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read_line(&mut stdout));
    });
    let line = rx.recv_timeout(ANSWER_TIMEOUT);
    // Without a hello, the agent's exit status says most (it has exited, or soon will).
    let status = match line {
        Ok(Ok(None)) => keeper::exit_status(&agent.status_handle(), Duration::from_secs(1)),
        _ => None,
    };
    agent.stop();
    let bad = |what: String| format!("the agent `{shown}`: {what}");
    let line = match line {
        Err(_) => return Err(bad("no hello within 5 s".into())),
        Ok(Err(e)) => return Err(bad(format!("its hello: {e}"))),
        Ok(Ok(None)) => {
            let how = status.map_or("closed its output".into(), |s| format!("exited ({s})"));
            return Err(bad(format!("{how} before saying hello")));
        }
        Ok(Ok(Some(line))) => line,
    };
    let v: Value = serde_json::from_slice(&line)
        .map_err(|e| bad(format!("its hello is not JSON ({e}): {}", excerpt(&line))))?;
    Hello::parse(&v).map_err(|e| bad(format!("malformed hello: {e}: {}", excerpt(&line))))
}

/// One line of an agent's output, without its `\n`, read in linear time and at most
/// [`MAX_LINE`] long; None at the end of the output.
pub fn read_line(r: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        let (take, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a line longer than {} MiB, the protocol's limit (it begins {})",
                    MAX_LINE >> 20,
                    excerpt(if line.is_empty() { &buf[..take] } else { &line })
                ),
            ));
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take + end as usize);
        if end {
            return Ok(Some(line));
        }
    }
}

/// The start of a line, for messages.
fn excerpt(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned();
    if line.len() > 60 {
        format!("{text}…")
    } else {
        text
    }
}

/// A state change the agent reported.
#[derive(Clone, Debug)]
pub struct StateEvent {
    pub at: SystemTime,
    pub local: String,
    pub remote: String,
    pub to: Option<TcpState>,
}

/// What the reader thread shares with the callers: who waits for which reply, and, once
/// the agent is gone (or broke the protocol), why.
#[derive(Default)]
struct Shared {
    waiting: HashMap<u64, Sender<Value>>,
    gone: Option<String>,
}

/// The request side of the agent's pipes, shared with call threads.
#[derive(Clone)]
struct Wire {
    stdin: Arc<Mutex<ChildStdin>>,
    next_id: Arc<AtomicU64>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
}

impl Wire {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the agent can no longer answer, if it cannot.
    fn gone(&self) -> Option<String> {
        self.lock().gone.clone()
    }

    /// Why the agent went, waiting a little for the reader to find out; else `fallback`.
    fn lost(&self, fallback: String) -> String {
        let (m, cv) = &*self.shared;
        let guard = m.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = cv
            .wait_timeout_while(guard, Duration::from_secs(2), |s| s.gone.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.gone.clone().unwrap_or(fallback)
    }

    /// Sends a command; the receiver gets its reply line.
    fn request(&self, mut cmd: Value) -> io::Result<Receiver<Value>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        cmd["id"] = json!(id);
        let (tx, rx) = mpsc::channel();
        {
            let mut shared = self.lock();
            if let Some(why) = &shared.gone {
                return Err(io::Error::other(why.clone()));
            }
            shared.waiting.insert(id, tx);
        }
        let mut line = cmd.to_string();
        line.push('\n');
        let mut stdin = self.stdin.lock().expect("stdin lock");
        stdin.write_all(line.as_bytes())?;
        stdin.flush()?;
        Ok(rx)
    }

    /// Sends a command and waits for its reply; the error says why there is none.
    fn ask(&self, cmd: Value, timeout: Duration) -> Result<Value, String> {
        let rx = self
            .request(cmd)
            .map_err(|e| self.lost(format!("writing to the agent: {e}")))?;
        match rx.recv_timeout(timeout) {
            Ok(v) => Ok(v),
            Err(RecvTimeoutError::Disconnected) => Err(self.lost("the agent went away".into())),
            Err(RecvTimeoutError::Timeout) => Err(self.gone().unwrap_or_else(|| {
                format!(
                    "the agent did not answer within {}",
                    crate::script::values::show_duration(timeout)
                )
            })),
        }
    }
}

/// One agent process driving one trial's SUT.
pub struct AgentSut {
    /// Declared before `agent`: the stdin pipe closes first, then the agent is stopped.
    wire: Wire,
    agent: keeper::Agent,
    pub hello: Hello,
    pub events: Arc<Mutex<Vec<StateEvent>>>,
    table: CallTable,
    pool: CallPool,
    /// The agent process's run delay: its timers fire on its threads (None: unmeasured).
    delay: Option<crate::runner::noise::TaskWatch>,
    /// Trace looks asked for and not answered yet, oldest first.
    samples: VecDeque<PendingSample>,
}

/// A `state` asked for the trace: when, its reply, and the 4-tuple.
type PendingSample = (SystemTime, Receiver<Value>, SocketAddr, SocketAddr);

impl AgentSut {
    /// Starts the agent on the trial's TAP device, or without one in the SUT's network
    /// namespace (an agent whose link is `netns`), and configures the SUT's addresses and,
    /// where the agent applies them, the trial's sysctls.
    pub fn launch(
        cmd: &[String],
        topo: &Topology,
        sysctls: &[(String, String)],
    ) -> Result<AgentSut, String> {
        let spawned = match topo.tap_fd() {
            Some(tap) => keeper::Agent::spawn(cmd, Some(tap), Stdio::inherit()),
            // Forked from a thread in the SUT netns, the agent starts there.
            None => topo
                .run_in_sut(|| keeper::Agent::spawn(cmd, None, Stdio::inherit()))
                .unwrap_or_else(|e| Err(io::Error::other(e.to_string()))),
        };
        let mut agent =
            spawned.map_err(|e| format!("cannot start the agent `{}`: {e}", cmd.join(" ")))?;
        let stdout = agent.stdout.take().expect("piped");
        let stdin = agent.stdin.take().expect("piped");
        let wire = Wire {
            stdin: Arc::new(Mutex::new(stdin)),
            next_id: Arc::new(AtomicU64::new(1)),
            shared: Arc::default(),
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let (hello_tx, hello_rx) = mpsc::channel();
        let (w, ev, status) = (wire.clone(), events.clone(), agent.status_handle());
        std::thread::Builder::new()
            .name("halfclose-agent-rx".into())
            .spawn(move || {
                // Every reply (a call's return, a state, a timer) reaches the runner through
                // this thread: at normal priority it woke 10-20 ms late beside 32 trials' agents
                // or two CPU hogs, and that made the next step late. It sleeps in read(2).
                let _rt = crate::realtime::Realtime::enter();
                read_lines(stdout, hello_tx, w, ev, status)
            })
            .map_err(|e| format!("cannot start the agent reader: {e}"))?;
        let mut sut = AgentSut {
            wire,
            agent,
            hello: Hello::default(),
            events,
            table: CallTable::default(),
            pool: CallPool::new(None)?,
            delay: None,
            samples: VecDeque::new(),
        };
        let hello = match hello_rx.recv_timeout(ANSWER_TIMEOUT) {
            Ok(h) => h,
            Err(RecvTimeoutError::Timeout) => {
                return Err("the agent said no hello within 5 s".into())
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(sut.wire.lost("the agent went away".into()) + " before saying hello")
            }
        };
        sut.hello = Hello::parse(&hello).map_err(|e| format!("malformed hello: {e}"))?;
        sut.delay = sut
            .agent
            .agent_pid()
            .and_then(crate::runner::noise::TaskWatch::start);
        sut.configure(sysctls)?;
        Ok(sut)
    }

    fn configure(&self, sysctls: &[(String, String)]) -> Result<(), String> {
        let mac = topology::SUT_MAC
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let addrs = [Family::V4, Family::V6]
            .map(|f| format!("{}/{}", topology::sut_ip(f), topology::prefix_len(f)));
        let mut cmd = json!({"cmd": "configure", "mac": mac, "addrs": addrs});
        if self.hello.sysctls && !sysctls.is_empty() {
            let map: serde_json::Map<String, Value> =
                sysctls.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            cmd["sysctls"] = Value::Object(map);
        }
        let reply = self.wire.ask(cmd, ANSWER_TIMEOUT)?;
        match reply.get("error") {
            None => Ok(()),
            Some(e) => Err(format!("configure: {e} {}", reply["message"])),
        }
    }
}

/// The reader thread: the hello, then replies to whoever waits for their id, and events.
/// At the end of the agent's output, or at a line that breaks the protocol, it records why
/// the agent is gone (with its exit status when it exited) and wakes every waiting call.
fn read_lines(
    stdout: std::process::ChildStdout,
    hello: Sender<Value>,
    wire: Wire,
    events: Arc<Mutex<Vec<StateEvent>>>,
    status: Arc<Mutex<Child>>,
) {
    let mut r = BufReader::new(stdout);
    let why = loop {
        let line = match read_line(&mut r) {
            Ok(Some(line)) => line,
            Ok(None) => {
                break match keeper::exit_status(&status, Duration::from_secs(2)) {
                    Some(s) => format!("the agent exited ({s})"),
                    None => "the agent closed its output".to_string(),
                }
            }
            Err(e) => break format!("the agent broke the protocol: {e}"),
        };
        let v = match serde_json::from_slice::<Value>(&line) {
            Ok(v) if v.is_object() => v,
            _ => {
                break format!(
                    "the agent broke the protocol: a line that is not a JSON object: {}",
                    excerpt(&line)
                )
            }
        };
        if v.get("hello").is_some() {
            let _ = hello.send(v);
        } else if let Some(id) = v.get("id").and_then(Value::as_u64) {
            if let Some(tx) = wire.lock().waiting.remove(&id) {
                let _ = tx.send(v);
            }
        } else if v.get("event").and_then(Value::as_str) == Some("state") {
            if let Some(e) = state_event(&v) {
                events.lock().expect("events lock").push(e);
            }
        }
    };
    tracing::debug!("agent reader: {why}");
    let mut shared = wire.lock();
    shared.gone = Some(why);
    // Dropping the senders wakes every call still waiting for a reply.
    shared.waiting.clear();
    drop(shared);
    wire.shared.1.notify_all();
}

fn state_event(v: &Value) -> Option<StateEvent> {
    let ns = v.get("t_ns")?.as_u64()?;
    Some(StateEvent {
        at: SystemTime::UNIX_EPOCH + Duration::from_nanos(ns),
        local: v.get("local")?.as_str()?.to_string(),
        remote: v.get("remote")?.as_str()?.to_string(),
        to: parse_state(v.get("to")?.as_str()?),
    })
}

fn parse_state(s: &str) -> Option<TcpState> {
    if s == "CLOSED" {
        return None;
    }
    s.parse().ok()
}

/// A timer's name in a `state` reply: `retransmit`, `keepalive`, `timewait`, `probe`.
pub fn timer_name(t: TimerKind) -> Option<&'static str> {
    match t {
        TimerKind::Retransmit => Some("retransmit"),
        TimerKind::KeepAlive => Some("keepalive"),
        TimerKind::TimeWait => Some("timewait"),
        TimerKind::Probe => Some("probe"),
        TimerKind::None | TimerKind::Other(_) => None,
    }
}

fn timer_named(name: &str) -> TimerKind {
    match name {
        "retransmit" => TimerKind::Retransmit,
        "keepalive" => TimerKind::KeepAlive,
        "timewait" => TimerKind::TimeWait,
        "probe" => TimerKind::Probe,
        _ => TimerKind::None,
    }
}

/// The reply line's body for a call result, as an agent writes it (the inverse of
/// [`result_of`]): `{"ok": n}`, `{"ok": {"data": hex}}` or `{"error": "EPIPE", …}`.
pub fn reply_of(result: &CallResult) -> Value {
    match result {
        CallResult::Ret(n) => json!({"ok": n}),
        CallResult::Data(d) => json!({"ok": {"data": to_hex(d)}}),
        CallResult::Err(e) => json!({"error": format!("{e:?}"), "message": e.desc()}),
        CallResult::Lost(why) => json!({"error": "EIO", "message": why}),
        CallResult::TcpInfo(_) => {
            json!({"error": "ENOSYS", "message": "TCP_INFO is not in protocol 1"})
        }
        // Agents' stacks raise no signals: the call's own result is the reply.
        CallResult::Sigpipe(inner) => reply_of(inner),
    }
}

/// A reply as a call result: `ok` a number or `{"data": hex}`, or an errno name.
fn result_of(reply: Result<Value, String>) -> CallResult {
    let v = match reply {
        Ok(v) => v,
        Err(why) => return CallResult::Lost(why),
    };
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return CallResult::Err(errno_named(e));
    }
    // Anything else is a broken reply, never a result: read as 0 or as EOF, it could pass a
    // step that expects exactly that.
    let broken = || CallResult::Lost(format!("a malformed reply from the agent: {v}"));
    match v.get("ok") {
        Some(Value::Number(n)) => n.as_i64().map_or_else(broken, CallResult::Ret),
        Some(Value::Object(o)) => match o.get("data").and_then(Value::as_str).map(from_hex) {
            Some(Some(data)) => CallResult::Data(data),
            _ => broken(),
        },
        _ => broken(),
    }
}

/// The errno an agent names; EIO for names this table does not know.
pub fn errno_named(name: &str) -> Errno {
    use Errno::*;
    const KNOWN: &[Errno] = &[
        EPIPE,
        ENOTCONN,
        EINVAL,
        EBADF,
        ENOSYS,
        ECONNRESET,
        ETIMEDOUT,
        EAGAIN,
        ECONNREFUSED,
        EADDRINUSE,
        EADDRNOTAVAIL,
        EISCONN,
        EAFNOSUPPORT,
        ENETDOWN,
        ENODEV,
        EPROTO,
        ENOPROTOOPT,
        EOPNOTSUPP,
        EALREADY,
        EINPROGRESS,
        ENETUNREACH,
        EHOSTUNREACH,
        ECONNABORTED,
    ];
    KNOWN
        .iter()
        .copied()
        .find(|e| format!("{e:?}") == name)
        .unwrap_or(EIO)
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Runs one call against the agent, on the calling (call) thread.
fn execute(wire: &Wire, func: &Func, fd: i64, (sut, peer): Addrs) -> CallResult {
    // Blocking calls wait as long as a kernel call would (its socket timeout is 10 s).
    let long = Duration::from_secs(10);
    let ask = |cmd: Value, t: Duration| result_of(wire.ask(cmd, t));
    match func {
        Func::Socket => {
            let family = if sut.is_ipv4() { "ipv4" } else { "ipv6" };
            ask(json!({"cmd": "socket", "family": family}), ANSWER_TIMEOUT)
        }
        Func::Bind => ask(
            json!({"cmd": "bind", "fd": fd, "addr": sut.to_string()}),
            ANSWER_TIMEOUT,
        ),
        Func::Connect => ask(
            json!({"cmd": "connect", "fd": fd, "addr": peer.to_string()}),
            long,
        ),
        Func::Listen { backlog } => ask(
            json!({"cmd": "listen", "fd": fd, "backlog": backlog}),
            ANSWER_TIMEOUT,
        ),
        Func::Accept => ask(json!({"cmd": "accept", "fd": fd}), long),
        Func::Write(p) => ask(
            json!({"cmd": "write", "fd": fd, "data": to_hex(&p.bytes())}),
            ANSWER_TIMEOUT,
        ),
        Func::Read { max } => ask(json!({"cmd": "read", "fd": fd, "max": max}), long),
        Func::ReadAll { n } => read_all(wire, fd, *n, long),
        Func::Shutdown(how) => ask(
            json!({"cmd": "shutdown", "fd": fd, "how": how_name(*how)}),
            ANSWER_TIMEOUT,
        ),
        Func::Close => ask(json!({"cmd": "close", "fd": fd}), ANSWER_TIMEOUT),
        Func::Dup => ask(json!({"cmd": "dup", "fd": fd}), ANSWER_TIMEOUT),
        Func::SetSockOpt(opt) => {
            let (name, mut fields) = opt_json(opt);
            fields["cmd"] = json!("setsockopt");
            fields["fd"] = json!(fd);
            fields["opt"] = json!(name);
            ask(fields, ANSWER_TIMEOUT)
        }
        Func::Poll { events, timeout_ms } => {
            let wanted = mask_names(names::POLL_EVENTS, *events);
            let cmd = json!({"cmd": "poll", "fd": fd, "events": wanted, "timeout_ms": timeout_ms});
            let wait = Duration::from_millis(*timeout_ms as u64) + ANSWER_TIMEOUT;
            revents_of(wire.ask(cmd, wait))
        }
        Func::Ioctl(req) => ask(
            json!({"cmd": "ioctl", "fd": fd, "req": ioctl_name(*req)}),
            ANSWER_TIMEOUT,
        ),
        Func::GetSockOpt(GetOpt::SoError) => {
            match wire.ask(
                json!({"cmd": "getsockopt", "fd": fd, "opt": "so_error"}),
                ANSWER_TIMEOUT,
            ) {
                Ok(v) if v.get("ok").is_some() => {
                    match v["ok"].get("error").and_then(Value::as_str) {
                        Some(e) => CallResult::Ret(errno_named(e) as i64),
                        None => CallResult::Ret(0),
                    }
                }
                other => result_of(other),
            }
        }
        Func::Fcntl(Fcntl::SetFl(flags)) => ask(
            json!({"cmd": "fcntl", "fd": fd, "op": "setfl",
                   "nonblock": flags & libc::O_NONBLOCK as u32 != 0}),
            ANSWER_TIMEOUT,
        ),
        Func::Fcntl(Fcntl::GetFl) => {
            match wire.ask(
                json!({"cmd": "fcntl", "fd": fd, "op": "getfl"}),
                ANSWER_TIMEOUT,
            ) {
                Ok(v) if v.get("ok").is_some() => match v["ok"]["nonblock"].as_bool() {
                    Some(nb) => CallResult::Ret(i64::from(
                        libc::O_RDWR | if nb { libc::O_NONBLOCK } else { 0 },
                    )),
                    None => CallResult::Lost(format!("a malformed fcntl reply: {v}")),
                },
                other => result_of(other),
            }
        }
        Func::Send { payload, flags } => ask(
            json!({"cmd": "send", "fd": fd, "data": to_hex(&payload.bytes()),
                   "flags": msg_flag_names(*flags)}),
            ANSWER_TIMEOUT,
        ),
        Func::Recv { max, flags } => ask(
            json!({"cmd": "recv", "fd": fd, "max": max, "flags": msg_flag_names(*flags)}),
            long,
        ),
        // Not in the protocol: the capability check skips scenarios that use them.
        Func::Epoll { events, timeout_ms } => {
            let wanted = mask_names(names::EPOLL_EVENTS, *events);
            let cmd = json!({"cmd": "epoll", "fd": fd, "events": wanted, "timeout_ms": timeout_ms});
            let wait = Duration::from_millis(*timeout_ms as u64) + ANSWER_TIMEOUT;
            events_of(wire.ask(cmd, wait), "events", names::EPOLL_EVENTS)
        }
        Func::GetSockOpt(GetOpt::TcpInfo) => tcp_info_of(wire.ask(
            json!({"cmd": "getsockopt", "fd": fd, "opt": "tcp_info"}),
            ANSWER_TIMEOUT,
        )),
    }
}

/// A `tcp_info` reply, an object of `struct tcp_info` fields by name (`state`, `unacked`, …)
/// holding the numbers Linux's struct would: only the fields the agent fills.
fn tcp_info_of(reply: Result<Value, String>) -> CallResult {
    let v = match reply {
        Ok(v) if v.get("ok").is_some() => v,
        other => return result_of(other),
    };
    let Some(obj) = v["ok"].as_object() else {
        return CallResult::Lost(format!("the agent's tcp_info reply is not an object: {v}"));
    };
    let mut fields = Vec::new();
    for (k, x) in obj {
        match (names::tcpi_field(k), x.as_u64()) {
            (Some(f), Some(n)) if !k.starts_with("tcpi_") => fields.push((f, n)),
            _ => {
                return CallResult::Lost(format!(
                    "the agent's tcp_info reply: `{k}` is not a tcp_info field with a number: {v}"
                ))
            }
        }
    }
    CallResult::TcpInfo(fields)
}

/// The names of the bits of `mask` (`["POLLIN", "POLLRDHUP"]`).
pub fn mask_names(table: &'static [(&'static str, u32)], mask: u32) -> Vec<&'static str> {
    table
        .iter()
        .filter(|(_, v)| mask & v == *v)
        .map(|(k, _)| *k)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// A poll reply `{"revents": ["POLLIN", …]}` as the mask.
fn revents_of(reply: Result<Value, String>) -> CallResult {
    events_of(reply, "revents", names::POLL_EVENTS)
}

/// A reply whose `ok` holds a list of event names under `key`, as the mask.
fn events_of(
    reply: Result<Value, String>,
    key: &str,
    table: &'static [(&'static str, u32)],
) -> CallResult {
    let v = match reply {
        Ok(v) if v.get("ok").is_some() => v,
        other => return result_of(other),
    };
    let list: Option<Vec<String>> = v["ok"][key]
        .as_array()
        .and_then(|a| a.iter().map(|x| x.as_str().map(String::from)).collect());
    let Some(list) = list else {
        return CallResult::Lost(format!("the agent's reply has no `{key}` list: {v}"));
    };
    match names::mask_of(table, &list) {
        Ok(m) => CallResult::Ret(i64::from(m)),
        Err(why) => CallResult::Lost(format!("the agent's `{key}` reply: {why}")),
    }
}

/// read() until `n` bytes or EOF, as the kernel driver's read_all does.
fn read_all(wire: &Wire, fd: i64, n: usize, timeout: Duration) -> CallResult {
    let mut got = Vec::new();
    while got.len() < n {
        let max = n - got.len();
        match result_of(wire.ask(json!({"cmd": "read", "fd": fd, "max": max}), timeout)) {
            CallResult::Data(d) if d.is_empty() => break,
            CallResult::Data(d) => got.extend(d),
            CallResult::Err(e) if got.is_empty() => return CallResult::Err(e),
            _ => break,
        }
    }
    CallResult::Data(got)
}

impl SutDriver for AgentSut {
    fn start(
        &mut self,
        _topo: &Topology,
        call: &Call,
        addrs: Addrs,
    ) -> Result<Receiver<Completed>, String> {
        if let Some(why) = self.wire.gone() {
            return Err(why);
        }
        let fd = self.table.fd(call);
        let wire = self.wire.clone();
        let func = call.func.clone();
        self.pool
            .call(None, move || execute(&wire, &func, fd, addrs))
    }

    fn table(&mut self) -> &mut CallTable {
        &mut self.table
    }

    fn close_all(&mut self) {
        let _ = self.wire.request(json!({"cmd": "quit"}));
    }

    fn run_delay(&self, from: SystemTime, to: SystemTime) -> Duration {
        self.delay
            .as_ref()
            .map_or(Duration::ZERO, |w| w.wait(from, to))
    }

    fn connection(&self, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<SockInfo>> {
        let reply = self
            .wire
            .ask(state_cmd(local, remote), ANSWER_TIMEOUT)
            .map_err(io::Error::other)?;
        info_of(&reply, local, remote)
    }

    fn sample(&mut self, local: SocketAddr, remote: SocketAddr) -> Vec<super::Sample> {
        let asked = SystemTime::now();
        if let Ok(rx) = self.wire.request(state_cmd(local, remote)) {
            self.samples.push_back((asked, rx, local, remote));
        }
        let mut back = Vec::new();
        while let Some((asked, rx, local, remote)) = self.samples.pop_front() {
            match rx.try_recv() {
                Ok(reply) => back.extend(sample_of(asked, &reply, local, remote)),
                Err(TryRecvError::Empty) => {
                    self.samples.push_front((asked, rx, local, remote));
                    break;
                }
                Err(TryRecvError::Disconnected) => {}
            }
        }
        back
    }

    fn finish_samples(&mut self) -> Vec<super::Sample> {
        let mut back = Vec::new();
        for (asked, rx, local, remote) in self.samples.drain(..) {
            if let Ok(reply) = rx.recv_timeout(ANSWER_TIMEOUT) {
                back.extend(sample_of(asked, &reply, local, remote));
            }
        }
        back
    }
}

fn state_cmd(local: SocketAddr, remote: SocketAddr) -> Value {
    json!({"cmd": "state", "local": local.to_string(), "remote": remote.to_string()})
}

fn sample_of(
    asked: SystemTime,
    reply: &Value,
    local: SocketAddr,
    remote: SocketAddr,
) -> Option<super::Sample> {
    let info = info_of(reply, local, remote).ok()?;
    Some((asked, info.map(|i| i.state)))
}

/// An agent's answer to `state`, as the kernel's sock_diag would give it.
fn info_of(reply: &Value, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<SockInfo>> {
    let ok = &reply["ok"];
    let name = ok["state"]
        .as_str()
        .ok_or_else(|| io::Error::other(format!("agent state reply: {reply}")))?;
    // An agent with `timers` reports the pending timer and its remaining time.
    let timer = ok["timer"].as_str().map_or(TimerKind::None, timer_named);
    let expires = Duration::from_millis(ok["expires_ms"].as_u64().unwrap_or(0));
    Ok(parse_state(name).map(|state| SockInfo {
        state,
        local,
        remote,
        timer,
        expires,
        retransmits: ok["retransmits"].as_u64().map_or(0, |n| n.min(255) as u8),
        recv_q: 0,
        send_q: 0,
        inode: 0,
        family: if local.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        },
        cookie: 0,
        shutdown: None,
    }))
}

impl Drop for AgentSut {
    fn drop(&mut self) {
        self.agent.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_hello_lists_capabilities() {
        let v: Value = serde_json::from_str(
            r#"{"hello":{"protocol":1,"agent":"a","stack":"smoltcp 0.14","calls":["socket","close"],"shutdown":["wr"],"sockopts":["linger"],"timers":false,"time_wait_ms":10000}}"#,
        )
        .unwrap();
        let h = Hello::parse(&v).unwrap();
        assert_eq!(h.calls, ["socket", "close"]);
        assert_eq!(h.time_wait, Some(Duration::from_secs(10)));
        assert_eq!(h.profile().name, "agent");
        assert_eq!(h.profile().time_wait, Duration::from_secs(10));
        let call = |t: &str| crate::script::call::parse_call(t).unwrap();
        assert_eq!(h.missing_call(&call("dup()")), Some("the call dup".into()));
        assert_eq!(h.missing_call(&call("close()")), None);
        let v: Value = serde_json::from_str(
            r#"{"hello":{"protocol":1,"stack":"x 1","calls":["poll","ioctl","getsockopt"],"ioctls":["siocinq"],"getsockopts":["so_error"]}}"#,
        )
        .unwrap();
        let h = Hello::parse(&v).unwrap();
        assert_eq!(h.missing_call(&call("poll(POLLIN, 0)")), None);
        assert_eq!(h.missing_call(&call("ioctl(SIOCINQ) = 0")), None);
        assert_eq!(
            h.missing_call(&call("ioctl(SIOCOUTQ) = 0")),
            Some("ioctl SIOCOUTQ".into())
        );
        assert_eq!(
            h.missing_call(&call("getsockopt(TCP_INFO)")),
            Some("getsockopt TCP_INFO".into())
        );
        assert_eq!(
            h.missing_call(&call("epoll(EPOLLIN, 0)")),
            Some("the call epoll".into())
        );
        // fcntl, send and recv run only on an agent that lists them, as before otherwise.
        for c in [
            "fcntl(F_SETFL, O_NONBLOCK)",
            "recv(100, MSG_PEEK)",
            "send(10, 0)",
        ] {
            assert!(
                h.missing_call(&call(c)).unwrap().starts_with("the call "),
                "{c}"
            );
        }
        let v: Value = serde_json::from_str(
            r#"{"hello":{"protocol":1,"stack":"x 1","calls":["fcntl","send","recv"]}}"#,
        )
        .unwrap();
        let h = Hello::parse(&v).unwrap();
        for c in [
            "fcntl(F_SETFL, O_RDWR|O_NONBLOCK)",
            "fcntl(F_GETFL) = O_RDWR|O_NONBLOCK",
            "recv(100, MSG_PEEK|MSG_DONTWAIT)",
            "send(10, MSG_NOSIGNAL|MSG_DONTWAIT)",
        ] {
            assert_eq!(h.missing_call(&call(c)), None, "{c}");
        }
        assert_eq!(
            h.missing_call(&call("recv(100, MSG_WAITALL|MSG_PEEK)")),
            Some("recv with flags MSG_WAITALL".into())
        );
        // A signal stays the host kernel's.
        assert!(h
            .missing_call(&call("send(10) = -1 EPIPE SIGPIPE"))
            .unwrap()
            .contains("SIGPIPE"));
        assert_eq!(
            msg_flag_names(libc::MSG_PEEK as u32 | libc::MSG_WAITALL as u32),
            ["MSG_PEEK"]
        );
        // epoll, listed: its events (EPOLLET too) go as names and come back as the mask.
        let v: Value =
            serde_json::from_str(r#"{"hello":{"protocol":1,"stack":"x 1","calls":["epoll"]}}"#)
                .unwrap();
        let h = Hello::parse(&v).unwrap();
        assert_eq!(
            h.missing_call(&call("epoll(EPOLLIN|EPOLLRDHUP|EPOLLET, 0)")),
            None
        );
        assert_eq!(
            h.missing_call(&call("epoll(EPOLLIN|EPOLLONESHOT, 0)")),
            Some("epoll with EPOLLONESHOT".into())
        );
        // TCP_INFO: an agent that lists it answers the fields it fills.
        let v: Value = serde_json::from_str(
            r#"{"hello":{"protocol":1,"stack":"x 1","calls":["getsockopt"],"getsockopts":["so_error","tcp_info"]}}"#,
        )
        .unwrap();
        let h = Hello::parse(&v).unwrap();
        assert_eq!(
            h.missing_call(&call("getsockopt(TCP_INFO) = {tcpi_state=CLOSE}")),
            None
        );
        let info = tcp_info_of(Ok(json!({"id": 1, "ok": {"state": 4, "unacked": 1}})));
        let CallResult::TcpInfo(fields) = info else {
            panic!("{info:?}")
        };
        let get = |n: &str| fields.iter().find(|(f, _)| f.name == n).map(|(_, v)| *v);
        assert_eq!(
            (get("state"), get("unacked"), get("rto")),
            (Some(4), Some(1), None)
        );
        for broken in [
            json!({"state": "FIN_WAIT_1"}),
            json!({"bogus": 1}),
            json!([1]),
        ] {
            assert!(
                matches!(
                    tcp_info_of(Ok(json!({"id": 1, "ok": broken}))),
                    CallResult::Lost(_)
                ),
                "{broken}"
            );
        }
        // The first set stays what the Linux agent's hello lists.
        assert!(!CALLS.contains(&"epoll") && !GETSOCKOPTS.contains(&"tcp_info"));
        let reply = json!({"id": 1, "ok": {"events": ["EPOLLIN", "EPOLLRDHUP"]}});
        assert_eq!(
            events_of(Ok(reply), "events", names::EPOLL_EVENTS),
            CallResult::Ret(i64::from((libc::EPOLLIN | libc::EPOLLRDHUP) as u32))
        );
        assert!(matches!(
            events_of(
                Ok(json!({"id": 1, "ok": {"events": ["EPOLLWAT"]}})),
                "events",
                names::EPOLL_EVENTS
            ),
            CallResult::Lost(_)
        ));
    }

    #[test]
    fn a_malformed_hello_says_what_is_wrong() {
        let err = |line: &str| Hello::parse(&serde_json::from_str(line).unwrap()).unwrap_err();
        let ok = r#"{"protocol":1,"stack":"s 1","calls":["socket"]"#;
        for (line, says) in [
            (r#"{"hello":5}"#.to_string(), "not a number (5)"),
            (r#"{"hello":{}}"#.into(), "missing `protocol`"),
            (r#"{"hi":{}}"#.into(), "not a hello"),
            (
                r#"{"hello":{"protocol":2,"stack":"s","calls":[]}}"#.into(),
                "`protocol` is 2",
            ),
            (
                r#"{"hello":{"protocol":1,"stack":"s","calls":"all"}}"#.into(),
                "`calls` must be a list of names, not a string (\"all\")",
            ),
            (
                r#"{"hello":{"protocol":1,"calls":[]}}"#.into(),
                "missing `stack`",
            ),
            (
                r#"{"hello":{"protocol":1,"stack":"s","calls":["sokcet"]}}"#.into(),
                "`calls` lists `sokcet`",
            ),
            (
                r#"{"hello":{"protocol":1,"stack":"s","calls":[1]}}"#.into(),
                "must list names",
            ),
            (format!(r#"{{"hello":{ok},"timers":"no"}}}}"#), "`timers`"),
            (
                format!(r#"{{"hello":{ok},"time_wait_ms":-1}}}}"#),
                "`time_wait_ms`",
            ),
            (
                format!(r#"{{"hello":{ok},"shutdown":["half"]}}}}"#),
                "`half`",
            ),
            (format!(r#"{{"hello":{ok},"events":["boom"]}}}}"#), "`boom`"),
        ] {
            let e = err(&line);
            assert!(e.contains(says), "{line}: {e}");
        }
        let h =
            Hello::parse(&serde_json::from_str(&format!("{{\"hello\":{ok}}}}}")).unwrap()).unwrap();
        assert_eq!((h.stack.as_str(), h.calls.len()), ("s 1", 1));
    }

    #[test]
    fn lines_are_capped_and_read_in_linear_time() {
        // Lines split across a tiny buffer come out whole.
        let mut r = BufReader::with_capacity(3, &b"{\"a\":1}\n\n{}\nend"[..]);
        let mut lines = Vec::new();
        while let Some(l) = read_line(&mut r).unwrap() {
            lines.push(String::from_utf8(l).unwrap());
        }
        assert_eq!(lines, ["{\"a\":1}", "", "{}", "end"]);
        // An endless line stops at the cap, with an error, having read little more.
        let endless = io::repeat(b'x').take(1 << 40);
        let mut r = BufReader::new(endless);
        let started = std::time::Instant::now();
        let e = read_line(&mut r).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("longer than 1 MiB"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Exactly at the cap is still a line.
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(read_line(&mut &exact[..]).unwrap().unwrap().len(), MAX_LINE);
    }

    #[test]
    fn options_and_results_survive_the_protocol() {
        for opt in [
            SockOpt::Linger { on: true, secs: 3 },
            SockOpt::Linger2(7),
            SockOpt::RcvBuf(4096),
            SockOpt::SndBuf(8192),
            SockOpt::NoDelay(true),
            SockOpt::KeepAlive(false),
            SockOpt::ReuseAddr(true),
            SockOpt::FastOpenKey(*b"0123456789abcdef"),
        ] {
            let (name, mut cmd) = opt_json(&opt);
            cmd["opt"] = json!(name);
            assert_eq!(opt_from_json(&cmd), Some(opt), "{cmd}");
        }
        assert_eq!(
            opt_from_json(&json!({"opt": "rcvbuf", "value": "big"})),
            None
        );
        assert_eq!(opt_from_json(&json!({"opt": "mtu", "value": 1})), None);
        // A key is exactly 16 bytes of hex.
        for key in [
            "00",
            "zz112233445566778899aabbccddeeff",
            "00112233445566778899aabbccddeeff00",
        ] {
            assert_eq!(
                opt_from_json(&json!({"opt": "fastopen_key", "key": key})),
                None,
                "{key}"
            );
        }
        for r in [
            CallResult::Ret(5),
            CallResult::Data(b"hi".to_vec()),
            CallResult::Err(Errno::ECONNRESET),
        ] {
            assert_eq!(result_of(Ok(reply_of(&r))), r);
        }
        for t in [
            TimerKind::Retransmit,
            TimerKind::KeepAlive,
            TimerKind::TimeWait,
            TimerKind::Probe,
        ] {
            assert_eq!(timer_named(timer_name(t).unwrap()), t);
        }
    }

    #[test]
    fn a_hello_says_its_link_and_sysctls() {
        let parse = |extra: &str| {
            let line = format!(
                r#"{{"hello":{{"protocol":1,"stack":"linux 6","calls":["socket"]{extra}}}}}"#
            );
            Hello::parse(&serde_json::from_str(&line).unwrap())
        };
        let h = parse("").unwrap();
        assert_eq!((h.link, h.sysctls), (AgentLink::Tap, false));
        let h = parse(r#","link":"netns","sysctls":true"#).unwrap();
        assert_eq!((h.link, h.sysctls), (AgentLink::Netns, true));
        assert!(parse(r#","link":"wire""#).unwrap_err().contains("`link`"));
        assert!(parse(r#","sysctls":1"#).unwrap_err().contains("`sysctls`"));
    }

    #[test]
    fn replies_become_call_results() {
        let r = |s: &str| result_of(Ok(serde_json::from_str(s).unwrap()));
        assert_eq!(r(r#"{"id":1,"ok":4}"#), CallResult::Ret(4));
        assert_eq!(
            r(r#"{"id":1,"ok":{"data":"6869"}}"#),
            CallResult::Data(b"hi".to_vec())
        );
        assert_eq!(
            r(r#"{"id":1,"error":"EPIPE","message":"x"}"#),
            CallResult::Err(Errno::EPIPE)
        );
        assert_eq!(
            r(r#"{"id":1,"error":"EWEIRD"}"#),
            CallResult::Err(Errno::EIO)
        );
        // A broken reply is no result at all: read as 0 or EOF it could pass a step.
        for broken in [
            r#"{"id":1,"ok":{"data":"zz"}}"#,
            r#"{"id":1,"ok":{"data":"686"}}"#,
            r#"{"id":1,"ok":{"state":"x"}}"#,
            r#"{"id":1,"ok":1.5}"#,
            r#"{"id":1,"ok":"0"}"#,
            r#"{"id":1,"ok":null}"#,
        ] {
            assert!(matches!(r(broken), CallResult::Lost(_)), "{broken}");
        }
        assert!(matches!(
            revents_of(Ok(serde_json::from_str(r#"{"id":1,"ok":{}}"#).unwrap())),
            CallResult::Lost(_)
        ));
        assert_eq!(
            result_of(Err("the agent exited (exit status: 3)".into())).to_string(),
            "no result: the agent exited (exit status: 3)"
        );
    }
}
