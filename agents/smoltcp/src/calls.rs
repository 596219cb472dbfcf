//! BSD socket calls emulated over smoltcp sockets.
//!
//! smoltcp has no file descriptors, no listening sockets distinct from
//! connections, and no orphans; this module supplies those:
//! - an fd names a fresh socket, a listener, or a connection;
//! - a listener owns one smoltcp socket in LISTEN; once that socket has finished
//!   the handshake it moves to the accept queue and a new one takes its place;
//! - a closed connection stays in the socket set as an orphan until it reaches
//!   CLOSED (and has sent its RST, if aborted), exactly so that FIN_WAIT/TIME_WAIT
//!   behaviour stays observable.
//!
//! After every step of the stack, `sweep` turns state changes into events and
//! finishes blocking calls whose condition now holds.

use crate::protocol::{self, Command, Error, Family, Fd, SockOpt};
use crate::stack::{realtime_ns, state_name, to_sockaddr, Stack};
use serde_json::{json, Value};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::Duration;
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

/// Socket options as set by the application; applied to every smoltcp socket the
/// fd ends up owning, and inherited by accepted connections (as on Linux).
#[derive(Clone, Copy, Default)]
struct Opts {
    linger0: bool,
    nodelay: bool,
    keepalive_secs: Option<u64>,
}

enum Desc {
    Fresh {
        family: Family,
        bound: Option<SocketAddr>,
        opts: Opts,
    },
    Listener {
        endpoint: IpListenEndpoint,
        backlog: usize,
        opts: Opts,
        listening: Option<SocketHandle>,
        queue: VecDeque<SocketHandle>,
    },
    Conn {
        handle: SocketHandle,
        shut_wr: bool,
        readable_sent: bool,
        opts: Opts,
    },
}

/// What the agent remembers about each smoltcp socket between sweeps.
struct Track {
    /// Last known 4-tuple: smoltcp forgets it on RST and at the end of TIME-WAIT,
    /// but the final state event still needs it.
    tuple: Option<(IpEndpoint, IpEndpoint)>,
    state: State,
    /// No fd refers to it any more; removed once it is fully closed.
    orphan: bool,
    /// We closed/aborted it ourselves, so reaching CLOSED is not a reset.
    local_abort: bool,
    reset: bool,
    /// The reset's error was read with SO_ERROR (which clears it, as on Linux).
    error_taken: bool,
    /// Has completed a handshake: only then can CLOSED mean EOF.
    synced: bool,
}

impl Track {
    /// The reset's error, once: true the first time it is asked for after a reset (the
    /// pending socket error that SO_ERROR, read or write report and clear, as on Linux).
    fn take_reset_error(&mut self) -> bool {
        let pending = self.reset && !self.error_taken;
        self.error_taken |= pending;
        pending
    }
}

enum Wait {
    Accept,
    Connect,
    Read(usize),
    /// poll(2): these events (bits as Linux's), until this many ns of realtime.
    Poll {
        events: u32,
        until_ns: u128,
    },
}

struct Pending {
    id: u64,
    fd: Fd,
    wait: Wait,
}

type Reply = Result<Value, Error>;

pub struct Calls {
    fds: BTreeMap<Fd, Desc>,
    next_fd: Fd,
    tracks: BTreeMap<SocketHandle, Track>,
    pending: Vec<Pending>,
    next_port: u16,
    /// Lines (replies and events) to write, in order.
    pub out: Vec<Value>,
}

const EPHEMERAL_FIRST: u16 = 49152;

fn ebadf(fd: Fd) -> Error {
    Error::new("EBADF", format!("bad file descriptor {fd}"))
}

fn enotconn() -> Error {
    Error::new("ENOTCONN", "socket is not connected")
}

impl Calls {
    pub fn new() -> Calls {
        let seed = (realtime_ns() % 16384) as u16;
        Calls {
            fds: BTreeMap::new(),
            next_fd: 3,
            tracks: BTreeMap::new(),
            pending: Vec::new(),
            next_port: EPHEMERAL_FIRST + seed,
            out: Vec::new(),
        }
    }

    /// Executes one command. Blocking calls that cannot finish yet are parked
    /// and answered by a later `sweep`; everything else is answered now.
    pub fn execute(&mut self, stack: &mut Stack, id: u64, cmd: Command) {
        let reply = match cmd {
            Command::Configure { mac, addrs, routes } => {
                stack.configure(mac, &addrs, &routes).map(|_| Value::Null)
            }
            Command::Socket { family } => Ok(json!(self.socket(family))),
            Command::Bind { fd, addr } => self.bind(fd, addr),
            Command::Listen { fd, backlog } => self.listen(stack, fd, backlog),
            Command::Accept { fd } => return self.park(stack, id, fd, Wait::Accept),
            Command::Connect { fd, addr } => match self.connect(stack, fd, addr) {
                Ok(()) => return self.park(stack, id, fd, Wait::Connect),
                Err(e) => Err(e),
            },
            Command::Write { fd, data } => self.write(stack, fd, &data),
            Command::Read { fd, max } => return self.park(stack, id, fd, Wait::Read(max)),
            Command::Shutdown { fd, how } => self.shutdown(stack, fd, &how),
            Command::Close { fd } => self.close(stack, fd),
            Command::SetSockOpt { fd, opt } => self.setsockopt(stack, fd, opt),
            Command::State { local, remote } => {
                Ok(json!({"state": self.state_of(stack, local, remote)}))
            }
            Command::Poll {
                fd,
                events,
                timeout_ms,
            } => {
                let events = match poll_bits(&events) {
                    Ok(e) => e,
                    Err(e) => return self.answer(id, Err(e)),
                };
                let until_ns = realtime_ns() as u128 + u128::from(timeout_ms) * 1_000_000;
                return self.park(stack, id, fd, Wait::Poll { events, until_ns });
            }
            Command::Ioctl { fd, req } => self.ioctl(stack, fd, &req),
            Command::GetSockOpt { fd, opt } => self.getsockopt(fd, &opt),
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

    fn alloc_fd(&mut self, desc: Desc) -> Fd {
        let fd = self.next_fd;
        self.next_fd += 1;
        self.fds.insert(fd, desc);
        fd
    }

    fn socket(&mut self, family: Family) -> Fd {
        self.alloc_fd(Desc::Fresh {
            family,
            bound: None,
            opts: Opts::default(),
        })
    }

    fn bind(&mut self, fd: Fd, addr: SocketAddr) -> Reply {
        match self.fds.get_mut(&fd).ok_or_else(|| ebadf(fd))? {
            Desc::Fresh {
                family,
                bound: bound @ None,
                ..
            } => {
                if addr.is_ipv4() != (*family == Family::Ipv4) {
                    return Err(Error::new(
                        "EAFNOSUPPORT",
                        "address family does not match the socket",
                    ));
                }
                *bound = Some(addr);
                Ok(json!(0))
            }
            _ => Err(Error::new("EINVAL", "socket is already bound")),
        }
    }

    fn listen(&mut self, stack: &mut Stack, fd: Fd, backlog: usize) -> Reply {
        let backlog = backlog.max(1);
        let (bound, opts) = match self.fds.get_mut(&fd).ok_or_else(|| ebadf(fd))? {
            Desc::Fresh { bound, opts, .. } => (*bound, *opts),
            Desc::Listener { backlog: b, .. } => {
                *b = backlog;
                return Ok(json!(0));
            }
            Desc::Conn { .. } => return Err(Error::new("EINVAL", "socket is connected")),
        };
        let mut endpoint = bound.map(listen_endpoint).unwrap_or_default();
        if endpoint.port == 0 {
            endpoint.port = self.ephemeral_port(stack);
        }
        if self.port_in_use(endpoint) {
            return Err(Error::new(
                "EADDRINUSE",
                "another listener has that address",
            ));
        }
        let handle = self.listen_socket(stack, endpoint, opts);
        self.fds.insert(
            fd,
            Desc::Listener {
                endpoint,
                backlog,
                opts,
                listening: Some(handle),
                queue: VecDeque::new(),
            },
        );
        Ok(json!(0))
    }

    fn listen_socket(
        &mut self,
        stack: &mut Stack,
        endpoint: IpListenEndpoint,
        opts: Opts,
    ) -> SocketHandle {
        let handle = self.new_socket(stack, opts);
        // Cannot fail: the port is non-zero and the socket is new.
        let _ = stack.tcp(handle).listen(endpoint);
        handle
    }

    fn new_socket(&mut self, stack: &mut Stack, opts: Opts) -> SocketHandle {
        let handle = stack.new_tcp_socket();
        apply_opts(stack.tcp(handle), opts);
        self.tracks.insert(
            handle,
            Track {
                tuple: None,
                state: State::Closed,
                orphan: false,
                local_abort: false,
                reset: false,
                error_taken: false,
                synced: false,
            },
        );
        handle
    }

    fn connect(&mut self, stack: &mut Stack, fd: Fd, addr: SocketAddr) -> Result<(), Error> {
        let (family, bound, opts) = match self.fds.get(&fd).ok_or_else(|| ebadf(fd))? {
            Desc::Fresh {
                family,
                bound,
                opts,
            } => (*family, *bound, *opts),
            Desc::Conn { .. } => return Err(Error::new("EISCONN", "socket is already connected")),
            Desc::Listener { .. } => return Err(Error::new("EINVAL", "socket is listening")),
        };
        if addr.is_ipv4() != (family == Family::Ipv4) {
            return Err(Error::new(
                "EAFNOSUPPORT",
                "address family does not match the socket",
            ));
        }
        let mut local = bound.map(listen_endpoint).unwrap_or_default();
        if local.port == 0 {
            local.port = self.ephemeral_port(stack);
        }
        let handle = self.new_socket(stack, opts);
        if let Err(e) = stack.connect(handle, addr.into(), local) {
            self.tracks.remove(&handle);
            stack.remove(handle);
            return Err(e);
        }
        self.fds.insert(
            fd,
            Desc::Conn {
                handle,
                shut_wr: false,
                readable_sent: false,
                opts,
            },
        );
        Ok(())
    }

    fn write(&mut self, stack: &mut Stack, fd: Fd, data: &[u8]) -> Reply {
        let handle = match self.fds.get(&fd).ok_or_else(|| ebadf(fd))? {
            Desc::Conn { shut_wr: true, .. } => {
                return Err(Error::new("EPIPE", "socket is shut down for writing"))
            }
            Desc::Conn { handle, .. } => *handle,
            _ => return Err(enotconn()),
        };
        let track = self
            .tracks
            .get_mut(&handle)
            .expect("a connection is tracked");
        if track.take_reset_error() {
            return Err(Error::new("ECONNRESET", "connection reset by peer"));
        }
        if track.reset {
            return Err(Error::new("EPIPE", "connection was reset"));
        }
        let socket = stack.tcp(handle);
        match socket.state() {
            State::SynSent | State::SynReceived => return Err(enotconn()),
            _ if !socket.may_send() => {
                return Err(Error::new("EPIPE", "connection is closed for sending"))
            }
            _ => {}
        }
        match socket.send_slice(data) {
            Ok(0) if !data.is_empty() => Err(Error::new("EAGAIN", "send buffer is full")),
            Ok(n) => Ok(json!(n)),
            Err(_) => Err(Error::new("EPIPE", "connection is closed for sending")),
        }
    }

    fn shutdown(&mut self, stack: &mut Stack, fd: Fd, how: &str) -> Reply {
        let (handle, shut_wr) = match self.fds.get_mut(&fd).ok_or_else(|| ebadf(fd))? {
            Desc::Conn {
                handle, shut_wr, ..
            } => (*handle, shut_wr),
            _ => return Err(enotconn()),
        };
        match how {
            "wr" => {}
            "rd" | "rdwr" => {
                return Err(Error::new(
                    "ENOSYS",
                    format!("smoltcp cannot shut down the receive half (`{how}`)"),
                ))
            }
            _ => {
                return Err(Error::new(
                    "EINVAL",
                    "field `how` must be \"rd\", \"wr\" or \"rdwr\"",
                ))
            }
        }
        let socket = stack.tcp(handle);
        if socket.state() == State::SynSent {
            return Err(enotconn());
        }
        // smoltcp's close() is a half-close: it queues a FIN and keeps receiving.
        socket.close();
        *shut_wr = true;
        Ok(json!(0))
    }

    fn close(&mut self, stack: &mut Stack, fd: Fd) -> Reply {
        match self.fds.remove(&fd).ok_or_else(|| ebadf(fd))? {
            Desc::Fresh { .. } => {}
            Desc::Listener {
                listening, queue, ..
            } => {
                // Connections nobody accepted are aborted (RST), as Linux does.
                for handle in listening.into_iter().chain(queue) {
                    self.orphan(stack, handle, true);
                }
            }
            Desc::Conn { handle, opts, .. } => self.orphan(stack, handle, opts.linger0),
        }
        Ok(json!(0))
    }

    /// Hands a socket over to the stack for the rest of its life.
    fn orphan(&mut self, stack: &mut Stack, handle: SocketHandle, abort: bool) {
        let socket = stack.tcp(handle);
        let state = socket.state();
        if abort {
            socket.abort();
        } else {
            socket.close();
        }
        let track = self
            .tracks
            .get_mut(&handle)
            .expect("every socket is tracked");
        track.orphan = true;
        // close() in SYN-SENT/LISTEN also goes straight to CLOSED: our doing, not a reset.
        track.local_abort = abort || matches!(state, State::SynSent | State::Listen);
    }

    fn setsockopt(&mut self, stack: &mut Stack, fd: Fd, opt: SockOpt) -> Reply {
        let desc = self.fds.get_mut(&fd).ok_or_else(|| ebadf(fd))?;
        let (opts, handle) = match desc {
            Desc::Fresh { opts, .. } => (opts, None),
            Desc::Listener {
                opts, listening, ..
            } => (opts, *listening),
            Desc::Conn { opts, handle, .. } => (opts, Some(*handle)),
        };
        match opt {
            SockOpt::Linger { on: true, secs: 0 } => opts.linger0 = true,
            SockOpt::Linger { on: false, .. } => opts.linger0 = false,
            SockOpt::Linger { .. } => {
                return Err(Error::new(
                    "ENOSYS",
                    "linger with a timeout is not supported (smoltcp close() never blocks)",
                ))
            }
            SockOpt::NoDelay(v) => opts.nodelay = v,
            SockOpt::KeepAlive { on, secs } => opts.keepalive_secs = on.then_some(secs.max(1)),
        }
        let opts = *opts;
        if let Some(handle) = handle {
            apply_opts(stack.tcp(handle), opts);
        }
        Ok(json!(0))
    }

    /// The state of the connection with that 4-tuple, orphans included.
    fn state_of(
        &mut self,
        stack: &mut Stack,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> &'static str {
        let want = (IpEndpoint::from(local), IpEndpoint::from(remote));
        for (&handle, track) in &self.tracks {
            let state = stack.tcp(handle).state();
            if track.tuple == Some(want) && !matches!(state, State::Closed | State::Listen) {
                return state_name(state).unwrap_or("CLOSED");
            }
        }
        "CLOSED"
    }

    fn ephemeral_port(&mut self, stack: &mut Stack) -> u16 {
        loop {
            let port = self.next_port;
            self.next_port = if port == u16::MAX {
                EPHEMERAL_FIRST
            } else {
                port + 1
            };
            let in_use = self.tracks.iter().any(|(&h, t)| {
                let s = stack.tcp(h);
                t.tuple.is_some_and(|(l, _)| l.port == port) || s.listen_endpoint().port == port
            });
            if !in_use {
                return port;
            }
        }
    }

    fn port_in_use(&self, ep: IpListenEndpoint) -> bool {
        self.fds.values().any(|d| match d {
            Desc::Listener { endpoint, .. } => {
                endpoint.port == ep.port
                    && (endpoint.addr.is_none() || ep.addr.is_none() || endpoint.addr == ep.addr)
            }
            _ => false,
        })
    }

    fn park(&mut self, stack: &mut Stack, id: u64, fd: Fd, wait: Wait) {
        let check = match (&wait, self.fds.get(&fd)) {
            (_, None) => Err(ebadf(fd)),
            (Wait::Accept, Some(Desc::Listener { .. })) => Ok(()),
            (Wait::Accept, Some(_)) => Err(Error::new("EINVAL", "socket is not listening")),
            (_, Some(Desc::Conn { .. })) => Ok(()),
            (_, Some(_)) => Err(enotconn()),
        };
        match check {
            Ok(()) => {
                self.pending.push(Pending { id, fd, wait });
                // It may be satisfiable right away (data already buffered, say).
                self.complete_pending(stack);
            }
            Err(e) => self.answer(id, Err(e)),
        }
    }

    // ---- After every stack step ----

    pub fn sweep(&mut self, stack: &mut Stack) {
        self.track_states(stack);
        self.refill_listeners(stack);
        self.notify_readable(stack);
        self.complete_pending(stack);
        self.reap_orphans(stack);
    }

    fn fd_of(&self, handle: SocketHandle) -> Option<Fd> {
        self.fds.iter().find_map(|(&fd, d)| {
            matches!(d, Desc::Conn { handle: h, .. } if *h == handle).then_some(fd)
        })
    }

    fn track_states(&mut self, stack: &mut Stack) {
        let handles: Vec<_> = self.tracks.keys().copied().collect();
        for handle in handles {
            let socket = stack.tcp(handle);
            let (now, local, remote) = (
                socket.state(),
                socket.local_endpoint(),
                socket.remote_endpoint(),
            );
            let fd = self.fd_of(handle);
            let track = self.tracks.get_mut(&handle).expect("tracked");
            if let (Some(l), Some(r)) = (local, remote) {
                track.tuple = Some((l, r));
            }
            if now == track.state {
                continue;
            }
            let was = std::mem::replace(&mut track.state, now);
            track.synced |= !matches!(
                now,
                State::Closed | State::Listen | State::SynSent | State::SynReceived
            );
            let from = state_name(was).unwrap_or("CLOSED");
            let to = state_name(now).unwrap_or("CLOSED");
            let reset = is_reset(was, now, track.local_abort);
            track.reset |= reset;
            if let (Some((l, r)), true) = (track.tuple, from != to) {
                self.out.push(protocol::state_event(
                    to_sockaddr(l),
                    to_sockaddr(r),
                    from,
                    to,
                    realtime_ns(),
                ));
            }
            if reset {
                if let Some(fd) = fd {
                    self.out.push(protocol::fd_event("reset", fd));
                }
            }
            if now == State::Listen {
                // A listener whose handshake was reset goes back to LISTEN: that connection is gone.
                self.tracks.get_mut(&handle).expect("tracked").tuple = None;
            }
        }
    }

    /// Moves handshaken connections to the accept queue and keeps one socket listening.
    fn refill_listeners(&mut self, stack: &mut Stack) {
        let mut wanted = Vec::new();
        for (&fd, desc) in self.fds.iter_mut() {
            let Desc::Listener {
                endpoint,
                backlog,
                opts,
                listening,
                queue,
            } = desc
            else {
                continue;
            };
            if let Some(h) = *listening {
                match stack.tcp(h).state() {
                    State::Listen | State::SynReceived => {}
                    // Fell back to CLOSED without a connection: listen again on the same socket.
                    State::Closed => {
                        let _ = stack.tcp(h).listen(*endpoint);
                    }
                    _ => {
                        queue.push_back(h);
                        *listening = None;
                    }
                }
            }
            if listening.is_none() && queue.len() < *backlog {
                wanted.push((fd, *endpoint, *opts));
            }
        }
        for (fd, endpoint, opts) in wanted {
            let handle = self.listen_socket(stack, endpoint, opts);
            if let Some(Desc::Listener { listening, .. }) = self.fds.get_mut(&fd) {
                *listening = Some(handle);
            }
        }
    }

    fn notify_readable(&mut self, stack: &mut Stack) {
        for (&fd, desc) in self.fds.iter_mut() {
            if let Desc::Conn {
                handle,
                readable_sent: sent @ false,
                ..
            } = desc
            {
                if readable(stack.tcp(*handle), &self.tracks[handle]) {
                    *sent = true;
                    self.out.push(protocol::fd_event("readable", fd));
                }
            }
        }
    }

    fn complete_pending(&mut self, stack: &mut Stack) {
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let (id, fd) = (p.id, p.fd);
            let outcome = match p.wait {
                Wait::Accept => self.try_accept(stack, fd),
                Wait::Connect => self.try_connect(stack, fd),
                Wait::Read(max) => self.try_read(stack, fd, max),
                Wait::Poll { events, until_ns } => self.try_poll(stack, fd, events, until_ns),
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

    /// The soonest a parked poll times out (ns of realtime), for the main loop's sleep.
    pub fn next_deadline_ns(&self) -> Option<u128> {
        self.pending
            .iter()
            .filter_map(|p| match p.wait {
                Wait::Poll { until_ns, .. } => Some(until_ns),
                _ => None,
            })
            .min()
    }

    /// The events a connection's descriptor is ready for, as Linux's tcp_poll() reports
    /// them: readable at EOF, writable once it can no longer send (the write fails at
    /// once), POLLRDHUP after the peer's FIN, POLLHUP when both directions are shut, and
    /// POLLERR while a reset's error is pending.
    fn revents(&self, stack: &mut Stack, fd: Fd) -> Result<u32, Error> {
        let (handle, shut_wr) = match self.fds.get(&fd).ok_or_else(|| ebadf(fd))? {
            Desc::Conn {
                handle, shut_wr, ..
            } => (*handle, *shut_wr),
            Desc::Listener { queue, .. } => return Ok(if queue.is_empty() { 0 } else { POLLIN }),
            Desc::Fresh { .. } => return Ok(POLLOUT | POLLHUP),
        };
        let track = &self.tracks[&handle];
        let socket = stack.tcp(handle);
        if matches!(socket.state(), State::SynSent | State::SynReceived) {
            return Ok(0);
        }
        let closed = track.reset || socket.state() == State::Closed;
        let rd_shut = closed || at_eof(socket) || !socket.may_recv();
        let wr_shut = closed || shut_wr || !socket.may_send();
        let mut m = 0;
        if socket.can_recv() || rd_shut {
            m |= POLLIN;
        }
        if rd_shut {
            m |= POLLRDHUP;
        }
        if wr_shut || socket.can_send() {
            m |= POLLOUT;
        }
        if rd_shut && wr_shut {
            m |= POLLHUP;
        }
        if track.reset && !track.error_taken {
            m |= POLLERR;
        }
        Ok(m)
    }

    fn try_poll(
        &mut self,
        stack: &mut Stack,
        fd: Fd,
        events: u32,
        until_ns: u128,
    ) -> Option<Reply> {
        let ready = match self.revents(stack, fd) {
            Ok(m) => m & (events | POLLERR | POLLHUP),
            Err(e) => return Some(Err(e)),
        };
        if ready == 0 && (realtime_ns() as u128) < until_ns {
            return None;
        }
        Some(Ok(json!({"revents": poll_names(ready)})))
    }

    fn ioctl(&mut self, stack: &mut Stack, fd: Fd, req: &str) -> Reply {
        let handle = match self.fds.get(&fd).ok_or_else(|| ebadf(fd))? {
            Desc::Conn { handle, .. } => *handle,
            _ => return Err(Error::new("EINVAL", "not a connected socket")),
        };
        let socket = stack.tcp(handle);
        match req {
            "siocinq" => Ok(json!(socket.recv_queue())),
            // smoltcp keeps written bytes in its buffer until they are acknowledged.
            "siocoutq" => Ok(json!(socket.send_queue())),
            other => Err(Error::new("ENOSYS", format!("unsupported ioctl `{other}`"))),
        }
    }

    fn getsockopt(&mut self, fd: Fd, opt: &str) -> Reply {
        if opt != "so_error" {
            return Err(Error::new("ENOSYS", format!("unsupported option `{opt}`")));
        }
        let handle = match self.fds.get(&fd).ok_or_else(|| ebadf(fd))? {
            Desc::Conn { handle, .. } => *handle,
            _ => return Ok(json!({"error": null})),
        };
        let track = self
            .tracks
            .get_mut(&handle)
            .expect("a connection is tracked");
        match track.take_reset_error() {
            true => Ok(json!({"error": "ECONNRESET"})),
            false => Ok(json!({"error": null})),
        }
    }

    /// `None` while still blocked.
    fn try_accept(&mut self, stack: &mut Stack, fd: Fd) -> Option<Reply> {
        let Some(Desc::Listener { queue, opts, .. }) = self.fds.get_mut(&fd) else {
            return Some(Err(ebadf(fd)));
        };
        let handle = queue.pop_front()?;
        let opts = *opts;
        let conn = self.alloc_fd(Desc::Conn {
            handle,
            shut_wr: false,
            readable_sent: false,
            opts,
        });
        // A queue slot was freed; a listener at its backlog limit may listen again.
        self.refill_listeners(stack);
        Some(Ok(json!(conn)))
    }

    fn try_connect(&mut self, stack: &mut Stack, fd: Fd) -> Option<Reply> {
        let Some(Desc::Conn { handle, .. }) = self.fds.get(&fd) else {
            return Some(Err(ebadf(fd)));
        };
        match stack.tcp(*handle).state() {
            State::SynSent | State::SynReceived => None,
            // smoltcp has no user timeout by default, so CLOSED here means an RST.
            State::Closed => Some(Err(Error::new("ECONNREFUSED", "connection refused"))),
            _ => Some(Ok(json!(0))),
        }
    }

    fn try_read(&mut self, stack: &mut Stack, fd: Fd, max: usize) -> Option<Reply> {
        let Some(Desc::Conn {
            handle,
            readable_sent,
            ..
        }) = self.fds.get_mut(&fd)
        else {
            return Some(Err(ebadf(fd)));
        };
        let track = self
            .tracks
            .get_mut(handle)
            .expect("a connection is tracked");
        let socket = stack.tcp(*handle);
        let reply = if socket.can_recv() {
            let mut buf = vec![0; max.min(socket.recv_queue())];
            let n = socket.recv_slice(&mut buf).unwrap_or(0);
            Ok(json!({"data": protocol::hex_encode(&buf[..n])}))
        } else if track.take_reset_error() {
            // Reported once, as Linux's sock_error() does; then the stream has ended.
            Err(Error::new("ECONNRESET", "connection reset by peer"))
        } else if track.reset {
            Ok(json!({"data": ""}))
        } else if !track.synced && socket.state() == State::Closed {
            Err(enotconn()) // a connect that failed
        } else if at_eof(socket) {
            Ok(json!({"data": ""}))
        } else {
            return None;
        };
        // Re-arm the readable event once everything buffered has been consumed.
        if !readable(socket, track) {
            *readable_sent = false;
        }
        Some(reply)
    }

    fn reap_orphans(&mut self, stack: &mut Stack) {
        let done: Vec<_> = self
            .tracks
            .iter()
            .filter(|(&h, t)| {
                let s = stack.tcp(h);
                // An aborted socket keeps its endpoint until the RST has gone out.
                t.orphan && s.state() == State::Closed && s.local_endpoint().is_none()
            })
            .map(|(&h, _)| h)
            .collect();
        for handle in done {
            self.tracks.remove(&handle);
            stack.remove(handle);
        }
    }
}

fn apply_opts(socket: &mut tcp::Socket, opts: Opts) {
    socket.set_nagle_enabled(!opts.nodelay);
    socket.set_keep_alive(opts.keepalive_secs.map(Duration::from_secs));
}

fn listen_endpoint(addr: SocketAddr) -> IpListenEndpoint {
    let ep = IpListenEndpoint::from(addr);
    // 0.0.0.0 / :: mean "any address", which smoltcp spells as no address.
    IpListenEndpoint {
        addr: ep.addr.filter(|a| !a.is_unspecified()),
        port: ep.port,
    }
}

const POLLIN: u32 = 0x1;
const POLLOUT: u32 = 0x4;
const POLLERR: u32 = 0x8;
const POLLHUP: u32 = 0x10;
const POLLRDHUP: u32 = 0x2000;
const POLL_NAMES: &[(&str, u32)] = &[
    ("POLLIN", POLLIN),
    ("POLLOUT", POLLOUT),
    ("POLLERR", POLLERR),
    ("POLLHUP", POLLHUP),
    ("POLLRDHUP", POLLRDHUP),
];

fn poll_bits(names: &[String]) -> Result<u32, Error> {
    names
        .iter()
        .try_fold(0, |acc, n| match POLL_NAMES.iter().find(|(k, _)| k == n) {
            Some((_, v)) => Ok(acc | v),
            None => Err(Error::new("EINVAL", format!("unknown poll event `{n}`"))),
        })
}

fn poll_names(mask: u32) -> Vec<&'static str> {
    POLL_NAMES
        .iter()
        .filter(|(_, v)| mask & v != 0)
        .map(|(k, _)| *k)
        .collect()
}

/// A synchronized connection that went to CLOSED without passing through TIME-WAIT
/// or LAST-ACK, and not by our hand, was reset (smoltcp sets no user timeout, so
/// nothing else takes that path). SYN-SENT -> CLOSED is a refused connect instead,
/// reported by `connect` itself.
fn is_reset(was: State, now: State, local_abort: bool) -> bool {
    use State::*;
    let synchronized = matches!(was, Established | FinWait1 | FinWait2 | CloseWait | Closing);
    !local_abort && now == Closed && synchronized
}

/// The peer's FIN has been received and everything before it consumed.
fn at_eof(socket: &tcp::Socket) -> bool {
    !socket.can_recv()
        && !socket.may_recv()
        && !matches!(socket.state(), State::SynSent | State::SynReceived)
}

/// Data or EOF to read; a reset is announced by its own event instead, and a
/// connect that never completed has nothing to read.
fn readable(socket: &tcp::Socket, track: &Track) -> bool {
    socket.can_recv() || (at_eof(socket) && !track.reset && track.synced)
}
