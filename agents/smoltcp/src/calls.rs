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

use crate::protocol::{self, Command, Error, Ext, ExtOpt, Family, Fd, SockOpt};
use crate::stack::{realtime_ns, state_name, to_sockaddr, Stack};
use serde_json::{json, Value};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::Duration;
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Socket options as set by the application; applied to every smoltcp socket the
/// fd ends up owning, and inherited by accepted connections (as on Linux).
#[derive(Clone, Copy, Default)]
struct Opts {
    linger0: bool,
    /// SO_LINGER {1, secs > 0}: the last close() waits for the FIN's ACK that long.
    linger_secs: Option<u64>,
    nodelay: bool,
    keepalive_secs: Option<u64>,
    reuseaddr: bool,
    /// SO_SNDBUF doubled, as Linux doubles it: how much written data the socket holds.
    sndbuf: Option<usize>,
    rcvtimeo_ms: Option<u64>,
    user_timeout_ms: Option<u64>,
    /// O_NONBLOCK.
    nonblock: bool,
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
        /// shutdown(SHUT_RD): reads return EOF once nothing is buffered (as on Linux).
        shut_rd: bool,
        /// A non-blocking connect() that has not reported its completion yet.
        connecting: bool,
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
    /// The connection was reset, or given up by its user timeout: reads are EOF, writes EPIPE.
    reset: bool,
    /// The pending socket error (Linux's sk_err): set by a reset or a timeout, reported
    /// once by SO_ERROR, read or write.
    error: Option<&'static str>,
    /// Has completed a handshake: only then can CLOSED mean EOF.
    synced: bool,
    /// Written data beyond what smoltcp's own buffer holds (a SO_SNDBUF larger than it),
    /// fed to smoltcp as room frees up.
    txq: VecDeque<u8>,
    /// The FIN waits for `txq` to drain (shutdown or close with data still queued here).
    fin_pending: bool,
}

impl Track {
    fn new() -> Track {
        Track {
            tuple: None,
            state: State::Closed,
            orphan: false,
            local_abort: false,
            reset: false,
            error: None,
            synced: false,
            txq: VecDeque::new(),
            fin_pending: false,
        }
    }

    /// The pending error, once (as Linux's sock_error()).
    fn take_error(&mut self) -> Option<&'static str> {
        self.error.take()
    }
}

/// The errno of a pending error (the names are the protocol's).
fn errno_error(name: &'static str) -> Error {
    let message = match name {
        "ECONNRESET" => "connection reset by peer",
        "ECONNREFUSED" => "connection refused",
        "ETIMEDOUT" => "connection timed out",
        _ => "broken pipe",
    };
    Error::new(name, message)
}

enum Wait {
    Accept,
    Connect,
    /// read/recv: at most this many bytes, peeking or not, until this realtime (ns) at
    /// the latest (SO_RCVTIMEO, or at once when non-blocking), then EAGAIN.
    Read {
        max: usize,
        peek: bool,
        until_ns: Option<u128>,
    },
    /// epoll_wait(): these events (Linux's bits, EPOLLET included), until this realtime.
    Epoll {
        events: u32,
        until_ns: u128,
    },
    /// close() with SO_LINGER {1, secs}: until the FIN is acknowledged or the time is up.
    Linger {
        handle: SocketHandle,
        until_ns: u128,
    },
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
    /// The sockets, each under the first fd it had.
    fds: BTreeMap<Fd, Desc>,
    /// Every open fd and the socket (key of `fds`) it refers to: dup() adds one.
    alias: BTreeMap<Fd, Fd>,
    /// Each fd's own epoll instance: the events registered, and (EPOLLET) those delivered
    /// and still ready, which fire again only once they have gone and come back.
    epolls: BTreeMap<Fd, (u32, u32)>,
    /// The TCP segments the agent sent, per connection.
    log: crate::segs::Log,
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
            alias: BTreeMap::new(),
            epolls: BTreeMap::new(),
            log: crate::segs::Log::default(),
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
            Command::Bind { fd, addr } => self.bind(stack, fd, addr),
            Command::Listen { fd, backlog } => self.listen(stack, fd, backlog),
            Command::Accept { fd } => return self.park(stack, id, fd, Wait::Accept),
            Command::Connect { fd, addr } => match self.connect(stack, fd, addr) {
                Ok(true) => return self.park(stack, id, fd, Wait::Connect),
                Ok(false) => Ok(json!(0)),
                Err(e) => Err(e),
            },
            Command::Write { fd, data } => self.write(stack, fd, &data),
            Command::Read { fd, max } => return self.read(stack, id, fd, max, false, false),
            Command::Shutdown { fd, how } => self.shutdown(stack, fd, &how),
            Command::Close { fd } => match self.close(stack, fd) {
                Ok(Some(wait)) => return self.park_closed(stack, id, fd, wait),
                Ok(None) => Ok(json!(0)),
                Err(e) => Err(e),
            },
            Command::SetSockOpt { fd, opt } => self.setsockopt(stack, fd, opt),
            Command::State { local, remote } => Ok(self.state_of(stack, local, remote)),
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
            Command::GetSockOpt { fd, opt } => self.getsockopt(stack, fd, &opt),
            Command::Quit => Ok(Value::Null),
        };
        self.answer(id, reply);
    }

    /// Executes one of the agent's own commands (protocol::Ext).
    pub fn execute_ext(&mut self, stack: &mut Stack, id: u64, cmd: Ext) {
        let reply = match cmd {
            Ext::Dup { fd } => self.dup(fd),
            Ext::SetSockOpt { fd, opt } => self.setsockopt_ext(stack, fd, opt),
            Ext::Fcntl { fd, nonblock } => self.fcntl(fd, nonblock),
            Ext::Send { fd, data, flags: _ } => {
                // The agent's writes never block and it raises no signals: MSG_DONTWAIT and
                // MSG_NOSIGNAL change nothing.
                self.write(stack, fd, &data)
            }
            Ext::Epoll {
                fd,
                events,
                timeout_ms,
            } => {
                let events = match epoll_bits(&events) {
                    Ok(e) => e,
                    Err(e) => return self.answer(id, Err(e)),
                };
                // Registered at the first use; new events re-register (EPOLL_CTL_MOD), which
                // re-arms an edge-triggered one.
                let reg = self.epolls.entry(fd).or_insert((events, 0));
                if reg.0 != events {
                    *reg = (events, 0);
                }
                let until_ns = realtime_ns() as u128 + u128::from(timeout_ms) * 1_000_000;
                return self.park(stack, id, fd, Wait::Epoll { events, until_ns });
            }
            Ext::Recv { fd, max, flags } => {
                let has = |f: &str| flags.iter().any(|x| x == f);
                return self.read(stack, id, fd, max, has("MSG_PEEK"), has("MSG_DONTWAIT"));
            }
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
        self.alias.insert(fd, fd);
        fd
    }

    /// The socket an fd refers to.
    fn get(&self, fd: Fd) -> Option<&Desc> {
        self.fds.get(self.alias.get(&fd)?)
    }

    fn get_mut(&mut self, fd: Fd) -> Option<&mut Desc> {
        let key = *self.alias.get(&fd)?;
        self.fds.get_mut(&key)
    }

    /// The key in `fds` of the socket behind `fd`.
    fn key(&self, fd: Fd) -> Result<Fd, Error> {
        self.alias.get(&fd).copied().ok_or_else(|| ebadf(fd))
    }

    /// An open fd of the socket `key` (the lowest), for events.
    fn live_fd(&self, key: Fd) -> Option<Fd> {
        self.alias
            .iter()
            .find_map(|(&fd, &k)| (k == key).then_some(fd))
    }

    fn dup(&mut self, fd: Fd) -> Reply {
        let key = self.key(fd)?;
        let new = self.next_fd;
        self.next_fd += 1;
        self.alias.insert(new, key);
        Ok(json!(new))
    }

    fn fcntl(&mut self, fd: Fd, nonblock: Option<bool>) -> Reply {
        let opts = match self.get_mut(fd).ok_or_else(|| ebadf(fd))? {
            Desc::Fresh { opts, .. } | Desc::Listener { opts, .. } | Desc::Conn { opts, .. } => {
                opts
            }
        };
        match nonblock {
            Some(v) => {
                opts.nonblock = v;
                Ok(json!(0))
            }
            None => Ok(json!({"nonblock": opts.nonblock})),
        }
    }

    fn socket(&mut self, family: Family) -> Fd {
        self.alloc_fd(Desc::Fresh {
            family,
            bound: None,
            opts: Opts::default(),
        })
    }

    fn bind(&mut self, stack: &mut Stack, fd: Fd, addr: SocketAddr) -> Reply {
        let (family, reuseaddr) = match self.get(fd).ok_or_else(|| ebadf(fd))? {
            Desc::Fresh {
                family,
                bound: None,
                opts,
            } => (*family, opts.reuseaddr),
            _ => return Err(Error::new("EINVAL", "socket is already bound")),
        };
        let addr = check_family(family, addr)?;
        if addr.port() != 0 {
            let ep = listen_endpoint(addr);
            // As Linux's inet_csk_bind_conflict: a listener on the port always conflicts; a
            // connection (TIME_WAIT included) only without SO_REUSEADDR.
            let conn_uses = self.tracks.iter().any(|(&h, t)| {
                let s = stack.tcp(h);
                !matches!(s.state(), State::Closed | State::Listen)
                    && t.tuple.is_some_and(|(l, _)| {
                        l.port == ep.port && ep.addr.is_none_or(|a| a == l.addr)
                    })
            });
            if self.port_in_use(ep) || (conn_uses && !reuseaddr) {
                return Err(Error::new("EADDRINUSE", "address already in use"));
            }
        }
        if let Some(Desc::Fresh { bound, .. }) = self.get_mut(fd) {
            *bound = Some(addr);
        }
        Ok(json!(0))
    }

    fn listen(&mut self, stack: &mut Stack, fd: Fd, backlog: usize) -> Reply {
        let backlog = backlog.max(1);
        let key = self.key(fd)?;
        let (bound, opts) = match self.get_mut(fd).ok_or_else(|| ebadf(fd))? {
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
            key,
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
        self.tracks.insert(handle, Track::new());
        handle
    }

    /// Starts a connect; `Ok(true)` when it is to block until the handshake's end, `Ok(false)`
    /// when the reply is `EINPROGRESS` (non-blocking), or the fd's earlier non-blocking
    /// connect has completed (0).
    fn connect(&mut self, stack: &mut Stack, fd: Fd, addr: SocketAddr) -> Result<bool, Error> {
        let key = self.key(fd)?;
        let (family, bound, opts) = match self.get_mut(fd).ok_or_else(|| ebadf(fd))? {
            Desc::Fresh {
                family,
                bound,
                opts,
            } => (*family, *bound, *opts),
            Desc::Conn {
                handle, connecting, ..
            } => {
                let handle = *handle;
                if !*connecting {
                    return Err(Error::new("EISCONN", "socket is already connected"));
                }
                // A non-blocking connect in progress, as Linux's inet_stream_connect answers.
                return match stack.tcp(handle).state() {
                    State::SynSent | State::SynReceived => {
                        Err(Error::new("EALREADY", "connection already in progress"))
                    }
                    State::Closed => {
                        *connecting = false;
                        let e = self
                            .tracks
                            .get_mut(&handle)
                            .and_then(Track::take_error)
                            .unwrap_or("ECONNREFUSED");
                        Err(errno_error(e))
                    }
                    _ => {
                        *connecting = false;
                        Ok(false)
                    }
                };
            }
            Desc::Listener { .. } => return Err(Error::new("EINVAL", "socket is listening")),
        };
        let addr = check_family(family, addr)?;
        let mut local = bound.map(listen_endpoint).unwrap_or_default();
        if local.port == 0 {
            local.port = self.ephemeral_port(stack);
        }
        // The 4-tuple of a connection the stack still has (TIME_WAIT, say) is not free: Linux's
        // __inet_check_established without tw_reuse. smoltcp would run two sockets on it.
        let taken = self.tracks.iter().any(|(&h, t)| {
            !matches!(stack.tcp(h).state(), State::Closed | State::Listen)
                && t.tuple.is_some_and(|(l, r)| {
                    l.port == local.port
                        && local.addr.is_none_or(|a| a == l.addr)
                        && r == IpEndpoint::from(addr)
                })
        });
        if taken {
            return Err(Error::new(
                "EADDRNOTAVAIL",
                "that 4-tuple is still in use (TIME_WAIT)",
            ));
        }
        let handle = self.new_socket(stack, opts);
        if let Err(e) = stack.connect(handle, addr.into(), local) {
            self.tracks.remove(&handle);
            stack.remove(handle);
            return Err(e);
        }
        self.fds.insert(
            key,
            Desc::Conn {
                handle,
                shut_wr: false,
                shut_rd: false,
                connecting: opts.nonblock,
                readable_sent: false,
                opts,
            },
        );
        if opts.nonblock {
            return Err(Error::new("EINPROGRESS", "operation now in progress"));
        }
        Ok(true)
    }

    fn write(&mut self, stack: &mut Stack, fd: Fd, data: &[u8]) -> Reply {
        let (handle, shut_wr, opts) = match self.get(fd).ok_or_else(|| ebadf(fd))? {
            Desc::Conn {
                handle,
                shut_wr,
                opts,
                ..
            } => (*handle, *shut_wr, *opts),
            _ => return Err(enotconn()),
        };
        let track = self
            .tracks
            .get_mut(&handle)
            .expect("a connection is tracked");
        // The pending error first, also after shutdown(SHUT_WR): Linux's sk_stream_error()
        // reports sock_error() before EPIPE.
        if let Some(e) = track.take_error() {
            return Err(errno_error(e));
        }
        if shut_wr {
            return Err(Error::new("EPIPE", "socket is shut down for writing"));
        }
        if track.reset {
            return Err(Error::new("EPIPE", "connection was reset"));
        }
        let socket = stack.tcp(handle);
        match socket.state() {
            State::SynSent | State::SynReceived if opts.nonblock => {
                return Err(Error::new(
                    "EAGAIN",
                    "the connection is not established yet",
                ))
            }
            State::SynSent | State::SynReceived => return Err(enotconn()),
            _ if !socket.may_send() => {
                return Err(Error::new("EPIPE", "connection is closed for sending"))
            }
            _ => {}
        }
        // How much the socket may still take: its SO_SNDBUF (doubled, as Linux doubles it)
        // or smoltcp's own buffer, less what it holds.
        let cap = opts.sndbuf.unwrap_or(socket.send_capacity());
        let held = socket.send_queue() + track.txq.len();
        let take = data.len().min(cap.saturating_sub(held));
        if take == 0 && !data.is_empty() {
            return Err(Error::new("EAGAIN", "send buffer is full"));
        }
        let data = &data[..take];
        let mut n = 0;
        if track.txq.is_empty() {
            n = socket
                .send_slice(data)
                .map_err(|_| Error::new("EPIPE", "connection is closed for sending"))?;
        }
        track.txq.extend(&data[n..]);
        Ok(json!(take))
    }

    fn shutdown(&mut self, stack: &mut Stack, fd: Fd, how: &str) -> Reply {
        let (handle, shut_wr, shut_rd) = match self.get_mut(fd).ok_or_else(|| ebadf(fd))? {
            Desc::Conn {
                handle,
                shut_wr,
                shut_rd,
                ..
            } => (*handle, shut_wr, shut_rd),
            _ => return Err(enotconn()),
        };
        let (rd, wr) = match how {
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
        let socket = stack.tcp(handle);
        if matches!(socket.state(), State::SynSent | State::Closed) {
            return Err(enotconn());
        }
        // SHUT_RD is the socket layer's: later reads see EOF once the buffer is empty, and
        // nothing goes on the wire (Linux still ACKs and queues what arrives; so does smoltcp).
        *shut_rd |= rd;
        if wr && !*shut_wr {
            *shut_wr = true;
            let track = self.tracks.get_mut(&handle).expect("tracked");
            // smoltcp's close() is a half-close: it queues a FIN and keeps receiving. Data
            // still waiting in the agent's part of the send buffer goes first.
            if track.txq.is_empty() {
                socket.close();
            } else {
                track.fin_pending = true;
            }
        }
        Ok(json!(0))
    }

    /// Closes an fd; the socket goes when its last fd does. `Some(wait)`: close() blocks
    /// (SO_LINGER with a timeout) and is answered later.
    fn close(&mut self, stack: &mut Stack, fd: Fd) -> Result<Option<Wait>, Error> {
        let key = self.alias.remove(&fd).ok_or_else(|| ebadf(fd))?;
        if self.alias.values().any(|&k| k == key) {
            return Ok(None); // a dup of it is still open
        }
        match self.fds.remove(&key).expect("an fd's socket exists") {
            Desc::Fresh { .. } => {}
            Desc::Listener {
                listening, queue, ..
            } => {
                // Connections nobody accepted are aborted (RST), as Linux does.
                for handle in listening.into_iter().chain(queue) {
                    self.orphan(stack, handle, true);
                }
            }
            Desc::Conn { handle, opts, .. } => {
                self.orphan(stack, handle, opts.linger0);
                if let (Some(secs), false) = (opts.linger_secs, opts.linger0) {
                    // Linux's tcp_close() → sk_stream_wait_close(): whatever O_NONBLOCK says,
                    // close() waits until the FIN is acknowledged or the time is up, and
                    // returns 0 either way; the connection lives on as an orphan.
                    let until_ns = realtime_ns() as u128 + u128::from(secs) * 1_000_000_000;
                    return Ok(Some(Wait::Linger { handle, until_ns }));
                }
            }
        }
        Ok(None)
    }

    /// Hands a socket over to the stack for the rest of its life.
    fn orphan(&mut self, stack: &mut Stack, handle: SocketHandle, abort: bool) {
        let socket = stack.tcp(handle);
        let state = socket.state();
        let track = self
            .tracks
            .get_mut(&handle)
            .expect("every socket is tracked");
        if abort {
            socket.abort();
            track.txq.clear();
            track.fin_pending = false;
        } else if track.txq.is_empty() {
            socket.close();
        } else {
            track.fin_pending = true;
        }
        track.orphan = true;
        // close() in SYN-SENT/LISTEN also goes straight to CLOSED: our doing, not a reset.
        track.local_abort = abort || matches!(state, State::SynSent | State::Listen);
    }

    fn opts_of(&mut self, fd: Fd) -> Result<(&mut Opts, Option<SocketHandle>), Error> {
        Ok(match self.get_mut(fd).ok_or_else(|| ebadf(fd))? {
            Desc::Fresh { opts, .. } => (opts, None),
            Desc::Listener {
                opts, listening, ..
            } => (opts, *listening),
            Desc::Conn { opts, handle, .. } => (opts, Some(*handle)),
        })
    }

    fn setsockopt(&mut self, stack: &mut Stack, fd: Fd, opt: SockOpt) -> Reply {
        let (opts, handle) = self.opts_of(fd)?;
        match opt {
            SockOpt::Linger { on: true, secs: 0 } => {
                opts.linger0 = true;
                opts.linger_secs = None;
            }
            SockOpt::Linger { on: false, .. } => {
                opts.linger0 = false;
                opts.linger_secs = None;
            }
            SockOpt::Linger { on: true, secs } => {
                opts.linger0 = false;
                opts.linger_secs = Some(secs);
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

    fn setsockopt_ext(&mut self, stack: &mut Stack, fd: Fd, opt: ExtOpt) -> Reply {
        let (opts, handle) = self.opts_of(fd)?;
        match opt {
            ExtOpt::ReuseAddr(v) => opts.reuseaddr = v,
            // Linux doubles the value and keeps at least SOCK_MIN_SNDBUF (4608 here).
            ExtOpt::SndBuf(v) => {
                opts.sndbuf = Some((v.min(1 << 30) as usize * 2).max(4608));
            }
            ExtOpt::RcvTimeo(ms) => opts.rcvtimeo_ms = Some(ms),
            ExtOpt::UserTimeout(ms) => opts.user_timeout_ms = (ms > 0).then_some(ms),
        }
        let opts = *opts;
        if let Some(handle) = handle {
            apply_opts(stack.tcp(handle), opts);
        }
        Ok(json!(0))
    }

    /// The state of the connection with that 4-tuple, orphans included, and its pending
    /// timer as smoltcp has it.
    fn state_of(&mut self, stack: &mut Stack, local: SocketAddr, remote: SocketAddr) -> Value {
        let want = (
            IpEndpoint::from(unmap(local)),
            IpEndpoint::from(unmap(remote)),
        );
        let now = stack.now();
        for (&handle, track) in &self.tracks {
            let socket = stack.tcp(handle);
            let state = socket.state();
            if track.tuple == Some(want) && !matches!(state, State::Closed | State::Listen) {
                let mut v = json!({"state": state_name(state).unwrap_or("CLOSED")});
                if let Some((name, at)) = crate::timer::pending(socket) {
                    v["timer"] = json!(name);
                    let left = if at > now {
                        (at - now).total_millis()
                    } else {
                        0
                    };
                    v["expires_ms"] = json!(left);
                }
                return v;
            }
        }
        json!({"state": "CLOSED"})
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
        let check = match (&wait, self.get(fd)) {
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

    /// Parks the reply of a close() whose fd is already gone (a lingering close).
    fn park_closed(&mut self, stack: &mut Stack, id: u64, fd: Fd, wait: Wait) {
        self.pending.push(Pending { id, fd, wait });
        self.complete_pending(stack);
    }

    /// read() or recv(): blocks until data or EOF, up to SO_RCVTIMEO; at once when the fd
    /// is non-blocking or MSG_DONTWAIT says so.
    fn read(&mut self, stack: &mut Stack, id: u64, fd: Fd, max: usize, peek: bool, dontwait: bool) {
        let opts = match self.get(fd) {
            Some(Desc::Conn { opts, .. }) => *opts,
            _ => Opts::default(),
        };
        let now = realtime_ns() as u128;
        let until_ns = match (dontwait || opts.nonblock, opts.rcvtimeo_ms) {
            (true, _) => Some(now),
            (false, Some(ms)) => Some(now + u128::from(ms) * 1_000_000),
            (false, None) => None,
        };
        self.park(
            stack,
            id,
            fd,
            Wait::Read {
                max,
                peek,
                until_ns,
            },
        );
    }

    // ---- After every stack step ----

    /// `egress`: the step was a transmit round (where smoltcp's timers act), not a frame in.
    pub fn sweep(&mut self, stack: &mut Stack, egress: bool) {
        for seg in stack.take_sent() {
            self.log.record(seg);
        }
        self.track_states(stack, egress);
        self.feed_send_queues(stack);
        self.refill_listeners(stack);
        self.notify_readable(stack);
        self.complete_pending(stack);
        self.reap_orphans(stack);
    }

    fn fd_of(&self, handle: SocketHandle) -> Option<Fd> {
        let key = self.fds.iter().find_map(|(&k, d)| {
            matches!(d, Desc::Conn { handle: h, .. } if *h == handle).then_some(k)
        })?;
        self.live_fd(key)
    }

    fn track_states(&mut self, stack: &mut Stack, egress: bool) {
        let handles: Vec<_> = self.tracks.keys().copied().collect();
        for handle in handles {
            let socket = stack.tcp(handle);
            let (now, local, remote) = (
                socket.state(),
                socket.local_endpoint(),
                socket.remote_endpoint(),
            );
            let user_timeout = socket.timeout().is_some();
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
            // LAST_ACK → CLOSED is the FIN's ACK, or an RST: smoltcp's SND.UNA tells them
            // apart (an RST leaves the FIN unacknowledged).
            let reset_in_last_ack = was == State::LastAck
                && now == State::Closed
                && !track.local_abort
                && crate::inner::read(stack.tcp(handle)).is_some_and(|i| i.snd_nxt != i.snd_una);
            let track = self.tracks.get_mut(&handle).expect("tracked");
            let ended = ended_by_peer(was, now, track.local_abort) || reset_in_last_ack;
            // smoltcp closes a connection by itself in two places: on an RST (a frame in)
            // and when its user timeout runs out (a transmit round, which then sends an RST).
            let timed_out = ended && egress && user_timeout;
            let reset = ended && !timed_out && was != State::SynSent;
            if ended {
                track.reset |= was != State::SynSent;
                // Linux's tcp_reset(): ECONNREFUSED in SYN_SENT, EPIPE in CLOSE_WAIT,
                // ECONNRESET otherwise; tcp_write_err(): ETIMEDOUT.
                track.error = Some(match was {
                    _ if timed_out => "ETIMEDOUT",
                    State::SynSent => "ECONNREFUSED",
                    State::CloseWait => "EPIPE",
                    _ => "ECONNRESET",
                });
                track.txq.clear();
                track.fin_pending = false;
            }
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

    /// Moves data waiting in the agent's part of a send buffer into smoltcp's as room frees,
    /// and queues the FIN behind the last of it.
    fn feed_send_queues(&mut self, stack: &mut Stack) {
        for (&handle, track) in self.tracks.iter_mut() {
            if track.txq.is_empty() && !track.fin_pending {
                continue;
            }
            let socket = stack.tcp(handle);
            if !track.txq.is_empty() {
                let n = socket.send_slice(track.txq.make_contiguous()).unwrap_or(0);
                track.txq.drain(..n);
            }
            if track.txq.is_empty() && track.fin_pending {
                track.fin_pending = false;
                socket.close();
            }
        }
    }

    /// Moves handshaken connections to the accept queue and keeps one socket listening.
    fn refill_listeners(&mut self, stack: &mut Stack) {
        let mut wanted = Vec::new();
        for (&key, desc) in self.fds.iter_mut() {
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
                wanted.push((key, *endpoint, *opts));
            }
        }
        for (key, endpoint, opts) in wanted {
            let handle = self.listen_socket(stack, endpoint, opts);
            if let Some(Desc::Listener { listening, .. }) = self.fds.get_mut(&key) {
                *listening = Some(handle);
            }
        }
    }

    fn notify_readable(&mut self, stack: &mut Stack) {
        let mut ready = Vec::new();
        for (&key, desc) in self.fds.iter_mut() {
            if let Desc::Conn {
                handle,
                readable_sent: sent @ false,
                ..
            } = desc
            {
                if readable(stack.tcp(*handle), &self.tracks[handle]) {
                    *sent = true;
                    ready.push(key);
                }
            }
        }
        for key in ready {
            if let Some(fd) = self.live_fd(key) {
                self.out.push(protocol::fd_event("readable", fd));
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
                Wait::Read {
                    max,
                    peek,
                    until_ns,
                } => self.try_read(stack, fd, max, peek, until_ns),
                Wait::Poll { events, until_ns } => self.try_poll(stack, fd, events, until_ns),
                Wait::Epoll { events, until_ns } => self.try_epoll(stack, fd, events, until_ns),
                Wait::Linger { handle, until_ns } => self.try_linger(stack, handle, until_ns),
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

    /// The soonest a parked call times out (ns of realtime), for the main loop's sleep.
    pub fn next_deadline_ns(&self) -> Option<u128> {
        self.pending
            .iter()
            .filter_map(|p| match p.wait {
                Wait::Poll { until_ns, .. }
                | Wait::Epoll { until_ns, .. }
                | Wait::Linger { until_ns, .. } => Some(until_ns),
                Wait::Read { until_ns, .. } => until_ns,
                _ => None,
            })
            .min()
    }

    /// The events a connection's descriptor is ready for, as Linux's tcp_poll() reports
    /// them: readable at EOF, writable once it can no longer send (the write fails at
    /// once), POLLRDHUP after the peer's FIN, POLLHUP when both directions are shut, and
    /// POLLERR while an error is pending.
    fn revents(&self, stack: &mut Stack, fd: Fd) -> Result<u32, Error> {
        let (handle, shut_wr, shut_rd, opts) = match self.get(fd).ok_or_else(|| ebadf(fd))? {
            Desc::Conn {
                handle,
                shut_wr,
                shut_rd,
                opts,
                ..
            } => (*handle, *shut_wr, *shut_rd, *opts),
            Desc::Listener { queue, .. } => return Ok(if queue.is_empty() { 0 } else { POLLIN }),
            Desc::Fresh { .. } => return Ok(POLLOUT | POLLHUP),
        };
        let track = &self.tracks[&handle];
        let socket = stack.tcp(handle);
        let err = if track.error.is_some() { POLLERR } else { 0 };
        if matches!(socket.state(), State::SynSent | State::SynReceived) {
            return Ok(err);
        }
        // A connect that failed (refused, timed out) is closed both ways (tcp_done()).
        let closed = track.reset || socket.state() == State::Closed;
        let rd_shut = closed || at_eof(socket) || !socket.may_recv() || shut_rd;
        let wr_shut = closed || shut_wr || !socket.may_send();
        let cap = opts.sndbuf.unwrap_or(socket.send_capacity());
        let room = socket.send_queue() + track.txq.len() < cap;
        let mut m = err;
        if socket.can_recv() || rd_shut {
            m |= POLLIN;
        }
        if rd_shut {
            m |= POLLRDHUP;
        }
        if wr_shut || (room && socket.may_send()) {
            m |= POLLOUT;
        }
        if rd_shut && wr_shut {
            m |= POLLHUP;
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

    /// epoll_wait() on the fd's own instance: the ready events (tcp_poll()'s, EPOLLERR and
    /// EPOLLHUP always); edge-triggered, only those not delivered since they became ready.
    fn try_epoll(
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
        let reg = self.epolls.entry(fd).or_insert((events, 0));
        let fired = if events & EPOLLET != 0 {
            reg.1 &= ready; // what is no longer ready may fire again when it comes back
            let new = ready & !reg.1;
            reg.1 |= new;
            new
        } else {
            ready
        };
        if fired == 0 && (realtime_ns() as u128) < until_ns {
            return None;
        }
        let names: Vec<_> = poll_names(fired)
            .into_iter()
            .map(|n| n.replacen("POLL", "EPOLL", 1))
            .collect();
        Some(Ok(json!({"events": names})))
    }

    /// A lingering close() returns once the FIN is acknowledged (the connection has left
    /// FIN_WAIT_1, CLOSING and LAST_ACK: Linux's sk_stream_closing()) or the time is up.
    fn try_linger(
        &mut self,
        stack: &mut Stack,
        handle: SocketHandle,
        until_ns: u128,
    ) -> Option<Reply> {
        let closing = match self.tracks.get(&handle) {
            None => false, // already gone
            Some(t) => {
                t.fin_pending
                    || matches!(
                        stack.tcp(handle).state(),
                        State::Established
                            | State::CloseWait
                            | State::FinWait1
                            | State::Closing
                            | State::LastAck
                    )
            }
        };
        if closing && (realtime_ns() as u128) < until_ns {
            return None;
        }
        Some(Ok(json!(0)))
    }

    fn ioctl(&mut self, stack: &mut Stack, fd: Fd, req: &str) -> Reply {
        let handle = match self.get(fd).ok_or_else(|| ebadf(fd))? {
            Desc::Conn { handle, .. } => *handle,
            _ => return Err(Error::new("EINVAL", "not a connected socket")),
        };
        let track = &self.tracks[&handle];
        let (queued, fin_pending) = (track.txq.len(), track.fin_pending);
        let socket = stack.tcp(handle);
        // Linux counts the FIN in write_seq once it is queued, until it is acknowledged:
        // SIOCOUTQ is write_seq − snd_una, SIOCOUTQNSD write_seq − snd_nxt.
        let fin = fin_pending
            || matches!(
                socket.state(),
                State::FinWait1 | State::Closing | State::LastAck
            );
        // smoltcp keeps written bytes in its buffer until they are acknowledged; the agent's
        // part of the send buffer holds only bytes never sent.
        let outq = socket.send_queue() + queued + usize::from(fin);
        match req {
            "siocinq" => Ok(json!(socket.recv_queue())),
            "siocoutq" => Ok(json!(outq)),
            "siocoutqnsd" => {
                let inner = crate::inner::read(socket)
                    .ok_or_else(|| Error::new("EIO", "cannot read smoltcp's sequence numbers"))?;
                let sent = inner.snd_nxt.wrapping_sub(inner.snd_una) as usize;
                Ok(json!(outq.saturating_sub(sent)))
            }
            other => Err(Error::new("ENOSYS", format!("unsupported ioctl `{other}`"))),
        }
    }

    fn getsockopt(&mut self, stack: &mut Stack, fd: Fd, opt: &str) -> Reply {
        match opt {
            "so_error" => {}
            "tcp_info" => return self.tcp_info(stack, fd),
            _ => return Err(Error::new("ENOSYS", format!("unsupported option `{opt}`"))),
        }
        let handle = match self.get(fd).ok_or_else(|| ebadf(fd))? {
            Desc::Conn { handle, .. } => *handle,
            _ => return Ok(json!({"error": null})),
        };
        let track = self
            .tracks
            .get_mut(&handle)
            .expect("a connection is tracked");
        Ok(json!({"error": track.take_error()}))
    }

    /// TCP_INFO: the fields of Linux's `struct tcp_info` the agent can fill truly, by their
    /// names without `tcpi_`: the socket's state (Linux's numbers; a connection that is in
    /// TIME_WAIT or gone leaves its socket CLOSE, as Linux's does), the segments in flight
    /// and the retransmissions of the oldest (counted from the agent's own frames), and the
    /// MSS and window scales the handshake settled.
    fn tcp_info(&mut self, stack: &mut Stack, fd: Fd) -> Reply {
        let handle = match self.get(fd).ok_or_else(|| ebadf(fd))? {
            Desc::Conn { handle, .. } => *handle,
            Desc::Listener { .. } => return Ok(json!({"state": 10})),
            Desc::Fresh { .. } => return Ok(json!({"state": 7})),
        };
        let track = &self.tracks[&handle];
        let (reset, tuple) = (track.reset, track.tuple);
        let socket = stack.tcp(handle);
        let state = match socket.state() {
            _ if reset => 7,
            State::Established => 1,
            State::SynSent => 2,
            State::SynReceived => 3,
            State::FinWait1 => 4,
            State::FinWait2 => 5,
            State::TimeWait | State::Closed => 7,
            State::CloseWait => 8,
            State::LastAck => 9,
            State::Listen => 10,
            State::Closing => 11,
        };
        if state == 7 {
            return Ok(json!({"state": 7, "unacked": 0, "retransmits": 0}));
        }
        let inner = crate::inner::read(socket)
            .ok_or_else(|| Error::new("EIO", "cannot read smoltcp's connection state"))?;
        let (unacked, retransmits) = match tuple {
            Some(t) => self.log.in_flight(t, inner.snd_una),
            None => (0, 0),
        };
        let mut info = json!({"state": state, "unacked": unacked, "retransmits": retransmits});
        if !matches!(socket.state(), State::SynSent | State::SynReceived) {
            // smoltcp's segments: the peer's MSS, at most what the 1500-byte link carries.
            let headers = match tuple.map(|(l, _)| l.addr) {
                Some(smoltcp::wire::IpAddress::Ipv6(_)) => 60,
                _ => 40,
            };
            info["snd_mss"] = json!(inner.remote_mss.min(1500 - headers));
            let mut options = 0;
            if let Some(scale) = inner.snd_wscale {
                info["snd_wscale"] = json!(scale);
                info["rcv_wscale"] = json!(inner.rcv_wscale);
                options |= 4; // TCPI_OPT_WSCALE
            }
            if inner.sack {
                options |= 2; // TCPI_OPT_SACK
            }
            // No TCPI_OPT_TIMESTAMPS: the agent gives smoltcp no timestamp generator.
            info["options"] = json!(options);
        }
        Ok(info)
    }

    /// `None` while still blocked.
    fn try_accept(&mut self, stack: &mut Stack, fd: Fd) -> Option<Reply> {
        let Some(Desc::Listener { queue, opts, .. }) = self.get_mut(fd) else {
            return Some(Err(ebadf(fd)));
        };
        let Some(handle) = queue.pop_front() else {
            return opts
                .nonblock
                .then(|| Err(Error::new("EAGAIN", "no connection to accept")));
        };
        let opts = Opts {
            nonblock: false, // accept() gives a blocking fd, as on Linux
            ..*opts
        };
        let conn = self.alloc_fd(Desc::Conn {
            handle,
            shut_wr: false,
            shut_rd: false,
            connecting: false,
            readable_sent: false,
            opts,
        });
        // A queue slot was freed; a listener at its backlog limit may listen again.
        self.refill_listeners(stack);
        Some(Ok(json!(conn)))
    }

    fn try_connect(&mut self, stack: &mut Stack, fd: Fd) -> Option<Reply> {
        let Some(Desc::Conn { handle, .. }) = self.get(fd) else {
            return Some(Err(ebadf(fd)));
        };
        let handle = *handle;
        match stack.tcp(handle).state() {
            State::SynSent | State::SynReceived => None,
            // Refused (an RST) or given up by the user timeout: the error, reported here.
            State::Closed => {
                let e = self
                    .tracks
                    .get_mut(&handle)
                    .and_then(Track::take_error)
                    .unwrap_or("ECONNREFUSED");
                Some(Err(errno_error(e)))
            }
            _ => Some(Ok(json!(0))),
        }
    }

    fn try_read(
        &mut self,
        stack: &mut Stack,
        fd: Fd,
        max: usize,
        peek: bool,
        until_ns: Option<u128>,
    ) -> Option<Reply> {
        let Some(Desc::Conn {
            handle, shut_rd, ..
        }) = self.get(fd)
        else {
            return Some(Err(ebadf(fd)));
        };
        let (handle, shut_rd) = (*handle, *shut_rd);
        let track = self
            .tracks
            .get_mut(&handle)
            .expect("a connection is tracked");
        let socket = stack.tcp(handle);
        let reply = if socket.can_recv() {
            let mut buf = vec![0; max.min(socket.recv_queue())];
            let n = match peek {
                true => socket.peek_slice(&mut buf).unwrap_or(0),
                false => socket.recv_slice(&mut buf).unwrap_or(0),
            };
            Ok(json!({"data": protocol::hex_encode(&buf[..n])}))
        } else if let Some(e) = track
            .error
            .filter(|_| !peek)
            .and_then(|_| track.take_error())
        {
            // Reported once, as Linux's sock_error() does; then the stream has ended.
            Err(errno_error(e))
        } else if track.reset || shut_rd {
            Ok(json!({"data": ""}))
        } else if !track.synced && socket.state() == State::Closed {
            Err(enotconn()) // a connect that failed
        } else if at_eof(socket) {
            Ok(json!({"data": ""}))
        } else if until_ns.is_some_and(|t| realtime_ns() as u128 >= t) {
            Err(Error::new(
                "EAGAIN",
                "no data (non-blocking, or SO_RCVTIMEO ran out)",
            ))
        } else {
            return None;
        };
        // Re-arm the readable event once everything buffered has been consumed.
        if !readable(socket, track) {
            if let Some(Desc::Conn { readable_sent, .. }) = self.get_mut(fd) {
                *readable_sent = false;
            }
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
            if let Some(tuple) = self.tracks.remove(&handle).and_then(|t| t.tuple) {
                self.log.forget(tuple);
            }
            stack.remove(handle);
        }
    }
}

fn apply_opts(socket: &mut tcp::Socket, opts: Opts) {
    socket.set_nagle_enabled(!opts.nodelay);
    socket.set_keep_alive(opts.keepalive_secs.map(Duration::from_secs));
    socket.set_timeout(opts.user_timeout_ms.map(Duration::from_millis));
}

/// `[::ffff:a.b.c.d]:p` as `a.b.c.d:p`: an IPv4-mapped address is IPv4 on the wire.
fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// The address a socket of `family` may use, unmapped: an IPv6 socket takes IPv4 through
/// `::ffff:` addresses (IPV6_V6ONLY off, Linux's default).
fn check_family(family: Family, addr: SocketAddr) -> Result<SocketAddr, Error> {
    let fits = match family {
        Family::Ipv4 => addr.is_ipv4(),
        Family::Ipv6 => addr.is_ipv6(),
    };
    if !fits {
        return Err(Error::new(
            "EAFNOSUPPORT",
            "address family does not match the socket",
        ));
    }
    Ok(unmap(addr))
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

const EPOLLET: u32 = 1 << 31;

/// epoll's names (the same bits as poll's, `EPOLLET` besides).
fn epoll_bits(names: &[String]) -> Result<u32, Error> {
    names.iter().try_fold(0, |acc, n| {
        if n == "EPOLLET" {
            return Ok(acc | EPOLLET);
        }
        match n
            .strip_prefix("E")
            .and_then(|p| POLL_NAMES.iter().find(|(k, _)| *k == p))
        {
            Some((_, v)) => Ok(acc | v),
            None => Err(Error::new("EINVAL", format!("unknown epoll event `{n}`"))),
        }
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
fn ended_by_peer(was: State, now: State, local_abort: bool) -> bool {
    use State::*;
    let open = matches!(
        was,
        SynSent | Established | FinWait1 | FinWait2 | CloseWait | Closing
    );
    !local_abort && now == Closed && open
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
