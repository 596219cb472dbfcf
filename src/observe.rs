//! Watching the SUT's TCP sockets through sock_diag.
//!
//! The system under test is the kernel of a private network namespace. [`Observer`] holds a
//! `NETLINK_SOCK_DIAG` socket opened inside that namespace and, on every sample, asks the
//! kernel for an `inet_diag` dump of all TCP sockets of both address families: listeners,
//! connected sockets, orphans, request sockets (`NEW_SYN_RECV`) and `TIME_WAIT` sockets. It
//! reports each one's state, addresses and pending timer.
//!
//! sock_diag is the source of truth rather than `TCP_INFO`: once a connection enters
//! `TIME_WAIT` the kernel moves it to a separate mini-socket, and `TCP_INFO` on the old fd
//! just says `CLOSE`.
//!
//! The requests are built and framed with `netlink-packet-sock-diag`/`netlink-packet-core`,
//! but each `inet_diag_msg` is decoded here from its raw bytes: the crate's parser throws
//! away `idiag_expires` for `TIME_WAIT` sockets, and the remaining TIME_WAIT time is exactly
//! what teardown scenarios want to check.
//!
//! Address conventions: an AF_INET6 socket carrying IPv4 (a dual-stack socket, addresses
//! `::ffff:a.b.c.d`) is reported with plain [`SocketAddr::V4`] addresses, so one lookup by
//! wire addresses finds it whichever socket family the SUT used; [`SockInfo::family`] still
//! says which family the socket itself has. IPv6 scope ids and flow labels are always 0.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NlasIterator, NLMSG_DONE, NLMSG_ERROR,
    NLM_F_DUMP, NLM_F_MULTIPART, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::{
    SockDiagMessage, AF_INET, AF_INET6, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NetlinkAddr};

use crate::Family;

/// A TCP state as the kernel numbers them (`include/net/tcp_states.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    /// A request socket: a SYN was received on a listener and answered, the handshake is
    /// not complete yet (the classic SYN_RECV, as Linux represents it since 4.4).
    NewSynRecv,
}

impl TcpState {
    /// All states, in kernel order (`ALL[i]` has kernel value `i + 1`).
    pub const ALL: [TcpState; 12] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
    ];

    /// The state for a kernel `sk_state` value (1..=12); `None` for anything else, such as
    /// `TCP_BOUND_INACTIVE` (13) of newer kernels.
    pub fn from_kernel(v: u8) -> Option<TcpState> {
        let index = usize::from(v).checked_sub(1)?;
        TcpState::ALL.get(index).copied()
    }

    /// The kernel value of this state.
    pub fn to_kernel(self) -> u8 {
        self as u8 + 1
    }

    /// The name `ss` and the kernel use, e.g. `FIN_WAIT_1`.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT_1",
            TcpState::FinWait2 => "FIN_WAIT_2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error of [`TcpState::from_str`]: the text named no TCP state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseTcpStateError(String);

impl fmt::Display for ParseTcpStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown TCP state `{}`; expected one of ", self.0)?;
        for (i, state) in TcpState::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{state}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseTcpStateError {}

impl FromStr for TcpState {
    type Err = ParseTcpStateError;

    /// Accepts the [`TcpState::name`]s case-insensitively. Underscores and dashes are
    /// ignored, so `FIN_WAIT1`, `FIN-WAIT-1` and `fin_wait_1` all work; no two names collide
    /// once separators are dropped.
    fn from_str(s: &str) -> Result<TcpState, ParseTcpStateError> {
        let key = squash(s);
        TcpState::ALL
            .into_iter()
            .find(|state| squash(state.name()) == key)
            .ok_or_else(|| ParseTcpStateError(s.to_string()))
    }
}

/// Upper-case `s` without `_`, `-` and surrounding blanks.
fn squash(s: &str) -> String {
    s.trim()
        .chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Which timer the kernel says is pending (`idiag_timer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerKind {
    None,
    /// Retransmission (also RACK reordering and tail loss probe timers, and the SYN-ACK
    /// timer of a `NEW_SYN_RECV` request socket).
    Retransmit,
    /// `sk_timer`: keepalive, but also the FIN_WAIT_2 timeout of an orphan the kernel keeps
    /// as a full socket, e.g. when `tcp_fin_timeout` exceeds 60 s (it reuses this timer).
    KeepAlive,
    /// A `TIME_WAIT` mini-socket's timer. Orphans that reach FIN_WAIT_2 become such
    /// mini-sockets too, so this also appears with state `FIN_WAIT_2`.
    TimeWait,
    /// Zero-window probe.
    Probe,
    Other(u8),
}

impl TimerKind {
    /// The kind for a raw `idiag_timer` value.
    pub fn from_kernel(v: u8) -> TimerKind {
        match v {
            0 => TimerKind::None,
            1 => TimerKind::Retransmit,
            2 => TimerKind::KeepAlive,
            3 => TimerKind::TimeWait,
            4 => TimerKind::Probe,
            other => TimerKind::Other(other),
        }
    }
}

impl fmt::Display for TimerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimerKind::None => f.write_str("none"),
            TimerKind::Retransmit => f.write_str("retransmit"),
            TimerKind::KeepAlive => f.write_str("keepalive"),
            TimerKind::TimeWait => f.write_str("time_wait"),
            TimerKind::Probe => f.write_str("probe"),
            TimerKind::Other(v) => write!(f, "timer#{v}"),
        }
    }
}

/// Directions the socket has shut down (`sk_shutdown`, from `INET_DIAG_SHUTDOWN`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ShutdownFlags {
    /// `RCV_SHUTDOWN`: `shutdown(SHUT_RD)`, a FIN was received, or the socket was closed.
    pub read: bool,
    /// `SEND_SHUTDOWN`: `shutdown(SHUT_WR)` or close; our FIN is queued or sent.
    pub write: bool,
}

/// One TCP socket as sock_diag reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SockInfo {
    pub state: TcpState,
    /// Local address; IPv4 for an AF_INET6 socket carrying IPv4 (see the module docs).
    pub local: SocketAddr,
    /// Remote address; the unspecified address with port 0 for listeners.
    pub remote: SocketAddr,
    pub timer: TimerKind,
    /// Time left on `timer` (`idiag_expires`, millisecond resolution); zero when no timer
    /// is pending or it is already overdue.
    pub expires: Duration,
    /// Retransmissions so far (for `Probe`/`KeepAlive`: probes sent; for `NEW_SYN_RECV`:
    /// SYN-ACK retransmissions).
    pub retransmits: u8,
    /// Unread bytes; for a listener, the accept queue length.
    pub recv_q: u32,
    /// Unacknowledged bytes; for a listener, the backlog.
    pub send_q: u32,
    /// The socket's inode; 0 for orphans, `TIME_WAIT` and request sockets.
    pub inode: u32,
    /// The family of the socket itself (`V6` for a dual-stack socket with IPv4 addresses).
    pub family: Family,
    /// Kernel socket cookie: tells apart two sockets that had the same addresses.
    pub cookie: u64,
    /// `None` for `TIME_WAIT` and request sockets, which the kernel reports without it.
    pub shutdown: Option<ShutdownFlags>,
}

impl fmt::Display for SockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.state, self.local, self.remote)?;
        if self.timer != TimerKind::None {
            write!(f, " timer={}({}ms)", self.timer, self.expires.as_millis())?;
        }
        Ok(())
    }
}

/// States to dump: every bit 1..=12. Bit 13 (`TCP_BOUND_INACTIVE`, Linux 6.8+) is left out
/// on purpose: it would add sockets that are merely bound, which are no connection.
const ALL_STATES: u32 = 0x1ffe;

/// Receive buffer. The kernel never builds a dump part larger than 32 KiB, so one part
/// always fits and `MSG_TRUNC` should never be seen.
const RECV_BUF_LEN: usize = 64 * 1024;

/// How long one `recv` may block before the sample is given up as hung.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// Watches every TCP socket of one network namespace.
///
/// The methods take `&self` and may be called from several threads; samples are then taken
/// one after the other.
///
/// Cost: the kernel answers a dump by walking its whole established-socket hash table once
/// per family. A namespace sharing the global table (the default; 262144 buckets on the
/// development machine) costs about 0.55 ms per [`Observer::sockets`]; one created while
/// its parent namespace had `net.ipv4.tcp_child_ehash_entries=1024` costs about 35 µs.
pub struct Observer {
    socket: Socket,
    exchange: Mutex<Exchange>,
}

/// Per-request state, reused across samples.
struct Exchange {
    buf: Vec<u8>,
    seq: u32,
    /// A previous exchange stopped before `NLMSG_DONE`; its leftovers must be read first,
    /// or the kernel refuses the next dump with `EBUSY`.
    dirty: bool,
}

impl Observer {
    /// Opens the sock_diag socket in the caller thread's current network namespace (the
    /// harness calls this on a thread that has `setns()`'d into the SUT netns). The socket
    /// stays bound to that namespace, and the observer may be used from any thread.
    pub fn new() -> io::Result<Observer> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&NetlinkAddr::new(0, 0))?;
        set_recv_timeout(&socket, RECV_TIMEOUT)?;
        let exchange = Exchange {
            buf: vec![0; RECV_BUF_LEN],
            seq: 0,
            dirty: false,
        };
        Ok(Observer {
            socket,
            exchange: Mutex::new(exchange),
        })
    }

    /// Every TCP socket of both families, all states.
    pub fn sockets(&self) -> io::Result<Vec<SockInfo>> {
        let mut exchange = self.lock();
        let mut out = Vec::new();
        for family in [AF_INET, AF_INET6] {
            self.dump(&mut exchange, family, &mut out)?;
        }
        Ok(out)
    }

    /// The socket of one connection: the one whose local and remote address and port equal
    /// `local` and `remote` (v4-mapped IPv6 addresses match their IPv4 form). Listeners are
    /// never returned. `None` means CLOSED: the kernel has no socket for it.
    pub fn connection(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> io::Result<Option<SockInfo>> {
        let (local, remote) = (canonical(local), canonical(remote));
        // One lookup in the kernel's hash tables: a dump walks every bucket of the host's
        // established table (262144 here, ~6 ms a sample), on the step's time.
        match self.lookup(local, remote) {
            Ok(found) => return Ok(found),
            Err(e) => tracing::debug!("sock_diag lookup failed ({e}); dumping instead"),
        }
        let found = self
            .sockets()?
            .into_iter()
            .filter(|s| s.state != TcpState::Listen && s.local == local && s.remote == remote)
            // While a reused 4-tuple replaces a TIME_WAIT socket, prefer the live one.
            .min_by_key(|s| s.state == TcpState::TimeWait);
        Ok(found)
    }

    /// The socket of an exact 4-tuple (TIME_WAIT included), by the kernel's own lookup; a
    /// listener on the local port, which the lookup falls back to, counts as no socket.
    fn lookup(&self, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<SockInfo>> {
        let mut ex = self.lock();
        if ex.dirty {
            self.drain(&mut ex);
        }
        ex.seq = ex.seq.wrapping_add(1);
        let request = lookup_request(local, remote, ex.seq);
        ex.dirty = true;
        self.socket.send(&request, 0)?;
        let mut out = Vec::new();
        loop {
            let len = self.recv(&mut ex.buf)?;
            match walk_datagram(&ex.buf[..len], ex.seq, &mut out) {
                Ok(false) => continue,
                Ok(true) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
                Err(e) => {
                    ex.dirty = false;
                    return Err(e);
                }
            }
        }
        ex.dirty = false;
        Ok(out
            .into_iter()
            .find(|s| s.state != TcpState::Listen && s.local == local && s.remote == remote))
    }

    fn lock(&self) -> MutexGuard<'_, Exchange> {
        // A panic elsewhere while sampling leaves nothing half-updated that `dirty` does
        // not already cover, so a poisoned lock is still usable.
        self.exchange.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One dump request for `family`, appending the sockets found to `out`.
    fn dump(&self, ex: &mut Exchange, family: u8, out: &mut Vec<SockInfo>) -> io::Result<()> {
        if ex.dirty {
            self.drain(ex);
        }
        ex.seq = ex.seq.wrapping_add(1);
        let request = dump_request(family, ex.seq);
        ex.dirty = true;
        self.socket.send(&request, 0)?;
        loop {
            let len = self.recv(&mut ex.buf)?;
            if walk_datagram(&ex.buf[..len], ex.seq, out)? {
                ex.dirty = false;
                return Ok(());
            }
        }
    }

    /// Reads one datagram into `buf`, returning its length.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // MSG_TRUNC makes recv return the real datagram length, so truncation shows.
            match self.socket.recv(&mut &mut buf[..], libc::MSG_TRUNC) {
                Ok(len) if len > buf.len() => {
                    return Err(invalid(format!("sock_diag reply truncated: {len} bytes")))
                }
                Ok(len) => return Ok(len),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Throws away whatever an aborted exchange left. Each read lets the kernel queue the
    /// next part of a pending dump, so an empty queue means the dump is over.
    fn drain(&self, ex: &mut Exchange) {
        // Bounded in case the kernel keeps answering; the sequence check catches the rest.
        for _ in 0..10_000 {
            let flags = libc::MSG_DONTWAIT | libc::MSG_TRUNC;
            match self.socket.recv(&mut &mut ex.buf[..], flags) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        ex.dirty = false;
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use std::os::fd::AsRawFd;
        f.debug_struct("Observer")
            .field("fd", &self.socket.as_raw_fd())
            .finish()
    }
}

/// Bounds how long a `recv` on `socket` may block.
fn set_recv_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid fd and a timeval that outlives the call, with its true size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The bytes of an `inet_diag_req_v2` request for the one TCP socket of a 4-tuple.
fn lookup_request(local: SocketAddr, remote: SocketAddr, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    header.sequence_number = seq;
    let family = if local.is_ipv4() { AF_INET } else { AF_INET6 };
    let request = InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states: StateFlags::from_bits_retain(ALL_STATES),
        socket_id: SocketId {
            source_port: local.port(),
            destination_port: remote.port(),
            source_address: local.ip(),
            destination_address: remote.ip(),
            interface_id: 0,
            // All ones: no cookie to check.
            cookie: [0xff; 8],
        },
    };
    let mut message = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    bytes
}

/// The bytes of an `inet_diag_req_v2` dump request for all TCP sockets of `family`.
fn dump_request(family: u8, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    let request = InetRequest {
        family,
        protocol: IPPROTO_TCP,
        // No extensions: the fixed part plus the always-sent shutdown attribute is all we
        // read, and asking for tcp_info would make every sample dearer.
        extensions: ExtensionFlags::empty(),
        states: StateFlags::from_bits_retain(ALL_STATES),
        socket_id,
    };
    let mut message = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    bytes
}

/// Decodes the netlink messages of one datagram, appending sockets of the current request
/// (`seq`) to `out`. Returns whether the request is complete.
fn walk_datagram(mut rest: &[u8], seq: u32, out: &mut Vec<SockInfo>) -> io::Result<bool> {
    let mut complete = false;
    while !rest.is_empty() {
        let message = NetlinkBuffer::new_checked(rest)
            .map_err(|e| invalid(format!("bad netlink message: {e}")))?;
        let len = message.length() as usize;
        // Stale replies of an aborted earlier request carry another sequence number.
        if message.sequence_number() == seq {
            match message.message_type() {
                NLMSG_DONE => return done_status(message.payload()).map(|()| true),
                NLMSG_ERROR => return error_status(message.payload()).map(|()| true),
                SOCK_DIAG_BY_FAMILY => {
                    out.extend(parse_inet_diag_msg(message.payload())?);
                    // Only dump replies are multipart; a lone reply is the whole answer.
                    complete |= message.flags() & NLM_F_MULTIPART == 0;
                }
                _ => {} // NLMSG_NOOP and the like carry nothing for us.
            }
        }
        let step = align4(len).min(rest.len());
        rest = &rest[step..];
    }
    Ok(complete)
}

/// The status an `NLMSG_DONE` carries: a negative errno if the dump failed part-way.
fn done_status(payload: &[u8]) -> io::Result<()> {
    match read_i32(payload, 0) {
        Some(code) if code < 0 => Err(io::Error::from_raw_os_error(-code)),
        _ => Ok(()),
    }
}

/// The status of an `NLMSG_ERROR`: 0 is an acknowledgement, else a negative errno.
fn error_status(payload: &[u8]) -> io::Result<()> {
    match read_i32(payload, 0) {
        Some(0) => Ok(()),
        Some(code) => Err(io::Error::from_raw_os_error(code.saturating_neg())),
        None => Err(invalid("short NLMSG_ERROR from sock_diag".to_string())),
    }
}

/// Byte offsets inside `struct inet_diag_msg` (`include/uapi/linux/inet_diag.h`).
mod msg {
    pub const FAMILY: usize = 0;
    pub const STATE: usize = 1;
    pub const TIMER: usize = 2;
    pub const RETRANS: usize = 3;
    /// `inet_diag_sockid`: ports and addresses in network byte order.
    pub const SPORT: usize = 4;
    pub const DPORT: usize = 6;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
    pub const COOKIE: usize = 44;
    /// The rest is in host byte order.
    pub const EXPIRES: usize = 52;
    pub const RQUEUE: usize = 56;
    pub const WQUEUE: usize = 60;
    pub const INODE: usize = 68;
    pub const LEN: usize = 72;
    /// `INET_DIAG_SHUTDOWN`, a u8 attribute after the fixed part.
    pub const ATTR_SHUTDOWN: u16 = 8;
}

/// Decodes one `inet_diag_msg` and its attributes. `Ok(None)` for a socket this module does
/// not model (an unknown state or family), so a newer kernel does not break sampling.
fn parse_inet_diag_msg(p: &[u8]) -> io::Result<Option<SockInfo>> {
    if p.len() < msg::LEN {
        return Err(invalid(format!("inet_diag_msg of {} bytes", p.len())));
    }
    let family = match p[msg::FAMILY] {
        AF_INET => Family::V4,
        AF_INET6 => Family::V6,
        _ => return Ok(None),
    };
    let Some(state) = TcpState::from_kernel(p[msg::STATE]) else {
        return Ok(None);
    };
    let sport = u16::from_be_bytes([p[msg::SPORT], p[msg::SPORT + 1]]);
    let dport = u16::from_be_bytes([p[msg::DPORT], p[msg::DPORT + 1]]);
    let cookie_lo = u64::from(ne_u32(p, msg::COOKIE));
    let cookie_hi = u64::from(ne_u32(p, msg::COOKIE + 4));
    Ok(Some(SockInfo {
        state,
        local: socket_addr(family, &p[msg::SRC..msg::SRC + 16], sport),
        remote: socket_addr(family, &p[msg::DST..msg::DST + 16], dport),
        timer: TimerKind::from_kernel(p[msg::TIMER]),
        expires: Duration::from_millis(u64::from(ne_u32(p, msg::EXPIRES))),
        retransmits: p[msg::RETRANS],
        recv_q: ne_u32(p, msg::RQUEUE),
        send_q: ne_u32(p, msg::WQUEUE),
        inode: ne_u32(p, msg::INODE),
        family,
        cookie: cookie_hi << 32 | cookie_lo,
        shutdown: shutdown_attr(&p[msg::LEN..]),
    }))
}

/// The `INET_DIAG_SHUTDOWN` attribute among `attrs`, if the kernel sent it.
fn shutdown_attr(attrs: &[u8]) -> Option<ShutdownFlags> {
    // A malformed attribute only costs this optional field, not the whole sample.
    let attr = NlasIterator::new(attrs)
        .map_while(Result::ok)
        .find(|a| a.kind() == msg::ATTR_SHUTDOWN)?;
    let bits = *attr.value().first()?;
    Some(ShutdownFlags {
        read: bits & 1 != 0,
        write: bits & 2 != 0,
    })
}

/// A socket address from a 16-byte `idiag_src`/`idiag_dst` field and a port.
fn socket_addr(family: Family, field: &[u8], port: u16) -> SocketAddr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&field[..16]);
    let ip = match family {
        // IPv4 sockets use the first four bytes only.
        Family::V4 | Family::V4Mapped => {
            IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))
        }
        Family::V6 => IpAddr::V6(Ipv6Addr::from(octets)),
    };
    canonical(SocketAddr::new(ip, port))
}

/// The form [`SockInfo`] uses: v4-mapped IPv6 as IPv4, no IPv6 flow label or scope.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => addr,
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0)),
        },
    }
}

/// A host-order u32 at `at`; the caller has checked the length.
fn ne_u32(p: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

fn read_i32(p: &[u8], at: usize) -> Option<i32> {
    let bytes = p.get(at..at + 4)?;
    Some(i32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sched::{unshare, CloneFlags};
    use nix::sys::socket::{setsockopt, sockopt};
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Instant;

    /// Runs `f` on a fresh thread inside a private network namespace with `lo` up, so no
    /// test traffic can leave it.
    fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let worker = std::thread::spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET); run as root");
            lo_up().expect("bringing lo up");
            f()
        });
        match worker.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Sets IFF_UP on `lo` of the current thread's network namespace.
    fn lo_up() -> io::Result<()> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: SIOC[GS]IFFLAGS read/write an ifreq, which `req` is.
        unsafe {
            if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
                return Err(io::Error::last_os_error());
            }
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Polls until the connection's socket satisfies `pred` (given `None` when it is
    /// gone), for at most two seconds; returns the last observation.
    fn wait_for(
        obs: &Observer,
        local: SocketAddr,
        remote: SocketAddr,
        pred: impl Fn(&Option<SockInfo>) -> bool,
    ) -> Option<SockInfo> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let seen = obs.connection(local, remote).expect("sock_diag sample");
            if pred(&seen) || Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn state_is(state: TcpState) -> impl Fn(&Option<SockInfo>) -> bool {
        move |s| s.as_ref().map(|s| s.state) == Some(state)
    }

    /// A connected client/server pair over `ip` plus the listener.
    fn pair(ip: IpAddr) -> (TcpListener, TcpStream, TcpStream) {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (listener, client, server)
    }

    fn ends(s: &TcpStream) -> (SocketAddr, SocketAddr) {
        (s.local_addr().expect("local"), s.peer_addr().expect("peer"))
    }

    #[test]
    fn observe_observer_is_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Observer>();
    }

    #[test]
    fn observe_state_names_round_trip() {
        for (i, state) in TcpState::ALL.into_iter().enumerate() {
            assert_eq!(TcpState::from_kernel(i as u8 + 1), Some(state));
            assert_eq!(state.to_kernel(), i as u8 + 1);
            assert_eq!(state.name().parse::<TcpState>(), Ok(state));
            assert_eq!(state.to_string(), state.name());
        }
        assert_eq!(TcpState::from_kernel(0), None);
        assert_eq!(TcpState::from_kernel(13), None);
        for spelling in ["FIN_WAIT1", "fin-wait-1", "Fin_Wait_1", " FIN_WAIT_1 "] {
            assert_eq!(spelling.parse::<TcpState>(), Ok(TcpState::FinWait1));
        }
        assert_eq!("FIN-WAIT-2".parse::<TcpState>(), Ok(TcpState::FinWait2));
        assert_eq!("time-wait".parse::<TcpState>(), Ok(TcpState::TimeWait));
        let err = "CLOSED_ISH".parse::<TcpState>().unwrap_err().to_string();
        assert!(
            err.contains("CLOSED_ISH") && err.contains("FIN_WAIT_2"),
            "{err}"
        );
    }

    /// A TIME_WAIT message as the kernel lays it out, decoded without a kernel.
    #[test]
    fn observe_parses_raw_time_wait_message() {
        let mut p = vec![0u8; msg::LEN];
        p[msg::FAMILY] = AF_INET;
        p[msg::STATE] = 6;
        p[msg::TIMER] = 3;
        p[msg::SPORT..msg::SPORT + 2].copy_from_slice(&40000u16.to_be_bytes());
        p[msg::DPORT..msg::DPORT + 2].copy_from_slice(&80u16.to_be_bytes());
        p[msg::SRC..msg::SRC + 4].copy_from_slice(&[10, 0, 0, 1]);
        p[msg::DST..msg::DST + 4].copy_from_slice(&[10, 0, 0, 2]);
        p[msg::EXPIRES..msg::EXPIRES + 4].copy_from_slice(&59_876u32.to_ne_bytes());
        let s = parse_inet_diag_msg(&p)
            .expect("parses")
            .expect("known state");
        assert_eq!(s.state, TcpState::TimeWait);
        assert_eq!(s.timer, TimerKind::TimeWait);
        assert_eq!(s.expires, Duration::from_millis(59_876));
        assert_eq!(s.local, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(s.remote, "10.0.0.2:80".parse().unwrap());
        assert_eq!(s.shutdown, None);
        p[msg::STATE] = 13; // TCP_BOUND_INACTIVE: skipped, not an error
        assert!(parse_inet_diag_msg(&p).expect("parses").is_none());
    }

    #[test]
    fn observe_listener_shows_listen() {
        in_private_netns(|| {
            let obs = Observer::new().expect("observer");
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let all = obs.sockets().expect("sample");
            let found = all
                .iter()
                .find(|s| s.local == addr)
                .expect("listener listed");
            assert_eq!(found.state, TcpState::Listen);
            assert_eq!(found.family, Family::V4);
            assert_ne!(found.inode, 0);
            // connection() ignores listeners even when asked for their exact addresses.
            let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
            assert_eq!(found.remote, any);
            assert_eq!(obs.connection(addr, any).expect("sample"), None);
        });
    }

    #[test]
    fn observe_established_both_ways() {
        in_private_netns(|| {
            let obs = Observer::new().expect("observer");
            let (_listener, client, server) = pair(Ipv4Addr::LOCALHOST.into());
            for stream in [&client, &server] {
                let (local, remote) = ends(stream);
                let s = wait_for(&obs, local, remote, state_is(TcpState::Established))
                    .expect("socket present");
                assert_eq!(s.state, TcpState::Established, "{s}");
                assert_ne!(s.inode, 0);
                assert_eq!(s.shutdown, Some(ShutdownFlags::default()));
            }
        });
    }

    /// Client half-closes, server reads EOF and closes: the client must end in TIME_WAIT
    /// with (almost) the full 60 s left, and the server's socket must be gone.
    fn time_wait_after_half_close(ip: IpAddr) {
        in_private_netns(move || {
            let obs = Observer::new().expect("observer");
            let (_listener, mut client, mut server) = pair(ip);
            let (c_local, c_remote) = ends(&client);
            client.shutdown(Shutdown::Write).expect("shutdown");
            let mut buf = [0u8; 16];
            assert_eq!(server.read(&mut buf).expect("server read"), 0);
            let s = obs
                .connection(c_local, c_remote)
                .expect("sample")
                .expect("client socket");
            assert_eq!(s.shutdown.map(|f| f.write), Some(true), "{s}");
            drop(server);
            assert_eq!(client.read(&mut buf).expect("client read"), 0);
            let tw = wait_for(&obs, c_local, c_remote, state_is(TcpState::TimeWait))
                .expect("client socket in TIME_WAIT");
            assert_eq!(tw.state, TcpState::TimeWait, "{tw}");
            assert_eq!(tw.timer, TimerKind::TimeWait);
            let left = tw.expires;
            assert!(
                left >= Duration::from_secs(55) && left <= Duration::from_secs(60),
                "TIME_WAIT left {left:?}"
            );
            assert_eq!(tw.inode, 0);
            let gone = wait_for(&obs, c_remote, c_local, |s| s.is_none());
            assert_eq!(gone, None, "server side should be CLOSED");
        });
    }

    #[test]
    fn observe_time_wait_v4() {
        time_wait_after_half_close(Ipv4Addr::LOCALHOST.into());
    }

    #[test]
    fn observe_time_wait_v6() {
        time_wait_after_half_close(Ipv6Addr::LOCALHOST.into());
    }

    /// An orphan whose FIN was acked becomes a TIME_WAIT mini-socket in substate
    /// FIN_WAIT_2: state FIN_WAIT_2 but timer TimeWait and no inode.
    #[test]
    fn observe_orphan_fin_wait2_is_a_mini_socket() {
        in_private_netns(|| {
            let obs = Observer::new().expect("observer");
            let (_listener, client, mut server) = pair(Ipv4Addr::LOCALHOST.into());
            let (c_local, c_remote) = ends(&client);
            drop(client);
            let mut buf = [0u8; 16];
            assert_eq!(server.read(&mut buf).expect("server read"), 0);
            let s = wait_for(&obs, c_local, c_remote, state_is(TcpState::FinWait2))
                .expect("client socket");
            assert_eq!(s.state, TcpState::FinWait2, "{s}");
            assert_eq!(s.timer, TimerKind::TimeWait, "{s}");
            assert_eq!(s.inode, 0);
            // tcp_fin_timeout defaults to 60 s in a fresh namespace.
            let left = s.expires;
            assert!(
                left >= Duration::from_secs(55) && left <= Duration::from_secs(60),
                "{left:?}"
            );
            let server_side = obs.connection(c_remote, c_local).expect("sample");
            assert_eq!(server_side.map(|s| s.state), Some(TcpState::CloseWait));
        });
    }

    #[test]
    fn observe_reset_leaves_no_socket() {
        in_private_netns(|| {
            let obs = Observer::new().expect("observer");
            let (_listener, client, mut server) = pair(Ipv4Addr::LOCALHOST.into());
            let (c_local, c_remote) = ends(&client);
            let abort = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            setsockopt(&client, sockopt::Linger, &abort).expect("SO_LINGER");
            drop(client);
            let reset = server
                .write_all(b"x")
                .and_then(|()| server.read(&mut [0u8; 1]));
            assert!(reset.is_err(), "server should see the RST: {reset:?}");
            assert_eq!(wait_for(&obs, c_local, c_remote, |s| s.is_none()), None);
            assert_eq!(wait_for(&obs, c_remote, c_local, |s| s.is_none()), None);
        });
    }

    /// A dual-stack listener accepts IPv4: the accepted AF_INET6 socket is reported with
    /// plain IPv4 addresses and family V6.
    #[test]
    fn observe_v4_mapped_reported_as_v4() {
        in_private_netns(|| {
            let obs = Observer::new().expect("observer");
            let listener = TcpListener::bind("[::]:0").expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            let (_server, _) = listener.accept().expect("accept");
            let (c_local, c_remote) = ends(&client);
            let server_side = obs
                .connection(c_remote, c_local)
                .expect("sample")
                .expect("found");
            assert_eq!(server_side.family, Family::V6);
            assert_eq!(server_side.local, c_remote);
            // The mapped spelling finds it too.
            let mapped = |a: SocketAddr| match a {
                SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
                v6 => v6,
            };
            let again = obs
                .connection(mapped(c_remote), mapped(c_local))
                .expect("sample");
            assert_eq!(again.map(|s| s.cookie), Some(server_side.cookie));
        });
    }

    /// Enough sockets that the dump spans several datagrams.
    #[test]
    fn observe_multipart_dump() {
        in_private_netns(|| {
            let obs = Observer::new().expect("observer");
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let mut streams = Vec::new();
            for _ in 0..150 {
                streams.push(TcpStream::connect(addr).expect("connect"));
                streams.push(listener.accept().expect("accept").0);
            }
            let all = obs.sockets().expect("sample");
            let established = all
                .iter()
                .filter(|s| s.state == TcpState::Established)
                .count();
            assert_eq!(established, streams.len());
            for s in &streams {
                let (local, remote) = ends(s);
                assert!(all.iter().any(|i| i.local == local && i.remote == remote));
            }
        });
    }

    /// The observer keeps watching its namespace when used from a thread outside it, and
    /// reports what one sample costs.
    #[test]
    fn observe_from_another_thread() {
        let (obs, listener, pair) = in_private_netns(|| {
            let obs = Observer::new().expect("observer");
            let (listener, client, server) = pair(Ipv4Addr::LOCALHOST.into());
            (obs, listener, (client, server))
        });
        let all = obs.sockets().expect("sample");
        assert_eq!(all.len(), 3, "{all:?}");
        let addr = listener.local_addr().expect("addr");
        assert!(all
            .iter()
            .any(|s| s.state == TcpState::Listen && s.local == addr));

        // The exact lookup a step's sample makes finds the connection without a dump. (What
        // a sample costs is a benchmark's business: `halfclose bench`, not a timed test.)
        let (local, remote) = (pair.0.local_addr().unwrap(), pair.0.peer_addr().unwrap());
        let found = obs.connection(local, remote).expect("lookup");
        assert_eq!(found.map(|s| s.state), Some(TcpState::Established));
        drop(pair);
    }
}
