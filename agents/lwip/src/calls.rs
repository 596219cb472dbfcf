//! BSD socket calls over lwIP's raw TCP API, with the semantics of lwIP's own socket layer
//! where it has one (sockets.c, api_msg.c): close() hands the pcb to lwIP as an orphan
//! (tcp_close), SO_LINGER 0 aborts (tcp_abort), received data stays unacknowledged in the
//! window until read. lwIP has real listeners and orphans, so unlike the smoltcp agent this
//! is a thin layer: an fd names a Conn, and states come from lwIP's own pcb lists.
//!
//! After every step of the stack, `sweep` turns state changes into events and finishes
//! blocking calls whose condition now holds.

use crate::lwip::{self, err, Conn, Pcb, State};
use crate::protocol::{self, Command, Error, Family, Fd, Route, SockOpt};
use crate::tapfd::realtime_ns;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// Socket options as set by the application; accepted connections inherit them.
#[derive(Clone, Copy, Default)]
struct Opts {
    linger0: bool,
    nodelay: bool,
    keepalive: Option<u64>,
}

#[derive(PartialEq)]
enum Kind {
    Fresh,
    Listener,
    Connecting,
    Connected,
}

struct Sock {
    conn: Conn,
    family: Family,
    kind: Kind,
    bound: bool,
    opts: Opts,
    shut_rd: bool,
    shut_wr: bool,
    readable_sent: bool,
    reset_sent: bool,
}

enum Wait {
    Accept,
    Connect,
    Read(usize),
}

struct Pending {
    id: u64,
    fd: Fd,
    wait: Wait,
}

type Reply = Result<Value, Error>;

pub struct Calls {
    fds: BTreeMap<Fd, Sock>,
    next_fd: Fd,
    pending: Vec<Pending>,
    /// The connections lwIP had at the last sweep, by pcb address.
    known: BTreeMap<usize, Pcb>,
    tap_fd: Option<i32>,
    configured: bool,
    /// Lines (replies and events) to write, in order.
    pub out: Vec<Value>,
}

fn ebadf(fd: Fd) -> Error {
    Error::new("EBADF", format!("bad file descriptor {fd}"))
}

fn enotconn() -> Error {
    Error::new("ENOTCONN", "socket is not connected")
}

/// An lwIP err_t as the errno Linux would give for it.
fn errno_of(e: i32, what: &str) -> Error {
    let (errno, why) = match e {
        err::MEM => ("ENOMEM", "out of memory"),
        err::RTE => ("ENETUNREACH", "no route"),
        err::USE => ("EADDRINUSE", "address in use"),
        err::ISCONN => ("EISCONN", "already connected"),
        err::CONN => ("ENOTCONN", "not connected"),
        err::RST => ("ECONNRESET", "connection reset by peer"),
        err::ABRT => ("ETIMEDOUT", "connection given up by lwIP's timers"),
        err::CLSD => ("EPIPE", "connection closed"),
        _ => ("EINVAL", "invalid in the socket's state"),
    };
    Error::new(errno, format!("{what}: {why} (lwIP err_t {e})"))
}

impl Calls {
    pub fn new(tap_fd: Option<i32>) -> Calls {
        Calls {
            fds: BTreeMap::new(),
            next_fd: 3,
            pending: Vec::new(),
            known: BTreeMap::new(),
            tap_fd,
            configured: false,
            out: Vec::new(),
        }
    }

    /// Executes one command. Blocking calls that cannot finish yet are parked and answered
    /// by a later `sweep`; everything else is answered now.
    pub fn execute(&mut self, id: u64, cmd: Command) {
        let reply = match cmd {
            Command::Configure { mac, addrs, routes } => {
                self.configure(mac, &addrs, &routes).map(|_| Value::Null)
            }
            Command::Socket { family } => self.socket(family),
            Command::Bind { fd, addr } => self.bind(fd, addr),
            Command::Listen { fd, backlog } => self.listen(fd, backlog),
            Command::Accept { fd } => return self.park(id, fd, Wait::Accept),
            Command::Connect { fd, addr } => match self.connect(fd, addr) {
                Ok(()) => return self.park(id, fd, Wait::Connect),
                Err(e) => Err(e),
            },
            Command::Write { fd, data } => self.write(fd, &data),
            Command::Read { fd, max } => return self.park(id, fd, Wait::Read(max)),
            Command::Shutdown { fd, how } => self.shutdown(fd, &how),
            Command::Close { fd } => self.close(fd),
            Command::SetSockOpt { fd, opt } => self.setsockopt(fd, opt),
            Command::State { local, remote } => Ok(json!({"state": state_of(local, remote)})),
            // Its hello does not list these; halfclose skips the scenarios that use them.
            Command::Poll { .. } | Command::Ioctl { .. } | Command::GetSockOpt { .. } => {
                Err(Error::new("ENOSYS", "this agent does not make this call"))
            }
            Command::Quit => Ok(Value::Null),
        };
        self.answer(id, reply);
    }

    fn answer(&mut self, id: u64, reply: Reply) {
        self.out.push(match reply {
            Ok(v) => protocol::reply_ok(id, v),
            Err(e) => protocol::reply_err(Some(id), &e),
        });
    }

    fn configure(
        &mut self,
        mac: [u8; 6],
        addrs: &[(IpAddr, u8)],
        routes: &[Route],
    ) -> Result<(), Error> {
        if self.tap_fd.is_none() {
            return Err(Error::new(
                "ENODEV",
                "no TAP device (HALFCLOSE_TAP_FD is not set)",
            ));
        }
        for (ip, len) in addrs {
            let ok = match ip {
                IpAddr::V4(a) => !a.is_unspecified() && !a.is_multicast() && !a.is_broadcast(),
                // lwIP routes IPv6 by /64 prefixes only (ip6_addr_netcmp in ip6.c).
                IpAddr::V6(a) => !a.is_unspecified() && !a.is_multicast() && *len == 64,
            };
            if !ok {
                return Err(Error::new(
                    "EINVAL",
                    format!("field `addrs`: {ip}/{len} is not a unicast address lwIP can take (IPv6 must be /64)"),
                ));
            }
        }
        for r in routes {
            match (r.dst, r.via) {
                (None, IpAddr::V4(_)) => {}
                _ => {
                    return Err(Error::new(
                        "EINVAL",
                        "field `routes`: lwIP has one IPv4 gateway per interface and learns IPv6 routers only from advertisements",
                    ))
                }
            }
        }
        if !lwip::configure(mac) {
            return Err(Error::new("ENOMEM", "netif_add failed"));
        }
        for (ip, len) in addrs {
            if !lwip::add_addr(*ip, *len) {
                return Err(Error::new("ENOMEM", format!("no room for address {ip}")));
            }
        }
        for r in routes {
            if let IpAddr::V4(gw) = r.via {
                lwip::set_gateway4(gw);
            }
        }
        self.configured = true;
        Ok(())
    }

    fn socket(&mut self, family: Family) -> Reply {
        let conn = Conn::new(family == Family::Ipv6)
            .ok_or_else(|| Error::new("ENOMEM", "tcp_new failed"))?;
        let fd = self.next_fd;
        self.next_fd += 1;
        self.fds
            .insert(fd, new_sock(conn, family, Kind::Fresh, Opts::default()));
        Ok(json!(fd))
    }

    fn sock(&mut self, fd: Fd) -> Result<&mut Sock, Error> {
        self.fds.get_mut(&fd).ok_or_else(|| ebadf(fd))
    }

    fn bind(&mut self, fd: Fd, addr: SocketAddr) -> Reply {
        let s = self.sock(fd)?;
        check_family(s.family, addr)?;
        if s.kind != Kind::Fresh || s.bound {
            return Err(Error::new("EINVAL", "socket is already bound"));
        }
        match s.conn.bind(addr) {
            err::OK => {
                s.bound = true;
                Ok(json!(0))
            }
            e => Err(errno_of(e, "bind")),
        }
    }

    fn listen(&mut self, fd: Fd, backlog: usize) -> Reply {
        let s = self.sock(fd)?;
        match s.kind {
            // Debian's lwIP has no TCP_LISTEN_BACKLOG (opt.h default 0): nothing to update.
            Kind::Listener => return Ok(json!(0)),
            Kind::Fresh => {}
            _ => return Err(Error::new("EINVAL", "socket is connected")),
        }
        if !s.bound {
            let any = match s.family {
                Family::Ipv4 => SocketAddr::from(([0, 0, 0, 0], 0)),
                Family::Ipv6 => SocketAddr::from(([0u16; 8], 0)),
            };
            match s.conn.bind(any) {
                err::OK => s.bound = true,
                e => return Err(errno_of(e, "listen")),
            }
        }
        match s.conn.listen(backlog.clamp(1, 255) as u8) {
            err::OK => {
                s.kind = Kind::Listener;
                let opts = s.opts;
                apply_opts(&mut s.conn, opts);
                Ok(json!(0))
            }
            e => Err(errno_of(e, "listen")),
        }
    }

    fn connect(&mut self, fd: Fd, addr: SocketAddr) -> Result<(), Error> {
        let configured = self.configured;
        let s = self.sock(fd)?;
        match s.kind {
            Kind::Fresh => {}
            Kind::Listener => return Err(Error::new("EINVAL", "socket is listening")),
            Kind::Connecting => return Err(Error::new("EALREADY", "connect already under way")),
            Kind::Connected => return Err(Error::new("EISCONN", "socket is already connected")),
        }
        check_family(s.family, addr)?;
        if !configured {
            return Err(Error::new(
                "ENETDOWN",
                "the interface is not configured yet",
            ));
        }
        match s.conn.connect(addr) {
            err::OK => {
                s.kind = Kind::Connecting;
                Ok(())
            }
            e => Err(errno_of(e, "connect")),
        }
    }

    fn write(&mut self, fd: Fd, data: &[u8]) -> Reply {
        let s = self.sock(fd)?;
        if s.kind != Kind::Connected {
            return Err(enotconn());
        }
        if s.shut_wr {
            return Err(Error::new("EPIPE", "socket is shut down for writing"));
        }
        match (s.conn.error(), s.conn.state()) {
            (err::RST, _) => return Err(Error::new("ECONNRESET", "connection reset by peer")),
            (_, State::Established | State::CloseWait) => {}
            _ => return Err(Error::new("EPIPE", "connection is closed for sending")),
        }
        match s.conn.write(data) {
            Ok(0) if !data.is_empty() => Err(Error::new("EAGAIN", "send buffer is full")),
            Ok(n) => Ok(json!(n)),
            Err(e) => Err(errno_of(e, "write")),
        }
    }

    fn shutdown(&mut self, fd: Fd, how: &str) -> Reply {
        let s = self.sock(fd)?;
        let (rx, tx) = match how {
            "rd" => (true, false),
            "wr" => (false, true),
            "rdwr" => (true, true),
            _ => {
                return Err(Error::new(
                    "EINVAL",
                    "field `how` must be \"rd\", \"wr\" or \"rdwr\"",
                ))
            }
        };
        // Not connected yet, or gone (lwIP freed the pcb: LAST_ACK → CLOSED, a reset).
        if s.kind != Kind::Connected || s.conn.state() == State::Closed {
            return Err(enotconn());
        }
        // A second shutdown of a half already shut is a no-op, as on Linux.
        let (rx_now, tx_now) = (rx && !s.shut_rd, tx && !s.shut_wr);
        if rx_now || tx_now {
            match s.conn.shutdown(rx_now, tx_now) {
                err::OK | err::CLSD => {}
                e => return Err(errno_of(e, "shutdown")),
            }
        }
        s.shut_rd |= rx;
        s.shut_wr |= tx;
        Ok(json!(0))
    }

    fn close(&mut self, fd: Fd) -> Reply {
        let s = self.fds.remove(&fd).ok_or_else(|| ebadf(fd))?;
        s.conn.close(s.opts.linger0);
        Ok(json!(0))
    }

    fn setsockopt(&mut self, fd: Fd, opt: SockOpt) -> Reply {
        let s = self.sock(fd)?;
        match opt {
            SockOpt::Linger { on: true, secs: 0 } => s.opts.linger0 = true,
            SockOpt::Linger { on: false, .. } => s.opts.linger0 = false,
            SockOpt::Linger { .. } => {
                return Err(Error::new(
                    "ENOSYS",
                    "SO_LINGER with a timeout: the agent's close() never blocks",
                ))
            }
            SockOpt::NoDelay(v) => s.opts.nodelay = v,
            SockOpt::KeepAlive { on, secs } => s.opts.keepalive = on.then_some(secs.max(1)),
        }
        let opts = s.opts;
        apply_opts(&mut s.conn, opts);
        Ok(json!(0))
    }

    fn park(&mut self, id: u64, fd: Fd, wait: Wait) {
        let check = match (&wait, self.fds.get(&fd).map(|s| &s.kind)) {
            (_, None) => Err(ebadf(fd)),
            (Wait::Accept, Some(Kind::Listener)) => Ok(()),
            (Wait::Accept, Some(_)) => Err(Error::new("EINVAL", "socket is not listening")),
            (Wait::Connect, Some(_))
            | (Wait::Read(_), Some(Kind::Connecting | Kind::Connected)) => Ok(()),
            (Wait::Read(_), Some(_)) => Err(enotconn()),
        };
        match check {
            Ok(()) => {
                self.pending.push(Pending { id, fd, wait });
                self.complete_pending();
            }
            Err(e) => self.answer(id, Err(e)),
        }
    }

    // ---- After every stack step ----

    pub fn sweep(&mut self) {
        self.track_states();
        self.notify();
        self.complete_pending();
    }

    /// Every state change since the last sweep, from lwIP's pcb lists: a pcb that appeared
    /// starts from CLOSED, one that is gone ends in CLOSED.
    fn track_states(&mut self) {
        let now: BTreeMap<usize, Pcb> = lwip::pcbs().into_iter().map(|p| (p.id, p)).collect();
        let t = realtime_ns();
        let mut events = Vec::new();
        for (id, was) in &self.known {
            match now.get(id) {
                Some(p) if p.local == was.local && p.remote == was.remote => {
                    if p.state != was.state {
                        events.push((p.local, p.remote, was.state, p.state));
                    }
                }
                // Gone (or the memory reused by another connection at once).
                _ => events.push((was.local, was.remote, was.state, State::Closed)),
            }
        }
        for (id, p) in &now {
            let same = self
                .known
                .get(id)
                .is_some_and(|w| w.local == p.local && w.remote == p.remote);
            if !same {
                events.push((p.local, p.remote, State::Closed, p.state));
            }
        }
        for (l, r, from, to) in events {
            if from.name() != to.name() {
                self.out
                    .push(protocol::state_event(l, r, from.name(), to.name(), t));
            }
        }
        self.known = now;
    }

    fn notify(&mut self) {
        for (&fd, s) in self.fds.iter_mut() {
            if s.kind != Kind::Connected {
                continue;
            }
            if !s.reset_sent && s.conn.error() == err::RST {
                s.reset_sent = true;
                self.out.push(protocol::fd_event("reset", fd));
            }
            if !s.readable_sent && readable(s) {
                s.readable_sent = true;
                self.out.push(protocol::fd_event("readable", fd));
            }
        }
    }

    fn complete_pending(&mut self) {
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let (id, fd) = (p.id, p.fd);
            let outcome = match p.wait {
                Wait::Accept => self.try_accept(fd),
                Wait::Connect => self.try_connect(fd),
                Wait::Read(max) => self.try_read(fd, max),
            };
            match outcome {
                Some(reply) => {
                    self.pending.remove(i);
                    self.answer(id, reply);
                }
                None => i += 1,
            }
        }
    }

    /// `None` while still blocked.
    fn try_accept(&mut self, fd: Fd) -> Option<Reply> {
        let Some(l) = self.fds.get_mut(&fd) else {
            return Some(Err(ebadf(fd)));
        };
        let mut conn = l.conn.accept()?;
        let (family, opts) = (l.family, l.opts);
        apply_opts(&mut conn, opts);
        let new = self.next_fd;
        self.next_fd += 1;
        self.fds
            .insert(new, new_sock(conn, family, Kind::Connected, opts));
        Some(Ok(json!(new)))
    }

    fn try_connect(&mut self, fd: Fd) -> Option<Reply> {
        let Some(s) = self.fds.get_mut(&fd) else {
            return Some(Err(ebadf(fd)));
        };
        if s.kind == Kind::Connected {
            return Some(Err(Error::new("EISCONN", "socket is already connected")));
        }
        if s.conn.connected() {
            s.kind = Kind::Connected;
            return Some(Ok(json!(0)));
        }
        match s.conn.error() {
            err::OK => None,
            err::RST => Some(Err(Error::new("ECONNREFUSED", "connection refused"))),
            e => Some(Err(errno_of(e, "connect"))),
        }
    }

    fn try_read(&mut self, fd: Fd, max: usize) -> Option<Reply> {
        let Some(s) = self.fds.get_mut(&fd) else {
            return Some(Err(ebadf(fd)));
        };
        let reply = if s.conn.rx_len() > 0 && !s.shut_rd {
            Ok(json!({"data": protocol::hex_encode(&s.conn.read(max))}))
        } else if s.conn.error() == err::RST {
            Err(Error::new("ECONNRESET", "connection reset by peer"))
        } else if s.shut_rd || s.conn.fin() || s.conn.error() == err::CLSD {
            Ok(json!({"data": ""}))
        } else if s.conn.error() != err::OK {
            Err(errno_of(s.conn.error(), "read"))
        } else {
            return None;
        };
        // Re-arm the readable event once everything buffered has been consumed.
        if !readable(s) {
            s.readable_sent = false;
        }
        Some(reply)
    }
}

fn new_sock(conn: Conn, family: Family, kind: Kind, opts: Opts) -> Sock {
    Sock {
        conn,
        family,
        kind,
        bound: false,
        opts,
        shut_rd: false,
        shut_wr: false,
        readable_sent: false,
        reset_sent: false,
    }
}

fn check_family(family: Family, addr: SocketAddr) -> Result<(), Error> {
    if addr.is_ipv4() != (family == Family::Ipv4) {
        return Err(Error::new(
            "EAFNOSUPPORT",
            "address family does not match the socket",
        ));
    }
    Ok(())
}

fn apply_opts(conn: &mut Conn, opts: Opts) {
    conn.set_nodelay(opts.nodelay);
    match opts.keepalive {
        Some(secs) => {
            conn.set_keepalive(true, secs.saturating_mul(1000).min(u32::MAX as u64) as u32)
        }
        // TCP_KEEPIDLE_DEFAULT (lwip/priv/tcp_priv.h): 2 h.
        None => conn.set_keepalive(false, 7_200_000),
    }
}

/// Data or EOF to read (a reset is announced by its own event instead).
fn readable(s: &Sock) -> bool {
    let e = s.conn.error();
    e != err::RST && (s.conn.rx_len() > 0 || s.conn.fin() || e == err::CLSD)
}

/// The state of the connection with that 4-tuple, orphans included, from lwIP's lists.
fn state_of(local: SocketAddr, remote: SocketAddr) -> &'static str {
    lwip::pcbs()
        .into_iter()
        .find(|p| p.local == local && p.remote == remote)
        .map_or("CLOSED", |p| p.state.name())
}
