//! The `call:` mini-language: one socket call of the SUT's application and what it must
//! return, written like packetdrill's system calls: `write(100) = 100`, `read(10) = 0`,
//! `shutdown(SHUT_WR) = 0`, `write(5) = -1 EPIPE`, `dup() = fd2`, `close(fd2)`.
//!
//! The first argument may name a descriptor (lowercase identifier); without it the call acts on
//! `conn`, the scenario's connection.

use std::fmt;

use nix::errno::Errno;

use super::names::{self, TcpiField};

/// The longest a call may be told to block (poll's timeout, SO_RCVTIMEO): a call thread
/// blocked longer could outlive its trial (closing a descriptor does not wake its readers).
pub const MAX_BLOCK_MS: i64 = 10_000;

/// The descriptor a call acts on when the script names none.
pub const DEFAULT_FD: &str = "conn";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Func {
    /// A new TCP socket of the trial's family; its name comes from `= name`.
    Socket,
    /// Binds to the SUT address and the scenario's SUT port.
    Bind,
    Listen {
        backlog: i32,
    },
    /// Accepts a connection; its name comes from `= name` (default `conn`).
    Accept,
    /// Connects to the peer's address and port.
    Connect,
    Write(Payload),
    Read {
        max: usize,
    },
    /// Reads until `n` bytes have come, or EOF.
    ReadAll {
        n: usize,
    },
    Shutdown(How),
    Close,
    /// A second descriptor for the same socket; its name comes from `= name`.
    Dup,
    SetSockOpt(SockOpt),
    /// `fcntl(F_GETFL)` (the result is the flags) or `fcntl(F_SETFL, FLAGS)`.
    Fcntl(Fcntl),
    /// `poll(fd, EVENTS, TIMEOUT_MS)`: the result is `revents`.
    Poll {
        events: u32,
        timeout_ms: i32,
    },
    /// `epoll(fd, EVENTS, TIMEOUT_MS)`: epoll_wait on an epoll instance of the descriptor's
    /// own, registered with EVENTS at its first use (and modified when EVENTS change, which
    /// re-arms EPOLLET); the result is the events delivered, 0 on a timeout.
    Epoll {
        events: u32,
        timeout_ms: i32,
    },
    GetSockOpt(GetOpt),
    Ioctl(Ioctl),
    /// send(2) with explicit flags; without MSG_NOSIGNAL a SIGPIPE is observed.
    Send {
        payload: Payload,
        flags: u32,
    },
    /// recv(2) with flags (MSG_PEEK, MSG_DONTWAIT, …).
    Recv {
        max: usize,
        flags: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fcntl {
    GetFl,
    SetFl(u32),
}

/// The socket options a script can read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetOpt {
    /// The pending socket error (and clears it): `= 0` or `= ECONNRESET`.
    SoError,
    /// `struct tcp_info`, checked field by field.
    TcpInfo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ioctl {
    /// Bytes received and not yet read (SIOCINQ, FIONREAD).
    InQ,
    /// Bytes written and not yet acknowledged by the peer (SIOCOUTQ).
    OutQ,
    /// Bytes written and not yet sent (SIOCOUTQNSD).
    OutQNsd,
}

impl Func {
    /// Does its result hold a bit mask (shown with these names)?
    pub fn mask_names(&self) -> Option<&'static [(&'static str, u32)]> {
        match self {
            Func::Poll { .. } => Some(names::POLL_EVENTS),
            Func::Epoll { .. } => Some(names::EPOLL_EVENTS),
            Func::Fcntl(Fcntl::GetFl) => Some(names::FILE_FLAGS),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// N filler bytes (a repeating pattern, so the peer can check them).
    Len(usize),
    Bytes(Vec<u8>),
}

impl Payload {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Payload::Len(n) => filler(*n),
            Payload::Bytes(b) => b.clone(),
        }
    }
}

/// The bytes `write(N)` and `len: N` send: a repeating, position-dependent pattern, so that a
/// reordered or corrupted byte shows up when compared.
pub fn filler(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    Rd,
    Wr,
    RdWr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockOpt {
    Linger {
        on: bool,
        secs: i32,
    },
    Linger2(i32),
    RcvBuf(i32),
    SndBuf(i32),
    NoDelay(bool),
    KeepAlive(bool),
    ReuseAddr(bool),
    /// TCP_USER_TIMEOUT, in milliseconds.
    UserTimeout(u32),
    /// TCP_FASTOPEN on a listener: the queue length of pending Fast Open requests.
    FastOpen(i32),
    /// TCP_FASTOPEN_KEY: the 16-byte key the listener's cookies are made with, so a script
    /// can fix the cookie a stack hands out.
    FastOpenKey([u8; 16]),
    /// SO_SNDTIMEO, in milliseconds.
    SndTimeo(u32),
    /// SO_RCVTIMEO, in milliseconds.
    RcvTimeo(u32),
}

/// What the call must return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Success with any non-negative value.
    Success,
    Ret(i64),
    /// `read` must return exactly these bytes.
    Data(Vec<u8>),
    Errno(Errno),
    /// `= -1`: the call must fail, with any errno.
    AnyErrno,
    /// Success; the new descriptor gets this name.
    NewFd(String),
    /// A bit mask: revents of poll/epoll, the flags of fcntl(F_GETFL).
    Mask(u32),
    /// getsockopt(SO_ERROR): the pending error must be this one (None: no error, `= 0`).
    SoError(Option<Errno>),
    /// getsockopt(TCP_INFO): these fields must hold these values; the others may hold any.
    TcpInfo(Vec<FieldCheck>),
}

/// One field of a TCP_INFO expectation: `unacked=0`, `state=CLOSE_WAIT`, `rto=200000..220000`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldCheck {
    pub field: TcpiField,
    pub min: u64,
    pub max: u64,
    /// `tcpi_options&TCPI_OPT_SYN_DATA`: these bits must be set, the others may be anything.
    pub bits: Option<u64>,
}

impl FieldCheck {
    pub fn holds(&self, v: u64) -> bool {
        match self.bits {
            Some(b) => v & b == b,
            None => (self.min..=self.max).contains(&v),
        }
    }
}

impl fmt::Display for FieldCheck {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let name = self.field.name;
        if let Some(b) = self.bits {
            return write!(f, "tcpi_{name}&{}", self.field.show(b));
        }
        if self.min == self.max {
            write!(f, "tcpi_{name}={}", self.field.show(self.min))
        } else {
            write!(f, "tcpi_{name}={}..{}", self.min, self.max)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub func: Func,
    pub fd: String,
    pub outcome: Outcome,
    /// `= … SIGPIPE`: the call must raise SIGPIPE (only send() without MSG_NOSIGNAL can;
    /// one that does when the script does not say so fails).
    pub sigpipe: bool,
    /// The text as written, for messages and capture comments.
    pub text: String,
}

/// A parse error with the 0-based character offset (not byte) in the call text it refers to.
#[derive(Debug, PartialEq, Eq)]
pub struct CallError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, CallError> {
    Err(CallError {
        offset,
        message: message.into(),
    })
}

#[derive(Clone, Debug, PartialEq)]
enum Arg {
    Ident(String),
    /// `A|B|C`: constants or'ed together.
    Names(Vec<String>),
    Int(i64),
    Str(Vec<u8>),
}

/// A small cursor over the call text, by character: positions are character offsets, so any
/// text (non-ASCII letters, Unicode spaces) is safe to walk and errors point at a column.
struct Lexer {
    chars: Vec<char>,
    pos: usize,
}

impl Lexer {
    fn new(text: &str) -> Lexer {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
        }
    }
    fn current(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn skip_ws(&mut self) {
        while self.current().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }
    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.current()
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn take_while(&mut self, f: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.current().is_some_and(&f) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }
    fn ident(&mut self) -> Option<(usize, String)> {
        self.skip_ws();
        let at = self.pos;
        let id = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
        if id.is_empty() || id.starts_with(|c: char| c.is_ascii_digit()) {
            self.pos = at;
            return None;
        }
        Some((at, id))
    }
    fn int(&mut self) -> Result<Option<i64>, CallError> {
        self.skip_ws();
        let at = self.pos;
        let neg = self.current() == Some('-');
        if neg {
            self.pos += 1;
        }
        let digits = self.take_while(|c| c.is_ascii_digit());
        if digits.is_empty() {
            self.pos = at;
            return Ok(None);
        }
        let v: i64 = match digits.parse() {
            Ok(v) => v,
            Err(_) => return err(at, format!("number `{digits}` is too large")),
        };
        Ok(Some(if neg { -v } else { v }))
    }
    fn string(&mut self) -> Result<Vec<u8>, CallError> {
        let at = self.pos;
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        while let Some(c) = self.current() {
            self.pos += 1;
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let escape = self.current();
                    self.pos += 1;
                    match escape {
                        Some('n') => out.push(b'\n'),
                        Some('r') => out.push(b'\r'),
                        Some('t') => out.push(b'\t'),
                        Some(c @ ('\\' | '"')) => out.push(c as u8),
                        Some('x') => out.push(self.hex_byte()?),
                        _ => {
                            return err(
                                self.pos - 2,
                                "unknown escape; expected \\n, \\r, \\t, \\xHH, \\\\ or \\\"",
                            )
                        }
                    }
                }
                c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        err(at, "string is not closed; expected a closing \"")
    }
    /// The two hex digits of a `\\xHH` escape (the `\\x` already taken).
    fn hex_byte(&mut self) -> Result<u8, CallError> {
        let at = self.pos - 2;
        let digits: String = self.chars.iter().skip(self.pos).take(2).collect();
        if digits.len() != 2 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return err(at, "`\\x` takes two hex digits, like \\x0a");
        }
        self.pos += 2;
        u8::from_str_radix(&digits, 16).map_or_else(|_| err(at, "bad hex escape"), Ok)
    }
    fn arg(&mut self) -> Result<(usize, Arg), CallError> {
        self.skip_ws();
        let at = self.pos;
        if self.peek() == Some('"') {
            return Ok((at, Arg::Str(self.string()?)));
        }
        if let Some(n) = self.int()? {
            return Ok((at, Arg::Int(n)));
        }
        match self.ident() {
            Some((_, id)) if self.peek() == Some('|') => {
                let mut all = vec![id];
                while self.eat('|') {
                    match self.ident() {
                        Some((_, id)) => all.push(id),
                        None => return err(self.pos, "expected a constant after `|`"),
                    }
                }
                Ok((at, Arg::Names(all)))
            }
            Some((_, id)) => Ok((at, Arg::Ident(id))),
            None => err(
                at,
                "expected an argument: a number, a \"string\", a descriptor name or a constant",
            ),
        }
    }
}

/// Parses `func(args) [= outcome]`.
pub fn parse_call(text: &str) -> Result<Call, CallError> {
    let mut lx = Lexer::new(text);
    let (name_at, name) = lx
        .ident()
        .map_or_else(|| err(0, "expected a call like close() or write(100)"), Ok)?;
    if !lx.eat('(') {
        // `close` alone reads naturally; accept a bare name as a call without arguments.
        if lx.peek().is_some_and(|c| c != '=') {
            return err(lx.pos, "expected `(` after the call name");
        }
    } else {
        return parse_after_paren(&mut lx, name_at, &name, text);
    }
    finish(&mut lx, name_at, &name, Vec::new(), text)
}

fn parse_after_paren(
    lx: &mut Lexer,
    name_at: usize,
    name: &str,
    text: &str,
) -> Result<Call, CallError> {
    let mut args = Vec::new();
    if !lx.eat(')') {
        loop {
            args.push(lx.arg()?);
            if lx.eat(')') {
                break;
            }
            if !lx.eat(',') {
                return err(lx.pos, "expected `,` or `)`");
            }
        }
    }
    finish(lx, name_at, name, args, text)
}

fn finish(
    lx: &mut Lexer,
    name_at: usize,
    name: &str,
    mut args: Vec<(usize, Arg)>,
    text: &str,
) -> Result<Call, CallError> {
    // A leading lowercase identifier names the descriptor; constants are uppercase.
    let fd = match args.first() {
        Some((_, Arg::Ident(id))) if id.starts_with(|c: char| c.is_ascii_lowercase()) => {
            let fd = id.clone();
            args.remove(0);
            fd
        }
        _ => DEFAULT_FD.to_string(),
    };
    let func = build_func(name_at, name, &args, lx.pos)?;
    let (outcome, sigpipe) = parse_outcome(lx, &func)?;
    if let Some(c) = lx.peek() {
        return err(lx.pos, format!("unexpected `{c}` after the call"));
    }
    Ok(Call {
        func,
        fd,
        outcome,
        sigpipe,
        text: text.trim().to_string(),
    })
}

fn build_func(
    name_at: usize,
    name: &str,
    args: &[(usize, Arg)],
    end: usize,
) -> Result<Func, CallError> {
    let arity = |n: usize| -> Result<(), CallError> {
        match args.get(n) {
            Some((at, _)) => err(
                *at,
                format!("{name}() takes {n} argument(s) besides the descriptor"),
            ),
            None => Ok(()),
        }
    };
    let int_at = |i: usize, what: &str| -> Result<i64, CallError> {
        match args.get(i) {
            Some((_, Arg::Int(n))) => Ok(*n),
            Some((at, _)) => err(*at, format!("expected {what} (a number)")),
            None => err(end, format!("{name}() needs {what}")),
        }
    };
    let func = match name {
        "socket" => Func::Socket,
        "bind" => Func::Bind,
        "accept" => Func::Accept,
        "connect" => Func::Connect,
        "close" => Func::Close,
        "dup" => Func::Dup,
        "listen" => {
            arity(1)?;
            let backlog = if args.is_empty() { 16 } else { int_at(0, "a backlog")? as i32 };
            return Ok(Func::Listen { backlog });
        }
        "write" => {
            arity(1)?;
            return Ok(Func::Write(payload_at(args, 0, name, end)?));
        }
        "send" => {
            arity(2)?;
            let payload = payload_at(args, 0, name, end)?;
            let flags = optional_mask(args, 1, names::MSG_FLAGS)?;
            return Ok(Func::Send { payload, flags });
        }
        "read" => {
            arity(1)?;
            return Ok(Func::Read { max: buffer_at(args, 0, name, end)? });
        }
        "recv" => {
            arity(2)?;
            let max = buffer_at(args, 0, name, end)?;
            let flags = optional_mask(args, 1, names::MSG_FLAGS)?;
            return Ok(Func::Recv { max, flags });
        }
        "poll" | "epoll" => {
            arity(2)?;
            let table = if name == "poll" { names::POLL_EVENTS } else { names::EPOLL_EVENTS };
            let events = match args.first() {
                Some(a) => mask_arg(a, table)?,
                None => return err(end, format!("{name}() needs the events to wait for, like {}IN", name.to_uppercase())),
            };
            let timeout = int_at(1, "a timeout in milliseconds")?;
            if !(0..=MAX_BLOCK_MS).contains(&timeout) {
                return err(args[1].0, format!("the timeout is 0 to {MAX_BLOCK_MS} ms (0: do not wait; the harness's limit on a blocked call)"));
            }
            let timeout_ms = timeout as i32;
            return Ok(if name == "poll" {
                Func::Poll { events, timeout_ms }
            } else {
                Func::Epoll { events, timeout_ms }
            });
        }
        "fcntl" => {
            arity(2)?;
            return match args.first() {
                Some((_, Arg::Ident(c))) if c == "F_GETFL" => {
                    arity(1)?;
                    Ok(Func::Fcntl(Fcntl::GetFl))
                }
                Some((_, Arg::Ident(c))) if c == "F_SETFL" => match args.get(1) {
                    Some(a) => Ok(Func::Fcntl(Fcntl::SetFl(mask_arg(a, names::FILE_FLAGS)?))),
                    None => err(end, "fcntl(F_SETFL, …) needs the flags, like O_RDWR|O_NONBLOCK"),
                },
                Some((at, _)) => err(*at, "expected F_GETFL or F_SETFL"),
                None => err(end, "fcntl() needs F_GETFL or F_SETFL"),
            };
        }
        "getsockopt" => {
            arity(1)?;
            return match args.first() {
                Some((_, Arg::Ident(o))) if o == "SO_ERROR" => Ok(Func::GetSockOpt(GetOpt::SoError)),
                Some((_, Arg::Ident(o))) if o == "TCP_INFO" => Ok(Func::GetSockOpt(GetOpt::TcpInfo)),
                Some((at, _)) => err(*at, "expected SO_ERROR or TCP_INFO"),
                None => err(end, "getsockopt() needs SO_ERROR or TCP_INFO"),
            };
        }
        "ioctl" => {
            arity(1)?;
            return match args.first() {
                Some((_, Arg::Ident(r))) if r == "SIOCINQ" || r == "FIONREAD" => Ok(Func::Ioctl(Ioctl::InQ)),
                Some((_, Arg::Ident(r))) if r == "SIOCOUTQ" || r == "TIOCOUTQ" => Ok(Func::Ioctl(Ioctl::OutQ)),
                Some((_, Arg::Ident(r))) if r == "SIOCOUTQNSD" => Ok(Func::Ioctl(Ioctl::OutQNsd)),
                Some((at, _)) => err(*at, "expected SIOCINQ, SIOCOUTQ or SIOCOUTQNSD"),
                None => err(end, "ioctl() needs SIOCINQ, SIOCOUTQ or SIOCOUTQNSD"),
            };
        }
        "read_all" => {
            arity(1)?;
            let n = int_at(0, "a byte count")?;
            if !(1..=16 << 20).contains(&n) {
                return err(args[0].0, "byte count must be 1 to 16 MiB");
            }
            return Ok(Func::ReadAll { n: n as usize });
        }
        "shutdown" => {
            arity(1)?;
            return match args.first() {
                Some((_, Arg::Ident(h))) if h == "SHUT_RD" => Ok(Func::Shutdown(How::Rd)),
                Some((_, Arg::Ident(h))) if h == "SHUT_WR" => Ok(Func::Shutdown(How::Wr)),
                Some((_, Arg::Ident(h))) if h == "SHUT_RDWR" => Ok(Func::Shutdown(How::RdWr)),
                Some((at, _)) => err(*at, "expected SHUT_RD, SHUT_WR or SHUT_RDWR"),
                None => err(end, "shutdown() needs SHUT_RD, SHUT_WR or SHUT_RDWR"),
            };
        }
        "setsockopt" => return Ok(Func::SetSockOpt(parse_sockopt(args, end)?)),
        _ => {
            return err(
                name_at,
                format!(
                    "unknown call `{name}`; expected socket, bind, listen, accept, connect, write, send, read, recv, read_all, shutdown, close, dup, setsockopt, getsockopt, fcntl, ioctl, poll or epoll"
                ),
            )
        }
    };
    arity(0)?;
    Ok(func)
}

/// `N` filler bytes or a "string", the argument at `i`.
fn payload_at(
    args: &[(usize, Arg)],
    i: usize,
    name: &str,
    end: usize,
) -> Result<Payload, CallError> {
    match args.get(i) {
        Some((_, Arg::Str(b))) => Ok(Payload::Bytes(b.clone())),
        Some((_, Arg::Int(n))) if (0..=16 << 20).contains(n) => Ok(Payload::Len(*n as usize)),
        Some((at, _)) => err(*at, "expected a length (0 to 16 MiB) or a \"string\""),
        None => err(end, format!("{name}() needs a length or a \"string\"")),
    }
}

/// A buffer size (0 to 16 MiB), the argument at `i`.
fn buffer_at(args: &[(usize, Arg)], i: usize, name: &str, end: usize) -> Result<usize, CallError> {
    match args.get(i) {
        Some((_, Arg::Int(n))) if (0..=16 << 20).contains(n) => Ok(*n as usize),
        Some((at, Arg::Int(_))) => err(*at, "buffer size must be 0 to 16 MiB"),
        Some((at, _)) => err(*at, "expected a buffer size (a number)"),
        None => err(end, format!("{name}() needs a buffer size")),
    }
}

/// Flags or'ed together (`MSG_PEEK|MSG_DONTWAIT`, `O_NONBLOCK`, `0`).
fn mask_arg((at, a): &(usize, Arg), table: &[(&str, u32)]) -> Result<u32, CallError> {
    let list = match a {
        Arg::Int(n) if u32::try_from(*n).is_ok() => return Ok(*n as u32),
        Arg::Ident(n) => vec![n.clone()],
        Arg::Names(v) => v.clone(),
        _ => return err(*at, format!("expected flags like {} (or 0)", table[0].0)),
    };
    names::mask_of(table, &list).map_err(|m| CallError {
        offset: *at,
        message: m,
    })
}

/// Flags at `i`, 0 when not given.
fn optional_mask(args: &[(usize, Arg)], i: usize, table: &[(&str, u32)]) -> Result<u32, CallError> {
    args.get(i).map_or(Ok(0), |a| mask_arg(a, table))
}

/// `SO_LINGER, 1, 0` · `TCP_LINGER2, 1` · `SO_RCVBUF, 4096` · `TCP_NODELAY, 1` …
pub fn parse_sockopt_text(text: &str) -> Result<SockOpt, CallError> {
    let mut lx = Lexer::new(text);
    let mut args = Vec::new();
    loop {
        args.push(lx.arg()?);
        if lx.peek().is_none() {
            break;
        }
        if !lx.eat(',') {
            return err(lx.pos, "expected `,` between the option's values");
        }
    }
    parse_sockopt(&args, lx.chars.len())
}

fn parse_sockopt(args: &[(usize, Arg)], end: usize) -> Result<SockOpt, CallError> {
    let (name_at, name) = match args.first() {
        Some((at, Arg::Ident(n))) => (*at, n.as_str()),
        Some((at, _)) => return err(*at, "expected an option name like SO_LINGER"),
        None => return err(end, "setsockopt() needs an option name like SO_LINGER"),
    };
    if name == "TCP_FASTOPEN_KEY" {
        return parse_fastopen_key(&args[1..], name_at);
    }
    let ints: Vec<(usize, i64)> = args[1..]
        .iter()
        .map(|(at, a)| match a {
            Arg::Int(n) if i32::try_from(*n).is_ok() => Ok((*at, *n)),
            _ => err(*at, "expected a 32-bit integer value"),
        })
        .collect::<Result<_, _>>()?;
    let want = |n: usize| -> Result<(), CallError> {
        if ints.len() == n {
            return Ok(());
        }
        let at = ints.get(n).map_or(end, |(at, _)| *at);
        err(at, format!("{name} takes {n} value(s)"))
    };
    let v = |i: usize| ints[i].1 as i32;
    Ok(match name {
        "SO_LINGER" => {
            want(2)?;
            SockOpt::Linger { on: v(0) != 0, secs: v(1) }
        }
        "TCP_LINGER2" => {
            want(1)?;
            SockOpt::Linger2(v(0))
        }
        "SO_RCVBUF" => {
            want(1)?;
            SockOpt::RcvBuf(v(0))
        }
        "SO_SNDBUF" => {
            want(1)?;
            SockOpt::SndBuf(v(0))
        }
        "TCP_NODELAY" => {
            want(1)?;
            SockOpt::NoDelay(v(0) != 0)
        }
        "SO_KEEPALIVE" => {
            want(1)?;
            SockOpt::KeepAlive(v(0) != 0)
        }
        "SO_REUSEADDR" => {
            want(1)?;
            SockOpt::ReuseAddr(v(0) != 0)
        }
        "TCP_USER_TIMEOUT" | "SO_SNDTIMEO" | "SO_RCVTIMEO" => {
            want(1)?;
            // The socket timeouts bound how long a call thread can stay blocked: 0 (never
            // time out) would let a thread outlive its trial.
            let lowest = if name == "TCP_USER_TIMEOUT" { 0 } else { 1 };
            if !(lowest..=MAX_BLOCK_MS).contains(&ints[0].1) {
                return err(ints[0].0, format!("{name} takes milliseconds, {lowest} to {MAX_BLOCK_MS}"));
            }
            let ms = v(0) as u32;
            match name {
                "TCP_USER_TIMEOUT" => SockOpt::UserTimeout(ms),
                "SO_SNDTIMEO" => SockOpt::SndTimeo(ms),
                _ => SockOpt::RcvTimeo(ms),
            }
        }
        "TCP_FASTOPEN" => {
            want(1)?;
            SockOpt::FastOpen(v(0))
        }
        _ => {
            return err(
                name_at,
                format!("unknown option `{name}`; expected SO_LINGER, TCP_LINGER2, SO_RCVBUF, SO_SNDBUF, TCP_NODELAY, SO_KEEPALIVE, SO_REUSEADDR, TCP_USER_TIMEOUT, TCP_FASTOPEN, TCP_FASTOPEN_KEY, SO_SNDTIMEO or SO_RCVTIMEO"),
            )
        }
    })
}

/// `TCP_FASTOPEN_KEY, "\\x00\\x11…"`: one string of exactly 16 bytes, as Linux takes it.
fn parse_fastopen_key(args: &[(usize, Arg)], name_at: usize) -> Result<SockOpt, CallError> {
    match args {
        [(at, Arg::Str(bytes))] => match <[u8; 16]>::try_from(bytes.as_slice()) {
            Ok(key) => Ok(SockOpt::FastOpenKey(key)),
            Err(_) => err(
                *at,
                format!("TCP_FASTOPEN_KEY takes 16 bytes, not {}", bytes.len()),
            ),
        },
        [(at, _), ..] => err(
            *at,
            "TCP_FASTOPEN_KEY takes one \"string\" of 16 bytes, like \"\\x00\\x01…\"",
        ),
        [] => err(name_at, "TCP_FASTOPEN_KEY takes one \"string\" of 16 bytes"),
    }
}

fn parse_outcome(lx: &mut Lexer, func: &Func) -> Result<(Outcome, bool), CallError> {
    let returns_fd = matches!(func, Func::Socket | Func::Accept | Func::Dup);
    if !lx.eat('=') {
        return Ok((default_outcome(func), false));
    }
    lx.skip_ws();
    let at = lx.pos;
    if lx.peek() == Some('"') {
        if !matches!(
            func,
            Func::Read { .. } | Func::ReadAll { .. } | Func::Recv { .. }
        ) {
            return err(
                at,
                "only read() and recv() can be expected to return a \"string\"",
            );
        }
        return Ok((Outcome::Data(lx.string()?), false));
    }
    if lx.peek() == Some('{') {
        if *func != Func::GetSockOpt(GetOpt::TcpInfo) {
            return err(
                at,
                "only getsockopt(TCP_INFO) returns a {field=value, …} structure",
            );
        }
        return Ok((Outcome::TcpInfo(parse_tcp_info(lx)?), false));
    }
    if let Some(n) = lx.int()? {
        if n == -1 {
            let errno = match lx.peek() {
                Some(c) if c.is_ascii_alphabetic() => Outcome::Errno(parse_errno(lx)?),
                _ => Outcome::AnyErrno,
            };
            return Ok((errno, parse_signal(lx, func)?));
        }
        if n < 0 {
            return err(
                at,
                "a failing call is written `= -1 ERRNO` (or `= -1` for any errno)",
            );
        }
        return Ok((
            match func {
                Func::GetSockOpt(GetOpt::SoError) if n == 0 => Outcome::SoError(None),
                _ if func.mask_names().is_some() && u32::try_from(n).is_ok() => {
                    Outcome::Mask(n as u32)
                }
                _ => Outcome::Ret(n),
            },
            parse_signal(lx, func)?,
        ));
    }
    let first = lx.ident();
    if let (Some(names), Some((_, id))) = (func.mask_names(), &first) {
        let mut all = vec![id.clone()];
        while lx.eat('|') {
            match lx.ident() {
                Some((_, id)) => all.push(id),
                None => return err(lx.pos, "expected a flag after `|`"),
            }
        }
        return names::mask_of(names, &all)
            .map(|m| (Outcome::Mask(m), false))
            .map_err(|m| CallError {
                offset: at,
                message: m,
            });
    }
    match first {
        Some((_, id)) if *func == Func::GetSockOpt(GetOpt::SoError) => errno_by_name(&id)
            .map(|e| (Outcome::SoError(Some(e)), false))
            .ok_or(CallError {
                offset: at,
                message: format!(
                    "unknown errno `{id}`; SO_ERROR reads 0 or an errno like ECONNRESET"
                ),
            }),
        Some((_, id)) if id.starts_with('E') && id.chars().all(|c| c.is_ascii_uppercase()) => {
            errno_by_name(&id)
                .map(|e| (Outcome::Errno(e), false))
                .ok_or(CallError {
                    offset: at,
                    message: format!(
                        "unknown errno `{id}`; expected a name like EPIPE or ENOTCONN"
                    ),
                })
        }
        Some((_, id)) if returns_fd => Ok((Outcome::NewFd(id), false)),
        Some((_, id)) => err(
            at,
            format!("`{id}`: only socket(), accept() and dup() return a descriptor to name"),
        ),
        None => err(
            at,
            "expected a result: a number, -1 ERRNO, a \"string\" (read) or a descriptor name",
        ),
    }
}

/// What a call without `= …` must return.
fn default_outcome(func: &Func) -> Outcome {
    match func {
        Func::Accept => Outcome::NewFd(DEFAULT_FD.into()),
        Func::Write(p) | Func::Send { payload: p, .. } => Outcome::Ret(p.bytes().len() as i64),
        Func::Read { .. } | Func::Recv { .. } => Outcome::Success,
        Func::ReadAll { n } => Outcome::Ret(*n as i64),
        Func::Socket | Func::Dup => Outcome::Success,
        // Reading something back without saying what it must be checks nothing: any value.
        Func::Ioctl(_) | Func::GetSockOpt(_) | Func::Fcntl(Fcntl::GetFl) => Outcome::Success,
        Func::Poll { .. } | Func::Epoll { .. } => Outcome::Success,
        _ => Outcome::Ret(0),
    }
}

/// `SIGPIPE` after the result: only a send() without MSG_NOSIGNAL can raise it.
fn parse_signal(lx: &mut Lexer, func: &Func) -> Result<bool, CallError> {
    let at = {
        lx.skip_ws();
        lx.pos
    };
    match lx.ident() {
        None => Ok(false),
        Some((_, id)) if id == "SIGPIPE" => match func {
            Func::Send { flags, .. } if flags & names::MSG_FLAGS[2].1 == 0 => Ok(true),
            Func::Send { .. } => err(at, "with MSG_NOSIGNAL, send() raises no SIGPIPE"),
            _ => err(at, "only send() (without MSG_NOSIGNAL) is observed raising SIGPIPE; write() never does here"),
        },
        Some((_, id)) => err(at, format!("unexpected `{id}` after the result; only SIGPIPE may follow it")),
    }
}

/// `{state=CLOSE_WAIT, unacked=0, rto=200000..220000, options=TCPI_OPT_TIMESTAMPS|TCPI_OPT_SACK}`
fn parse_tcp_info(lx: &mut Lexer) -> Result<Vec<FieldCheck>, CallError> {
    lx.eat('{');
    let mut out: Vec<FieldCheck> = Vec::new();
    loop {
        lx.skip_ws();
        let at = lx.pos;
        let Some((_, name)) = lx.ident() else {
            return err(
                at,
                "expected a tcp_info field like tcpi_state or tcpi_unacked",
            );
        };
        let field = names::tcpi_field(&name).ok_or_else(|| CallError {
            offset: at,
            message: format!("unknown tcp_info field `{name}`; expected one of linux/tcp.h's, like tcpi_state, tcpi_unacked, tcpi_options"),
        })?;
        if out.iter().any(|c| c.field == field) {
            return err(at, format!("`{name}` is given twice"));
        }
        if lx.eat('&') {
            if field.name != "options" {
                return err(lx.pos, "only tcpi_options takes `&FLAGS` (these bits set)");
            }
            let (bits, _) = parse_field_value(lx, field)?;
            out.push(FieldCheck {
                field,
                min: 0,
                max: 0,
                bits: Some(bits),
            });
        } else if lx.eat('=') {
            let (min, max) = parse_field_value(lx, field)?;
            out.push(FieldCheck {
                field,
                min,
                max,
                bits: None,
            });
        } else {
            return err(
                lx.pos,
                "expected `=` and the field's value (or `&FLAGS` for tcpi_options)",
            );
        }
        if lx.eat('}') {
            return Ok(out);
        }
        if !lx.eat(',') {
            return err(lx.pos, "expected `,` or `}`");
        }
    }
}

fn parse_field_value(lx: &mut Lexer, field: TcpiField) -> Result<(u64, u64), CallError> {
    lx.skip_ws();
    let at = lx.pos;
    if let Some((_, id)) = lx.ident() {
        let mut all = vec![id];
        while lx.eat('|') {
            match lx.ident() {
                Some((_, id)) => all.push(id),
                None => return err(lx.pos, "expected a flag after `|`"),
            }
        }
        let v = match field.name {
            "state" if all.len() == 1 => {
                let bare = all[0].strip_prefix("TCP_").unwrap_or(&all[0]);
                names::TCP_STATES
                    .iter()
                    .find(|(k, _)| *k == bare)
                    .map(|(_, v)| *v)
                    .ok_or_else(|| CallError {
                        offset: at,
                        message: format!(
                            "unknown state `{}`; expected ESTABLISHED, CLOSE_WAIT, CLOSE, …",
                            all[0]
                        ),
                    })?
            }
            "options" => {
                u64::from(
                    names::mask_of(names::TCPI_OPTIONS, &all).map_err(|m| CallError {
                        offset: at,
                        message: m,
                    })?,
                )
            }
            _ => return err(at, format!("tcpi_{} takes a number", field.name)),
        };
        return Ok((v, v));
    }
    let number = |lx: &mut Lexer| -> Result<u64, CallError> {
        let at = lx.pos;
        match lx.int()? {
            Some(n) if n >= 0 => Ok(n as u64),
            _ => err(at, "expected a number (0 or more)"),
        }
    };
    let min = number(lx)?;
    if lx.eat('.') {
        if !lx.eat('.') {
            return err(lx.pos, "a range is written MIN..MAX");
        }
        let max = number(lx)?;
        if max < min {
            return err(at, "the range's MAX is below its MIN");
        }
        return Ok((min, max));
    }
    Ok((min, min))
}

fn parse_errno(lx: &mut Lexer) -> Result<Errno, CallError> {
    lx.skip_ws();
    let at = lx.pos;
    match lx.ident() {
        Some((_, id)) => errno_by_name(&id).ok_or(CallError {
            offset: at,
            message: format!("unknown errno `{id}`; expected a name like EPIPE or ENOTCONN"),
        }),
        None => err(at, "expected an errno name after -1, like EPIPE"),
    }
}

/// The errno values a socket call can plausibly return in teardown scenarios.
const ERRNOS: &[Errno] = &[
    Errno::EPIPE,
    Errno::ENOTCONN,
    Errno::ECONNRESET,
    Errno::ECONNREFUSED,
    Errno::ECONNABORTED,
    Errno::ETIMEDOUT,
    Errno::EAGAIN,
    Errno::EINPROGRESS,
    Errno::EALREADY,
    Errno::EISCONN,
    Errno::EADDRINUSE,
    Errno::EADDRNOTAVAIL,
    Errno::EINVAL,
    Errno::EBADF,
    Errno::ENOTSOCK,
    Errno::EOPNOTSUPP,
    Errno::EINTR,
    Errno::EHOSTUNREACH,
    Errno::ENETUNREACH,
    Errno::ENOBUFS,
];

pub fn errno_by_name(name: &str) -> Option<Errno> {
    if name == "EWOULDBLOCK" {
        return Some(Errno::EAGAIN);
    }
    ERRNOS.iter().copied().find(|e| format!("{e:?}") == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Call {
        parse_call(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    #[test]
    fn fast_open_key_and_byte_escapes() {
        let key: Vec<u8> = (0..16).map(|i| i * 17).collect();
        let text = format!(
            "setsockopt(lsn, TCP_FASTOPEN_KEY, \"{}\")",
            key.iter()
                .map(|b| format!("\\x{b:02x}"))
                .collect::<String>()
        );
        let c = ok(&text);
        assert_eq!(c.fd, "lsn");
        assert_eq!(
            c.func,
            Func::SetSockOpt(SockOpt::FastOpenKey(key.try_into().unwrap()))
        );
        assert_eq!(
            ok("setsockopt(TCP_FASTOPEN_KEY, \"0123456789abcdef\")").func,
            Func::SetSockOpt(SockOpt::FastOpenKey(*b"0123456789abcdef"))
        );
        for (bad, why) in [
            ("setsockopt(TCP_FASTOPEN_KEY, \"short\")", "16 bytes, not 5"),
            ("setsockopt(TCP_FASTOPEN_KEY, 16)", "one \"string\""),
            ("setsockopt(TCP_FASTOPEN_KEY)", "one \"string\""),
            ("write(\"\\x4\")", "two hex digits"),
            ("write(\"\\xzz\")", "two hex digits"),
            ("write(\"\\x\")", "two hex digits"),
        ] {
            let e = parse_call(bad).unwrap_err();
            assert!(e.message.contains(why), "{bad}: {e:?}");
        }
        assert_eq!(
            ok("write(\"a\\x00\\xffb\")").func,
            Func::Write(Payload::Bytes(vec![b'a', 0, 0xff, b'b']))
        );
    }

    #[test]
    fn defaults() {
        let c = ok("close()");
        assert_eq!(
            (c.func, c.fd.as_str(), c.outcome),
            (Func::Close, "conn", Outcome::Ret(0))
        );
        assert_eq!(ok("close").func, Func::Close);
        assert_eq!(ok("write(100)").outcome, Outcome::Ret(100));
        assert_eq!(ok("accept(lsn)").outcome, Outcome::NewFd("conn".into()));
    }

    #[test]
    fn outcomes_and_descriptors() {
        assert_eq!(
            ok("write(5) = -1 EPIPE").outcome,
            Outcome::Errno(Errno::EPIPE)
        );
        assert_eq!(
            ok("read(10) = \"hi\\n\"").outcome,
            Outcome::Data(b"hi\n".to_vec())
        );
        let d = ok("dup(conn) = fd2");
        assert_eq!(
            (d.func, d.fd.as_str(), d.outcome),
            (Func::Dup, "conn", Outcome::NewFd("fd2".into()))
        );
        assert_eq!(ok("close(fd2)").fd, "fd2");
        assert_eq!(ok("shutdown(SHUT_WR) = 0").func, Func::Shutdown(How::Wr));
        assert_eq!(
            ok("setsockopt(lsn, SO_LINGER, 1, 0)").func,
            Func::SetSockOpt(SockOpt::Linger { on: true, secs: 0 })
        );
    }

    /// Regression (issue 9): a Unicode space inside a call made the byte-based lexer slice
    /// inside a character and panic. Offsets count characters, not bytes.
    #[test]
    fn unicode_text_is_walked_by_character() {
        assert_eq!(
            ok("shutdown(SHUT_WR) =\u{a0}0").func,
            Func::Shutdown(How::Wr)
        );
        assert_eq!(
            ok("write(\u{2003}\"h\u{e9}\") = 3").outcome,
            Outcome::Ret(3)
        );
        // `x` is at character offset 17, byte offset 18.
        let e = parse_call("write(\"h\u{e9}llo\") = x").unwrap_err();
        assert_eq!(e.offset, 17, "{e:?}");
        let e = parse_call("clos\u{e9}()").unwrap_err();
        assert_eq!(e.offset, 4, "{e:?}");
        let e = parse_call("read(\u{1f600})").unwrap_err();
        assert_eq!(e.offset, 5, "{e:?}");
        let e = parse_sockopt_text("SO_LINGER, 1,\u{a0}").unwrap_err();
        assert_eq!(e.offset, 14, "{e:?}");
        assert!(parse_call("write(\"\\\u{e9}\")").is_err(), "unknown escape");
    }

    #[test]
    fn errors_point_at_the_offending_text() {
        let e = parse_call("shutdown(SHUT_XX)").unwrap_err();
        assert_eq!(e.offset, 9);
        assert!(e.message.contains("SHUT_WR"));
        assert_eq!(parse_call("frobnicate()").unwrap_err().offset, 0);
        assert_eq!(parse_call("write(5) = -1 EFOO").unwrap_err().offset, 14);
        assert!(parse_call("write(5").unwrap_err().message.contains("`)`"));
        assert!(parse_call("close() = x").is_err());
        assert!(parse_call("setsockopt(SO_LINGER, 1)")
            .unwrap_err()
            .message
            .contains("2 value"));
    }
}
