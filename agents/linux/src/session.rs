//! One agent session: commands in, replies out (docs/agent-protocol.md). Calls go to the
//! kernel driver's own call code, each on a thread of its own (any may block), so the next
//! command is read at once and replies may come out of order, as the protocol allows. Descriptors are the kernel's own (the kernel reuses a closed number; halfclose
//! tracks descriptors by the script's names, so nothing depends on their never recurring).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use halfclose::observe::Observer;
use halfclose::script::call::{GetOpt, How, Ioctl, Payload};
use halfclose::script::{names, Func};
use halfclose::sut::agent::{from_hex, mask_names, opt_from_json, reply_of, timer_name, CALLS};
use halfclose::sut::app::{self, Epolls};
use halfclose::sut::kernel::{execute, new_socket};
use halfclose::sut::CallResult;
use nix::errno::Errno;
use serde_json::{json, Value};

use crate::netns::{self, Sut};
use crate::Output;

/// A command that cannot be made: the errno name and what was wrong.
type Refusal = (&'static str, String);

pub struct Session {
    out: Output,
    observer: Arc<Observer>,
    sut: Sut,
}

impl Session {
    /// The observer's sock_diag socket sees the namespace the agent is in now.
    pub fn new(out: Output, sut: Sut) -> std::io::Result<Session> {
        Ok(Session {
            out,
            observer: Arc::new(Observer::new()?),
            sut,
        })
    }

    /// Handles one line; false after `quit`.
    pub fn handle(&mut self, line: &[u8]) -> bool {
        let v: Value = match serde_json::from_slice(line) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                let why = "the line is not a JSON object";
                self.out
                    .line(&json!({"id": null, "error": "EPROTO", "message": why}));
                return true;
            }
        };
        let (out, id) = (self.out.clone(), v["id"].clone());
        let answer = move |mut body: Value| {
            body["id"] = id;
            out.line(&body);
        };
        match v["cmd"].as_str().unwrap_or("") {
            "quit" => {
                answer(json!({"ok": null}));
                return false;
            }
            "configure" => answer(self.configure(&v).unwrap_or_else(refused)),
            "state" => answer(self.state(&v).unwrap_or_else(refused)),
            name if CALLS.contains(&name) => {
                // A thread per call: any of them may block (accept, connect, read, poll,
                // write into a full buffer, close with SO_LINGER) and a script may leave it
                // in the background, so the next command is read at once. Calls the script
                // waits for are still made one after another: halfclose sends the next only
                // after the reply. The socket's 10 s timeouts bound a blocked one.
                std::thread::spawn(move || answer(call(&v)));
            }
            // Not a call this agent makes: answered at once (ENOSYS), before a quit or the end
            // of the input can stop the agent.
            _ => answer(call(&v)),
        }
        true
    }

    /// Sysctls first (an IPv4 trial's turn IPv6 off), then, in a namespace of our own, the
    /// addresses; the MAC is the interface's already.
    fn configure(&self, v: &Value) -> Result<Value, Refusal> {
        if let Some(map) = v.get("sysctls").and_then(Value::as_object) {
            for (k, val) in map {
                let val = val
                    .as_str()
                    .ok_or(einval(format!("sysctl {k}: not a string")))?;
                halfclose::topology::write_sysctl(k, val).map_err(|e| einval(e.to_string()))?;
            }
        }
        if let Sut::Own = self.sut {
            let addrs: Vec<String> = v["addrs"]
                .as_array()
                .ok_or(einval("missing `addrs`".into()))?
                .iter()
                .filter_map(|a| a.as_str().map(String::from))
                .collect();
            netns::add_addrs(&addrs).map_err(|e| ("EIO", e))?;
        }
        Ok(json!({"ok": null}))
    }

    /// The connection's state from sock_diag, with its pending timer.
    fn state(&self, v: &Value) -> Result<Value, Refusal> {
        let (local, remote) = (addr(v, "local")?, addr(v, "remote")?);
        let found = self
            .observer
            .connection(local, remote)
            .map_err(|e| ("EIO", format!("sock_diag: {e}")))?;
        let Some(info) = found else {
            return Ok(json!({"ok": {"state": "CLOSED"}}));
        };
        let mut ok = json!({"state": info.state.name(), "retransmits": info.retransmits});
        if let Some(timer) = timer_name(info.timer) {
            ok["timer"] = json!(timer);
            ok["expires_ms"] = json!(info.expires.as_millis() as u64);
        }
        Ok(json!({"ok": ok}))
    }
}

fn refused((errno, message): Refusal) -> Value {
    json!({"error": errno, "message": message})
}

fn einval(message: String) -> Refusal {
    ("EINVAL", message)
}

/// Makes one call and says what it returned.
fn call(v: &Value) -> Value {
    match command(v) {
        Ok(Call::Socket(ip)) => reply_of(&new_socket(ip)),
        Ok(Call::On(func, fd, addr)) => {
            // poll, ioctl and getsockopt are the application's-view calls (src/sut/app.rs);
            // protocol 1 has no epoll, so no instance is ever kept.
            match app::execute(&func, fd, &Epolls::default()) {
                Some(result) => app_reply(&func, &result),
                None => reply_of(&execute(&func, fd, addr, addr)),
            }
        }
        Err(r) => refused(r),
    }
}

/// The reply to poll (revents by name) and getsockopt so_error (the errno by name, or
/// null); anything else replies as any call does.
fn app_reply(func: &Func, result: &CallResult) -> Value {
    match (func, result) {
        (Func::Poll { .. }, CallResult::Ret(mask)) => {
            json!({"ok": {"revents": mask_names(names::POLL_EVENTS, *mask as u32)}})
        }
        (Func::GetSockOpt(GetOpt::SoError), CallResult::Ret(0)) => json!({"ok": {"error": null}}),
        (Func::GetSockOpt(GetOpt::SoError), CallResult::Ret(n)) => {
            json!({"ok": {"error": format!("{:?}", Errno::from_raw(*n as i32))}})
        }
        _ => reply_of(result),
    }
}

enum Call {
    Socket(IpAddr),
    /// A call on a descriptor; `bind` and `connect` use the address.
    On(Func, i32, SocketAddr),
}

/// The call a command asks for; a refusal when its fields are missing or wrong.
fn command(v: &Value) -> Result<Call, Refusal> {
    let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let cmd = v["cmd"].as_str().unwrap_or("");
    if cmd == "socket" {
        return match v["family"].as_str() {
            Some("ipv4") => Ok(Call::Socket(Ipv4Addr::UNSPECIFIED.into())),
            Some("ipv6") => Ok(Call::Socket(Ipv6Addr::UNSPECIFIED.into())),
            _ => Err(einval("`family` must be \"ipv4\" or \"ipv6\"".into())),
        };
    }
    // `state`, `configure` and `quit` are the session's own; everything else is a call.
    if !CALLS.contains(&cmd) || cmd == "state" {
        return Err(("ENOSYS", format!("unknown command `{cmd}`")));
    }
    let fd = v["fd"]
        .as_i64()
        .and_then(|n| i32::try_from(n).ok())
        .ok_or(einval("missing or bad `fd`".into()))?;
    let on = |func: Func| Ok(Call::On(func, fd, any));
    match cmd {
        "bind" | "connect" => {
            let func = if cmd == "bind" {
                Func::Bind
            } else {
                Func::Connect
            };
            Ok(Call::On(func, fd, addr(v, "addr")?))
        }
        "listen" => on(Func::Listen {
            backlog: v["backlog"]
                .as_i64()
                .map_or(1, |b| b.clamp(0, 65535) as i32),
        }),
        "accept" => on(Func::Accept),
        "write" => {
            let hex = v["data"].as_str().ok_or(einval("missing `data`".into()))?;
            let bytes = from_hex(hex).ok_or(einval("`data` is not hex".into()))?;
            on(Func::Write(Payload::Bytes(bytes)))
        }
        "read" => on(Func::Read {
            max: v["max"].as_u64().map_or(65536, |m| m.min(1 << 20) as usize),
        }),
        "shutdown" => on(Func::Shutdown(match v["how"].as_str() {
            Some("rd") => How::Rd,
            Some("wr") => How::Wr,
            Some("rdwr") => How::RdWr,
            _ => return Err(einval("`how` must be rd, wr or rdwr".into())),
        })),
        "close" => on(Func::Close),
        "dup" => on(Func::Dup),
        "poll" => on(poll(v)?),
        "ioctl" => on(Func::Ioctl(match v["req"].as_str() {
            Some("siocinq") => Ioctl::InQ,
            Some("siocoutq") => Ioctl::OutQ,
            Some("siocoutqnsd") => Ioctl::OutQNsd,
            _ => {
                return Err(einval(
                    "`req` must be siocinq, siocoutq or siocoutqnsd".into(),
                ))
            }
        })),
        "getsockopt" => match v["opt"].as_str() {
            Some("so_error") => on(Func::GetSockOpt(GetOpt::SoError)),
            _ => Err(("ENOPROTOOPT", format!("getsockopt: unknown `opt` in {v}"))),
        },
        _ => match opt_from_json(v) {
            Some(opt) => on(Func::SetSockOpt(opt)),
            None => Err(("ENOSYS", format!("unsupported or malformed option: {v}"))),
        },
    }
}

/// `{"events": ["POLLIN", …], "timeout_ms": N}`; the timeout bounded as a script's is.
fn poll(v: &Value) -> Result<Func, Refusal> {
    let list: Vec<String> = v["events"]
        .as_array()
        .ok_or(einval("missing `events`".into()))?
        .iter()
        .map(|e| e.as_str().map(String::from))
        .collect::<Option<_>>()
        .ok_or(einval("`events` must be a list of names".into()))?;
    let events = names::mask_of(names::POLL_EVENTS, &list).map_err(einval)?;
    let timeout_ms = v["timeout_ms"]
        .as_i64()
        .filter(|t| (0..=halfclose::script::call::MAX_BLOCK_MS).contains(t))
        .ok_or(einval("`timeout_ms` must be 0 to 10000".into()))? as i32;
    Ok(Func::Poll { events, timeout_ms })
}

fn addr(v: &Value, field: &str) -> Result<SocketAddr, Refusal> {
    let text = v[field]
        .as_str()
        .ok_or(einval(format!("missing `{field}`")))?;
    text.parse()
        .map_err(|_| einval(format!("`{field}`: `{text}` is not ip:port")))
}
