//! The SUT driver for a stack behind an agent process (docs/agent-protocol.md): socket calls
//! as JSON lines on the agent's stdin, replies and events on its stdout.
//!
//! The agent runs its stack on the trial's TAP device, whose fd it inherits as fd 3. A reader
//! thread routes each reply to the call waiting for its id and keeps the state events, so
//! blocking calls (accept, connect, read) complete in the background like kernel calls do.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use serde_json::{json, Value};

use crate::observe::{SockInfo, TcpState, TimerKind};
use crate::runner::timing::TimerProfile;
use crate::script::call::{How, SockOpt};
use crate::script::{Action, Call, Func, Scenario};
use crate::sut::{on_call_thread, Addrs, CallResult, CallTable, Completed, SutDriver};
use crate::topology::{self, Topology};
use crate::Family;

/// The fd number the TAP device has in the agent process.
const TAP_FD: i32 = 3;
/// How long the agent may take to say hello, or to answer a non-blocking command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What an agent says it can do (its hello line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hello {
    pub agent: String,
    pub stack: String,
    pub calls: Vec<String>,
    pub shutdown: Vec<String>,
    pub sockopts: Vec<String>,
    pub timers: bool,
    pub time_wait: Option<Duration>,
}

impl Hello {
    fn parse(v: &Value) -> Result<Hello, String> {
        let h = v.get("hello").ok_or("the first line is not a hello")?;
        let strings = |k: &str| -> Vec<String> {
            h.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let text = |k: &str| h.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Ok(Hello {
            agent: text("agent"),
            stack: text("stack"),
            calls: strings("calls"),
            shutdown: strings("shutdown"),
            sockopts: strings("sockopts"),
            timers: h.get("timers").and_then(Value::as_bool).unwrap_or(false),
            time_wait: h
                .get("time_wait_ms")
                .and_then(Value::as_u64)
                .map(Duration::from_millis),
        })
    }

    /// The stack's timer profile: a known one by name, else Linux's with the agent's TIME_WAIT
    /// (made once per run, by `Stack::agent`).
    pub fn profile(&self) -> &'static TimerProfile {
        if self.stack.starts_with("smoltcp") {
            return &TimerProfile::SMOLTCP;
        }
        let base = TimerProfile {
            name: "agent",
            time_wait: self.time_wait.unwrap_or(TimerProfile::LINUX.time_wait),
            ..TimerProfile::LINUX
        };
        Box::leak(Box::new(base))
    }

    /// Why a scenario cannot run on this agent, if it cannot: the first capability it needs
    /// and the agent lacks.
    pub fn missing(&self, sc: &Scenario) -> Option<String> {
        if let Some((k, _)) = sc.setup.sysctls.first() {
            return Some(format!("sysctl {k} (a Linux kernel setting)"));
        }
        for step in &sc.steps {
            match &step.action {
                Action::Call { call, .. } => {
                    if let Some(m) = self.missing_call(&call.func) {
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

    fn missing_call(&self, f: &Func) -> Option<String> {
        let has = |list: &[String], x: &str| list.iter().any(|c| c == x);
        let name = match f {
            Func::ReadAll { .. } => "read",
            other => call_name(other),
        };
        if !has(&self.calls, name) {
            return Some(format!("the call {name}"));
        }
        match f {
            Func::Shutdown(how) if !has(&self.shutdown, how_name(*how)) => {
                Some(format!("shutdown({})", how_name(*how)))
            }
            // A lingering close that blocks is its own capability: an agent may abort on
            // linger {1, 0} without being able to wait.
            Func::SetSockOpt(SockOpt::Linger { on: true, secs }) if *secs > 0 => {
                (!has(&self.sockopts, "linger-timeout")).then(|| "SO_LINGER with a timeout".into())
            }
            Func::SetSockOpt(opt) => match opt_json(opt) {
                Some((n, _)) if has(&self.sockopts, n) => None,
                Some((n, _)) => Some(format!("setsockopt {n}")),
                None => Some(format!("setsockopt {opt:?}")),
            },
            _ => None,
        }
    }
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
    }
}

fn how_name(h: How) -> &'static str {
    match h {
        How::Rd => "rd",
        How::Wr => "wr",
        How::RdWr => "rdwr",
    }
}

/// The protocol's name and JSON fields for a socket option; None: not in the protocol.
fn opt_json(opt: &SockOpt) -> Option<(&'static str, Value)> {
    match *opt {
        SockOpt::Linger { on, secs } => Some(("linger", json!({"on": on, "secs": secs}))),
        SockOpt::NoDelay(v) => Some(("nodelay", json!({"value": v}))),
        SockOpt::KeepAlive(v) => Some(("keepalive", json!({"value": v}))),
        _ => None,
    }
}

/// Starts the agent without a TAP device just to read its hello (for skipping scenarios and
/// naming the stack before any trial runs).
pub fn probe(cmd: &[String]) -> Result<Hello, String> {
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the agent `{}`: {e}", cmd.join(" ")))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(ANSWER_TIMEOUT);
    let _ = child.kill();
    let _ = child.wait();
    let line = line.map_err(|_| "the agent said no hello within 5 s".to_string())?;
    let v: Value = serde_json::from_str(&line).map_err(|e| format!("the agent's hello: {e}"))?;
    Hello::parse(&v)
}

/// A state change the agent reported.
#[derive(Clone, Debug)]
pub struct StateEvent {
    pub at: SystemTime,
    pub local: String,
    pub remote: String,
    pub to: Option<TcpState>,
}

/// The request side of the agent's pipes, shared with call threads.
#[derive(Clone)]
struct Wire {
    stdin: Arc<Mutex<ChildStdin>>,
    next_id: Arc<AtomicU64>,
    waiting: Arc<Mutex<HashMap<u64, Sender<Value>>>>,
}

impl Wire {
    /// Sends a command; the receiver gets its reply line.
    fn request(&self, mut cmd: Value) -> io::Result<Receiver<Value>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        cmd["id"] = json!(id);
        let (tx, rx) = mpsc::channel();
        self.waiting.lock().expect("waiting lock").insert(id, tx);
        let mut line = cmd.to_string();
        line.push('\n');
        let mut stdin = self.stdin.lock().expect("stdin lock");
        stdin.write_all(line.as_bytes())?;
        stdin.flush()?;
        Ok(rx)
    }

    /// Sends a command and waits for its reply.
    fn ask(&self, cmd: Value, timeout: Duration) -> Result<Value, String> {
        let rx = self
            .request(cmd)
            .map_err(|e| format!("writing to the agent: {e}"))?;
        rx.recv_timeout(timeout)
            .map_err(|_| "the agent did not answer".to_string())
    }
}

/// One agent process driving one trial's SUT.
pub struct AgentSut {
    child: Child,
    wire: Wire,
    pub hello: Hello,
    pub events: Arc<Mutex<Vec<StateEvent>>>,
    table: CallTable,
}

impl AgentSut {
    /// Starts the agent on the trial's TAP device and configures the SUT's addresses.
    pub fn launch(cmd: &[String], topo: &Topology) -> Result<AgentSut, String> {
        let tap = topo.tap_fd().ok_or("the topology has no TAP device")?;
        let mut child = spawn(cmd, tap)?;
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take().expect("piped");
        let wire = Wire {
            stdin: Arc::new(Mutex::new(stdin)),
            next_id: Arc::new(AtomicU64::new(1)),
            waiting: Arc::new(Mutex::new(HashMap::new())),
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let (hello_tx, hello_rx) = mpsc::channel();
        let (waiting, ev) = (wire.waiting.clone(), events.clone());
        std::thread::Builder::new()
            .name("halfclose-agent-rx".into())
            .spawn(move || read_lines(stdout, hello_tx, waiting, ev))
            .map_err(|e| format!("cannot start the agent reader: {e}"))?;
        let mut sut = AgentSut {
            child,
            wire,
            hello: Hello::default(),
            events,
            table: CallTable::default(),
        };
        let hello = hello_rx
            .recv_timeout(ANSWER_TIMEOUT)
            .map_err(|_| "the agent said no hello within 5 s".to_string())?;
        sut.hello = Hello::parse(&hello)?;
        sut.configure()?;
        Ok(sut)
    }

    fn configure(&self) -> Result<(), String> {
        let mac = topology::SUT_MAC
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let addrs = [Family::V4, Family::V6]
            .map(|f| format!("{}/{}", topology::sut_ip(f), topology::prefix_len(f)));
        let reply = self.wire.ask(
            json!({"cmd": "configure", "mac": mac, "addrs": addrs}),
            ANSWER_TIMEOUT,
        )?;
        match reply.get("error") {
            None => Ok(()),
            Some(e) => Err(format!("configure: {e} {}", reply["message"])),
        }
    }
}

fn spawn(cmd: &[String], tap: BorrowedFd<'_>) -> Result<Child, String> {
    let tap_raw = tap.as_raw_fd();
    let mut c = Command::new(&cmd[0]);
    c.args(&cmd[1..])
        .env("HALFCLOSE_TAP_FD", TAP_FD.to_string())
        .env("HALFCLOSE_TAP_NAME", topology::TAP_IFNAME)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            // The agent goes when the thread that started it does (or the process dies).
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // dup2 clears close-on-exec on the new number, but does nothing at all when the
            // TAP already has that number (then it would be closed at exec).
            let rc = if tap_raw == TAP_FD {
                libc::fcntl(TAP_FD, libc::F_SETFD, 0)
            } else {
                libc::dup2(tap_raw, TAP_FD)
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.spawn()
        .map_err(|e| format!("cannot start the agent `{}`: {e}", cmd.join(" ")))
}

/// The reader thread: the hello, then replies to whoever waits for their id, and events.
fn read_lines(
    stdout: std::process::ChildStdout,
    hello: Sender<Value>,
    waiting: Arc<Mutex<HashMap<u64, Sender<Value>>>>,
    events: Arc<Mutex<Vec<StateEvent>>>,
) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            tracing::warn!("agent: not JSON: {line}");
            continue;
        };
        if v.get("hello").is_some() {
            let _ = hello.send(v);
        } else if let Some(id) = v.get("id").and_then(Value::as_u64) {
            if let Some(tx) = waiting.lock().expect("waiting lock").remove(&id) {
                let _ = tx.send(v);
            }
        } else if v.get("event").and_then(Value::as_str) == Some("state") {
            if let Some(e) = state_event(&v) {
                events.lock().expect("events lock").push(e);
            }
        }
    }
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

/// A reply as a call result: `ok` a number or `{"data": hex}`, or an errno name.
fn result_of(reply: Result<Value, String>) -> CallResult {
    let v = match reply {
        Ok(v) => v,
        Err(_) => return CallResult::Err(Errno::EIO),
    };
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return CallResult::Err(errno_named(e));
    }
    match v.get("ok") {
        Some(Value::Number(n)) => CallResult::Ret(n.as_i64().unwrap_or(0)),
        Some(Value::Object(o)) => match o.get("data").and_then(Value::as_str) {
            Some(hex) => CallResult::Data(from_hex(hex)),
            None => CallResult::Ret(0),
        },
        _ => CallResult::Ret(0),
    }
}

/// The errno an agent names; EIO for names this table does not know.
fn errno_named(name: &str) -> Errno {
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

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
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
        Func::Dup => CallResult::Err(Errno::ENOSYS),
        Func::SetSockOpt(opt) => match opt_json(opt) {
            Some((name, mut fields)) => {
                fields["cmd"] = json!("setsockopt");
                fields["fd"] = json!(fd);
                fields["opt"] = json!(name);
                ask(fields, ANSWER_TIMEOUT)
            }
            None => CallResult::Err(Errno::ENOPROTOOPT),
        },
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
        let fd = self.table.fd(call);
        let wire = self.wire.clone();
        let func = call.func.clone();
        on_call_thread(move || execute(&wire, &func, fd, addrs))
    }

    fn table(&mut self) -> &mut CallTable {
        &mut self.table
    }

    fn close_all(&mut self) {
        let _ = self.wire.request(json!({"cmd": "quit"}));
    }

    fn connection(&self, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<SockInfo>> {
        let reply = self
            .wire
            .ask(
                json!({"cmd": "state", "local": local.to_string(), "remote": remote.to_string()}),
                ANSWER_TIMEOUT,
            )
            .map_err(io::Error::other)?;
        let name = reply["ok"]["state"]
            .as_str()
            .ok_or_else(|| io::Error::other(format!("agent state reply: {reply}")))?;
        Ok(parse_state(name).map(|state| SockInfo {
            state,
            local,
            remote,
            timer: TimerKind::None,
            expires: Duration::ZERO,
            retransmits: 0,
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
}

impl Drop for AgentSut {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_lists_capabilities() {
        let v: Value = serde_json::from_str(
            r#"{"hello":{"protocol":1,"agent":"a","stack":"smoltcp 0.14","calls":["socket","close"],"shutdown":["wr"],"sockopts":["linger"],"timers":false,"time_wait_ms":10000}}"#,
        )
        .unwrap();
        let h = Hello::parse(&v).unwrap();
        assert_eq!(h.calls, ["socket", "close"]);
        assert_eq!(h.time_wait, Some(Duration::from_secs(10)));
        assert_eq!(h.profile().name, "smoltcp");
        assert_eq!(h.missing_call(&Func::Dup), Some("the call dup".into()));
        assert_eq!(h.missing_call(&Func::Close), None);
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
    }
}
