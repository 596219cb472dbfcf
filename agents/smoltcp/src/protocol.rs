//! Wire format between halfclose and the agent: one JSON object per line.
//!
//! Parsing is done by hand over `serde_json::Value` rather than with derived
//! deserializers so that every error can name the offending field, which is
//! what the protocol promises (`EINVAL` "field `fd` ...").

use serde_json::{json, Map, Value};
use std::net::{IpAddr, SocketAddr};

pub const PROTOCOL_VERSION: u64 = 1;

/// An errno-style failure: the errno name travels on the wire, the message is for humans.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub errno: &'static str,
    pub message: String,
}

impl Error {
    pub fn new(errno: &'static str, message: impl Into<String>) -> Self {
        Error {
            errno,
            message: message.into(),
        }
    }
}

pub type Fd = u32;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// `None` means the default route of the gateway's family.
    pub dst: Option<(IpAddr, u8)>,
    pub via: IpAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SockOpt {
    /// SO_LINGER; only `{on: true, secs: 0}` (abortive close) and `on: false` are supported.
    Linger {
        on: bool,
        secs: u64,
    },
    NoDelay(bool),
    /// `secs` is the idle time before probing (smoltcp also uses it as the probe interval).
    KeepAlive {
        on: bool,
        secs: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Configure {
        mac: [u8; 6],
        addrs: Vec<(IpAddr, u8)>,
        routes: Vec<Route>,
    },
    Socket {
        family: Family,
    },
    Bind {
        fd: Fd,
        addr: SocketAddr,
    },
    Listen {
        fd: Fd,
        backlog: usize,
    },
    Accept {
        fd: Fd,
    },
    Connect {
        fd: Fd,
        addr: SocketAddr,
    },
    Write {
        fd: Fd,
        data: Vec<u8>,
    },
    Read {
        fd: Fd,
        max: usize,
    },
    Shutdown {
        fd: Fd,
        how: String,
    },
    Close {
        fd: Fd,
    },
    SetSockOpt {
        fd: Fd,
        opt: SockOpt,
    },
    State {
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// poll(2) on one descriptor: the events asked for, and how long to wait (ms).
    Poll {
        fd: Fd,
        events: Vec<String>,
        timeout_ms: u64,
    },
    /// `siocinq` (bytes to read) or `siocoutq` (bytes not yet acknowledged).
    Ioctl {
        fd: Fd,
        req: String,
    },
    /// `so_error`: the pending error, cleared as it is read.
    GetSockOpt {
        fd: Fd,
        opt: String,
    },
    Quit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: u64,
    pub cmd: Command,
}

/// Why a line could not become a `Request`; `id` is echoed if it could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub id: Option<u64>,
    pub error: Error,
}

/// Default keepalive idle time: Linux's tcp_keepalive_time.
const DEFAULT_KEEPALIVE_SECS: u64 = 7200;
/// Default read size when `max` is omitted: the receive buffer size.
pub const DEFAULT_READ_MAX: usize = 65536;

pub fn parse_line(line: &str) -> Result<Request, ParseError> {
    let value: Value = serde_json::from_str(line).map_err(|e| ParseError {
        id: None,
        error: Error::new("EPROTO", format!("malformed JSON: {e}")),
    })?;
    let obj = value.as_object().ok_or_else(|| ParseError {
        id: None,
        error: Error::new("EPROTO", "malformed JSON: a line must be a JSON object"),
    })?;
    let id = match obj.get("id") {
        Some(v) => v.as_u64(),
        None => None,
    };
    let fail = |error: Error| ParseError { id, error };
    let id = id.ok_or_else(|| fail(invalid("id", "a non-negative integer")))?;
    let cmd = parse_command(obj).map_err(fail)?;
    Ok(Request { id, cmd })
}

fn parse_command(obj: &Map<String, Value>) -> Result<Command, Error> {
    let f = Fields(obj);
    let name = f.str("cmd")?;
    Ok(match name {
        "configure" => Command::Configure {
            mac: parse_mac(f.str("mac")?)?,
            addrs: f
                .array("addrs")?
                .iter()
                .map(|v| cidr_of(v, "addrs"))
                .collect::<Result<_, _>>()?,
            routes: match obj.get("routes") {
                None | Some(Value::Null) => Vec::new(),
                Some(_) => f
                    .array("routes")?
                    .iter()
                    .map(route_of)
                    .collect::<Result<_, _>>()?,
            },
        },
        "socket" => Command::Socket {
            family: match f.str("family")? {
                "ipv4" => Family::Ipv4,
                "ipv6" => Family::Ipv6,
                _ => return Err(invalid("family", "\"ipv4\" or \"ipv6\"")),
            },
        },
        "bind" => Command::Bind {
            fd: f.fd()?,
            addr: f.sockaddr("addr")?,
        },
        "listen" => Command::Listen {
            fd: f.fd()?,
            backlog: f.opt_uint("backlog")?.unwrap_or(1) as usize,
        },
        "accept" => Command::Accept { fd: f.fd()? },
        "connect" => Command::Connect {
            fd: f.fd()?,
            addr: f.sockaddr("addr")?,
        },
        "write" => Command::Write {
            fd: f.fd()?,
            data: f.hex("data")?,
        },
        "read" => Command::Read {
            fd: f.fd()?,
            max: f
                .opt_uint("max")?
                .map(|m| m as usize)
                .unwrap_or(DEFAULT_READ_MAX),
        },
        "shutdown" => Command::Shutdown {
            fd: f.fd()?,
            how: f.str("how")?.to_string(),
        },
        "close" => Command::Close { fd: f.fd()? },
        "setsockopt" => Command::SetSockOpt {
            fd: f.fd()?,
            opt: parse_sockopt(&f)?,
        },
        "state" => Command::State {
            local: f.sockaddr("local")?,
            remote: f.sockaddr("remote")?,
        },
        "poll" => Command::Poll {
            fd: f.fd()?,
            events: f.names("events", "POLLIN")?,
            timeout_ms: f.opt_uint("timeout_ms")?.unwrap_or(0).min(60_000),
        },
        "ioctl" => Command::Ioctl {
            fd: f.fd()?,
            req: f.str("req")?.to_string(),
        },
        "getsockopt" => Command::GetSockOpt {
            fd: f.fd()?,
            opt: f.str("opt")?.to_string(),
        },
        "quit" => Command::Quit,
        other => return Err(Error::new("ENOSYS", format!("unknown command `{other}`"))),
    })
}

fn parse_sockopt(f: &Fields) -> Result<SockOpt, Error> {
    Ok(match f.str("opt")? {
        "linger" => SockOpt::Linger {
            on: f.bool("on")?,
            secs: f.opt_uint("secs")?.unwrap_or(0),
        },
        "nodelay" => SockOpt::NoDelay(f.bool("value")?),
        "keepalive" => SockOpt::KeepAlive {
            on: f.bool("value")?,
            secs: f.opt_uint("secs")?.unwrap_or(DEFAULT_KEEPALIVE_SECS),
        },
        other => {
            return Err(Error::new(
                "ENOSYS",
                format!("unsupported socket option `{other}`"),
            ))
        }
    })
}

/// Commands and options beyond the ones the agents share: the smoltcp agent's own (its hello
/// lists them). `parse_line_ext` reads them and hands every other line to `parse_line`, so an
/// agent that only calls `parse_line` behaves as before.
#[allow(dead_code)]
#[derive(Debug, Clone, PartialEq)]
pub enum Ext {
    /// A second descriptor for the socket behind `fd`.
    Dup {
        fd: Fd,
    },
    SetSockOpt {
        fd: Fd,
        opt: ExtOpt,
    },
    /// `F_SETFL` (`nonblock` given) or `F_GETFL` (`None`).
    Fcntl {
        fd: Fd,
        nonblock: Option<bool>,
    },
    /// send(2) with its flags (`MSG_DONTWAIT`, `MSG_NOSIGNAL`).
    Send {
        fd: Fd,
        data: Vec<u8>,
        flags: Vec<String>,
    },
    /// recv(2) with its flags (`MSG_DONTWAIT`, `MSG_PEEK`).
    Recv {
        fd: Fd,
        max: usize,
        flags: Vec<String>,
    },
    /// epoll_wait(2) on an epoll instance of the fd's own, registered with `events`
    /// (`EPOLLIN`, `EPOLLOUT`, `EPOLLRDHUP`, `EPOLLET`, …) at its first use.
    Epoll {
        fd: Fd,
        events: Vec<String>,
        timeout_ms: u64,
    },
}

/// The socket options only `parse_line_ext` knows.
#[allow(dead_code)]
#[derive(Debug, Clone, PartialEq)]
pub enum ExtOpt {
    ReuseAddr(bool),
    /// SO_SNDBUF's value, as the application passes it.
    SndBuf(u64),
    /// Milliseconds, 1 to 10000.
    RcvTimeo(u64),
    /// TCP_USER_TIMEOUT in milliseconds; 0 turns it off.
    UserTimeout(u64),
}

#[allow(dead_code)]
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Base(Request),
    Ext { id: u64, cmd: Ext },
}

/// Like `parse_line`, and also the commands and options of `Ext`.
#[allow(dead_code)]
pub fn parse_line_ext(line: &str) -> Result<Parsed, ParseError> {
    let obj = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(obj)) => obj,
        _ => return parse_line(line).map(Parsed::Base),
    };
    let f = Fields(&obj);
    let cmd = obj.get("cmd").and_then(Value::as_str).unwrap_or("");
    let opt = obj.get("opt").and_then(Value::as_str).unwrap_or("");
    let ext = matches!(cmd, "dup" | "fcntl" | "send" | "recv" | "epoll")
        || (cmd == "setsockopt"
            && matches!(opt, "reuseaddr" | "sndbuf" | "rcvtimeo" | "user_timeout"));
    if !ext {
        return parse_line(line).map(Parsed::Base);
    }
    let id = obj.get("id").and_then(Value::as_u64);
    let fail = |error: Error| ParseError { id, error };
    let id = id.ok_or_else(|| fail(invalid("id", "a non-negative integer")))?;
    let flags = |f: &Fields| -> Result<Vec<String>, Error> {
        match f.0.get("flags") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(_) => f
                .array("flags")?
                .iter()
                .map(|x| match x.as_str() {
                    Some(n @ ("MSG_DONTWAIT" | "MSG_PEEK" | "MSG_NOSIGNAL")) => Ok(n.to_string()),
                    _ => Err(Error::new(
                        "EINVAL",
                        "field `flags` must list MSG_DONTWAIT, MSG_PEEK or MSG_NOSIGNAL",
                    )),
                })
                .collect(),
        }
    };
    let parsed = (|| -> Result<Ext, Error> {
        Ok(match cmd {
            "dup" => Ext::Dup { fd: f.fd()? },
            "epoll" => Ext::Epoll {
                fd: f.fd()?,
                events: f.names("events", "EPOLLIN")?,
                timeout_ms: f.opt_uint("timeout_ms")?.unwrap_or(0).min(60_000),
            },
            "fcntl" => Ext::Fcntl {
                fd: f.fd()?,
                nonblock: match f.str("op")? {
                    "getfl" => None,
                    "setfl" => Some(f.bool("nonblock")?),
                    _ => return Err(invalid("op", "\"getfl\" or \"setfl\"")),
                },
            },
            "send" => Ext::Send {
                fd: f.fd()?,
                data: f.hex("data")?,
                flags: flags(&f)?,
            },
            "recv" => Ext::Recv {
                fd: f.fd()?,
                max: f
                    .opt_uint("max")?
                    .map(|m| m as usize)
                    .unwrap_or(DEFAULT_READ_MAX),
                flags: flags(&f)?,
            },
            _ => Ext::SetSockOpt {
                fd: f.fd()?,
                opt: match opt {
                    "reuseaddr" => ExtOpt::ReuseAddr(f.bool("value")?),
                    "sndbuf" => ExtOpt::SndBuf(f.uint("value")?),
                    "user_timeout" => ExtOpt::UserTimeout(f.uint("value")?),
                    _ => match f.uint("value")? {
                        ms @ 1..=10_000 => ExtOpt::RcvTimeo(ms),
                        _ => return Err(invalid("value", "a number of ms from 1 to 10000")),
                    },
                },
            },
        })
    })();
    parsed.map(|cmd| Parsed::Ext { id, cmd }).map_err(fail)
}

fn invalid(field: &str, expected: &str) -> Error {
    Error::new("EINVAL", format!("field `{field}` must be {expected}"))
}

/// Typed access to the fields of a command object, each error naming the field.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Result<&Value, Error> {
        self.0
            .get(name)
            .ok_or_else(|| Error::new("EINVAL", format!("missing field `{name}`")))
    }
    fn str(&self, name: &str) -> Result<&str, Error> {
        self.get(name)?
            .as_str()
            .ok_or_else(|| invalid(name, "a string"))
    }
    fn bool(&self, name: &str) -> Result<bool, Error> {
        self.get(name)?
            .as_bool()
            .ok_or_else(|| invalid(name, "a boolean"))
    }
    /// A list of names (`["POLLIN", …]`); `example` is one, for the error.
    fn names(&self, name: &str, example: &str) -> Result<Vec<String>, Error> {
        self.array(name)?
            .iter()
            .map(|e| {
                e.as_str()
                    .map(String::from)
                    .ok_or_else(|| invalid(name, &format!("a list of names like \"{example}\"")))
            })
            .collect()
    }

    fn array(&self, name: &str) -> Result<&Vec<Value>, Error> {
        self.get(name)?
            .as_array()
            .ok_or_else(|| invalid(name, "an array"))
    }
    #[allow(dead_code)]
    fn uint(&self, name: &str) -> Result<u64, Error> {
        self.get(name)?
            .as_u64()
            .ok_or_else(|| invalid(name, "a non-negative integer"))
    }
    fn opt_uint(&self, name: &str) -> Result<Option<u64>, Error> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| invalid(name, "a non-negative integer")),
        }
    }
    fn fd(&self) -> Result<Fd, Error> {
        let v = self
            .get("fd")?
            .as_u64()
            .ok_or_else(|| invalid("fd", "a non-negative integer"))?;
        Fd::try_from(v).map_err(|_| Error::new("EBADF", format!("bad file descriptor {v}")))
    }
    fn sockaddr(&self, name: &str) -> Result<SocketAddr, Error> {
        self.str(name)?
            .parse()
            .map_err(|_| invalid(name, "\"ip:port\" (IPv6 as \"[ip]:port\")"))
    }
    fn hex(&self, name: &str) -> Result<Vec<u8>, Error> {
        hex_decode(self.str(name)?).ok_or_else(|| invalid(name, "a string of hex digit pairs"))
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6], Error> {
    let byte = |p: &str| {
        if p.len() == 2 {
            u8::from_str_radix(p, 16).ok()
        } else {
            None
        }
    };
    let bytes: Option<Vec<u8>> = s.split(':').map(byte).collect();
    bytes
        .and_then(|b| <[u8; 6]>::try_from(b).ok())
        .ok_or_else(|| invalid("mac", "six colon-separated hex bytes"))
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

fn cidr_of(v: &Value, field: &str) -> Result<(IpAddr, u8), Error> {
    v.as_str()
        .and_then(parse_cidr)
        .ok_or_else(|| invalid(field, "a list of \"ip/prefix\" strings"))
}

fn route_of(v: &Value) -> Result<Route, Error> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("routes", "a list of {\"dst\",\"via\"} objects"))?;
    let f = Fields(obj);
    let via = f
        .str("via")?
        .parse()
        .map_err(|_| invalid("via", "an IP address"))?;
    let dst = match obj.get("dst").and_then(Value::as_str) {
        None | Some("default") => None,
        Some(s) => {
            Some(parse_cidr(s).ok_or_else(|| invalid("dst", "\"ip/prefix\" or \"default\""))?)
        }
    };
    Ok(Route { dst, via })
}

pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

pub fn hex_encode(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- Lines the agent writes ----

pub fn hello(time_wait_ms: u64) -> Value {
    json!({"hello": {
        "protocol": PROTOCOL_VERSION,
        "agent": "halfclose-smoltcp-agent",
        "stack": "smoltcp 0.14",
        "calls": ["socket","dup","bind","listen","accept","connect","write","read","shutdown","close","setsockopt","state","poll","ioctl","getsockopt","fcntl","send","recv","epoll"],
        "shutdown": ["rd","wr","rdwr"],
        "sockopts": ["linger","linger-timeout","nodelay","keepalive","reuseaddr","sndbuf","rcvtimeo","user_timeout"],
        "ioctls": ["siocinq","siocoutq","siocoutqnsd"],
        "getsockopts": ["so_error","tcp_info"],
        "events": ["state","readable","reset"],
        "timers": true,
        "ipv4_mapped": true,
        "time_wait_ms": time_wait_ms,
    }})
}

pub fn reply_ok(id: u64, value: Value) -> Value {
    json!({"id": id, "ok": value})
}

pub fn reply_err(id: Option<u64>, err: &Error) -> Value {
    json!({"id": id, "error": err.errno, "message": err.message})
}

pub fn state_event(
    local: SocketAddr,
    remote: SocketAddr,
    from: &str,
    to: &str,
    t_ns: u64,
) -> Value {
    json!({"event": "state", "local": local.to_string(), "remote": remote.to_string(),
           "from": from, "to": to, "t_ns": t_ns})
}

pub fn fd_event(kind: &str, fd: Fd) -> Value {
    json!({"event": kind, "fd": fd})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(line: &str) -> ParseError {
        parse_line(line).unwrap_err()
    }

    #[test]
    fn parses_good_commands() {
        let r = parse_line(r#"{"id":1,"cmd":"configure","mac":"02:00:00:00:00:01","addrs":["192.0.2.1/24","2001:db8::1/64"],"routes":[{"via":"192.0.2.254"}]}"#).unwrap();
        assert_eq!(r.id, 1);
        let Command::Configure { mac, addrs, routes } = r.cmd else {
            panic!("not configure")
        };
        assert_eq!(mac, [2, 0, 0, 0, 0, 1]);
        assert_eq!(addrs[1], ("2001:db8::1".parse().unwrap(), 64));
        assert_eq!(
            routes,
            vec![Route {
                dst: None,
                via: "192.0.2.254".parse().unwrap()
            }]
        );

        let r = parse_line(r#"{"id":7,"cmd":"write","fd":3,"data":"68690a"}"#).unwrap();
        assert_eq!(
            r.cmd,
            Command::Write {
                fd: 3,
                data: b"hi\n".to_vec()
            }
        );
        let r = parse_line(r#"{"id":8,"cmd":"bind","fd":3,"addr":"[2001:db8::1]:80"}"#).unwrap();
        assert_eq!(
            r.cmd,
            Command::Bind {
                fd: 3,
                addr: "[2001:db8::1]:80".parse().unwrap()
            }
        );
        let r =
            parse_line(r#"{"id":9,"cmd":"setsockopt","fd":4,"opt":"linger","on":true,"secs":0}"#)
                .unwrap();
        assert_eq!(
            r.cmd,
            Command::SetSockOpt {
                fd: 4,
                opt: SockOpt::Linger { on: true, secs: 0 }
            }
        );
        let r = parse_line(r#"{"id":10,"cmd":"read","fd":4}"#).unwrap();
        assert_eq!(
            r.cmd,
            Command::Read {
                fd: 4,
                max: DEFAULT_READ_MAX
            }
        );
        assert_eq!(
            parse_line(r#"{"id":11,"cmd":"quit"}"#).unwrap().cmd,
            Command::Quit
        );
    }

    #[test]
    fn malformed_json_is_eproto_without_id() {
        let e = err_of(r#"{"id":1,"cmd":"#);
        assert_eq!((e.id, e.error.errno), (None, "EPROTO"));
        assert!(e.error.message.starts_with("malformed JSON"));
        assert_eq!(err_of("[1,2]").error.errno, "EPROTO");
    }

    #[test]
    fn unknown_command_is_enosys_with_id() {
        let e = err_of(r#"{"id":5,"cmd":"frobnicate"}"#);
        assert_eq!((e.id, e.error.errno), (Some(5), "ENOSYS"));
        assert_eq!(e.error.message, "unknown command `frobnicate`");
        let e = err_of(r#"{"id":6,"cmd":"setsockopt","fd":3,"opt":"rcvbuf","value":1}"#);
        assert_eq!(e.error.errno, "ENOSYS");
    }

    #[test]
    fn missing_or_mistyped_field_is_einval_naming_it() {
        let e = err_of(r#"{"id":2,"cmd":"bind","fd":3}"#);
        assert_eq!((e.id, e.error.errno), (Some(2), "EINVAL"));
        assert!(e.error.message.contains("`addr`"), "{}", e.error.message);
        let e = err_of(r#"{"id":3,"cmd":"write","fd":"x","data":""}"#);
        assert!(e.error.message.contains("`fd`"));
        let e = err_of(r#"{"id":4,"cmd":"write","fd":3,"data":"abc"}"#);
        assert!(e.error.message.contains("`data`"));
        let e = err_of(r#"{"cmd":"quit"}"#);
        assert_eq!((e.id, e.error.errno), (None, "EINVAL"));
        assert!(
            err_of(r#"{"id":1,"cmd":"configure","mac":"zz","addrs":[]}"#)
                .error
                .message
                .contains("`mac`")
        );
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(
            hex_decode(&hex_encode(&[0, 1, 0xfe, 0xff])).unwrap(),
            vec![0, 1, 0xfe, 0xff]
        );
        assert_eq!(hex_decode("0g"), None);
    }
}
