//! The `call:` mini-language: one socket call of the SUT's application and what it must
//! return, written like packetdrill's system calls: `write(100) = 100`, `read(10) = 0`,
//! `shutdown(SHUT_WR) = 0`, `write(5) = -1 EPIPE`, `dup() = fd2`, `close(fd2)`.
//!
//! The first argument may name a descriptor (lowercase identifier); without it the call acts on
//! `conn`, the scenario's connection.

use std::fmt;

use nix::errno::Errno;

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
    Linger { on: bool, secs: i32 },
    Linger2(i32),
    RcvBuf(i32),
    SndBuf(i32),
    NoDelay(bool),
    KeepAlive(bool),
    ReuseAddr(bool),
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
    /// Success; the new descriptor gets this name.
    NewFd(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub func: Func,
    pub fd: String,
    pub outcome: Outcome,
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
                        _ => {
                            return err(
                                self.pos - 2,
                                "unknown escape; expected \\n, \\r, \\t, \\\\ or \\\"",
                            )
                        }
                    }
                }
                c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        err(at, "string is not closed; expected a closing \"")
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
    let outcome = parse_outcome(lx, &func)?;
    if let Some(c) = lx.peek() {
        return err(lx.pos, format!("unexpected `{c}` after the call"));
    }
    Ok(Call {
        func,
        fd,
        outcome,
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
        "write" | "send" => {
            arity(1)?;
            return match args.first() {
                Some((_, Arg::Str(b))) => Ok(Func::Write(Payload::Bytes(b.clone()))),
                Some((at, Arg::Int(n))) if *n >= 0 && *n <= 16 << 20 => {
                    let _ = at;
                    Ok(Func::Write(Payload::Len(*n as usize)))
                }
                Some((at, _)) => err(*at, "expected a length (0 to 16 MiB) or a \"string\""),
                None => err(end, "write() needs a length or a \"string\""),
            };
        }
        "read" | "recv" => {
            arity(1)?;
            let max = int_at(0, "a buffer size")?;
            if !(0..=16 << 20).contains(&max) {
                return err(args[0].0, "buffer size must be 0 to 16 MiB");
            }
            return Ok(Func::Read { max: max as usize });
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
                    "unknown call `{name}`; expected socket, bind, listen, accept, connect, write, read, read_all, shutdown, close, dup or setsockopt"
                ),
            )
        }
    };
    arity(0)?;
    Ok(func)
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
        _ => {
            return err(
                name_at,
                format!("unknown option `{name}`; expected SO_LINGER, TCP_LINGER2, SO_RCVBUF, SO_SNDBUF, TCP_NODELAY, SO_KEEPALIVE or SO_REUSEADDR"),
            )
        }
    })
}

fn parse_outcome(lx: &mut Lexer, func: &Func) -> Result<Outcome, CallError> {
    let returns_fd = matches!(func, Func::Socket | Func::Accept | Func::Dup);
    if !lx.eat('=') {
        return Ok(match func {
            Func::Accept => Outcome::NewFd(DEFAULT_FD.into()),
            Func::Write(p) => Outcome::Ret(p.bytes().len() as i64),
            Func::Read { .. } => Outcome::Success,
            Func::ReadAll { n } => Outcome::Ret(*n as i64),
            Func::Socket | Func::Dup => Outcome::Success,
            _ => Outcome::Ret(0),
        });
    }
    lx.skip_ws();
    let at = lx.pos;
    if lx.peek() == Some('"') {
        if !matches!(func, Func::Read { .. } | Func::ReadAll { .. }) {
            return err(at, "only read() can be expected to return a \"string\"");
        }
        return Ok(Outcome::Data(lx.string()?));
    }
    if let Some(n) = lx.int()? {
        if n == -1 {
            return parse_errno(lx).map(Outcome::Errno);
        }
        if n < 0 {
            return err(at, "a failing call is written `= -1 ERRNO`");
        }
        return Ok(Outcome::Ret(n));
    }
    match lx.ident() {
        Some((_, id)) if id.starts_with('E') && id.chars().all(|c| c.is_ascii_uppercase()) => {
            errno_by_name(&id).map(Outcome::Errno).ok_or(CallError {
                offset: at,
                message: format!("unknown errno `{id}`; expected a name like EPIPE or ENOTCONN"),
            })
        }
        Some((_, id)) if returns_fd => Ok(Outcome::NewFd(id)),
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
